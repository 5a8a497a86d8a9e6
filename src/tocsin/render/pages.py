"""The public HTML pages: overview, area, declaration permalink, history, errors, level colours.

Pure functions of a World and a PageContext; templates come from tocsin/templates through one
module-level Jinja environment. Views are built here as small frozen values so that templates
only lay them out. The same input always gives the same bytes (the static mirror compares).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from tocsin.domain.area import AreaKind
from tocsin.domain.declaration import Declaration, Statement, end_of, replaced_by
from tocsin.domain.errors import unknown
from tocsin.domain.resolve import effective_levels
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.text import pick
from tocsin.domain.times import iso
from tocsin.render import i18n, urls
from tocsin.render.colour import text_colour_on
from tocsin.service.queries import AreaStatus, World

LEVELS_CSS = "/levels.css"
_ENV = Environment(
    loader=PackageLoader("tocsin", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.globals.update(stylesheet=urls.STYLESHEET, levels_css=LEVELS_CSS, script=urls.SCRIPT,
                    api_levels=urls.api_levels(), openapi=urls.OPENAPI)
PUSH_SCRIPT = "/static/push.js"
PUSH_SUBSCRIPTIONS = "/api/v1/push/subscriptions"
"""Where push.js POSTs a browser's push subscription."""
EMAIL_SUBSCRIPTIONS = "/subscriptions/email"
"""Where the area pages' e-mail form is sent (tocsin.web.subscribe)."""
NO_LEVEL_CLASS = "lv-none"
NO_LEVEL_COLOUR = "#E8E8E8"
HISTORY_HINT = "see the history page for published declarations"


@dataclass(frozen=True)
class PageContext:
    lang: str
    """One of urls.PAGE_LANGUAGES."""
    at: datetime
    """The instant the page shows (aware, UTC)."""
    now: datetime
    """When the snapshot was built (aware, UTC)."""
    time_travel: bool
    """True when the reader asked for ?at=…: a banner, and ?at= kept on every page link."""
    shown: datetime | None = None
    """The last change of what this page shows, named as 'as of' (default: `at`)."""


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    lang: str = ""
    current: bool = False


@dataclass(frozen=True)
class Chip:
    css: str
    text: str


@dataclass(frozen=True)
class When:
    iso: str
    text: str


@dataclass(frozen=True)
class Frame:
    """What every page shares: language, title, navigation, banner, live updates."""

    lang: str
    t: Mapping[str, str]
    title: str
    switch: list[Link]
    overview: str
    history: str
    banner: When | None
    current: str
    """The same page without ?at=, for the time-travel banner."""
    as_of: When | None
    live: bool
    json: str | None


# ---------------------------------------------------------------------------- colours

def level_class(scheme: str, level: Level | None) -> str:
    return f"lv-{scheme}-{level.key}" if level is not None else NO_LEVEL_CLASS


