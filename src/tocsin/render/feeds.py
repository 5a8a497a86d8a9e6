"""The Atom and RSS feeds of current alerts, and the CAP messages they link to.

Pure functions of a World: CAP-in-Atom / RSS 2.0 feeds in the convention of NWS, IPAWS and
Google Public Alerts: one entry per current alert, linking to its CAP file, with CAP's summary
fields in the CAP namespace. The CAP messages themselves (an Alert, or an Update that
references every earlier message it replaces, and the Cancel of every cancelled one) are made
in tocsin.cap.messages, which publishing uses too; they are named here as the renderers know
them. Same input, same bytes: no clock, and feed times come from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from lxml import etree

from tocsin.cap.alert import CAP_NS, MsgType, cap_time
from tocsin.cap.messages import Publication as Publication
from tocsin.cap.messages import cancel_identifier as cancel_identifier
from tocsin.cap.messages import cap_cancel_message as cap_cancel_message
from tocsin.cap.messages import cap_identifier as cap_identifier
from tocsin.cap.messages import cap_message as cap_message
from tocsin.cap.messages import message_type as message_type
from tocsin.cap.messages import sender_of, sent_of
from tocsin.domain.declaration import Declaration, Statement
from tocsin.domain.scheme import Scheme
from tocsin.domain.text import pick
from tocsin.render import i18n, urls
from tocsin.service.queries import World

CAP_TYPE = "application/cap+xml"
ATOM_TYPE = "application/atom+xml"
RSS_TYPE = "application/rss+xml"
HTML_TYPE = "text/html"
ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MAX_FEED_BYTES = 100_000
"""Feed readers and hubs refuse or cut big feeds; past this only the newest entries stay."""
SUMMARY_MAX = 500
"""Characters of a summary; the CAP file and the page carry the whole text."""
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_IRI_SAFE = "-._~:/@!$'()*+;="
"""Kept as they are in an entry id; '?', '#' and '%' would change what the IRI means."""

FEED_TEXTS = {
    "en": {"all": "Current alerts", "area": "Current alerts: {area}",
           "count": "Current alerts: {n}",
           "newest": "The newest {n} of {total} current alerts; all of them: {all}"},
    "ru": {"all": "Действующие оповещения", "area": "Действующие оповещения: {area}",
           "count": "Действующих оповещений: {n}",
           "newest": "Последние {n} из {total} действующих оповещений; все: {all}"},
    "kk": {"all": "Қолданыстағы ескертулер", "area": "Қолданыстағы ескертулер: {area}",
           "count": "Қолданыстағы ескертулер саны: {n}",
           "newest": "{total} қолданыстағы ескертудің ең соңғы {n}; барлығы: {all}"},
}
"""A feed's own words per page language (English for any other)."""


# ---------------------------------------------------------------------------- what is current

def current_alerts(world: World, at: datetime, area: str | None = None) -> list[Declaration]:
    """Published declarations in effect at `at` (started; not expired, cancelled or replaced),
    newest first; with `area`, those naming it or an area that contains it."""
    chain = {world.tree.get(area).code, *world.tree.ancestors(area)} if area else None
    out = [window.declaration for key in sorted(world.schemes)
           for window in world.history(key).in_effect(at)
           if chain is None or chain.intersection(window.declaration.areas)]
    return sorted(out, key=lambda d: (sent_of(d), d.id), reverse=True)


# ---------------------------------------------------------------------------- feeds

@dataclass(frozen=True)
class FeedRequest:
    """One feed: its language, its own absolute address, and the area it is about."""

    lang: str
    self_url: str
    area: str | None = None


@dataclass(frozen=True)
class _Item:
    """What both feed formats say about one alert, in the feed's language."""

    declaration: Declaration
    identifier: str
    sender: str
    msg_type: MsgType
    title: str
    summary: str
    shown: str
    """The language the title and summary are in (the feed's, else a fallback)."""
    cap_url: str
    page_url: str
    event: str
    area_desc: str
    geocodes: list[tuple[str, str]]
    scheme: Scheme


