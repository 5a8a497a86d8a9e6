"""Every public document of one snapshot, by path: rendered once, or on demand for queries.

The live server and the static mirror both go through `Site.render`, so they send the same
bytes for the same path.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from tocsin.domain.audit import AuditHead
from tocsin.domain.declaration import Declaration
from tocsin.domain.errors import NotFound
from tocsin.render import api, feeds, openapi, pages, svg, urls
from tocsin.render.feeds import FeedRequest, Publication
from tocsin.render.query import ParamKind, parse_query
from tocsin.service.exports import CapLoader
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
                       "from": ParamKind.DAY, "to": ParamKind.DAY, "offset": ParamKind.OFFSET}
SEARCH_PAGE_PARAMS = {**PAGE_PARAMS, "q": ParamKind.TEXT}
CACHE_LIMIT = 50_000
"""Documents without a query kept per process, least recently used first out."""
CACHE_BYTES = 512 * 1024 * 1024
QUERY_CACHE_LIMIT = 2_000
PREFETCH = 2_000
"""Groups whose declarations the static mirror reads ahead at once."""
"""Documents for a query (?at=, filters) are kept apart, so that no stream of queries can
push the plain documents out."""
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


Key = tuple[str, tuple[tuple[str, str], ...]]
"""A cache key: the path and the query parameters that matter, normalised."""


@dataclass(frozen=True)
class Affected:
    """What a change touched: the areas whose documents may read differently (those named,
    everything inside them and everything above them) and the declarations."""

    areas: frozenset[str]
    declarations: frozenset[str]

    @classmethod
    def of(cls, world: World, changed: Iterable[Declaration]) -> Affected:
        named: set[str] = set()
        ids: set[str] = set()
        for d in changed:
            ids.add(d.id)
            ids.update(d.replaces)
            named.update(d.areas)
            for old in d.replaces:
                if old in world.declarations:
                    named.update(world.declarations[old].areas)
        tree = world.tree
        areas: set[str] = set()
        for code in named:
            if code in tree.areas and code not in areas:
                areas.add(code)
                areas.update(tree.ancestors(code))
                areas.update(tree.descendants(code))
        return cls(frozenset(areas), frozenset(ids))


def group_of(path: str) -> tuple[str, str | None]:
    """Which inputs a document depends on: ('area', code), ('declaration', id), ('asset',
    None) for files that never change with the levels, or ('global', None)."""
    if path.endswith(SIGNATURE):
        path = path[:-len(SIGNATURE)]
    if path in ASSETS or path in (LEVELS_CSS, urls.OPENAPI, KEYS_DOCUMENT):
        return "asset", None
    segments = [s for s in path.split("/") if s]
    if segments and segments[0] in urls.PAGE_LANGUAGES:
        segments = segments[1:]
    match segments:
        case ["areas", code] | ["api", "v1", "areas", code]:
            return "area", code
        case ["badge", _, name] if name.endswith(".svg"):
            return "area", name[:-4]
        case ["feeds", "areas", name]:
            return "area", name.rpartition(".")[0]
        case ["declarations", d] | ["api", "v1", "declarations", d]:
            return "declaration", d
        case ["cap", name] if name.endswith(".xml"):
            return "declaration", name[:-4].removesuffix("-cancel")
    return "global", None


class Site:
    """The public documents of one World at one instant."""

    def __init__(self, world: World, now: datetime, modified: datetime,
                 audit_head: AuditHead | None = None, *, publication: Publication,
                 cap_documents: Mapping[str, bytes] | None = None,
                 cap_loader: CapLoader | None = None,
                 signer: DocumentSigner | None = None,
                 keys_document: Mapping[str, Any] | None = None,
                 push_key: str | None = None, previous: Site | None = None,
                 affected: Affected | None = None) -> None:
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
        self.push_key = push_key
        self.push = pages.Push(push_key) if push_key else None
        """With the VAPID public key: area pages offer browser push."""
        self.cap_loader = cap_loader
        """Reads CAP messages not in `cap_documents` from the store, on a cache miss."""
        if world.now is None:
            world.now = now
        self._lock = threading.Lock()
        self._plain: OrderedDict[str, Document] = OrderedDict()
        self._plain_bytes = 0
        self._queries: OrderedDict[Key, Document] = OrderedDict()
        if previous is not None and affected is not None:
            self._carry_over(previous, affected)

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
        published = world.published_ids()
        schemes = world.used_schemes()
        for lang in (None, *urls.PAGE_LANGUAGES):  # None: the unprefixed, default-language paths
            yield urls.overview(lang)
            yield urls.history(lang)
            for code in world.tree.areas:
                yield urls.area(lang, code)
            for declaration_id, _ in published:
                yield urls.declaration(lang, declaration_id)
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
        for declaration_id, _ in published:
            yield urls.api_declaration(declaration_id)
        for kind in urls.FEED_FORMATS:
            yield urls.feed(kind)
            for code in world.tree.areas:
                yield urls.area_feed(code, kind)
        for declaration_id, cancelled in published:
            yield urls.cap(declaration_id)
            if cancelled:
                yield urls.cap_cancel(declaration_id)
        yield KEYS_DOCUMENT

    # -- rendering --------------------------------------------------------------------------

    def render(self, path: str, params: Params = ()) -> Document:
        """The document at `path`; NotFound or InvalidInput (from the query) otherwise.

        A page path without a language prefix is in the default language. Parameters a
        document does not take are dropped before the cache is consulted, so they neither
        make new entries nor push others out.
        """
        key = normalise(path, params)
        if not key[1]:
            found = self.cached(path)
            if found is None:
                found = self._render(path, ())
                self._keep(path, found)
            return found
        with self._lock:
            found = self._queries.get(key)
            if found is not None:
                self._queries.move_to_end(key)
                return found
        found = self._render(path, key[1])
        with self._lock:
            self._queries[key] = found
            while len(self._queries) > QUERY_CACHE_LIMIT:
                self._queries.popitem(last=False)
        return found

    def cached(self, path: str) -> Document | None:
        """The rendered document for a path without query or negotiation, if kept."""
        with self._lock:
            found = self._plain.get(path)
            if found is not None:
                self._plain.move_to_end(path)
            return found

    def _keep(self, path: str, doc: Document) -> None:
        with self._lock:
            if path in self._plain:
                return
            self._plain[path] = doc
            self._plain_bytes += len(doc.body)
            while len(self._plain) > CACHE_LIMIT or self._plain_bytes > CACHE_BYTES:
                _, dropped = self._plain.popitem(last=False)
                self._plain_bytes -= len(dropped.body)

    def missing_in(self, other: Site, limit: int = 2_000) -> list[str]:
        """The most recently used plain documents of this site that `other` does not hold
        (what to render ahead after a change), most recent first."""
        with self._lock:
            recent = list(reversed(self._plain))[:limit * 4]
        with other._lock:
            return [path for path in recent if path not in other._plain][:limit]

    def set_audit_head(self, head: AuditHead | None) -> None:
        """A change that is not public moved the audit chain: only its head document is
        made again."""
        self.audit_head = head
        with self._lock:
            for path in (urls.api_audit_head(), urls.api_audit_head() + SIGNATURE):
                dropped = self._plain.pop(path, None)
                if dropped is not None:
                    self._plain_bytes -= len(dropped.body)

    def cache_size(self) -> tuple[int, int]:
        """(plain documents, query documents) kept now."""
        with self._lock:
            return len(self._plain), len(self._queries)

    def _carry_over(self, previous: Site, affected: Affected) -> None:
        """Keep the previous snapshot's documents that this change cannot have touched."""
        with previous._lock:
            kept = list(previous._plain.items())
        for path, doc in kept:
            kind, name = group_of(path)
            if (kind == "asset" or (kind == "area" and name not in affected.areas)
                    or (kind == "declaration" and name not in affected.declarations)):
                self._plain[path] = doc
                self._plain_bytes += len(doc.body)

    def modified_of(self, path: str) -> datetime:
        """The Last-Modified of a document: the last change of its own inputs."""
        kind, name = group_of(path)
        found: datetime | None = None
        if kind == "area" and name is not None and name in self.world.tree.areas:
            found = self.world.area_changed(name)
        elif kind == "declaration" and name is not None and (
                d := self.world.declaration(name)) is not None:
            found = self.world.declaration_changed(d)
        elif kind == "asset":
            found = self.world.structure_at
        return found or self.modified

    def groups(self) -> Iterator[tuple[str, str | None, list[str]]]:
        """The documents in groups that change together, each with a signature that
        changes whenever any of its documents may (None: always compare the bytes); the
        static mirror skips a group whose signature it already holds."""
        by_group: dict[tuple[str, str | None], list[str]] = {}
        for path in self.paths():
            by_group.setdefault(group_of(path), []).append(path)
        # Signatures read each declaration and what replaces it, and each area's closed
        # history bounds: read them ahead a chunk at a time (a few statements each).
        groups = list(by_group.items())
        for start in range(0, len(groups), PREFETCH):
            chunk = groups[start:start + PREFETCH]
            self.world.prefetch([name for (kind, name), _ in chunk
                                 if kind == "declaration" and name is not None])
            self.world.prefetch_areas([name for (kind, name), _ in chunk if kind == "area"
                                       and name is not None and name in self.world.tree])
            for (kind, name), paths in chunk:
                yield (f"{kind}:{name}" if name else kind), self._signature(kind, name), paths

    def _signature(self, kind: str, name: str | None) -> str | None:
        world = self.world
        if kind == "area" and name is not None and name in world.tree.areas:
            assert world.now is not None
            parts = [str(world.area_changed(name))]
            for key in world.used_schemes():
                effective = world.effective(key, name, world.now)
                beneath = world.beneath(key, name)
                parts.append(f"{key}={effective.level.key if effective.level else '-'}:"
                             + ",".join(s.declaration.id for s in effective.sources)
                             + (f"/{beneath}" if beneath else ""))
            return "|".join(parts)
        if kind == "declaration" and name is not None and (
                d := world.declaration(name)) is not None:
            return (f"{world.declaration_changed(d)}|{d.cancellation}|"
                    + ",".join(world.replaced_by(d.id)))
        if kind == "asset":
            return str(world.structure_at)
        return None

    def _render(self, path: str, params: Params) -> Document:
        if path.endswith(SIGNATURE) and self.signer is not None and signable(path[:-4]):
            signed = self.render(path[:-len(SIGNATURE)], params)
            return self._json({"document": path[:-len(SIGNATURE)], "etag": signed.etag,
                               **sign_document(signed.body, self.signer)},
                              self.modified_of(path))
        modified = self.modified_of(path)
        if path == KEYS_DOCUMENT:
            return self._json(self.keys_document, modified)
        if path in ASSETS:
            name, media_type = ASSETS[path]
            body = (files("tocsin") / "static" / name).read_bytes()
            return document(body, media_type, modified)
        if path == LEVELS_CSS:
            return document(pages.levels_css(self.world), CSS, modified)
        if path == urls.OPENAPI:
            return self._json(openapi.openapi_document(), modified)
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

    def _json(self, value: Any, modified: datetime | None = None) -> Document:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return document(body, JSON, modified or self.modified)

    def _at(self, params: Params, allowed: dict[str, ParamKind]) -> tuple[datetime, dict[str, Any]]:
        parsed = parse_query(params, allowed)
        at = parsed.get("at")
        return (at if isinstance(at, datetime) else self.now), parsed

    def _page(self, path: str, segments: list[str], params: Params, lang: str) -> Document:
        world = self.world
        kinds = _page_params(segments)
        # Pages ignore parameters they do not know (trackers add them); the known are strict.
        known = [(k, v) for k, v in params if k in kinds]
        at, parsed = self._at(known, kinds)
        modified = self.modified if "at" in parsed else self.modified_of(path)
        ctx = pages.PageContext(lang=lang, at=at, now=self.now, time_travel="at" in parsed,
                                shown=modified)
        render: Callable[[], str]
        media_type = HTML
        match segments:
            case []:
                render = lambda: pages.overview_page(world, ctx)  # noqa: E731
            case ["areas", code]:
                render = lambda: pages.area_page(world, code, ctx, push=self.push)  # noqa: E731
            case ["declarations", declaration_id]:
                render = lambda: pages.declaration_page(world, declaration_id, ctx)  # noqa: E731
            case ["search"]:
                render = lambda: pages.search_page(  # noqa: E731
                    world, ctx, str(parsed.get("q", "")))
            case ["history"]:
                render = lambda: pages.history_page(  # noqa: E731
                    world, ctx, area=parsed.get("area"), scheme=parsed.get("scheme"),
                    start=self._midnight(parsed.get("from")),
                    end=self._midnight(parsed.get("to")), offset=parsed.get("offset", 0))
            case ["map", name] if name.endswith(".svg"):
                media_type = SVG
                render = lambda: svg.map_svg(world, name[:-4], at, lang)  # noqa: E731
            case ["badge", scheme, name] if name.endswith(".svg"):
                media_type = SVG
                render = lambda: svg.badge_svg(world, scheme, name[:-4], at, lang)  # noqa: E731
            case _:
                raise NotFound(f"there is no page at {path}", f"start from {urls.overview(lang)}")
        return document(render(), media_type, modified)

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
                at, q = self._at(params, api.LEVELS_PARAMS)
                return self._json(api.levels_doc(
                    world, at, scheme=q.get("scheme"), level=q.get("level"), area=q.get("area"),
                    changed_since=q.get("changed_since"), cursor=q.get("cursor"),
                    limit=q.get("limit", api.LEVELS_LIMIT)))
            case ["areas", code]:
                at, parsed = self._at(params, api.AREA_PARAMS)
                shown = None if "at" in parsed else self.modified_of(f"/api/v1/areas/{code}")
                return self._json(api.area_doc(world, code, at, shown=shown), shown)
            case ["declarations"]:
                q = parse_query(params, api.DECLARATIONS_PARAMS)
                return self._json(api.declarations_doc(
                    world, scheme=q.get("scheme"), area=q.get("area"), since=q.get("since"),
                    until=q.get("until"), limit=q.get("limit", api.DEFAULT_LIMIT),
                    offset=q.get("offset", 0)))
            case ["declarations", declaration_id]:
                parse_query(params, api.NO_PARAMS)
                return self._json(api.declaration_doc(world, declaration_id),
                                  self.modified_of(f"/api/v1/declarations/{declaration_id}"))
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
        modified = self.modified_of(path)
        area: str | None
        match segments:
            case ["cap", name] if name.endswith(".xml"):
                stem = name[:-4]
                stored = self._stored_cap(stem)
                if stored is not None:
                    return document(stored, CAP_XML, modified)
                if stem.endswith("-cancel") and world.declaration(stem) is None:
                    body = feeds.cap_cancel_message(world, stem[:-7], publication)
                else:
                    body = feeds.cap_message(world, stem, publication)
                return document(body, CAP_XML, modified)
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
        body = render(world, request, at=self.now, updated=modified, publication=publication)
        return document(body, FEED_MEDIA_TYPES[kind], modified)

    def _stored_cap(self, name: str) -> bytes | None:
        """The CAP message made (and signed) at publication, if the store has it."""
        if name in self.cap_documents:
            return self.cap_documents[name]
        declaration = self.world.declaration(name.removesuffix("-cancel"))
        if self.cap_loader is None or declaration is None or not declaration.is_published:
            return None
        return self.cap_loader([name]).get(name)


