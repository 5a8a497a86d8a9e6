"""The public JSON API v1 documents: pure functions of a World and the parsed query.

Each returns a JSON-ready dict in a fixed key order; the server serialises it once. Drafts
are never public: every function here sees published declarations only. The shapes are
described, and pinned by tests, in render/openapi.py.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from tocsin.domain.area import Area
from tocsin.domain.audit import AuditHead
from tocsin.domain.declaration import Declaration
from tocsin.domain.errors import NotFound, unknown
from tocsin.domain.resolve import Period, effective_levels
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.times import iso
from tocsin.render import urls
from tocsin.render.data import (
    area_json,
    declaration_json,
    effective_json,
    period_json,
    scheme_json,
)
from tocsin.render.explain import explain
from tocsin.render.query import ParamKind
from tocsin.service.queries import AreaStatus, World

DEFAULT_LIMIT = 50
HISTORY_DECLARATIONS = 100
"""Declarations /api/v1/history lists without an area (the newest; the rest are paged in
/api/v1/declarations)."""
EXPLAIN_LANGUAGES = ("en",)

# The query parameters each endpoint takes, for parse_query and the OpenAPI document.
LEVELS_PARAMS = {"at": ParamKind.INSTANT, "scheme": ParamKind.SCHEME, "level": ParamKind.TEXT,
                 "area": ParamKind.AREA, "changed_since": ParamKind.INSTANT,
                 "cursor": ParamKind.TEXT, "limit": ParamKind.LIMIT}
LEVELS_LIMIT = 500
ANY_LEVEL = "any"
"""?level=any lists every area, those at the baseline or without a level too."""
AREA_PARAMS = {"at": ParamKind.INSTANT}
DECLARATIONS_PARAMS = {"scheme": ParamKind.SCHEME, "area": ParamKind.AREA,
                       "since": ParamKind.INSTANT, "until": ParamKind.INSTANT,
                       "limit": ParamKind.LIMIT, "offset": ParamKind.OFFSET}
HISTORY_PARAMS = {"area": ParamKind.AREA, "scheme": ParamKind.SCHEME,
                  "since": ParamKind.INSTANT, "until": ParamKind.INSTANT}
NO_PARAMS: dict[str, ParamKind] = {}


def levels_doc(world: World, at: datetime, *, scheme: str | None = None,
               level: str | None = None, area: str | None = None,
               changed_since: datetime | None = None, cursor: str | None = None,
               limit: int = LEVELS_LIMIT) -> dict[str, Any]:
    """Areas with their level under each used scheme (or one) at `at`: by default only those
    above the scheme's baseline (`level` names one level, or 'any' for every area); `area`
    keeps its subtree; `changed_since` keeps the areas whose documents changed since (what
    they show: their level, its explanation or what is in force inside them). Schemes
    outer, areas in tree order, `limit` a page, `next` the cursor of the next page.

    NotFound for an unknown scheme, area or level, and for a cursor this API did
    not give.
    """
    keys = [_scheme(world, scheme).key] if scheme else world.used_schemes()
    if level is not None and level != ANY_LEVEL:
        for key in keys:
            if level not in {lv.key for lv in world.schemes[key].levels}:
                raise unknown("level", level, [lv.key for lv in world.schemes[key].levels],
                              f"see {urls.api_schemes()}, or use level=any")
    inside: set[str] | None = None
    if area is not None:
        root = _area(world, area).code
        inside = {root, *world.tree.descendants(root)}
    start_scheme, start_at = _read_cursor(cursor, keys, world)
    items: list[dict[str, Any]] = []
    next_cursor: str | None = None
    for key in keys[keys.index(start_scheme) if start_scheme else 0:]:
        history = world.history(key)
        floor = history.scheme.baseline_level
        levels = (world.resolved(key) if at == world.now
                  else effective_levels(world.tree, world.seeing(at).history(key), at))
        order = world.tree.order
        first = start_at if key == start_scheme else 0
        for position in range(first, len(order)):
            code = order[position]
            if inside is not None and code not in inside:
                continue
            effective = levels[code]
            found = effective.level
            if level == ANY_LEVEL:
                pass
            elif level is not None:
                if found is None or found.key != level:
                    continue
            elif found is None or (floor is not None and found.rank <= floor.rank):
                continue
            if changed_since is not None and not world.changed_since(code, changed_since):
                continue
            if len(items) == limit:
                next_cursor = _cursor(key, position)
                break
            status = world.status(at, area=code, scheme=key)[0]
            items.append({"area": code, "area_name": dict(status.area.names),
                          **_level_fields(status),
                          "beneath": _beneath(world, key, code, at),
                          "links": {"area": urls.api_area(code),
                                    "page": urls.area(urls.DEFAULT_LANGUAGE, code)}})
        if next_cursor is not None:
            break
    query = [("scheme", scheme), ("level", level), ("area", area),
             ("changed_since", iso(changed_since) if changed_since else None)]
    pairs = [(k, v) for k, v in query if v is not None]
    if limit != LEVELS_LIMIT:
        pairs.append(("limit", str(limit)))
    return {"at": iso(at), "levels": items,
            "next": (urls.api_levels() + "?" + urlencode([*pairs, ("cursor", next_cursor)],
                                                        quote_via=quote, safe=":"))
            if next_cursor else None}


def _cursor(scheme: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{scheme}:{position}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str | None, keys: list[str], world: World) -> tuple[str | None, int]:
    if cursor is None:
        return None, 0
    refusal = NotFound(f"there is no page at cursor={cursor[:40]!r}: this API gave no such "
                       "cursor for these filters", "use the 'next' link of the previous page")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise refusal from None
    scheme, _, position = raw.rpartition(":")
    if scheme not in keys or not position.isdigit() or int(position) >= len(world.tree.order):
        raise refusal
    return scheme, int(position)


def _recent(world: World, key: str, code: str, at: datetime) -> dict[str, Any]:
    periods, earlier = world.periods_around(key, code, at)
    return {"timeline": [period_json(p) for p in periods], "earlier": earlier}


def _beneath(world: World, key: str, code: str, at: datetime) -> dict[str, Any] | None:
    """The highest level in force inside the area and where (see World.beneath); null when
    nothing inside is above the baseline."""
    found = world.beneath(key, code, at)
    if found is None:
        return None
    return {"level": found.level.key, "name": found.level.name, "colour": found.level.colour,
            "count": found.count, "where": list(found.where), "since": iso(found.since)}


def area_doc(world: World, code: str, at: datetime,
             shown: datetime | None = None) -> dict[str, Any]:
    """One area at `at`: its place in the tree and, per used scheme, its level explained.
    `shown` is the instant named as "at" (default `at`): the last change of what it shows.

    NotFound for an unknown area.
    """
    area = _area(world, code)
    levels = []
    for s in world.status(at, area=area.code):
        level = s.effective.level
        levels.append({
            **_level_fields(s),
            "beneath": _beneath(world, s.scheme.key, area.code, at),
            "explanation": explain(world.tree, s.scheme, s.effective, s.period,
                                   EXPLAIN_LANGUAGES),
            "meaning": level.meaning if level else None,
            "measures": _lists(level.measures) if level else None,
            "guidance": _lists(level.guidance) if level else None,
            **_recent(world, s.scheme.key, area.code, at),
        })
    return {
        "at": iso(shown or at),
        "area": area_json(area),
        "ancestors": world.tree.ancestors(area.code),
        "children": world.tree.children(area.code),
        "levels": levels,
        "links": {"self": urls.api_area(area.code),
                  "page": urls.area(urls.DEFAULT_LANGUAGE, area.code)},
    }


def declarations_doc(world: World, *, scheme: str | None = None, area: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int = DEFAULT_LIMIT, offset: int = 0) -> dict[str, Any]:
    """One page of published declarations, newest first by effective time, then id.

    Filters: the scheme; the area (declarations naming it or an ancestor of it); the
    effective time in [since, until). NotFound for an unknown scheme or area; an empty
    range or an offset past the end gives an empty page.
    """
    total, found = _page(world, scheme=scheme, area=area, since=since, until=until,
                         limit=limit, offset=offset)
    filters = [("scheme", scheme), ("area", area),
               ("since", iso(since) if since else None), ("until", iso(until) if until else None)]

    def link(at_offset: int) -> str:
        pairs = [(k, v) for k, v in filters if v is not None]
        if limit != DEFAULT_LIMIT:
            pairs.append(("limit", str(limit)))
        if at_offset:
            pairs.append(("offset", str(at_offset)))
        query = urlencode(pairs, quote_via=quote, safe=":")
        return urls.api_declarations() + (f"?{query}" if query else "")

    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [declaration_json(d, replaced_by=world.replaced_by(d.id)) for d in found],
        "links": {
            "self": link(offset),
            "next": link(offset + limit) if offset + limit < total else None,
            "prev": link(max(0, min(offset - limit, total - limit))) if offset > 0 else None,
        },
    }


def declaration_doc(world: World, declaration_id: str) -> dict[str, Any]:
    """One published declaration; NotFound for an unknown id or a draft's."""
    found = world.declaration(declaration_id)
    if found is None or not found.is_published:
        raise unknown("declaration", declaration_id, world.ids_like(declaration_id),
                      f"find its id in {urls.api_declarations()}")
    return declaration_json(found, replaced_by=world.replaced_by(found.id))


