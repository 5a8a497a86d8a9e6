"""Instants: parsing ISO 8601 input and formatting for output. Always timezone-aware."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tocsin.domain.errors import InvalidInput

INSTANT_FORMAT_HINT = (
    "write it in ISO 8601 with a UTC offset, e.g. 2022-01-07T00:00+06:00 or 2022-01-06T18:00Z"
)
# Years far enough from datetime's limits that an offset, a term or a duration cannot overflow
FIRST_YEAR, LAST_YEAR = 1000, 8999
LONGEST = timedelta(days=36_525)
_DURATION = re.compile(r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?)?$")


def parse_instant(text: str, what: str = "time") -> datetime:
    """Parse an ISO 8601 instant that carries an offset; return it in UTC.

    Refuses empty text, malformed text and local times without an offset.
    """
    raw = text.strip()
    if not raw:
        raise InvalidInput(f"{what} is empty", INSTANT_FORMAT_HINT)
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1] in "zZ" else raw)
    except ValueError:
        problem = f"{what} {text!r} is not an ISO 8601 time"
        raise InvalidInput(problem, INSTANT_FORMAT_HINT) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} {text!r} has no UTC offset", INSTANT_FORMAT_HINT)
    if not FIRST_YEAR <= value.year <= LAST_YEAR:  # 9999-12-31T23:59-14:00 is in 10000 in UTC
        raise InvalidInput(f"{what} {text!r} is out of range",
                           f"give a time in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value.astimezone(UTC)


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """Parse the ISO 8601 durations schemes use (weeks, days, hours, minutes: P14D, PT12H)."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise InvalidInput(
            f"{what} {text!r} is not an ISO 8601 duration",
            "write weeks, days, hours or minutes, e.g. P14D, P2W or PT12H",
        )
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    try:
        value = timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"],
                          minutes=parts["m"])
    except OverflowError:
        value = LONGEST + LONGEST
    if value > LONGEST:  # past it, adding the duration to a time could leave the calendar
        raise InvalidInput(f"{what} {text!r} is longer than 100 years",
                           "give a shorter duration, e.g. P14D")
    if value <= timedelta(0):
        raise InvalidInput(f"{what} {text!r} is zero", "give a positive duration such as P14D")
    return value


def format_duration(value: timedelta) -> str:
    """The ISO 8601 form of a positive duration (inverse of parse_duration)."""
    days, seconds = value.days, value.seconds
    out = "P"
    if days:
        out += f"{days}D"
    if seconds:
        hours, rest = divmod(seconds, 3600)
        out += "T" + (f"{hours}H" if hours else "") + (f"{rest // 60}M" if rest // 60 else "")
    return out


def iso(value: datetime) -> str:
    """Canonical UTC text for an instant: 2022-01-06T18:00:00Z (microseconds only when set)."""
    utc = value.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")
