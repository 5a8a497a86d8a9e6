"""The service layer on both databases: declarations, replacements, cancellations, atomicity."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from tests.helpers import dump, request, utc

from tocsin.domain.errors import Conflict, InvalidInput, NotFound
from tocsin.service import commands, queries
from tocsin.store import tables

NOW = utc(2022, 1, 7, 3, 0)
ACTOR = "tester"


def level_of(engine: Engine, area: str, at: object, scheme: str = "kz-terror") -> str | None:
    [status] = queries.load_world(engine).status(at, area=area, scheme=scheme)  # type: ignore[arg-type]
    return status.effective.level.key if status.effective.level else None


def test_countrywide_level_is_inherited_by_every_region(engine: Engine) -> None:
    [d] = commands.declare(engine, [request("critical", ("KZ",))], now=NOW, actor=ACTOR)
    world = queries.load_world(engine)
    statuses = world.status(utc(2022, 1, 8), scheme="kz-terror")
    assert len(statuses) == 21
    assert {s.effective.level.key for s in statuses if s.effective.level} == {"critical"}
    almaty = next(s for s in statuses if s.area.code == "KZ-75")
    assert almaty.effective.inherited_from == "KZ"
    assert [s.declaration.id for s in almaty.effective.sources] == [d.id]
    assert almaty.period.start == NOW and almaty.period.end is None


def test_regional_level_above_countrywide_wins_only_there(engine: Engine) -> None:
    commands.declare(engine, [request("moderate", ("KZ",)), request("high", ("KZ-75",))],
                     now=NOW, actor=ACTOR)
    assert level_of(engine, "KZ-75", utc(2022, 1, 8)) == "high"
    assert level_of(engine, "KZ-19", utc(2022, 1, 8)) == "moderate"


def test_step_down_in_one_change_leaves_no_gap(engine: Engine) -> None:
    [country] = commands.declare(engine, [request("critical", ("KZ",))], now=NOW, actor=ACTOR)
    switch = utc(2022, 1, 13, 18)
    commands.declare(engine, [
        request("critical", ("KZ-75",), effective=switch, replaces=(country.id,)),
        request("moderate", ("KZ-11",), effective=switch, expires=utc(2022, 1, 23, 18),
                replaces=(country.id,)),
    ], now=utc(2022, 1, 13, 12), actor=ACTOR)
    just_before, at_switch = utc(2022, 1, 13, 17, 59, 59), switch
    assert level_of(engine, "KZ-11", just_before) == "critical"
    assert level_of(engine, "KZ-11", at_switch) == "moderate"
    assert level_of(engine, "KZ-75", at_switch) == "critical"
    assert level_of(engine, "KZ-79", at_switch) is None  # no longer covered
    assert level_of(engine, "KZ-11", utc(2022, 1, 23, 18)) is None  # expired
    [almaty] = queries.load_world(engine).status(at_switch, area="KZ-75", scheme="kz-terror")
    assert almaty.period.start == NOW  # critical without a break since the first declaration


def test_scheduled_declaration_shows_in_the_future_only(engine: Engine) -> None:
    commands.declare(engine, [request("high", ("KZ-71",), effective=utc(2022, 2, 1))],
                     now=NOW, actor=ACTOR)
    assert level_of(engine, "KZ-71", utc(2022, 1, 31)) is None
    assert level_of(engine, "KZ-71", utc(2022, 2, 1)) == "high"


def test_cancel_ends_the_level_now_with_a_reason(engine: Engine) -> None:
    [d] = commands.declare(engine, [request("high", ("KZ-71",))], now=NOW, actor=ACTOR)
    later = utc(2022, 1, 9)
    cancelled = commands.cancel(engine, d.id, reason="threat over", now=later, actor=ACTOR)
    assert cancelled.cancellation is not None and cancelled.cancellation.reason == "threat over"
    assert level_of(engine, "KZ-71", utc(2022, 1, 8)) == "high"
    assert level_of(engine, "KZ-71", later) is None
    with pytest.raises(Conflict, match="already cancelled"):
        commands.cancel(engine, d.id, reason="again", now=later, actor=ACTOR)


def test_drafts_do_not_count_until_published(engine: Engine) -> None:
    [draft] = commands.declare(engine, [request("high", ("KZ-71",))], now=NOW, actor=ACTOR,
                               publish=False)
    assert draft.effective is None
    assert level_of(engine, "KZ-71", utc(2022, 1, 8)) is None
    publish_at = utc(2022, 1, 8)
    [published] = commands.publish(engine, [draft.id], now=publish_at, actor="approver")
    assert published.effective == publish_at and published.created_by == ACTOR
    assert published.published_by == "approver"
    assert level_of(engine, "KZ-71", publish_at) == "high"
    with pytest.raises(Conflict, match="already published"):
        commands.publish(engine, [draft.id], now=publish_at, actor=ACTOR)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda ids: request(scheme="nope"), NotFound, "scheme 'nope' is not known"),
        (lambda ids: request(level="purple"), NotFound, "level of scheme 'kz-terror'"),
        (lambda ids: request(areas=("KZ-99",)), NotFound, "area 'KZ-99' is not known"),
        (lambda ids: request(areas=()), InvalidInput, "no area given"),
        (lambda ids: request(areas=("KZ", "KZ")), InvalidInput, "listed twice"),
        (lambda ids: request(effective=utc(2022, 1, 6)), InvalidInput, "is in the past"),
        (lambda ids: request(effective=utc(2022, 1, 9), expires=utc(2022, 1, 9)), InvalidInput,
         "is not after the effective time"),
        (lambda ids: request(replaces=("19990101-00000000",)), NotFound,
         "declaration '19990101-00000000' is not known"),
        (lambda ids: request(replaces=(ids["draft"],)), Conflict, "is a draft"),
        (lambda ids: request(replaces=(ids["replaced"],)), Conflict, "already replaced"),
        (lambda ids: request(replaces=(ids["cancelled"],)), Conflict, "already cancelled"),
        (lambda ids: request(replaces=(ids["expired"],)), Conflict, "already ended"),
        (lambda ids: request(scheme="uk-terror", level="low", replaces=(ids["live"],)),
         Conflict, "of scheme 'kz-terror', not 'uk-terror'"),
        (lambda ids: request(scheme="us-ntas", level="elevated"), InvalidInput,
         "requires an expiry"),
        (lambda ids: request(headline="x" * 200), InvalidInput, "has 200 characters"),
    ],
)
def test_bad_declarations_are_refused_and_nothing_is_written(
    engine: Engine, make: object, error: type[Exception], message: str
) -> None:
    start = utc(2022, 1, 1)
    [draft] = commands.declare(engine, [request()], now=start, actor=ACTOR, publish=False)
    [old, live, cancelled, expired] = commands.declare(engine, [
        request("moderate", ("KZ-10",)), request("moderate", ("KZ-11",)),
        request("moderate", ("KZ-15",)),
        request("moderate", ("KZ-19",), expires=utc(2022, 1, 2)),
    ], now=start, actor=ACTOR)
    commands.declare(engine, [request("high", ("KZ-10",), replaces=(old.id,))], now=start,
                     actor=ACTOR)
    commands.cancel(engine, cancelled.id, reason="over", now=start, actor=ACTOR)
    ids = {"draft": draft.id, "replaced": old.id, "live": live.id, "cancelled": cancelled.id,
           "expired": expired.id}
    before = dump(engine)
    good = request("moderate", ("KZ-31",))
    with pytest.raises(error, match=message):
        # A good declaration first: the bad one after it must take it down too.
        commands.declare(engine, [good, make(ids)], now=NOW, actor=ACTOR)  # type: ignore[operator]
    assert dump(engine) == before


def test_each_change_writes_audit_entries_and_outbox_events_in_one_transaction(
    engine: Engine,
) -> None:
    with engine.connect() as conn:
        before_audit = conn.execute(select(func.count()).select_from(tables.audit_log)).scalar()
        version = conn.execute(select(tables.state.c.version)).scalar()
    made = commands.declare(engine, [request("critical", ("KZ",)), request("high", ("KZ-75",))],
                            now=NOW, actor=ACTOR)
    with engine.connect() as conn:
        entries = conn.execute(select(tables.audit_log).order_by(tables.audit_log.c.seq)).all()
        events = conn.execute(select(tables.outbox).order_by(tables.outbox.c.id)).all()
        state = conn.execute(select(tables.state)).one()
    new = entries[before_audit:]
    assert [(e.action, e.subject, e.actor) for e in new] == [
        ("declaration.published", d.id, ACTOR) for d in made]
    published = [e for e in events if e.topic == "declaration.published"]
    assert [e.payload["id"] for e in published] == [d.id for d in made]
    assert "KZ-75" in published[0].payload["covers"]  # countrywide covers every region
    assert state.version == version + 1
    assert (state.audit_seq, state.audit_hash) == (new[-1].seq, new[-1].hash)


def test_scheme_update_cannot_drop_a_level_in_use(engine: Engine) -> None:
    from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file, parse_scheme

    commands.declare(engine, [request("critical", ("KZ",))], now=NOW, actor=ACTOR)
    path = next(p for p in builtin_scheme_files() if p.name == "kz-terror.toml")
    scheme, document = load_scheme_file(path)
    assert commands.import_scheme(engine, scheme, document, now=NOW, actor=ACTOR) == "unchanged"
    trimmed = {**document, "levels": [lv for lv in document["levels"] if lv["key"] != "critical"]}
    before = dump(engine)
    with pytest.raises(Conflict, match="would lose level"):
        commands.import_scheme(engine, parse_scheme(trimmed, "t"), trimmed, now=NOW, actor=ACTOR)
    assert dump(engine) == before
    renamed = {**document, "scheme": {**document["scheme"], "event": {
        "kk": "Террористік қауіп", "ru": "Террористическая угроза", "en": "Terror threat"}}}
    outcome = commands.import_scheme(engine, parse_scheme(renamed, "t"), renamed, now=NOW,
                                     actor=ACTOR)
    assert outcome == "updated"
    assert queries.load_world(engine).scheme("kz-terror").event["en"] == "Terror threat"


def test_area_import_refuses_cycles_and_unknown_parents_atomically(engine: Engine) -> None:
    from tocsin.domain.area import Area, AreaKind

    before = dump(engine)
    with pytest.raises(InvalidInput, match="not known"):
        commands.import_areas(engine, [
            Area("KZ-75-01", AreaKind.DISTRICT, {"en": "Medeu"}, parent="KZ-75"),
            Area("X-1", AreaKind.DISTRICT, {"en": "Orphan"}, parent="X-0"),
        ], now=NOW, actor=ACTOR)
    with pytest.raises(InvalidInput, match="cycle"):
        commands.import_areas(engine, [Area("KZ", AreaKind.COUNTRY, {"en": "K"}, parent="KZ-75")],
                              now=NOW, actor=ACTOR)
    assert dump(engine) == before
    report = commands.import_areas(engine, [
        Area("KZ-75-01", AreaKind.DISTRICT, {"en": "Medeu District"}, parent="KZ-75")],
        now=NOW, actor=ACTOR)
    assert report.created == ("KZ-75-01",)
    commands.declare(engine, [request("critical", ("KZ",))], now=NOW, actor=ACTOR)
    assert level_of(engine, "KZ-75-01", utc(2022, 1, 8)) == "critical"  # grandchild inherits


def test_commands_refuse_a_database_that_is_not_set_up(empty_db_url: str) -> None:
    from tocsin.store.database import connect

    engine = connect(empty_db_url)
    with pytest.raises(Conflict, match="tocsin init"):
        commands.declare(engine, [request()], now=NOW, actor=ACTOR)
    engine.dispose()
