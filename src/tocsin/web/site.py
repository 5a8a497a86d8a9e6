"""Every public document of one snapshot, by path: rendered once, or on demand for queries.

The live server and the static mirror both go through `Site.render`, so they send the same
bytes for the same path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from tocsin.domain.audit import AuditHead
from tocsin.domain.errors import NotFound
from tocsin.render import api, openapi, pages, svg, urls
from tocsin.render.query import ParamKind, parse_query
from tocsin.service.queries import World
from tocsin.web.documents import CSS, HTML, JS, JSON, SVG, Document, document

Params = Sequence[tuple[str, str]]
ASSETS = {urls.STYLESHEET: ("tocsin.css", CSS), urls.SCRIPT: ("live.js", JS),
          urls.ICON: ("tocsin.svg", SVG)}
LEVELS_CSS = "/levels.css"
PAGE_PARAMS = {"at": ParamKind.INSTANT}
HISTORY_PAGE_PARAMS = {**PAGE_PARAMS, "area": ParamKind.AREA, "scheme": ParamKind.SCHEME,
                       "from": ParamKind.DAY, "to": ParamKind.DAY}
CACHE_LIMIT = 4096


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


class Site:
    """The public documents of one World at one instant."""

    def __init__(self, world: World, now: datetime, modified: datetime,
                 audit_head: AuditHead | None = None) -> None:
        self.world = world
        self.audit_head = audit_head
        self.now = now
        self.modified = modified
        self._cache: dict[tuple[str, Params], Document] = {}

    # -- what exists ------------------------------------------------------------------------

    def paths(self) -> Iterator[str]:
        """Every document that needs no query, as the static mirror holds them."""
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
                render = lambda: pages.area_page(world, code, ctx)  # noqa: E731
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


def query_language(params: Params) -> str | None:
    """?lang= when it names a page language; an unknown one falls back to the default."""
    for key, value in params:
        if key == "lang":
            return value if value in urls.PAGE_LANGUAGES else urls.DEFAULT_LANGUAGE
    return None