def atom_feed(world: World, request: FeedRequest, *, at: datetime, updated: datetime,
              publication: Publication) -> bytes:
    """An Atom (RFC 4287) feed of the alerts current at `at`, `updated` as its time stamp.

    Keeps the newest entries that fit in MAX_FEED_BYTES and says so in its subtitle.
    NotFound for an unknown area.
    """
    items = _items(world, request, at, publication)
    texts = FEED_TEXTS.get(request.lang, FEED_TEXTS["en"])
    entries = [_atom_entry(item) for item in items]

    def build(count: int) -> bytes:
        feed = etree.Element(_a("feed"), nsmap={None: ATOM_NS, "cap": CAP_NS})
        feed.set(XML_LANG, request.lang)
        _text(feed, _a("id"), request.self_url)
        _text(feed, _a("title"), _title(world, request))
        _text(feed, _a("subtitle"), _subtitle(texts, count, len(items), request, publication))
        _text(feed, _a("updated"), _atom_time(updated))
        _link(feed, "self", ATOM_TYPE, request.self_url)
        _link(feed, "hub", None, publication.absolute(urls.WEBSUB_HUB))
        _link(feed, "alternate", HTML_TYPE, _page_url(request, publication))
        author = etree.SubElement(feed, _a("author"))
        _text(author, _a("name"), i18n.ui(request.lang)["site"])
        _text(author, _a("uri"), publication.absolute(urls.overview(None)))
        feed.extend(entries[:count])
        return _serialise(feed)

    return _fitted(build, entries)


def rss_feed(world: World, request: FeedRequest, *, at: datetime, updated: datetime,
             publication: Publication) -> bytes:
    """The RSS 2.0 twin of `atom_feed`: items link to the CAP file, guids are CAP
    identifiers, and atom:link names the feed itself and its WebSub hub."""
    items = _items(world, request, at, publication)
    texts = FEED_TEXTS.get(request.lang, FEED_TEXTS["en"])
    entries = [_rss_item(item) for item in items]

    def build(count: int) -> bytes:
        rss = etree.Element("rss", nsmap={"atom": ATOM_NS, "cap": CAP_NS})
        rss.set("version", "2.0")
        channel = etree.SubElement(rss, "channel")
        _text(channel, "title", _title(world, request))
        _text(channel, "link", _page_url(request, publication))
        _text(channel, "description",
              _subtitle(texts, count, len(items), request, publication))
        _text(channel, "language", request.lang)
        _text(channel, "lastBuildDate", _rss_time(updated))
        _link(channel, "self", RSS_TYPE, request.self_url)
        _link(channel, "hub", None, publication.absolute(urls.WEBSUB_HUB))
        channel.extend(entries[:count])
        return _serialise(rss)

    return _fitted(build, entries)


def _items(world: World, request: FeedRequest, at: datetime,
           publication: Publication) -> list[_Item]:
    return [_item(world, d, request.lang, publication)
            for d in current_alerts(world, at, request.area)]


def _item(world: World, d: Declaration, lang: str, publication: Publication) -> _Item:
    scheme = world.scheme(d.scheme)
    level = scheme.level(d.level)
    shown, statement = _statement(d, lang, scheme)
    prefer = [shown, scheme.default_language]
    body = statement.description or pick(level.meaning, prefer) or ""
    name = pick(level.name, prefer) or level.key
    summary = f"{name}: {body}" if body else name
    if len(summary) > SUMMARY_MAX:
        summary = summary[:SUMMARY_MAX - 1].rstrip() + "…"
    areas = [world.tree.areas[c] for c in d.areas if c in world.tree]
    geocodes: list[tuple[str, str]] = []
    for area in areas:
        geocodes.extend(pair for pair in area.geocodes if pair not in geocodes)
    return _Item(
        declaration=d, identifier=cap_identifier(d, publication),
        sender=sender_of(d, publication), msg_type=message_type(world, d, publication),
        title=statement.headline, summary=summary, shown=shown,
        cap_url=publication.absolute(urls.cap(d.id)),
        page_url=publication.absolute(urls.declaration(None, d.id)),
        event=pick(scheme.event, [lang, scheme.default_language]) or scheme.key,
        area_desc="; ".join(pick(a.names, [lang]) or a.code for a in areas),
        geocodes=geocodes, scheme=scheme)


def _statement(d: Declaration, lang: str, scheme: Scheme) -> tuple[str, Statement]:
    """The texts in the feed's language, else the scheme's default, else any."""
    for candidate in (lang, scheme.default_language, *sorted(d.texts)):
        if candidate in d.texts:
            return candidate, d.texts[candidate]
    return lang, Statement(d.id)


def entry_id(identifier: str) -> str:
    """The CAP identifier as an IRI for atom:id: kept when it already is a URN, else
    urn:tocsin:cap:IDENTIFIER, with characters an IRI cannot hold percent-encoded."""
    if identifier.lower().startswith("urn:"):
        return quote(identifier, safe=_IRI_SAFE)
    return "urn:tocsin:cap:" + quote(identifier, safe=_IRI_SAFE)


