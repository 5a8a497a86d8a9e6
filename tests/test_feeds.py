"""CAP files and feeds in the public snapshot: CAP chains that validate, feeds that real feed
readers parse, stable bytes, the size cap, over HTTP, and `tocsin export cap` through its
runner."""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
from lxml import etree
from sqlalchemy import Engine
from tests.conftest import CORPUS, require_corpus
from tests.helpers import request, utc
from tests.web_server import running
from typer.testing import CliRunner

from tocsin import settings
from tocsin.cap import xml as capxml
from tocsin.cap.alert import CAP_NS, cap_time
from tocsin.cap.check import check
from tocsin.cli.main import app as cli_app
from tocsin.domain.declaration import Declaration, DeclarationRequest, Statement
from tocsin.domain.errors import NotFound
from tocsin.render import feeds, urls
from tocsin.service import commands
from tocsin.web.app import create_app
from tocsin.web.site import Site
from tocsin.web.snapshot import Snapshot, build

CAP_XSD = CORPUS / "cap" / "schema" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS, "atom": feeds.ATOM_NS}
SENDER = "kz.antiterror.gov"
PUBLIC = "https://levels.example.kz"
CONFIG = settings.Settings(database_url="sqlite://", sender="tocsin", cap_sender="tocsin.fallback",
                           public_url=PUBLIC)
ACTOR = "tester"
SNAPSHOT_AT = utc(2022, 1, 20, 3)


def on(day: int) -> datetime:
    """03:00 UTC on a day of January 2022."""
    return utc(2022, 1, day, 3)

runner = CliRunner()


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    require_corpus()
    return etree.XMLSchema(etree.parse(str(CAP_XSD)))


@pytest.fixture
def cap_sender(monkeypatch: pytest.MonkeyPatch) -> str:
    """Declarations published in the test carry this CAP sender, and their CAP messages (made
    at publication) links under PUBLIC."""
    monkeypatch.setenv("TOCSIN_CAP_SENDER", SENDER)
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", PUBLIC)
    return SENDER


@dataclass(frozen=True)
class January:
    """Countrywide critical, stepped down twice in Almaty; others cancelled, expired, ahead."""

    first: Declaration  # critical KZ, replaced by second
    second: Declaration  # high KZ-75, replaced by third
    third: Declaration  # moderate KZ-75 + KZ-71: current
    cancelled: Declaration  # moderate KZ-19, cancelled
    expired: Declaration  # high KZ-11, expired
    ahead: Declaration  # high KZ-31, starts in February
    country: Declaration  # moderate KZ, in English and Russian: current


def declare(engine: Engine, req: DeclarationRequest, at: datetime) -> Declaration:
    [made] = commands.declare(engine, [req], now=at, actor=ACTOR)
    return made


def january(engine: Engine) -> January:
    first = declare(engine, request("critical", ("KZ",), headline="Critical countrywide"),
                    on(7))
    second = declare(engine, request("high", ("KZ-75",), replaces=(first.id,),
                                     headline="High in Almaty"), on(8))
    third = declare(engine, request("moderate", ("KZ-75", "KZ-71"), replaces=(second.id,),
                                    headline="Moderate in Almaty and Astana"), on(9))
    cancelled = declare(engine, request("moderate", ("KZ-19",), headline="Moderate"), on(9))
    cancelled = commands.cancel(engine, cancelled.id, reason="the threat has passed",
                                now=on(10), actor=ACTOR)
    expired = declare(engine, request("high", ("KZ-11",), expires=on(12), headline="Brief"),
                      on(11))
    ahead = declare(engine, request("high", ("KZ-31",), effective=utc(2022, 2, 1),
                                    headline="Later"), on(11))
    country = declare(engine, DeclarationRequest(
        scheme="kz-terror", level="moderate", areas=("KZ",), sender="Test authority",
        texts={"en": Statement("Moderate countrywide", "Stay alert."),
               "ru": Statement("Умеренный уровень по всей стране", "Будьте бдительны.")}),
        on(15))
    return January(first, second, third, cancelled, expired, ahead, country)


def snapshot(engine: Engine) -> Snapshot:
    return build(engine, SNAPSHOT_AT, config=CONFIG)


def body(snap: Snapshot, path: str, params: list[tuple[str, str]] | None = None) -> bytes:
    return snap.site.render(path, params or []).body


