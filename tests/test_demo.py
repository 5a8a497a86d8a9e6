"""The January 2022 replay, on both databases: the levels it must show at each instant."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from tests.helpers import utc

from tocsin import demo
from tocsin.service import queries
from tocsin.store.database import connect


def levels_at(engine: Engine, at: object) -> dict[str, str | None]:
    world = queries.load_world(engine)
    return {s.area.code: s.effective.level.key if s.effective.level else None
            for s in world.status(at, scheme=demo.SCHEME)}  # type: ignore[arg-type]


def test_replay_shows_countrywide_critical_then_regional_levels(empty_db_url: str) -> None:
    engine = connect(empty_db_url)
    result = demo.replay(engine, set_up_at=utc(2022, 1, 1))
    assert result.countrywide.areas == ("KZ",)
    assert {d.replaces for d in result.step_down} == {(result.countrywide.id,)}

    before = levels_at(engine, utc(2022, 1, 7, 2, 59))
    assert set(before.values()) == {None}
    jan8 = levels_at(engine, utc(2022, 1, 8, 6))
    assert len(jan8) == 21 and set(jan8.values()) == {"critical"}

    jan15 = levels_at(engine, utc(2022, 1, 15, 6))
    assert {c for c, lv in jan15.items() if lv == "critical"} == set(demo.CRITICAL)
    assert {c for c, lv in jan15.items() if lv == "high"} == set(demo.HIGH_14_DAYS)
    assert {c for c, lv in jan15.items() if lv == "moderate"} == {
        *demo.MODERATE_10_DAYS, *demo.MODERATE_14_DAYS, *demo.MODERATE_OPEN}
    assert jan15["KZ"] is None

    # No instant of the switch-over is without a level in any region.
    switch = demo.STEP_DOWN_EFFECTIVE
    for at in (switch - timedelta(microseconds=1), switch):
        assert all(lv is not None for code, lv in levels_at(engine, at).items() if code != "KZ")

    jan25 = levels_at(engine, utc(2022, 1, 25, 6))
    assert all(jan25[c] is None for c in demo.MODERATE_10_DAYS)
    assert all(jan25[c] == "moderate" for c in demo.MODERATE_14_DAYS)
    feb1 = levels_at(engine, utc(2022, 2, 1, 6))
    assert {c for c, lv in feb1.items() if lv} == {*demo.CRITICAL, *demo.MODERATE_OPEN}

    [almaty] = queries.load_world(engine).status(utc(2022, 1, 15, 6), area="KZ-75",
                                                 scheme=demo.SCHEME)
    assert almaty.period.start == demo.COUNTRYWIDE_AT  # critical without a break
    assert queries.verify_audit(engine).ok
    engine.dispose()
