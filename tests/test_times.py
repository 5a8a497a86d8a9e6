"""Instants and durations: the formats accepted and the messages for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.domain.errors import InvalidInput
from tocsin.domain.times import format_duration, iso, parse_duration, parse_instant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-01-07T09:00+06:00", datetime(2022, 1, 7, 3, tzinfo=UTC)),
        ("2022-01-07T03:00:00Z", datetime(2022, 1, 7, 3, tzinfo=UTC)),
        ("2022-01-07T03:00:00z", datetime(2022, 1, 7, 3, tzinfo=UTC)),
        (" 2022-01-07 03:00:00.5+00:00 ", datetime(2022, 1, 7, 3, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_instants(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("soon", "is not an ISO 8601 time"), ("2022-01-07T09:00", "no UTC offset"),
     ("2022-02-30T00:00Z", "is not an ISO 8601 time")],
)
def test_bad_instants(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse_instant(text)
    assert "2022-01-07T00:00+06:00" in str(caught.value)  # the fix shows the format


@pytest.mark.parametrize(
    ("text", "expected"),
    [("P14D", timedelta(days=14)), ("P2W", timedelta(weeks=2)), ("PT12H", timedelta(hours=12)),
     ("P1DT6H30M", timedelta(days=1, hours=6, minutes=30))],
)
def test_durations_round_trip(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["P", "PT", "14D", "P1Y", "P0D", "P1DT"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_iso_is_utc_with_z() -> None:
    assert iso(parse_instant("2022-01-07T09:00+06:00")) == "2022-01-07T03:00:00Z"


# Fixed offsets: zoneinfo's imaginary times (inside a DST gap) do not compare as instants.
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=OFFSETS))
def test_iso_round_trips_every_aware_instant(value: datetime) -> None:
    assert parse_instant(iso(value)) == value


@given(st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=3650))
       .map(lambda d: timedelta(minutes=d // timedelta(minutes=1))))
def test_duration_text_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
