"""Closed history stays in the store: a server's world holds only the declarations that may
still hold, and every question that reaches back (an area's past, `?at=` an earlier instant,
an old declaration, the listings) reads the rest from the store and answers exactly as a
world holding everything does. On both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, select, text
from tests.helpers import request

from tocsin import settings
from tocsin.domain.area import Area, AreaKind
from tocsin.domain.declaration import end_of, replaced_by
from tocsin.render import pages
from tocsin.service import commands, queries
from tocsin.store import tables as t
from tocsin.store.database import _alembic_config, connect, migrate
from tocsin.web.site import Site
from tocsin.web.snapshot import Snapshot, build

ACTOR = "tester"
SCHEME = "kz-terror"
PUBLIC = "https://tocsin.example"
CONFIG = settings.Settings(database_url="sqlite://", sender="tocsin", public_url=PUBLIC,
                           cap_sender="tocsin.example")


def jan(day: int, hour: int = 0) -> datetime:
    return datetime(2022, 1, day, hour, tzinfo=UTC)


def january(engine: Engine) -> dict[str, str]:
    """January 2022, closed long ago, then one level that still holds."""
    [country] = commands.declare(engine, [request("moderate", ("KZ",), effective=jan(5))],
                                 now=jan(4), actor=ACTOR)
    [almaty] = commands.declare(engine, [request("critical", ("KZ-75",), effective=jan(7),
                                                 expires=jan(21))], now=jan(7), actor=ACTOR)
    [lowered] = commands.declare(engine, [request("high", ("KZ-75",), effective=jan(10),
                                                  expires=jan(25), replaces=(almaty.id,))],
                                 now=jan(10), actor=ACTOR)
    [short] = commands.declare(engine, [request("moderate", ("KZ-39",), effective=jan(12),
                                                expires=jan(13))], now=jan(11), actor=ACTOR)
    commands.cancel(engine, country.id, reason="the threat has passed", now=jan(20),
                    actor=ACTOR)
    [live] = commands.declare(engine, [request("high", ("KZ-71",))],
                              now=datetime.now(UTC) - timedelta(hours=1), actor=ACTOR)
    return {"country": country.id, "almaty": almaty.id, "lowered": lowered.id,
            "short": short.id, "live": live.id}


def complete_site(engine: Engine, snap: Snapshot) -> Site:
    """The same snapshot's site over a world that holds every declaration."""
    world = queries.load_world(engine, published_only=True)
    world.now = snap.world.now
    world.structure_at = snap.world.structure_at
    site = snap.site
    return Site(world, site.now, site.modified, site.audit_head, publication=site.publication,
                cap_loader=site.cap_loader, signer=site.signer,
                keys_document=site.keys_document, push_key=site.push_key)


def test_ends_at_is_when_each_declaration_stops_holding(engine: Engine) -> None:
    ids = january(engine)
    world = queries.load_world(engine, published_only=True)
    replacers = replaced_by(world.declarations)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(t.declarations.c.id, t.declarations.c.ends_at)).all())
    for key, d in world.declarations.items():
        assert stored[key] == end_of(d, [world.declarations[r] for r in replacers.get(key, [])])
    assert stored[ids["almaty"]] == jan(10)  # replaced before its expiry
    assert stored[ids["country"]] == jan(20)  # cancelled
    assert stored[ids["live"]] is None


def test_a_server_holds_only_what_may_still_hold_and_answers_the_past_exactly(
        engine: Engine) -> None:
    ids = january(engine)
    snap = build(engine, config=CONFIG)
    assert set(snap.world.declarations) == {ids["live"]}
    complete = complete_site(engine, snap)
    world, full = snap.world, complete.world
    for code in ("KZ", "KZ-75", "KZ-39", "KZ-71", *world.tree.children("KZ-75")[:1]):
        assert world.timeline(code, SCHEME) == full.timeline(code, SCHEME), code
        assert world.periods_around(SCHEME, code, jan(11)) == full.periods_around(
            SCHEME, code, jan(11)), code
        assert world.area_changed(code) == full.area_changed(code), code
        assert world.status(jan(8), area=code) == full.status(jan(8), area=code), code
    assert world.levels_at(jan(8)) == full.levels_at(jan(8))
    assert world.levels_at(jan(12, 12)) == full.levels_at(jan(12, 12))
    assert world.used_schemes() == full.used_schemes()
    assert sorted(world.published_ids()) == sorted(full.published_ids())
    assert [d.id for d in world.search(area="KZ-75")] == [d.id for d in full.search(area="KZ-75")]
    for since in (jan(1), jan(12), jan(21), datetime.now(UTC) - timedelta(days=1)):
        for code in ("KZ", "KZ-75", "KZ-39", "KZ-71"):
            assert world.changed_since(code, since) == full.changed_since(code, since)

    at = "2022-01-08T00:00:00Z"
    paths = [
        "/en/areas/KZ-75", "/kk/areas/KZ", "/api/v1/areas/KZ-75", "/api/v1/areas/KZ-39",
        f"/en/declarations/{ids['almaty']}", f"/api/v1/declarations/{ids['almaty']}",
        f"/cap/{ids['lowered']}.xml", f"/cap/{ids['country']}-cancel.xml",
        "/api/v1/declarations", "/en/history", "/api/v1/history",
        f"/badge/{SCHEME}/KZ-75.svg", f"/map/{SCHEME}.svg",
    ]
    for path in paths:
        assert snap.site.render(path).body == complete.render(path).body, path
    for path, params in [
        ("/en/areas/KZ-75", [("at", at)]), ("/en/", [("at", at)]),
        ("/api/v1/levels", [("at", at), ("level", "any")]),
        ("/api/v1/levels", [("changed_since", "2022-01-12T00:00:00Z")]),
        (f"/en/declarations/{ids['almaty']}", [("at", at)]),
        ("/en/history", [("area", "KZ-75")]), ("/en/history", [("at", at)]),
        ("/api/v1/history", [("area", "KZ-75"), ("since", "2022-01-09T00:00:00Z")]),
        ("/api/v1/declarations", [("area", "KZ-75"), ("limit", "1"), ("offset", "1")]),
        (f"/map/{SCHEME}.svg", [("at", at)]),
    ]:
        assert snap.site.render(path, params).body == complete.render(path, params).body, (
            path, params)


