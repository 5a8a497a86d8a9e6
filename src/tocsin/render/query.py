"""The one parser for the query strings of every public endpoint, and what each kind accepts.

`parse_query` checks a request's parameters against the kinds an endpoint allows;
`param_schema` describes the same kinds as JSON Schema for the OpenAPI document, built from
the same patterns so that the description and the parser cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from enum import Enum
from typing import Any

from tocsin.domain.area import CODE_PATTERN
from tocsin.domain.errors import InvalidInput
from tocsin.domain.times import INSTANT_FORMAT_HINT, parse_instant
from tocsin.ingest.document import LANGUAGE
from tocsin.ingest.schemes import KEY as SCHEME_KEY

LIMIT_MAX = 500
TEXT_MAX = 200
_SHOWN_MAX = 80

# Years 1000-8999 keep every offset inside what datetime can hold in UTC. Seconds may be left
# out (people type ?at= by hand); the public pattern writes the sign of the offset as + or -,
# and the parser also takes the space that a bare '+' in a URL decodes to.
_DATE = "[1-8][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?"
INSTANT_PATTERN = f"^{_DATE}(Z|[+-][0-9]{{2}}:[0-9]{{2}})$"
_INSTANT = re.compile(f"{_DATE}(Z|[+ -][0-9]{{2}}:[0-9]{{2}})")
_DIGITS = re.compile("[0-9]+")


class ParamKind(Enum):
    """What a query parameter holds; `parse_query` returns the value in the type noted."""

    INSTANT = "instant"
    """datetime in UTC"""
    TEXT = "text"
    """str of 1 to TEXT_MAX characters"""
    AREA = "area"
    """str: an area code (whether the area exists is the endpoint's question)"""
    SCHEME = "scheme"
    """str: a scheme key (likewise)"""
    LIMIT = "limit"
    """int from 1 to LIMIT_MAX"""
    OFFSET = "offset"
    """int of 0 or more"""
    LANGUAGE = "language"
    """str: a BCP 47 language tag"""
    DAY = "day"
    """date: a calendar day, YYYY-MM-DD (the history page's date inputs)"""


_BOUNDS = {ParamKind.LIMIT: (1, LIMIT_MAX), ParamKind.OFFSET: (0, None)}

_PATTERNS = {
    ParamKind.INSTANT: INSTANT_PATTERN,
    ParamKind.AREA: CODE_PATTERN.pattern,
    ParamKind.SCHEME: SCHEME_KEY.pattern,
    ParamKind.LANGUAGE: LANGUAGE.pattern,
    ParamKind.DAY: "^[1-8][0-9]{3}-[0-9]{2}-[0-9]{2}$",
}

_EXPECTED = {
    ParamKind.INSTANT: ("an ISO 8601 time",
                        f"{INSTANT_FORMAT_HINT}, in the years 1000 to 8999"),
    ParamKind.TEXT: (f"a text of at most {TEXT_MAX} characters", "shorten it"),
    ParamKind.AREA: ("an area code", "use 1-64 letters, digits, '.', '_' or '-', starting "
                     "with a letter or digit, e.g. KZ-75"),
    ParamKind.SCHEME: ("a scheme key", "use lowercase letters, digits and '-', e.g. kz-terror "
                       "(see /api/v1/schemes)"),
    ParamKind.LIMIT: (f"a whole number from 1 to {LIMIT_MAX}", "e.g. limit=50"),
    ParamKind.OFFSET: ("a whole number of 0 or more", "e.g. offset=0"),
    ParamKind.LANGUAGE: ("a language tag", "use tags like 'kk', 'ru', 'en' or 'en-GB'"),
    ParamKind.DAY: ("a date", "write it as YYYY-MM-DD, e.g. 2022-01-07"),
}


def parse_query(params: Sequence[tuple[str, str]],
                allowed: Mapping[str, ParamKind]) -> dict[str, Any]:
    """The parameters given, each converted to its kind's type; absent ones are left out.

    Raises InvalidInput for an unknown parameter, one given twice, an empty value, or a
    value its kind does not accept; the message names the parameter and the value.
    """
    out: dict[str, Any] = {}
    for name, value in params:
        kind = allowed.get(name)
        if kind is None:
            fix = (f"use {', '.join(allowed)}" if allowed
                   else "leave it out: this address takes no query parameters")
            raise InvalidInput(f"query parameter {_shown(name)} is not known", fix)
        if name in out:
            raise InvalidInput(f"query parameter {name!r} is given twice", "give it once")
        if value == "":
            raise InvalidInput(f"query parameter {name!r} is empty",
                               f"give {_EXPECTED[kind][0]} or leave it out")
        out[name] = _parse(name, value, kind)
    return out


def _parse(name: str, value: str, kind: ParamKind) -> Any:
    expected, fix = _EXPECTED[kind]
    bad = InvalidInput(f"query parameter {name}={_shown(value)} is not {expected}", fix)
    if kind is ParamKind.INSTANT:
        if not _INSTANT.fullmatch(value):
            raise bad
        if value[-6] == " ":
            value = f"{value[:-6]}+{value[-5:]}"
        try:
            return parse_instant(value)
        except InvalidInput:
            raise bad from None
    if kind in _BOUNDS:
        low, high = _BOUNDS[kind]
        if not _DIGITS.fullmatch(value):
            raise bad
        try:
            number = int(value)
        except ValueError:  # more digits than int() converts
            raise bad from None
        if number < low or (high is not None and number > high):
            raise bad
        return number
    if kind is ParamKind.TEXT:
        if len(value) > TEXT_MAX:
            raise bad
        return value
    if kind is ParamKind.DAY:
        if not re.fullmatch(_PATTERNS[kind], value):
            raise bad
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise bad from None
    if not re.fullmatch(_PATTERNS[kind], value):
        raise bad
    return value


def _shown(value: str) -> str:
    """The value quoted for a message, cut short when long."""
    return repr(value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "…")


def param_schema(kind: ParamKind) -> dict[str, Any]:
    """The JSON Schema of the values `parse_query` accepts for `kind` (for OpenAPI)."""
    if kind in _BOUNDS:
        low, high = _BOUNDS[kind]
        schema: dict[str, Any] = {"type": "integer", "minimum": low}
        if high is not None:
            schema["maximum"] = high
        return schema
    if kind is ParamKind.TEXT:
        return {"type": "string", "minLength": 1, "maxLength": TEXT_MAX}
    schema = {"type": "string", "pattern": _PATTERNS[kind]}
    if kind is ParamKind.INSTANT:
        schema["format"] = "date-time"
    return schema