def levels_css(world: World) -> str:
    """The stylesheet at /levels.css: one class per scheme level, and one for no level."""
    lines = ["/* Level colours, generated from the schemes; text chosen for contrast >= 4.5:1 */"]
    for key in sorted(world.schemes):
        for level in world.schemes[key].levels:
            colour = level.colour.upper()
            lines.append(f".{level_class(key, level)}{{background:{colour};"
                         f"color:{text_colour_on(colour)}}}")
    lines.append(f".{NO_LEVEL_CLASS}{{background:{NO_LEVEL_COLOUR};"
                 f"color:{text_colour_on(NO_LEVEL_COLOUR)}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- shared views

def _render(template: str, frame: Frame, **page: Any) -> str:
    return _ENV.get_template(template).render(f=frame, t=frame.t, **page)


def _query(ctx: PageContext, params: Sequence[tuple[str, str]] = (), *,
           keep_at: bool = True) -> str:
    items = [(k, v) for k, v in params if v]
    if ctx.time_travel and keep_at:
        items.append(("at", iso(ctx.at)))
    return "?" + urlencode(items, safe=":") if items else ""


def _page_timezone(world: World) -> str | None:
    """Time zone for pages about no one area: the first top-level area's."""
    return world.tree.timezone(world.tree.order[0]) if world.tree.order else None


def _when(value: datetime, timezone: str | None, lang: str) -> When:
    return When(iso(value), i18n.format_time(value, timezone, lang))


def _frame(ctx: PageContext, title: str, path_of: Callable[[str], str], timezone: str | None,
           *, params: Sequence[tuple[str, str]] = (), json: str | None = None,
           live: bool = True) -> Frame:
    query = _query(ctx, params)
    switch = [Link(path_of(lang) + query, i18n.LANGUAGE_NAMES[lang], lang, lang == ctx.lang)
              for lang in urls.PAGE_LANGUAGES]
    return Frame(
        lang=ctx.lang, t=i18n.ui(ctx.lang), title=title, switch=switch,
        overview=urls.overview(ctx.lang) + _query(ctx),
        history=urls.history(ctx.lang) + _query(ctx),
        banner=_when(ctx.at, timezone, ctx.lang) if ctx.time_travel else None,
        current=path_of(ctx.lang) + _query(ctx, params, keep_at=False),
        # Snapshots render as of the last change; time travel has its banner instead.
        as_of=None if ctx.time_travel else _when(ctx.shown or ctx.at, timezone, ctx.lang),
        live=live and not ctx.time_travel, json=json)


def _name(world: World, code: str, lang: str) -> str:
    return pick(world.tree.areas[code].names, [lang]) or code


def _area_link(world: World, code: str, ctx: PageContext) -> Link:
    return Link(urls.area(ctx.lang, code) + _query(ctx), _name(world, code, ctx.lang))


def _level_label(level: Level | None, lang: str) -> str:
    if level is None:
        return i18n.ui(lang)["no_level"]
    name = pick(level.name, [lang]) or level.key
    colour = pick(level.colour_name, [lang])
    return f"{name} ({colour})" if colour else name


def _chip(scheme: str, level: Level | None, lang: str) -> Chip:
    return Chip(level_class(scheme, level), _level_label(level, lang))


def _scheme_name(scheme: Scheme, lang: str) -> str:
    return pick(scheme.name, [lang, scheme.default_language]) or scheme.key


def _as_known_at(world: World, ctx: PageContext, *, area: str | None = None,
                 ids: Iterable[str] | None = None) -> World:
    """The world as the public knew it at ctx.at: later publications and cancellations unseen.

    Only time-travel pages need this; a live page shows everything published. The world
    answers for the whole tree at ctx.at, or (complete with closed history) for one `area`
    at any instant, or for the declarations `ids`.
    """
    if not ctx.time_travel:
        return world
    base = (world.around(area) if area is not None
            else world.about(ids) if ids is not None else world.seeing(ctx.at))
    kept: dict[str, Declaration] = {}
    changed = False
    for d in base.declarations.values():
        if d.is_published and (d.published_at is None or d.published_at > ctx.at):
            changed = True
            continue
        if d.cancellation is not None and d.cancellation.at > ctx.at:
            d = replace(d, cancellation=None)
            changed = True
        kept[d.id] = d
    return World(base.tree, base.schemes, kept) if changed else base


def _headline(d: Declaration, lang: str, scheme: Scheme) -> tuple[str, Statement]:
    """The language shown and the texts in it: the reader's, else the scheme's, else any."""
    for candidate in (lang, scheme.default_language, *sorted(d.texts)):
        if candidate in d.texts:
            return candidate, d.texts[candidate]
    return lang, Statement(d.id)


def _declaration_link(d: Declaration, world: World, ctx: PageContext) -> Link:
    shown, texts = _headline(d, ctx.lang, world.scheme(d.scheme))
    return Link(urls.declaration(ctx.lang, d.id) + _query(ctx), texts.headline, shown)


def _state(d: Declaration, replacers: Sequence[Declaration], ctx: PageContext,
           timezone: str | None) -> str:
    """The declaration's state at ctx.at: in effect, not yet, ended, cancelled."""
    t = i18n.ui(ctx.lang)
    if d.cancellation is not None:
        return t["cancelled"].format(time=i18n.format_time(d.cancellation.at, timezone, ctx.lang),
                                     reason=d.cancellation.reason)
    end = end_of(d, replacers)
    if d.effective is not None and d.effective > ctx.at:
        return t["not_yet"]
    if end is None or end > ctx.at:
        return t["in_effect"]
    replaced = any(r.effective == end for r in replacers)
    return t["replaced" if replaced else "ended"].format(
        time=i18n.format_time(end, timezone, ctx.lang))


def _timezone_of(world: World, d: Declaration) -> str | None:
    return world.tree.timezone(d.areas[0]) if d.areas and d.areas[0] in world.tree else None


# ---------------------------------------------------------------------------- overview

@dataclass(frozen=True)
class Group:
    key: str
    chip: Chip
    meaning: str
    areas: list[Link]
    more: str = ""
    """'and 1,234 more…' when deeper areas at this level were left out."""


@dataclass(frozen=True)
class SchemeOverview:
    key: str
    name: str
    map_src: str
    map_alt: str
    groups: list[Group]


OVERVIEW_DEPTH = 1
"""The overview lists the country and its regions, and deeper areas only where they hold a
level of their own (the topmost area holding it)."""
OVERVIEW_SHOWN = 40
"""Deeper areas listed per level at most; the search finds the others."""
SEARCH_SHOWN = 50


def overview_page(world: World, ctx: PageContext) -> str:
    """Per scheme in use: its map, then the areas grouped by level, highest first: the top
    two levels of the tree, and deeper areas where a level starts (not inherited), at most
    OVERVIEW_SHOWN of those per level; and a search form for every other area."""
    world = _as_known_at(world, ctx)
    t = i18n.ui(ctx.lang)
    tree = world.tree
    sections = []
    for key in world.used_schemes():
        scheme = world.scheme(key)
        levels = (world.resolved(key) if ctx.at == world.now
                  else effective_levels(tree, world.history(key), ctx.at))
        by_rank: dict[int | None, tuple[list[str], list[str]]] = {}
        depth: dict[str, int] = {}
        for code in tree.order:
            parent = tree.areas[code].parent
            depth[code] = 0 if parent is None else depth[parent] + 1
            level = levels[code].level
            rank = level.rank if level else None
            shallow, deep = by_rank.setdefault(rank, ([], []))
            if depth[code] <= OVERVIEW_DEPTH:
                shallow.append(code)
            elif levels[code].sources and levels[code].inherited_from is None and (
                    parent is None or levels[parent].level is not level):
                deep.append(code)
        groups = []
        for rank in sorted(by_rank, key=lambda r: (r is None, -(r or 0))):
            shallow, deep = by_rank[rank]
            if not shallow and not deep:
                continue
            level = levels[(shallow or deep)[0]].level
            members = sorted(shallow, key=lambda c: (depth[c], i18n.collation_key(
                _name(world, c, ctx.lang), ctx.lang), c))
            members += sorted(deep, key=lambda c: (depth[c], c))[:OVERVIEW_SHOWN]
            meaning = (pick(level.meaning, [ctx.lang, scheme.default_language]) or ""
                       if level else t["no_level_meaning"])
            more = (t["with_level_more"].format(count=len(deep) - OVERVIEW_SHOWN)
                    if len(deep) > OVERVIEW_SHOWN else "")
            groups.append(Group(level.key if level else "none", _chip(key, level, ctx.lang),
                                meaning, [_area_link(world, c, ctx) for c in members], more))
        name = _scheme_name(scheme, ctx.lang)
        sections.append(SchemeOverview(key, name, urls.map_svg(key, ctx.lang) + _query(ctx),
                                       t["map_alt"].format(scheme=name), groups))
    frame = _frame(ctx, t["overview_title"], urls.overview, _page_timezone(world),
                   json=urls.api_levels())
    return _render("overview.html", frame, schemes=sections, search=_search_form(ctx))


@dataclass(frozen=True)
class SearchForm:
    action: str
    label: str
    button: str
    query: str
    at: str


def _search_form(ctx: PageContext, query: str = "") -> SearchForm:
    t = i18n.ui(ctx.lang)
    return SearchForm(urls.search(ctx.lang), t["search_label"], t["search_button"], query,
                      iso(ctx.at) if ctx.time_travel else "")


def search_page(world: World, ctx: PageContext, query: str) -> str:
    """The areas whose code or name (in any language) contains `query`, the closest first:
    exact code, then names that start with it, then the rest; at most SEARCH_SHOWN."""
    t = i18n.ui(ctx.lang)
    wanted = query.strip().casefold()
    found: list[tuple[int, int, str]] = []
    if wanted:
        for position, code in enumerate(world.tree.order):
            area = world.tree.areas[code]
            names = [n.casefold() for n in area.names.values()]
            if code.casefold() == wanted:
                found.append((0, position, code))
            elif any(n.startswith(wanted) for n in names) or code.casefold().startswith(wanted):
                found.append((1, position, code))
            elif any(wanted in n for n in names):
                found.append((2, position, code))
    found.sort()
    links = [_area_link(world, code, ctx) for _, _, code in found[:SEARCH_SHOWN]]
    title = t["search_title"].format(query=query.strip()) if wanted else t["search_label"]
    frame = _frame(ctx, title, urls.search, _page_timezone(world),
                   params=[("q", query)], live=False)
    return _render("search.html", frame, results=links, count=len(found),
                   nothing=t["search_none"].format(query=query.strip()) if wanted and not found
                   else "",
                   more=t["search_more"].format(shown=SEARCH_SHOWN, count=len(found))
                   if len(found) > SEARCH_SHOWN else "",
                   search=_search_form(ctx, query))


# ---------------------------------------------------------------------------- area

@dataclass(frozen=True)
class Row:
    """One period of an area's timeline."""

    chip: Chip
    start: When | None
    end: When | None
    note: str


@dataclass(frozen=True)
class Sender:
    name: str
    declarations: list[Link]


@dataclass(frozen=True)
class SchemeStatus:
    key: str
    name: str
    description: str
    legend: list[Chip]
    chip: Chip
    since: When | None
    until: When | None
    why: str
    meaning: str
    measures: Sequence[str]
    guidance: Sequence[str]
    senders: list[Sender]
    timeline: list[Row]
    badge_src: str
    badge_alt: str
    snippet: str
    beneath: str = ""
    """The highest level in force inside the area, where it is above the area's own."""
    earlier: Link | None = None
    """Where the periods before those shown are, when some were left out."""


@dataclass(frozen=True)
class Push:
    """What an area page's push button needs: the server's VAPID public key (base64url)
    and where the browser's subscription is sent."""

    key: str
    url: str = PUSH_SUBSCRIPTIONS


def area_page(world: World, code: str, ctx: PageContext, *, push: Push | None = None) -> str:
    """One area: per scheme its level, meaning, measures, guidance, term, why, and history;
    then the e-mail subscription form and, with `push`, the browser push button."""
    area = world.tree.get(code)
    world = _as_known_at(world, ctx, area=area.code)
    t = i18n.ui(ctx.lang)
    name = _name(world, code, ctx.lang)
    sections = [_scheme_status(world, status, ctx) for status in world.status(ctx.at, area=code)]
    parents = [_area_link(world, c, ctx) for c in reversed(world.tree.ancestors(code))]
    children = sorted((_area_link(world, c, ctx) for c in world.tree.children(area.code)),
                      key=lambda link: (i18n.collation_key(link.text, ctx.lang), link.href))
    frame = _frame(ctx, name, lambda lang: urls.area(lang, code), world.tree.timezone(code),
                   json=urls.api_area(code))
    return _render("area.html", frame, name=name, code=code, parents=parents, children=children,
                   within=t["within"].format(area=name), schemes=sections, push=push,
                   subscribe_action=EMAIL_SUBSCRIPTIONS, push_script=PUSH_SCRIPT)


def _scheme_status(world: World, status: AreaStatus, ctx: PageContext) -> SchemeStatus:
    lang, scheme, effective, code = ctx.lang, status.scheme, status.effective, status.area.code
    t = i18n.ui(lang)
    tz = world.tree.timezone(code)
    langs = [lang, scheme.default_language]
    level = effective.level
    name = _name(world, code, lang)
    reasons = [
        i18n.Reason(s.window.start, _name(world, s.via, lang),
                    world.tree.areas[s.via].kind is AreaKind.COUNTRY)
        for s in effective.sources
    ]
    why = i18n.explanation(
        lang, area=name, level=_level_label(level, lang) if level else None,
        baseline=effective.is_baseline, reasons=reasons,
        inherited_from=_name(world, effective.inherited_from, lang)
        if effective.inherited_from else None, timezone=tz)
    senders: dict[str, list[Link]] = {}
    for source in effective.sources:
        links = senders.setdefault(source.declaration.sender, [])
        link = _declaration_link(source.declaration, world, ctx)
        if link not in links:
            links.append(link)
    timeline = []
    periods, earlier = world.periods_around(scheme.key, code, ctx.at)
    for period in reversed(periods):
        note = (t["current"] if period.contains(ctx.at)
                else t["scheduled"] if period.start is not None and period.start > ctx.at
                else "")
        timeline.append(Row(
            _chip(scheme.key, period.level, lang),
            _when(period.start, tz, lang) if period.start else None,
            _when(period.end, tz, lang) if period.end else None, note))
    scheme_name = _scheme_name(scheme, lang)
    badge_src = urls.badge(scheme.key, code, lang)
    badge_alt = t["badge_alt"].format(scheme=scheme_name, area=name)
    snippet = _ENV.get_template("_badge.html").render(
        href=urls.area(lang, code), src=badge_src, alt=badge_alt).strip()
    return SchemeStatus(
        earlier=Link(urls.history(lang) + _query(ctx, [("area", code), ("scheme", scheme.key)]),
                     t["earlier_periods"]) if earlier else None,
        beneath=beneath_text(world, scheme.key, code, level, ctx),
        key=scheme.key, name=scheme_name, description=pick(scheme.description, langs) or "",
        legend=[_chip(scheme.key, lv, lang) for lv in scheme.levels],
        chip=_chip(scheme.key, level, lang),
        since=_when(status.period.start, tz, lang) if status.period.start else None,
        until=_when(status.period.end, tz, lang) if status.period.end else None,
        why=why,
        meaning=(pick(level.meaning, langs) or "") if level else t["area_no_level"],
        measures=(pick(level.measures, langs) or ()) if level else (),
        guidance=(pick(level.guidance, langs) or ()) if level else (),
        senders=[Sender(sender, links) for sender, links in senders.items()],
        timeline=timeline, badge_src=badge_src, badge_alt=badge_alt, snippet=snippet)


def beneath_text(world: World, scheme: str, code: str, level: Level | None,
                 ctx: PageContext) -> str:
    """'Inside it: Critical (red) in 4 areas (…)' when something inside the area is higher
    than its own level; '' otherwise."""
    found = world.beneath(scheme, code, ctx.at)
    if found is None or (level is not None and found.level.rank <= level.rank):
        return ""
    return i18n.beneath(ctx.lang, _level_label(found.level, ctx.lang), found.count,
                        [_name(world, c, ctx.lang) for c in found.where])


# ---------------------------------------------------------------------------- declaration

def declaration_page(world: World, declaration_id: str, ctx: PageContext) -> str:
    """A declaration's permalink; NotFound for an unknown id or a draft (drafts are private)."""
    d = world.declaration(declaration_id)
    if d is None or not d.is_published:
        raise unknown("declaration", declaration_id, (), HISTORY_HINT)
    full = world
    world = _as_known_at(world, ctx, ids=[d.id, *world.replaced_by(d.id)])
    t = i18n.ui(ctx.lang)
    scheme = world.scheme(d.scheme)
    tz = _timezone_of(world, d)
    shown, texts = _headline(d, ctx.lang, scheme)
    known = world.declaration(d.id)
    replacers = ([r for r in map(world.declaration, world.replaced_by(d.id)) if r is not None]
                 if known else [])
    state = _state(known, replacers, ctx, tz) if known else t["unpublished"]
    level = scheme.level(d.level)
    frame = _frame(ctx, t["declaration_title"].format(id=d.id),
                   lambda lang: urls.declaration(lang, d.id), tz,
                   json=urls.api_declaration(d.id))
    return _render(
        "declaration.html", frame, d=d, texts=texts, shown=shown,
        shown_note=t["shown_in"].format(language=i18n.language_name(shown, ctx.lang))
        if shown != ctx.lang else "",
        scheme=_scheme_name(scheme, ctx.lang), chip=_chip(scheme.key, level, ctx.lang),
        meaning=pick(level.meaning, [ctx.lang, scheme.default_language]) or "",
        areas=[_area_link(world, c, ctx) for c in d.areas if c in world.tree],
        effective=_when(d.effective, tz, ctx.lang) if d.effective else None,
        expires=_when(d.expires, tz, ctx.lang) if d.expires else None,
        published=t["published"].format(time=i18n.format_time(d.published_at, tz, ctx.lang))
        if d.published_at else "",
        state=state,
        replaces=[_declaration_link(old, full, ctx) if (old := full.declaration(i)) is not None
                  else Link(urls.declaration(ctx.lang, i) + _query(ctx), i) for i in d.replaces],
        replaced_by=[_declaration_link(r, world, ctx) for r in replacers],
        json=urls.api_declaration(d.id))


# ---------------------------------------------------------------------------- history

@dataclass(frozen=True)
class Entry:
    link: Link
    id: str
    chip: Chip
    scheme: str
    areas: list[Link]
    effective: When | None
    expires: When | None
    state: str


@dataclass(frozen=True)
class Option:
    value: str
    text: str
    selected: bool


HISTORY_SHOWN = 100
"""Declarations on one page of the history; older ones are on the next pages."""
HISTORY_AREA_DEPTH = 2
"""The history form lists the areas this deep (country, regions, districts) and the one
chosen; any other area's history is a link from its own page."""


def history_page(world: World, ctx: PageContext, *, area: str | None, scheme: str | None,
                 start: datetime | None, end: datetime | None, offset: int = 0) -> str:
    """Published declarations naming the area (or an ancestor), of the scheme, taking effect
    within [start, end), newest first; with the GET form that filters them.

    The form sends area, scheme, from and to (dates, YYYY-MM-DD); dates are shown in the
    time zone of the first top-level area. HISTORY_SHOWN declarations a page, from
    `offset` on, with links to the older and newer ones. NotFound for an unknown area or
    scheme.
    """
    if area:
        world.tree.get(area)
    if scheme:
        world.scheme(scheme)
    total, found = (world.page(scheme=scheme, area=area, since=start, until=end,
                               limit=HISTORY_SHOWN, offset=offset)
                    if start is None or end is None or start < end else (0, []))
    ids = {d.id: None for d in found}
    for d in found:
        ids.update(dict.fromkeys(world.replaced_by(d.id)))
    world = _as_known_at(world, ctx, ids=ids) if ctx.time_travel else world.about(ids)
    t = i18n.ui(ctx.lang)
    chosen = [d for d in map(world.declaration, [d.id for d in found])
              if d is not None and d.is_published]
    replacers = replaced_by(world.declarations)
    entries = []
    for d in chosen:
        tz = _timezone_of(world, d)
        s = world.scheme(d.scheme)
        entries.append(Entry(
            _declaration_link(d, world, ctx), d.id, _chip(s.key, s.level(d.level), ctx.lang),
            _scheme_name(s, ctx.lang),
            [_area_link(world, c, ctx) for c in d.areas if c in world.tree],
            _when(d.effective, tz, ctx.lang) if d.effective else None,
            _when(d.expires, tz, ctx.lang) if d.expires else None,
            _state(d, [world.declarations[r] for r in replacers.get(d.id, [])], ctx, tz)))
    page_tz = _page_timezone(world)
    start_text, end_text = _date_value(start, page_tz), _date_value(end, page_tz)
    params = [("area", area or ""), ("scheme", scheme or ""), ("from", start_text),
              ("to", end_text)]
    depth = {code: len(world.tree.ancestors(code)) for code in world.tree.order}
    areas = [Option(c, "\u2002" * depth[c] + f"{_name(world, c, ctx.lang)} ({c})", c == area)
             for c in _tree_preorder(world, HISTORY_AREA_DEPTH, area)]
    schemes = [Option(k, _scheme_name(world.schemes[k], ctx.lang), k == scheme)
               for k in sorted(world.schemes)]
    frame = _frame(ctx, t["history_title"], urls.history, page_tz, params=params,
                   json=urls.api_history())
    def page_link(at_offset: int, text: str) -> Link:
        kept = [*params, *([("offset", str(at_offset))] if at_offset else [])]
        return Link(urls.history(ctx.lang) + _query(ctx, [(k, v) for k, v in kept if v]), text)

    shown = (t["history_shown"].format(total=total, first=offset + 1, last=offset + len(found))
             if found and (offset or total > len(found)) else "")
    older = (page_link(offset + HISTORY_SHOWN, t["history_older"])
             if offset + HISTORY_SHOWN < total else None)
    newer = page_link(max(0, offset - HISTORY_SHOWN), t["history_newer"]) if offset else None
    return _render("history.html", frame, entries=entries, areas=areas, schemes=schemes,
                   start=start_text, end=end_text, action=urls.history(ctx.lang),
                   at=iso(ctx.at) if ctx.time_travel else "", shown=shown, older=older,
                   newer=newer)


def _date_value(value: datetime | None, timezone: str | None) -> str:
    return value.astimezone(ZoneInfo(timezone or "UTC")).date().isoformat() if value else ""


def _tree_preorder(world: World, depth: int, chosen: str | None) -> list[str]:
    """Codes down to `depth` (and `chosen`) with each area directly followed by its
    descendants, for an indented list."""
    tree = world.tree
    out: list[str] = []
    stack = [(c, 0) for c in reversed(tree.order) if tree.areas[c].parent is None]
    while stack:
        code, level = stack.pop()
        out.append(code)
        if level < depth:
            stack.extend((c, level + 1) for c in reversed(tree.children(code)))
        elif chosen is not None and chosen in tree.areas and code in tree.ancestors(chosen):
            stack.append((chosen, level + 1))
    return out


# ---------------------------------------------------------------------------- subscribing

@dataclass(frozen=True)
class Notice:
    """A short page of the subscription flow: what happened or what a button will do."""

    heading: str
    lines: Sequence[str]
    action: str | None = None
    """Where the page's one button POSTs (None: no button)."""
    button: str = ""
    links: Sequence[Link] = ()


def notice_page(ctx: PageContext, notice: Notice, path_of: Callable[[str], str]) -> str:
    """A subscription page (check your inbox, confirm, unsubscribe, done); `path_of(lang)`
    is the same page in another language, for the language switch."""
    frame = _frame(ctx, notice.heading, path_of, None, live=False)
    return _render("subscribe.html", frame, n=notice)


# ---------------------------------------------------------------------------- errors

def error_page(ctx: PageContext, status: int, message: str) -> str:
    """A short page naming the problem, with the way back to the levels."""
    t = i18n.ui(ctx.lang)
    heading = t.get(f"error_{status}", t["error_other"])
    frame = _frame(ctx, t["error_title"].format(status=status), urls.overview, None,
                   live=False)
    return _render("error.html", frame, status=status, heading=heading, message=message)
