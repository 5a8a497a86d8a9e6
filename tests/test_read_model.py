"""The read model at scale: a change costs what it changes, documents depend only on their own
inputs, non-public changes rebuild nothing, and the cache cannot be flushed from outside.
On both databases, through the server's own holder and the ASGI app."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from tests.helpers import request

from tocsin.domain.access import Role
from tocsin.domain.area import Area, AreaKind
from tocsin.service import commands, people
from tocsin.web.app import create_app
from tocsin.web.live import Holder
from tocsin.web.site import QUERY_CACHE_LIMIT
from tocsin.web.snapshot import build

ACTOR = "tester"


def now() -> datetime:
    return datetime.now(UTC)


def area_documents(code: str) -> list[str]:
    return [f"/en/areas/{code}", f"/kk/areas/{code}", f"/api/v1/areas/{code}",
            f"/badge/kz-terror/{code}.svg", f"/feeds/areas/{code}.atom"]


def test_a_change_to_one_region_leaves_another_regions_documents_untouched(
        engine: Engine) -> None:
    commands.declare(engine, [request("high", ("KZ-39",))], now=now() - timedelta(hours=2),
                     actor=ACTOR)
    holder = Holder(engine)
    before = {path: holder.current.site.render(path) for path in area_documents("KZ-39")}
    changed_before = holder.current.site.render("/en/areas/KZ-71")
    commands.declare(engine, [request("critical", ("KZ-71",))], now=now(), actor=ACTOR)
    new = holder.check()
    assert new is not None and new.outbox > 0
    for path, doc in before.items():
        again = new.site.render(path)
        assert (again.body, again.etag, again.last_modified) == (
            doc.body, doc.etag, doc.last_modified), path
    # and the changed region's page did change, with its own Last-Modified
    after = new.site.render("/en/areas/KZ-71")
    assert after.etag != changed_before.etag and "Critical" in after.body.decode()
    assert after.last_modified != before["/en/areas/KZ-39"].last_modified
    # the country summary moved, so the country's page is not the old one
    assert new.site.render("/en/areas/KZ").etag != holder.current.site.render(
        "/en/areas/KZ-39").etag


def test_a_rebuilt_document_is_the_same_as_a_fresh_process_renders(engine: Engine) -> None:
    """Carried-over and re-rendered documents match what a new server process makes from
    scratch: the same state always gives the same bytes, whichever way it was reached."""
    holder = Holder(engine)
    for path in [*area_documents("KZ-39"), *area_documents("KZ-71"), "/en/", "/api/v1/levels"]:
        holder.current.site.render(path)
    commands.declare(engine, [request("critical", ("KZ-71",))], now=now(), actor=ACTOR)
    holder.check()
    fresh = Holder(engine)
    for path in [*area_documents("KZ-39"), *area_documents("KZ-71"), "/en/", "/en/areas/KZ",
                 "/api/v1/levels"]:
        one, two = holder.current.site.render(path), fresh.current.site.render(path)
        assert (one.etag, one.last_modified) == (two.etag, two.last_modified), path


def test_non_public_changes_rebuild_nothing(engine: Engine) -> None:
    holder = Holder(engine)
    first = holder.current
    people.add_user(engine, "aigerim", "correct horse battery staple", [Role.AUDITOR], [],
                    now=now(),
                    break_glass=False,
                    by=None, actor=ACTOR)
    assert holder.check() is None and holder.current is first
    head = holder.current.site.render("/api/v1/audit/head").body
    assert b'"seq":0' not in head  # the published audit head still follows every change


def test_the_country_page_says_what_is_in_force_beneath_it(engine: Engine) -> None:
    commands.declare(engine, [request("critical", ("KZ-75", "KZ-19", "KZ-31", "KZ-33"))],
                     now=now(), actor=ACTOR)
    site = Holder(engine).current.site
    page = site.render("/en/areas/KZ").body.decode()
    assert "Critical (red) in 4 areas" in page
    data = json.loads(site.render("/api/v1/areas/KZ").body)
    [level] = data["levels"]
    assert level["level"] is None
    assert level["beneath"]["level"] == "critical" and level["beneath"]["count"] == 4
    assert set(level["beneath"]["where"]) == {"KZ-75", "KZ-19", "KZ-31", "KZ-33"}
    badge = site.render("/badge/kz-terror/KZ.svg").body.decode()
    assert "Critical" in badge


def test_junk_query_parameters_cannot_flush_the_cache(engine: Engine) -> None:
    app = create_app(engine)
    site = app.holder.current.site

    async def crawl() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://tocsin.test") as client:
            warm = ["/en/areas/KZ-75", "/api/v1/areas/KZ-75", "/en/"]
            for path in warm:
                assert (await client.get(path)).status_code == 200
            for n in range(10_000):
                answer = await client.get(f"/en/areas/KZ-39?utm_source={n}&fbclid=x{n}")
                assert answer.status_code == 200
            for n in range(QUERY_CACHE_LIMIT + 500):
                stamp = (datetime(2022, 1, 1, tzinfo=UTC) + timedelta(minutes=n)).strftime(
                    "%Y-%m-%dT%H:%MZ")
                assert (await client.get(f"/en/areas/KZ-39?at={stamp}")).status_code == 200
            for path in warm:
                assert site.cached(path) is not None, f"{path} was pushed out"
    asyncio.run(crawl())
    plain, queries = site.cache_size()
    assert queries <= QUERY_CACHE_LIMIT and plain < 20


def test_unknown_parameters_do_not_change_the_answer(engine: Engine) -> None:
    site = Holder(engine).current.site
    plain = site.render("/en/areas/KZ-75")
    assert site.render("/en/areas/KZ-75", [("utm_source", "x")]) is plain


@pytest.mark.parametrize("query", ["scheme=nope", "level=purple", "area=KZ-99", "cursor=%%%",
                                   "limit=0", "changed_since=yesterday"])
def test_bad_level_filters_answer_400_in_the_one_shape(engine: Engine, query: str) -> None:
    app = create_app(engine)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://tocsin.test") as client:
            return await client.get(f"/api/v1/levels?{query}")
    answer = asyncio.run(call())
    assert answer.status_code in (400, 404), answer.text
    assert set(answer.json()["error"]) == {"status", "code", "message", "fix"}


def deep_tree(engine: Engine, districts: int = 10, localities: int = 9) -> None:
    """Districts under every region and localities under every district, named in three
    languages, as a country with thousands of localities has them."""
    regions = [c for c in Holder(engine).current.world.tree.areas if c != "KZ"]
    made = []
    for region in regions:
        for d in range(districts):
            district = f"{region}-D{d:02d}"
            made.append(Area(district, AreaKind.DISTRICT,
                             {"en": f"District {district}", "ru": f"Район {district}",
                              "kk": f"{district} ауданы"}, parent=region))
            made += [Area(f"{district}-L{n}", AreaKind.CUSTOM,
                          {"en": f"Village {district}-{n}", "ru": f"Село {district}-{n}",
                           "kk": f"{district}-{n} ауылы"}, parent=district)
                     for n in range(localities)]
    commands.import_areas(engine, made, now=now() - timedelta(days=1), actor=ACTOR)


def test_the_overview_stays_small_and_names_deep_areas_with_a_level(engine: Engine) -> None:
    deep_tree(engine)
    commands.declare(engine, [request("critical", ("KZ-75-D03-L4",))], now=now(), actor=ACTOR)
    site = Holder(engine).current.site
    assert len(site.world.tree) > 2000
    page = site.render("/en/").body.decode()
    assert "/en/areas/KZ-75-D03-L4" in page and "KZ-75-D03-L5" not in page
    assert len(gzip.compress(site.render("/en/").body)) < 14 * 1024
    assert 'action="/en/search"' in page
    found = site.render("/en/search", [("q", "village kz-75-d03-")]).body.decode()
    assert found.count("/en/areas/KZ-75-D03-L") == 9
    none = site.render("/ru/search", [("q", "nowhere")]).body.decode()
    assert "Ни одна территория не подходит" in none
    region = json.loads(site.render("/api/v1/areas/KZ-75").body)
    assert region["levels"][0]["beneath"]["where"] == ["KZ-75-D03-L4"]
    listed = json.loads(site.render("/api/v1/levels").body)["levels"]
    assert [x["area"] for x in listed] == ["KZ-75-D03-L4"]
    subtree = json.loads(site.render("/api/v1/levels", [("area", "KZ-19")]).body)["levels"]
    assert subtree == []


def test_a_snapshot_is_one_state_even_with_a_writer_between_its_reads(engine: Engine) -> None:
    """Issue 15.9: every statement of a snapshot build sees the same committed state, so a
    change committed while it reads is either wholly in it or wholly in the next one."""
    commands.declare(engine, [request("high", ("KZ-39",))], now=now() - timedelta(hours=2),
                     actor=ACTOR)
    fired: list[str] = []

    def write_between(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not fired and "FROM state" in statement:  # the build's first read
            fired.append(statement)
            [made] = commands.declare(engine, [request("critical", ("KZ-71",))], now=now(),
                                      actor=ACTOR)
            fired.append(made.id)

    event.listen(engine, "after_cursor_execute", write_between)
    try:
        first = build(engine)
    finally:
        event.remove(engine, "after_cursor_execute", write_between)
    assert len(fired) == 2, "the writer ran in the middle of the build"
    written = fired[1]
    named = {code for d in first.world.declarations.values() for code in d.areas}
    assert "KZ-39" in named and "KZ-71" not in named  # the state its version counter says
    assert written not in first.site.render("/en/areas/KZ-71").body.decode()
    second = build(engine, previous=first)
    assert second.version > first.version and second.outbox > first.outbox
    assert written in second.site.render("/en/areas/KZ-71").body.decode()