def _page_params(segments: list[str]) -> dict[str, ParamKind]:
    return {"history": HISTORY_PAGE_PARAMS, "search": SEARCH_PAGE_PARAMS}.get(
        "/".join(segments), PAGE_PARAMS)


def normalise(path: str, params: Params) -> Key:
    """The cache key of a request: pages, feeds and CAP files keep only the parameters they
    read (trackers add others), sorted; the API keeps everything, as it refuses what it does
    not know (and a refusal is never kept)."""
    if not params:
        return path, ()
    base = path[:-len(SIGNATURE)] if path.endswith(SIGNATURE) else path
    if base.startswith("/api/"):
        return path, tuple(params)
    if base.startswith("/cap/"):
        return path, ()
    if base.startswith("/feeds/"):
        allowed: Iterable[str] = ("lang",)
    else:
        segments = [s for s in base.split("/") if s]
        if segments and segments[0] in urls.PAGE_LANGUAGES:
            segments = segments[1:]
        allowed = ("lang", *_page_params(segments))
    return path, tuple(sorted((k, v) for k, v in params if k in allowed))


def query_language(params: Params) -> str | None:
    """?lang= when it names a page language; an unknown one falls back to the default."""
    for key, value in params:
        if key == "lang":
            return value if value in urls.PAGE_LANGUAGES else urls.DEFAULT_LANGUAGE
    return None