def _atom_entry(item: _Item) -> Any:
    d = item.declaration
    entry = etree.Element(_a("entry"))
    _text(entry, _a("id"), entry_id(item.identifier))
    title = _text(entry, _a("title"), item.title)
    _text(entry, _a("updated"), _atom_time(sent_of(d)))
    _text(entry, _a("published"), _atom_time(sent_of(d)))
    author = etree.SubElement(entry, _a("author"))
    _text(author, _a("name"), d.sender.strip() or item.sender)
    if "@" in item.sender:
        _text(author, _a("email"), item.sender)
    _link(entry, "alternate", CAP_TYPE, item.cap_url)
    _link(entry, "related", HTML_TYPE, item.page_url)
    summary = _text(entry, _a("summary"), item.summary)
    for element in (title, summary):
        element.set(XML_LANG, item.shown)
    _cap_fields(entry, item)
    return entry


def _rss_item(item: _Item) -> Any:
    d = item.declaration
    element = etree.Element("item")
    _text(element, "title", item.title)
    _text(element, "link", item.cap_url)
    _text(element, "description", item.summary)
    _text(element, "category", item.event)
    guid = _text(element, "guid", item.identifier)
    guid.set("isPermaLink", "false")
    _text(element, "pubDate", _rss_time(sent_of(d)))
    _link(element, "related", HTML_TYPE, item.page_url)
    _cap_fields(element, item)
    return element


def _cap_fields(parent: Any, item: _Item) -> None:
    """CAP's summary fields, in the CAP 1.2 namespace, as CAP feeds carry them."""
    d = item.declaration
    level = item.scheme.level(d.level)
    _text(parent, _c("event"), item.event)
    if d.effective is not None:
        _text(parent, _c("effective"), cap_time(d.effective))
    if d.expires is not None:
        _text(parent, _c("expires"), cap_time(d.expires))
    _text(parent, _c("status"), "Actual")
    _text(parent, _c("msgType"), str(item.msg_type))
    _text(parent, _c("category"), str(item.scheme.category))
    _text(parent, _c("urgency"), str(level.cap.urgency))
    _text(parent, _c("severity"), str(level.cap.severity))
    _text(parent, _c("certainty"), str(level.cap.certainty))
    _text(parent, _c("areaDesc"), item.area_desc)
    for name, value in item.geocodes:
        geocode = etree.SubElement(parent, _c("geocode"))
        _text(geocode, _c("valueName"), name)
        _text(geocode, _c("value"), value)


def _title(world: World, request: FeedRequest) -> str:
    texts = FEED_TEXTS.get(request.lang, FEED_TEXTS["en"])
    site = i18n.ui(request.lang)["site"]
    if request.area is None:
        return f"{site} — {texts['all']}"
    names = world.tree.get(request.area).names
    return f"{site} — {texts['area'].format(area=pick(names, [request.lang]) or request.area)}"


def _subtitle(texts: dict[str, str], count: int, total: int, request: FeedRequest,
              publication: Publication) -> str:
    if count == total:
        return texts["count"].format(n=total)
    every = urls.api_declarations() + (f"?area={quote(request.area)}" if request.area else "")
    return texts["newest"].format(n=count, total=total, all=publication.absolute(every))


def _page_url(request: FeedRequest, publication: Publication) -> str:
    lang = request.lang if request.lang in urls.PAGE_LANGUAGES else None
    path = urls.area(lang, request.area) if request.area else urls.overview(lang)
    return publication.absolute(path)


def _fitted(build: Callable[[int], bytes], entries: Sequence[Any]) -> bytes:
    """The feed with as many of `entries` (newest first) as fit in MAX_FEED_BYTES."""
    count = len(entries)
    body = build(count)
    if len(body) <= MAX_FEED_BYTES:
        return body
    room = MAX_FEED_BYTES - len(build(0))
    count = 0
    for entry in entries:  # serialised alone an entry repeats its namespaces: a safe estimate
        room -= len(etree.tostring(entry, encoding="UTF-8"))
        if room < 0:
            break
        count += 1
    body = build(count)
    while len(body) > MAX_FEED_BYTES and count:
        count -= 1
        body = build(count)
    return body


# ---------------------------------------------------------------------------- XML details

def _a(name: str) -> str:
    return f"{{{ATOM_NS}}}{name}"


def _c(name: str) -> str:
    return f"{{{CAP_NS}}}{name}"


def _text(parent: Any, tag: str, text: str) -> Any:
    element = etree.SubElement(parent, tag)
    element.text = _NOT_XML.sub("", text)
    return element


def _link(parent: Any, rel: str, media_type: str | None, href: str) -> None:
    """An Atom link (in RSS, atom:link): rel, then type when known, then href."""
    link = etree.SubElement(parent, _a("link"))
    link.set("rel", rel)
    if media_type is not None:
        link.set("type", media_type)
    link.set("href", href)


def _atom_time(value: datetime) -> str:
    """RFC 3339 in UTC, whole seconds: 2022-01-07T03:00:00Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rss_time(value: datetime) -> str:
    """RFC 822 as RSS 2.0 wants it: Fri, 07 Jan 2022 03:00:00 GMT."""
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _serialise(root: Any) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True)
    return out