def cap_root(data: bytes, path: str, schema: etree.XMLSchema) -> Any:
    """The alert's root after the official XSD and tocsin's own checker both pass it."""
    tree = capxml.parse(data, path)
    schema.assertValid(tree)
    errors = [f for f in check(tree) if f.severity == "error"]
    assert not errors, errors
    return tree.getroot()


def text(element: Any, path: str) -> str | None:
    found: str | None = element.findtext(path, namespaces=NS)
    return found


def parsed_time(value: Any) -> datetime:
    return datetime.fromtimestamp(calendar.timegm(value), UTC)


# ---------------------------------------------------------------------------- CAP documents

def test_cap_alert_update_chain_and_cancel_validate(
        engine: Engine, cap_sender: str, schema: etree.XMLSchema) -> None:
    jan = january(engine)
    snap = snapshot(engine)
    paths = set(snap.site.paths())
    published = [jan.first, jan.second, jan.third, jan.cancelled, jan.expired, jan.ahead,
                 jan.country]
    assert {urls.cap(d.id) for d in published} <= paths
    assert {p for p in paths if p.endswith("-cancel.xml")} == {urls.cap_cancel(jan.cancelled.id)}

    roots = {}
    for d in published:
        doc = snap.site.render(urls.cap(d.id))
        assert doc.media_type == "application/cap+xml"
        roots[d.id] = root = cap_root(doc.body, urls.cap(d.id), schema)
        assert text(root, "cap:identifier") == f"{cap_sender}.{d.id}"
        assert text(root, "cap:sender") == cap_sender
        assert text(root, "cap:sent") == cap_time(d.published_at)  # type: ignore[arg-type]
        assert text(root, "cap:info/cap:web") == f"{PUBLIC}/declarations/{d.id}"

    def reference(d: Declaration) -> str:
        return f"{cap_sender},{cap_sender}.{d.id},{cap_time(d.published_at)}"  # type: ignore[arg-type]

    first, second, third = (roots[d.id] for d in (jan.first, jan.second, jan.third))
    assert text(first, "cap:msgType") == "Alert" and first.find("cap:references", NS) is None
    assert text(second, "cap:msgType") == "Update"
    assert text(second, "cap:references") == reference(jan.first)
    assert text(third, "cap:msgType") == "Update"  # the whole chain, oldest first
    assert text(third, "cap:references") == f"{reference(jan.first)} {reference(jan.second)}"

    cancel_path = urls.cap_cancel(jan.cancelled.id)
    cancel = cap_root(body(snap, cancel_path), cancel_path, schema)
    assert text(cancel, "cap:identifier") == f"{cap_sender}.{jan.cancelled.id}-cancel"
    assert text(cancel, "cap:msgType") == "Cancel"
    assert text(cancel, "cap:sent") == cap_time(on(10))
    assert text(cancel, "cap:note") == "the threat has passed"
    assert text(cancel, "cap:references") == reference(jan.cancelled)

    with pytest.raises(NotFound, match="was not cancelled"):
        snap.site.render(urls.cap_cancel(jan.first.id))
    with pytest.raises(NotFound, match=f"did you mean '{jan.first.id}'"):
        snap.site.render(urls.cap(jan.first.id[:-1] + "x"))
    with pytest.raises(NotFound, match="no feed or CAP document"):
        snap.site.render(f"/cap/{jan.first.id}.json")


def test_declarations_without_a_recorded_sender_use_the_configured_one(
        engine: Engine, schema: etree.XMLSchema) -> None:
    [old] = commands.declare(engine, [request("high", ("KZ-75",))], now=on(7), actor=ACTOR)
    [new] = commands.declare(engine, [request("moderate", ("KZ-75",), replaces=(old.id,))],
                             now=on(8), actor=ACTOR)
    world = build(engine, on(7), config=CONFIG).world  # before `old` ends: the world holds it
    world.declarations[old.id] = replace(world.declarations[old.id], cap_sender=None)
    site = Site(world, on(9), on(9), publication=feeds.Publication(PUBLIC, "legacy.sender"))
    root = cap_root(site.render(urls.cap(new.id)).body, "update", schema)
    assert text(root, "cap:references") == (
        f"legacy.sender,legacy.sender.{old.id},{cap_time(on(7))}")
    assert text(root, "cap:sender") == "tocsin"  # stamped at publication by the service


# ---------------------------------------------------------------------------- feeds

