"""Every public document of one snapshot, by path: rendered once, or on demand for queries.

The live server and the static mirror both go through `Site.render`, so they send the same
bytes for the same path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from tocsin.domain.audit import AuditHead
from tocsin.domain.errors import NotFound
from tocsin.render import api, feeds, openapi, pages, svg, urls
from tocsin.render.feeds import FeedRequest, Publication
from tocsin.render.query import ParamKind, parse_query
from tocsin.service.keys import DocumentSigner, sign_document
from tocsin.service.queries import World
from tocsin.web.documents import CSS, HTML, JS, JSON, SVG, Document, document

Params = Sequence[tuple[str, str]]
SERVICE_WORKER = "/sw.js"
"""At the root: a service worker controls only the paths below its own (push needs scope /)."""
ASSETS = {urls.STYLESHEET: ("tocsin.css", CSS), urls.SCRIPT: ("live.js", JS),
          urls.ICON: ("tocsin.svg", SVG), pages.PUSH_SCRIPT: ("push.js", JS),
          SERVICE_WORKER: ("sw.js", JS)}
LEVELS_CSS = "/levels.css"
PAGE_PARAMS = {"at": ParamKind.INSTANT}
HISTORY_PAGE_PARAMS = {**PAGE_PARAMS, "area": ParamKind.AREA, "scheme": ParamKind.SCHEME,
                       "from": ParamKind.DAY, "to": ParamKind.DAY}
CACHE_LIMIT = 4096
CAP_XML = feeds.CAP_TYPE
ATOM = f"{feeds.ATOM_TYPE}; charset=utf-8"
RSS = f"{feeds.RSS_TYPE}; charset=utf-8"
FEED_MEDIA_TYPES = {"atom": ATOM, "rss": RSS}


def negotiate(accept_language: str | None) -> str:
    """The first supported language in an Accept-Language header, by weight."""
    if not accept_language:
        return urls.DEFAULT_LANGUAGE
    ranked = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        ranked.append((-weight, i, tag.strip().lower().split("-")[0]))
    for weight, _, lang in sorted(ranked):
        if weight < 0 and lang in urls.PAGE_LANGUAGES:
            return lang
    return urls.DEFAULT_LANGUAGE


KEYS_DOCUMENT = "/.well-known/tocsin-keys.json"
SIGNATURE = ".sig"


def signable(path: str) -> bool:
    """JSON documents, feeds and CAP files carry detached signatures; pages and assets not."""
    return (path.startswith(("/api/", "/feeds/", "/cap/")) or path in (urls.OPENAPI,
                                                                        KEYS_DOCUMENT))


class Site:
    """The public documents of one World at one instant."""

    def __init__(self, world: World, now: datetime, modified: datetime,
                 audit_head: AuditHead | None = None, *, publication: Publication,
                 cap_documents: Mapping[str, bytes] | None = None,
                 signer: DocumentSigner | None = None,
                 keys_document: Mapping[str, Any] | None = None,
                 push_key: str | None = None) -> None:
        self.world = world
        self.audit_head = audit_head
        self.now = now
        self.modified = modified
        self.publication = publication
        """The absolute address for links in feeds and CAP, and the fallback CAP sender."""
        self.cap_documents = cap_documents or {}
        """The CAP messages made (and signed) at publication, by name (ID, ID-cancel)."""
        self.signer = signer
        """With a document key: every JSON document, feed and CAP file has PATH.sig."""
        self.keys_document = keys_document or {"keys": []}
        self.push = pages.Push(push_key) if push_key else None
        """With the VAPID public key: area pages offer browser push."""
        self._cache: dict[tuple[str, Params], Document] = {}

    # -- what exists ------------------------------------------------------------------------

    def paths(self) -> Iterator[str]:
        """Every document that needs no query, as the static mirror holds them; with a
        document key, each JSON document, feed and CAP file followed by its PATH.sig."""
        for path in self._documents():
            yield path
            if self.signer is not None and signable(path):
                yield path + SIGNATURE

    def _documents(self) -> Iterator[str]:
        yield from ASSETS
        yield LEVELS_CSS
        yield urls.OPENAPI
        world = self.world
        published = [d for d in world.declarations.values() if d.is_published]
        schemes = world.used_schemes()
        for lang in (None, *urls.PAGE_LANGUAGES):  # None: the unprefixed, default-language paths
            yield urls.overview(lang)
            yield urls.history(lang)
            for code in world.tree.areas:
                yield urls.area(lang, code)
            for d in published:
                yield urls.declaration(lang, d.id)
            for scheme in schemes:
                yield urls.map_svg(scheme, lang)
                for code in world.tree.areas:
                    yield urls.badge(scheme, code, lang)
        yield urls.api_levels()
        yield urls.api_schemes()
        yield urls.api_declarations()
        yield urls.api_history()
        yield urls.api_audit_head()
        for code in world.tree.areas:
            yield urls.api_area(code)
        for d in published:
            yield urls.api_declaration(d.id)
        for kind in urls.FEED_FORMATS:
            yield urls.feed(kind)
            for code in world.tree.areas:
                yield urls.area_feed(code, kind)
        for d in published:
            yield urls.cap(d.id)
            if d.cancellation is not None:
                yield urls.cap_cancel(d.id)
        yield KEYS_DOCUMENT

    # -- rendering --------------------------------------------------------------------------

    def render(self, path: str, params: Params = ()) -> Document:
        """The document at `path`; NotFound or InvalidInput (from the query) otherwise.

        A page path without a language prefix is in the default language.
        """
        key = (path, tuple(params))
        found = self._cache.get(key)
        if found is None:
            found = self._render(path, params)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def cached(self, path: str) -> Document | None:
        """The pre-rendered document for a path without query or negotiation, if any."""
        return self._cache.get((path, ()))

    def _render(self, path: str, params: Params) -> Document:
        if path.endswith(SIGNATURE) and self.signer is not None and signable(path[:-4]):
            signed = self.render(path[:-len(SIGNATURE)], params)
            return self._json({"document": path[:-len(SIGNATURE)], "etag": signed.etag,
                               **sign_document(signed.body, self.signer)})
        if path == KEYS_DOCUMENT:
            return self._json(self.keys_document)
        if path in ASSETS:
            name, media_type = ASSETS[path]
            body = (files("tocsin") / "static" / name).read_bytes()
            return document(body, media_type, self.modified)
        if path == LEVELS_CSS:
            return document(pages.levels_css(self.world), CSS, self.modified)
        if path == urls.OPENAPI:
            return self._json(openapi.openapi_document())
        segments = [s for s in path.split("/") if s]
        if segments[:2] == ["api", "v1"]:
            return self._api(segments[2:], params)
        if segments[:1] in (["cap"], ["feeds"]):
            return self._syndication(path, segments, params)
        lang: str | None = None
        if segments and segments[0] in urls.PAGE_LANGUAGES:
            lang, segments = segments[0], segments[1:]
        lang = query_language(params) or lang or urls.DEFAULT_LANGUAGE
        params = [(k, v) for k, v in params if k != "lang"]
        return self._page(path, segments, params, lang)

    def _json(self, value: Any) -> Document:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return document(body, JSON, self.modified)

    def _at(self, params: Params, allowed: dict[str, ParamKind]) -> tuple[datetime, dict[str, Any]]:
        parsed = parse_query(params, allowed)
        at = parsed.get("at")
        return (at if isinstance(at, datetime) else self.now), parsed

    def _page(self, path: str, segments: list[str], params: Params, lang: str) -> Document:
        world = self.world
        kinds = HISTORY_PAGE_PARAMS if segments == ["history"] else PAGE_PARAMS
        # Pages ignore parameters they do not know (trackers add them); the known are strict.
        known = [(k, v) for k, v in params if k in kinds]
        at, parsed = self._at(known, kinds)
        ctx = pages.PageContext(lang=lang, at=at, now=self.now, time_travel="at" in parsed)
        render: Callable[[], str]
        media_type = HTML
        match segments:
            case []:
                render = lambda: pages.overview_page(world, ctx)  # noqa: E731
            case ["areas", code]:
                render = lambda: pages.area_page(world, code, ctx, push=self.push)  # noqa: E731
            case ["declarations", declaration_id]:
                render = lambda: pages.declaration_page(world, declaration_id, ctx)  # noqa: E731
            case ["history"]:
                render = lambda: pages.history_page(  # noqa: E731
                    world, ctx, area=parsed.get("area"), scheme=parsed.get("scheme"),
                    start=self._midnight(parsed.get("from")),
                    end=self._midnight(parsed.get("to")))
            case ["map", name] if name.endswith(".svg"):
                media_type = SVG
                render = lambda: svg.map_svg(world, name[:-4], at, lang)  # noqa: E731
            case ["badge", scheme, name] if name.endswith(".svg"):
                media_type = SVG
                render = lambda: svg.badge_svg(world, scheme, name[:-4], at, lang)  # noqa: E731
            case _:
                raise NotFound(f"there is no page at {path}", f"start from {urls.overview(lang)}")
        return document(render(), media_type, self.modified)

    def _midnight(self, day: date | None) -> datetime | None:
        """The start of a day in the time zone the history page shows dates in."""
        if day is None:
            return None
        roots = [code for code in self.world.tree.order if not self.world.tree.areas[code].parent]
        zone = self.world.tree.timezone(roots[0]) if roots else None
        local = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone) if zone else UTC)
        return local.astimezone(UTC)

    def _api(self, segments: list[str], params: Params) -> Document:
        world = self.world
        match segments:
            case ["levels"]:
                at, _ = self._at(params, api.LEVELS_PARAMS)
                return self._json(api.levels_doc(world, at))
            case ["areas", code]:
                at, _ = self._at(params, api.AREA_PARAMS)
                return self._json(api.area_doc(world, code, at))
            case ["declarations"]:
                q = parse_query(params, api.DECLARATIONS_PARAMS)
                return self._json(api.declarations_doc(
                    world, scheme=q.get("scheme"), area=q.get("area"), since=q.get("since"),
                    until=q.get("until"), limit=q.get("limit", api.DEFAULT_LIMIT),
                    offset=q.get("offset", 0)))
            case ["declarations", declaration_id]:
                parse_query(params, api.NO_PARAMS)
                return self._json(api.declaration_doc(world, declaration_id))
            case ["schemes"]:
                parse_query(params, api.NO_PARAMS)
                return self._json(api.schemes_doc(world))
            case ["audit", "head"]:
                parse_query(params, api.NO_PARAMS)
                return self._json(api.audit_head_doc(self.audit_head))
            case ["history"]:
                q = parse_query(params, api.HISTORY_PARAMS)
                return self._json(api.history_doc(world, area=q.get("area"),
                                                  scheme=q.get("scheme"),
                                                  since=q.get("since"), until=q.get("until")))
        raise NotFound(f"there is no API document at /api/v1/{'/'.join(segments)}",
                       f"see {urls.OPENAPI}")

    def _syndication(self, path: str, segments: list[str], params: Params) -> Document:
        """CAP files and feeds. Like pages they ignore parameters they do not know; feeds
        follow ?lang=, and only the default-language feeds are pre-rendered."""
        world, publication = self.world, self.publication
        area: str | None
        match segments:
            case ["cap", name] if name.endswith(".xml"):
                stem = name[:-4]
                if stem in self.cap_documents:
                    return document(self.cap_documents[stem], CAP_XML, self.modified)
                if stem.endswith("-cancel") and stem not in world.declarations:
                    body = feeds.cap_cancel_message(world, stem[:-7], publication)
                else:
                    body = feeds.cap_message(world, stem, publication)
                return document(body, CAP_XML, self.modified)
            case ["feeds", name] if name in ("alerts.atom", "alerts.rss"):
                area, kind = None, name.removeprefix("alerts.")
            case ["feeds", "areas", name] if name.rpartition(".")[2] in FEED_MEDIA_TYPES:
                area, _, kind = name.rpartition(".")
            case _:
                raise NotFound(f"there is no feed or CAP document at {path}",
                               f"the feeds are {urls.feed('atom')} and {urls.feed('rss')}")
        asked = query_language(params)
        lang = asked or urls.DEFAULT_LANGUAGE
        own = urls.area_feed(area, kind) if area is not None else urls.feed(kind)
        request = FeedRequest(lang, publication.absolute(own) + (f"?lang={asked}" if asked
                                                                 else ""), area)
        render = feeds.atom_feed if kind == "atom" else feeds.rss_feed
        body = render(world, request, at=self.now, updated=self.modified,
                      publication=publication)
        return document(body, FEED_MEDIA_TYPES[kind], self.modified)


def query_language(params: Params) -> str | None:
    """?lang= when it names a page language; an unknown one falls back to the default."""
    for key, value in params:
        if key == "lang":
            return value if value in urls.PAGE_LANGUAGES else urls.DEFAULT_LANGUAGE
    return None