def schemes_doc(world: World) -> dict[str, Any]:
    """Every installed scheme, by key."""
    return {"schemes": [scheme_json(world.schemes[key]) for key in sorted(world.schemes)]}


def _page(world: World, *, scheme: str | None, area: str | None, since: datetime | None,
          until: datetime | None, limit: int, offset: int) -> tuple[int, list[Declaration]]:
    """How many published declarations match, and `limit` of them from `offset`, newest
    first (an empty range matches none)."""
    key = _scheme(world, scheme).key if scheme else None
    code = _area(world, area).code if area else None
    if since is not None and until is not None and since >= until:
        return 0, []
    return world.page(scheme=key, area=code, since=since, until=until, limit=limit,
                      offset=offset)


def history_doc(world: World, *, area: str | None = None, scheme: str | None = None,
                since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """The level changes of an area (or of the country and its regions) under a scheme (or
    every used scheme).

    Per area and scheme, the periods overlapping [since, until), unclipped; then the
    published declarations taking effect in that range, oldest first: with an area, every
    one naming it or an area above it; without one, the newest HISTORY_DECLARATIONS, with
    how many there are in all and where the rest are (/api/v1/declarations, paged). Without
    an area the timelines are those of the top areas and the areas just below them: a
    deeper area's are asked for by `area` (a country of 100,000 areas would otherwise
    make this one document of every area's history). NotFound for an unknown area or
    scheme.
    """
    tree = world.tree
    codes = ([_area(world, area).code] if area else
             [c for c in tree.order if tree.areas[c].parent is None
              or tree.areas[tree.areas[c].parent or ""].parent is None])
    keys = [_scheme(world, scheme).key] if scheme else world.used_schemes()
    timelines = [
        {"area": code, "scheme": key,
         "periods": [period_json(p) for p in world.timeline(code, key)
                     if _overlaps(p, since, until)]}
        for key in keys for code in codes
    ]
    more: str | None = None
    if area:
        found = _published(world, scheme=scheme, area=area, since=since, until=until)
        total = len(found)
    else:
        total, newest = _page(world, scheme=scheme, area=None, since=since, until=until,
                              limit=HISTORY_DECLARATIONS, offset=0)
        found = newest[::-1]
        if total > len(newest):
            pairs = [(k, v) for k, v in (("scheme", scheme), ("since", iso(since) if since
                                                                else None),
                                         ("until", iso(until) if until else None))
                     if v is not None]
            pairs += [("limit", str(HISTORY_DECLARATIONS)),
                      ("offset", str(HISTORY_DECLARATIONS))]
            more = urls.api_declarations() + "?" + urlencode(pairs, quote_via=quote, safe=":")
    declarations = [
        {"id": d.id, "scheme": d.scheme, "level": d.level, "areas": list(d.areas),
         "effective": iso(_effective(d)), "links": {"self": urls.api_declaration(d.id)}}
        for d in found
    ]
    return {
        "area": area, "scheme": scheme,
        "since": iso(since) if since else None, "until": iso(until) if until else None,
        "timelines": timelines, "declarations": declarations,
        "declarations_total": total, "more_declarations": more,
    }


def _level_fields(status: AreaStatus) -> dict[str, Any]:
    """scheme, level, name, colour, then the explanation fields of data.effective_json."""
    level: Level | None = status.effective.level
    return {"scheme": status.scheme.key, **_named(level),
            **effective_json(status.effective, status.period)}


def _named(level: Level | None) -> dict[str, Any]:
    return {"level": level.key if level else None, "name": level.name if level else None,
            "colour": level.colour if level else None}


def _lists(texts: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    return {lang: list(items) for lang, items in texts.items()}


def _area(world: World, code: str) -> Area:
    if code not in world.tree.areas:
        raise unknown("area", code, world.tree.areas, f"try {urls.api_levels()}")
    return world.tree.areas[code]


def _scheme(world: World, key: str) -> Scheme:
    if key not in world.schemes:
        raise unknown("scheme", key, world.schemes, f"try {urls.api_schemes()}")
    return world.schemes[key]


def _effective(d: Declaration) -> datetime:
    assert d.effective is not None, "published declarations have an effective time"
    return d.effective


def _published(world: World, *, scheme: str | None, area: str | None,
               since: datetime | None, until: datetime | None) -> list[Declaration]:
    """Published declarations matching the filters, oldest first by (effective, id)."""
    key = _scheme(world, scheme).key if scheme else None
    code = _area(world, area).code if area else None
    return world.search(scheme=key, area=code, since=since, until=until)


def _overlaps(period: Period, since: datetime | None, until: datetime | None) -> bool:
    if since is not None and until is not None and since >= until:
        return False
    starts_before_until = until is None or period.start is None or period.start < until
    ends_after_since = since is None or period.end is None or period.end > since
    return starts_before_until and ends_after_since


def audit_head_doc(head: AuditHead | None) -> dict[str, Any]:
    """The audit chain's head: sequence number, hash and time of the newest entry."""
    if head is None:
        return {"seq": 0, "hash": None, "at": None}
    return {"seq": head.seq, "hash": head.hash, "at": iso(head.at)}