def test_atom_feed_lists_only_current_alerts_for_feed_readers(
        engine: Engine, cap_sender: str) -> None:
    jan = january(engine)
    snap = snapshot(engine)
    doc = snap.site.render(urls.feed("atom"))
    assert doc.media_type == "application/atom+xml; charset=utf-8"
    assert len(doc.body) < feeds.MAX_FEED_BYTES
    parsed = feedparser.parse(doc.body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    feed = parsed.feed
    assert feed.id == f"{PUBLIC}/feeds/alerts.atom"
    assert feed.title == "Threat levels — Current alerts"
    assert parsed_time(feed.updated_parsed) == snap.site.modified == on(15)
    links = {link.rel: link for link in feed.links}
    assert links["self"].href == f"{PUBLIC}/feeds/alerts.atom"
    assert links["self"].type == "application/atom+xml"
    assert links["hub"].href == f"{PUBLIC}/websub"
    # replaced (first, second), cancelled, expired and not yet started are all left out
    assert [e.id for e in parsed.entries] == [f"urn:tocsin:cap:{cap_sender}.{d.id}"
                                              for d in (jan.country, jan.third)]
    country, third = parsed.entries
    assert country.title == "Moderate countrywide"
    assert third.title == "Moderate in Almaty and Astana"
    assert parsed_time(third.updated_parsed) == parsed_time(third.published_parsed) == on(9)
    assert third.author == "Test authority"
    alternate = [link for link in third.links if link.rel == "alternate"]
    assert [(link.type, link.href) for link in alternate] == [
        ("application/cap+xml", f"{PUBLIC}/cap/{jan.third.id}.xml")]
    related = [link.href for link in third.links if link.rel == "related"]
    assert related == [f"{PUBLIC}/declarations/{jan.third.id}"]
    assert third.summary.startswith("Moderate: ")

    entry = etree.fromstring(doc.body).findall("atom:entry", NS)[1]
    assert [etree.QName(e).localname for e in entry if etree.QName(e).namespace == CAP_NS] == [
        "event", "effective", "status", "msgType", "category", "urgency", "severity",
        "certainty", "areaDesc", "geocode", "geocode"]
    assert text(entry, "cap:msgType") == "Update" and text(entry, "cap:status") == "Actual"
    assert text(entry, "cap:effective") == cap_time(on(9))
    assert text(entry, "cap:areaDesc") == "Almaty; Astana"
    assert [(text(g, "cap:valueName"), text(g, "cap:value"))
            for g in entry.findall("cap:geocode", NS)] == [("ISO3166-2", "KZ-75"),
                                                           ("ISO3166-2", "KZ-71")]
    # every entry's CAP link is served by the same snapshot
    for e in parsed.entries:
        assert body(snap, e.links[0].href.removeprefix(PUBLIC)).startswith(b"<?xml")


def test_area_feeds_include_alerts_for_containing_areas_in_both_formats(
        engine: Engine, cap_sender: str) -> None:
    jan = january(engine)
    snap = snapshot(engine)
    paths = set(snap.site.paths())
    for code in ("KZ", "KZ-75", "KZ-19"):
        assert {urls.area_feed(code, "atom"), urls.area_feed(code, "rss")} <= paths
    almaty = feedparser.parse(body(snap, urls.area_feed("KZ-75", "atom")))
    assert almaty.feed.title == "Threat levels — Current alerts: Almaty"
    assert [e.title for e in almaty.entries] == ["Moderate countrywide",
                                                 "Moderate in Almaty and Astana"]
    karaganda = feedparser.parse(body(snap, urls.area_feed("KZ-19", "atom")))
    assert [e.title for e in karaganda.entries] == ["Moderate countrywide"]  # not the cancelled

    doc = snap.site.render(urls.area_feed("KZ-75", "rss"))
    assert doc.media_type == "application/rss+xml; charset=utf-8"
    rss = feedparser.parse(doc.body)
    assert not rss.bozo and rss.version == "rss20"
    links = {link.rel: link.href for link in rss.feed.links if link.rel in ("self", "hub")}
    assert links == {"self": f"{PUBLIC}/feeds/areas/KZ-75.rss", "hub": f"{PUBLIC}/websub"}
    assert rss.feed.link == f"{PUBLIC}/en/areas/KZ-75"
    assert parsed_time(rss.feed.updated_parsed) == on(15)
    assert [e.id for e in rss.entries] == [f"{cap_sender}.{d.id}"
                                           for d in (jan.country, jan.third)]
    assert [e.guidislink for e in rss.entries] == [False, False]
    assert [e.link for e in rss.entries] == [f"{PUBLIC}/cap/{d.id}.xml"
                                             for d in (jan.country, jan.third)]
    assert parsed_time(rss.entries[1].published_parsed) == on(9)
    everything = feedparser.parse(body(snap, urls.feed("rss")))
    assert [e.title for e in everything.entries] == [e.title for e in almaty.entries]

    with pytest.raises(NotFound, match="area 'KZ-99' is not known"):
        snap.site.render("/feeds/areas/KZ-99.atom")
    with pytest.raises(NotFound, match="no feed"):
        snap.site.render("/feeds/areas/KZ-75.json")


def test_feeds_follow_lang_with_a_fallback_to_the_schemes_language(engine: Engine) -> None:
    jan = january(engine)
    snap = snapshot(engine)
    assert urls.feed("atom") + "?lang=ru" not in set(snap.site.paths())
    ru = snap.site.render(urls.feed("atom"), [("lang", "ru")])
    parsed = feedparser.parse(ru.body)
    assert parsed.feed.title == "Уровни угрозы — Действующие оповещения"
    assert parsed.feed.language == "ru"
    self_link = next(link.href for link in parsed.feed.links if link.rel == "self")
    assert self_link == f"{PUBLIC}/feeds/alerts.atom?lang=ru"
    country, third = parsed.entries
    assert country.title == "Умеренный уровень по всей стране"
    assert country.summary.startswith("Умеренный") and "Будьте бдительны." in country.summary
    assert third.title == "Moderate in Almaty and Astana"  # no Russian text: English
    entry = etree.fromstring(ru.body).findall("atom:entry", NS)[1]
    assert entry.find("atom:title", NS).get(feeds.XML_LANG) == "en"
    assert text(entry, "cap:areaDesc") == "Алматы; Астана"
    kk = feedparser.parse(body(snap, urls.area_feed("KZ-75", "rss"), [("lang", "kk")]))
    assert kk.feed.title.endswith("Алматы") and kk.feed.language == "kk"
    assert len(kk.entries) == 2 and jan.third.id in kk.entries[1].link


@pytest.mark.parametrize(("identifier", "iri"), [
    ("kz.antiterror.gov.20220107-3fa9c2d1", "urn:tocsin:cap:kz.antiterror.gov.20220107-3fa9c2d1"),
    ("alerts@example.gov.1", "urn:tocsin:cap:alerts@example.gov.1"),
    ("urn:oid:2.49.0.1.398.1.20220107-ab", "urn:oid:2.49.0.1.398.1.20220107-ab"),
    ("odd#id?with%\"quotes\"", "urn:tocsin:cap:odd%23id%3Fwith%25%22quotes%22"),
])
def test_entry_ids_are_iris_made_from_cap_identifiers(identifier: str, iri: str) -> None:
    assert feeds.entry_id(identifier) == iri


def test_same_state_gives_the_same_bytes_and_etags(engine: Engine, cap_sender: str) -> None:
    jan = january(engine)
    one, two = snapshot(engine), build(engine, SNAPSHOT_AT + timedelta(hours=5), config=CONFIG)
    paths = [p for p in one.site.paths() if p.startswith(("/cap/", "/feeds/"))]
    assert urls.cap_cancel(jan.cancelled.id) in paths
    assert [p for p in two.site.paths() if p.startswith(("/cap/", "/feeds/"))] == paths
    for path in paths:
        a, b = one.site.render(path), two.site.render(path)
        assert (a.body, a.etag, a.last_modified) == (b.body, b.etag, b.last_modified), path


def test_a_feed_keeps_the_newest_alerts_that_fit_in_100_kb(engine: Engine) -> None:
    long = "A long description of what is happening and why. " * 40
    made: list[Declaration] = []
    for batch in range(4):
        requests = [DeclarationRequest(
            scheme="kz-terror", level="moderate", areas=("KZ-75", "KZ-71", "KZ-19"),
            sender="Test authority " + "with a long name " * 5,
            texts={lang: Statement(f"Alert {batch}-{i:03} " + "x" * 120, long, long, long)
                   for lang in ("en", "ru", "kk")})
            for i in range(100)]
        made += commands.declare(engine, requests, now=on(7) + timedelta(minutes=batch),
                                 actor=ACTOR)
    snap = snapshot(engine)
    newest_first = sorted(made, key=lambda d: (d.published_at, d.id), reverse=True)
    for path in (urls.feed("atom"), urls.feed("rss"), urls.area_feed("KZ-75", "atom")):
        data = body(snap, path)
        assert len(data) <= feeds.MAX_FEED_BYTES, path
        parsed = feedparser.parse(data)
        assert not parsed.bozo
        kept = len(parsed.entries)
        assert 20 < kept < 400
        assert [e.title for e in parsed.entries] == [
            d.texts["en"].headline for d in newest_first[:kept]]
        said = parsed.feed.get("subtitle") or parsed.feed.get("description")
        assert said.startswith(f"The newest {kept} of 400 current alerts"), said
    assert len(parsed.entries[0].summary) <= feeds.SUMMARY_MAX


def test_an_empty_feed_is_still_a_feed(engine: Engine) -> None:
    parsed = feedparser.parse(body(snapshot(engine), urls.feed("atom")))
    assert not parsed.bozo and parsed.entries == []
    assert parsed.feed.subtitle == "Current alerts: 0"


# ---------------------------------------------------------------------------- HTTP and CLI

def test_feeds_and_cap_files_over_http(engine: Engine) -> None:
    [d] = commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC),
                           actor=ACTOR)
    app = create_app(engine)
    site = app.holder.current.site
    with running(app) as base, httpx.Client(base_url=base) as client:
        for path, media_type in ((urls.feed("atom"), "application/atom+xml; charset=utf-8"),
                                 (urls.feed("rss"), "application/rss+xml; charset=utf-8"),
                                 (urls.cap(d.id), "application/cap+xml")):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == media_type
            assert response.content == site.render(path).body
            assert response.headers["etag"] == site.render(path).etag
            again = client.get(path, headers={"if-none-match": response.headers["etag"]})
            assert again.status_code == 304
        parsed = feedparser.parse(client.get(urls.feed("atom")).content)
        [entry] = parsed.entries
        cap_link = next(link.href for link in entry.links if link.type == feeds.CAP_TYPE)
        assert cap_link.endswith(urls.cap(d.id))
        kk = client.get(urls.area_feed("KZ-75", "atom") + "?lang=kk")
        assert kk.status_code == 200 and "Алматы" in feedparser.parse(kk.content).feed.title
        missing = client.get("/cap/nope.xml")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def cli(url: str, *args: str) -> Any:
    return runner.invoke(cli_app, list(args), env={"TOCSIN_DATABASE_URL": url,
                                                   "COLUMNS": "200"})