def test_an_unknown_id_is_answered_with_close_matches_from_closed_history(
        engine: Engine) -> None:
    ids = january(engine)
    snap = build(engine, config=CONFIG)
    wrong = ids["almaty"][:-1] + ("x" if not ids["almaty"].endswith("x") else "y")
    with pytest.raises(Exception, match=f"did you mean '{ids['almaty']}'"):
        snap.site.render(f"/api/v1/declarations/{wrong}")


def test_the_migration_fills_ends_at_for_existing_declarations(empty_db_url: str) -> None:
    engine = connect(empty_db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO schemes (key, document, created_at, updated_at) "
                              "VALUES ('s', '{}', :at, :at)"), {"at": jan(1)})
            for key, status, expires in [("a", "published", jan(9)), ("b", "published", None),
                                         ("c", "published", jan(30)), ("d", "draft", None),
                                         ("e", "published", None)]:
                conn.execute(text(
                    "INSERT INTO declarations (id, scheme, level, status, effective_at, "
                    "expires_at, texts, sender, created_at, created_by, revision) VALUES "
                    "(:id, 's', 'x', :status, :eff, :exp, '{}', 'x', :eff, 'x', 1)"),
                    {"id": key, "status": status, "eff": jan(5), "exp": expires})
            conn.execute(text("INSERT INTO declaration_replaces VALUES ('c', 'b', 0)"))
            conn.execute(text("INSERT INTO declaration_replaces VALUES ('d', 'e', 0)"))
            conn.execute(text("INSERT INTO cancellations VALUES ('a', :at, 'r', 'x')"),
                         {"at": jan(7)})
        migrate(engine)
        with engine.connect() as conn:
            ends = dict(conn.execute(select(t.declarations.c.id, t.declarations.c.ends_at)).all())
        # a: cancelled before expiry; b: replaced by c; c: its expiry; d: a draft;
        # e: a draft replacing it does not end it
        assert ends == {"a": jan(7), "b": jan(5), "c": jan(30), "d": None, "e": None}
    finally:
        engine.dispose()



def test_the_history_page_reads_one_page_at_a_time(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = january(engine)
    monkeypatch.setattr(pages, "HISTORY_SHOWN", 2)
    snap = build(engine, config=CONFIG)
    newest_first = [ids["live"], ids["short"], ids["lowered"], ids["almaty"], ids["country"]]
    seen: list[str] = []
    path, params = "/en/history", [("scheme", SCHEME)]
    for offset in (0, 2, 4):
        html = snap.site.render(path, params + ([("offset", str(offset))] if offset else []))
        body = html.body.decode()
        seen += re.findall(r'data-declaration="([^"]+)"', body)
        assert f"5 declarations match; {offset + 1}–{min(offset + 2, 5)} are shown" in body
        assert ("offset=" + str(offset + 2) in body) == (offset + 2 < 5)  # the older page
    assert seen == newest_first
    # an area's history is its own and its ancestors' declarations, paged the same way
    body = snap.site.render(path, [("area", "KZ-75")]).body.decode()
    assert re.findall(r'data-declaration="([^"]+)"', body) == [ids["lowered"], ids["almaty"]]
    # the form offers the top of the tree and the area chosen, not every area
    assert 'value="KZ-75" selected' in body


def test_the_history_form_lists_the_top_of_a_large_tree(engine: Engine) -> None:
    commands.import_areas(engine, [
        Area("KZ-75-D1", AreaKind.DISTRICT, {"en": "District 1"}, parent="KZ-75"),
        *(Area(f"KZ-75-D1-L{n}", AreaKind.CUSTOM, {"en": f"Village {n}"}, parent="KZ-75-D1")
          for n in range(3))], now=jan(1), actor=ACTOR)
    snap = build(engine, config=CONFIG)
    tree = snap.world.tree
    body = snap.site.render("/en/history").body.decode()
    listed = re.findall(r'<option value="([^"]+)"', body)
    deep = [c for c in tree.order if len(tree.ancestors(c)) > pages.HISTORY_AREA_DEPTH]
    assert deep, "the test tree has areas below the listed depth"
    assert not set(deep) & set(listed)
    chosen = deep[0]
    body = snap.site.render("/en/history", [("area", chosen)]).body.decode()
    assert f'value="{chosen}" selected' in body


def test_an_offset_past_the_end_is_an_empty_page_however_large(engine: Engine) -> None:
    january(engine)
    snap = build(engine, config=CONFIG)
    huge = "9" * 40  # past any database integer
    doc = snap.site.render("/api/v1/declarations", [("offset", huge)])
    assert b'"items":[]' in doc.body.replace(b" ", b"")
    page = snap.site.render("/en/history", [("offset", huge)]).body.decode()
    assert 'data-declaration="' not in page