def test_export_cap_prints_the_served_bytes(engine: Engine, db_url: str,
                                            tmp_path: Path) -> None:
    jan = january(engine)
    snap = build(engine, SNAPSHOT_AT)  # the settings of the environment, as the CLI reads
    for d in (jan.first, jan.third):
        result = cli(db_url, "export", "cap", d.id)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == body(snap, urls.cap(d.id))
    cancel = cli(db_url, "export", "cap", jan.cancelled.id, "--cancel")
    assert cancel.exit_code == 0, cancel.output
    assert cancel.stdout_bytes == body(snap, urls.cap_cancel(jan.cancelled.id))

    out = tmp_path / "alert.xml"
    written = cli(db_url, "export", "cap", jan.third.id, "--out", str(out), "--json")
    assert written.exit_code == 0, written.output
    assert out.read_bytes() == body(snap, urls.cap(jan.third.id))
    report = json.loads(written.stdout)
    assert report["msg_type"] == "Update" and report["file"] == str(out)
    assert report["bytes"] == out.stat().st_size and "xml" not in report

    unknown = cli(db_url, "export", "cap", jan.first.id[:-1] + "x")
    assert unknown.exit_code == 2
    assert f"did you mean '{jan.first.id}'" in unknown.stderr
    not_cancelled = cli(db_url, "export", "cap", jan.first.id, "--cancel")
    assert not_cancelled.exit_code == 2 and "was not cancelled" in not_cancelled.stderr


def test_pages_name_the_feed_in_their_head(engine: Engine) -> None:
    snap = snapshot(engine)
    for path in ("/en/", "/kk/areas/KZ-75"):
        assert ('<link rel="alternate" type="application/atom+xml" href="/feeds/alerts.atom"'
                in body(snap, path).decode())
    assert urls.feed("atom") in set(snap.site.paths())


@pytest.mark.parametrize("declaration_id", ["d-2022-01-07", "a b/c?d#e%f", "алматы"])
def test_a_cap_message_names_the_page_the_site_serves(declaration_id: str) -> None:
    """tocsin.cap sits below render, so it writes the page address itself: the same as
    render.urls gives."""
    publication = feeds.Publication("https://levels.test", "kz.test")
    assert (publication.declaration_page(declaration_id)
            == publication.absolute(urls.declaration(None, declaration_id)))
