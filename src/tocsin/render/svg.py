"""The level map and the badges as SVG text: pure functions of the world and an instant.

Same input, same bytes: the static mirror compares files byte for byte, so nothing here reads
the clock, iterates a set, or formats a float without a fixed precision. A level is never
shown by colour alone: every tile and shape has a <title> naming it, tiles print it, and the
legend names each colour in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from tocsin.domain.area import Area
from tocsin.domain.resolve import effective_levels
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.text import pick
from tocsin.render import i18n
from tocsin.render.colour import text_colour_on
from tocsin.render.explain import level_label
from tocsin.service.queries import World

NO_LEVEL_COLOUR = "#D9D9D9"
BADGE_LABEL_COLOUR = "#555555"
BADGE_NO_LEVEL_COLOUR = "#9E9E9E"
OUTLINE = "#444444"
FONT = "Verdana,'DejaVu Sans',Arial,sans-serif"
NO_LEVEL = {"en": "no level", "kk": "деңгей жоқ", "ru": "нет уровня"}
"""The one phrase the map needs that no scheme file carries."""

MARGIN = 16
HEADING = 44
"""Height of the heading band above the map and legend."""
TILE = 64
TILE_GAP = 4
MAP_WIDTH = 800
"""Width of a map drawn from shapes, before the legend."""
SIMPLIFY = 0.005
"""Simplification tolerance as a share of the shapes' bounding-box width."""
SWATCH = 16
LEGEND_LINE = 24


def _text(value: str) -> str:
    return escape(value)


def _attr(value: str) -> str:
    return '"' + escape(value, {'"': "&quot;"}) + '"'


def _num(value: float) -> str:
    """A coordinate with one decimal, without '-0.0' or a trailing '.0'."""
    text = f"{round(value, 1) + 0.0:.1f}"
    return text[:-2] if text.endswith(".0") else text


# --- colour and contrast -----------------------------------------------------------------------

def _fill(level: Level | None) -> str:
    return level.colour if level else NO_LEVEL_COLOUR


def _text_width(text: str, font_size: float) -> float:
    """A rough rendered width: wide capitals, narrow spaces and punctuation."""
    units = 0.0
    for char in text:
        if char.isspace() or char in ".,:;'’|!()«»—-":
            units += 0.38
        elif char.isupper() or char.isdigit():
            units += 0.72
        else:
            units += 0.62
    return units * font_size


# --- the map ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Drawn:
    area: Area
    level: Level | None
    title: str


def map_svg(world: World, scheme: str, at: datetime, lang: str) -> str:
    """The areas coloured by their level under `scheme` at `at`, with a legend.

    Draws the real shapes when every area without children has geometry, else a tile grid of
    the areas that have a grid position. Raises NotFound for an unknown scheme.
    """
    the_scheme = world.scheme(scheme)
    languages = [lang, "en"]
    levels = (world.resolved(the_scheme.key) if at == world.now
              else effective_levels(world.tree, world.seeing(at).history(the_scheme.key), at))
    shaped = _deepest(world, lambda a: a.geometry is not None)
    placed = shaped or _deepest(world, lambda a: a.grid is not None)
    drawn = []
    for a in placed:
        own = levels[a.code].level
        inside = world.beneath(the_scheme.key, a.code, at)
        # An area is drawn in the highest colour in force in it, and its title says where.
        shown = inside.level if inside and (own is None or inside.level.rank > own.rank) else own
        title = f"{_name(a, languages)} — {level_label(own, languages)}"
        if shown is not own and inside is not None:
            title += " — " + i18n.beneath(lang if lang in i18n.UI else "en",
                                          level_label(inside.level, languages), inside.count,
                                          [_name(world.tree.areas[c], languages)
                                           for c in inside.where])
        drawn.append(_Drawn(a, shown, title))
    if shaped:
        body, width, height = _shapes(drawn)
    else:
        body, width, height = _tiles(drawn, languages)

    name = pick(the_scheme.name, languages) or the_scheme.key
    heading = f"{name} — {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    legend, legend_width, legend_height = _legend(the_scheme, languages, MARGIN + width + 24)
    total_width = max(MARGIN + width + 24 + legend_width, _text_width(heading, 16) + 2 * MARGIN)
    total_height = HEADING + max(height, legend_height) + MARGIN
    w, h = _num(total_width), _num(total_height)
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img" aria-label={_attr(heading)} xml:lang={_attr(lang)} '
        f"font-family={_attr(FONT)}>",
        f"<title>{_text(heading)}</title>",
        f'<rect width="{w}" height="{h}" fill="#FFFFFF"/>',
        f'<text x="{MARGIN}" y="28" font-size="16" font-weight="bold">{_text(heading)}</text>',
        body,
        legend,
        "</svg>\n",
    ])


def _deepest(world: World, drawable: Callable[[Area], bool]) -> list[Area]:
    """The drawable areas with nothing drawable inside them, in tree order: the finest
    layer the map can show (regions with tiles, or whatever carries shapes)."""
    tree = world.tree
    covered: set[str] = set()
    for code in reversed(tree.order):  # children before parents
        area = tree.areas[code]
        if area.parent is not None and (code in covered or drawable(area)):
            covered.add(area.parent)
    return [a for a in tree if drawable(a) and a.code not in covered]


def _name(area: Area, languages: Sequence[str]) -> str:
    return pick(area.names, languages) or area.code


def _short_label(code: str) -> str:
    """'KZ-75' → '75': the part of the code after the country, short enough for a tile."""
    return code.rsplit("-", 1)[-1][:5]


def _tiles(drawn: Sequence[_Drawn], languages: Sequence[str]) -> tuple[str, float, float]:
    if not drawn:
        return "", 0.0, 0.0
    grids = [d.area.grid for d in drawn if d.area.grid is not None]
    top = min(g[0] for g in grids)
    left = min(g[1] for g in grids)
    rows = max(g[0] for g in grids) - top + 1
    cols = max(g[1] for g in grids) - left + 1
    step = TILE + TILE_GAP
    inner = TILE - 8
    parts = ['<g text-anchor="middle">']
    for d in sorted(drawn, key=lambda d: (d.area.grid or (0, 0), d.area.code)):
        assert d.area.grid is not None
        x = MARGIN + (d.area.grid[1] - left) * step
        y = HEADING + (d.area.grid[0] - top) * step
        fill = _fill(d.level)
        ink = text_colour_on(fill)
        centre = x + TILE // 2
        level_name = (pick(d.level.name, languages) or d.level.key if d.level
                      else pick(NO_LEVEL, languages) or "")
        squeeze = (f' textLength="{inner}" lengthAdjust="spacingAndGlyphs"'
                   if _text_width(level_name, 9) > inner else "")
        parts.append(
            f"<g data-code={_attr(d.area.code)}><title>{_text(d.title)}</title>"
            f'<rect x="{x}" y="{y}" width="{TILE}" height="{TILE}" rx="4" fill="{fill}" '
            f'stroke="{OUTLINE}"/>'
            f'<text x="{centre}" y="{y + 30}" fill="{ink}" font-size="15" font-weight="bold">'
            f"{_text(_short_label(d.area.code))}</text>"
            f'<text x="{centre}" y="{y + 48}" fill="{ink}" font-size="9"{squeeze}>'
            f"{_text(level_name)}</text></g>"
        )
    parts.append("</g>")
    return "".join(parts), float(cols * step - TILE_GAP), float(rows * step - TILE_GAP)


def _shapes(drawn: Sequence[_Drawn]) -> tuple[str, float, float]:
    from shapely.geometry import shape  # here: only maps of areas with shapes need it

    geometries = [shape(d.area.geometry) for d in drawn]
    bounds = [g.bounds for g in geometries]
    west, south = min(b[0] for b in bounds), min(b[1] for b in bounds)
    east, north = max(b[2] for b in bounds), max(b[3] for b in bounds)
    tolerance = max(east - west, 1e-9) * SIMPLIFY
    squash = _cos_degrees((south + north) / 2)
    scale = MAP_WIDTH / max((east - west) * squash, 1e-9)
    height = (north - south) * scale

    def point(lon: float, lat: float) -> tuple[str, str]:
        return (_num(MARGIN + (lon - west) * squash * scale),
                _num(HEADING + (north - lat) * scale))

    parts = [f'<g stroke="{OUTLINE}" stroke-width="0.6" stroke-linejoin="round" '
             'fill-rule="evenodd">']
    for d, geometry in zip(drawn, geometries, strict=True):
        simple = geometry.simplify(tolerance, preserve_topology=True)
        path = _path(simple, point) or _path(geometry, point)
        parts.append(f'<path data-code={_attr(d.area.code)} d="{path}" fill="{_fill(d.level)}">'
                     f"<title>{_text(d.title)}</title></path>")
    parts.append("</g>")
    return "".join(parts), float(MAP_WIDTH), height


def _cos_degrees(degrees: float) -> float:
    return max(math.cos(math.radians(degrees)), 0.05)


def _path(geometry: Any, point: Callable[[float, float], tuple[str, str]]) -> str:
    """Path data for a (Multi)Polygon; rings that round to fewer than 3 points are dropped."""
    from shapely.geometry import MultiPolygon, Polygon

    polygons = (list(geometry.geoms) if isinstance(geometry, MultiPolygon)
                else [geometry] if isinstance(geometry, Polygon) else [])
    rings = []
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors):
            points: list[tuple[str, str]] = []
            for lon, lat, *_ in ring.coords:
                p = point(lon, lat)
                if not points or points[-1] != p:
                    points.append(p)
            if len(points) > 1 and points[0] == points[-1]:
                points.pop()
            if len(set(points)) >= 3:
                rings.append("M" + " ".join(f"{x} {y}" for x, y in points) + "Z")
    return "".join(rings)


def _legend(scheme: Scheme, languages: Sequence[str], x: float) -> tuple[str, float, float]:
    """Highest level first, then 'no level'; each swatch beside its name in words."""
    entries: list[tuple[str, str]] = [
        (level.colour, level_label(level, languages)) for level in reversed(scheme.levels)
    ]
    entries.append((NO_LEVEL_COLOUR, pick(NO_LEVEL, languages) or NO_LEVEL["en"]))
    parts = ['<g class="legend" font-size="13">']
    for i, (colour, label) in enumerate(entries):
        y = HEADING + i * LEGEND_LINE
        parts.append(
            f'<rect x="{_num(x)}" y="{y}" width="{SWATCH}" height="{SWATCH}" fill="{colour}" '
            f'stroke="{OUTLINE}"/>'
            f'<text x="{_num(x + SWATCH + 8)}" y="{y + 13}">{_text(label)}</text>'
        )
    parts.append("</g>")
    width = SWATCH + 8 + max(_text_width(label, 13) for _, label in entries)
    return "".join(parts), width, float(len(entries) * LEGEND_LINE)


# --- the badge -------------------------------------------------------------------------------

BADGE_HEIGHT = 20
BADGE_FONT_SIZE = 11
BADGE_PADDING = 6


def badge_svg(world: World, scheme: str, code: str, at: datetime, lang: str) -> str:
    """A shields-style badge: the scheme's event on the left, the area's level on the right.

    Raises NotFound for an unknown area or scheme.
    """
    area = world.tree.get(code)
    the_scheme = world.scheme(scheme)
    languages = [lang, "en"]
    [status] = world.status(at, area=area.code, scheme=the_scheme.key)
    level = status.effective.level
    left = pick(the_scheme.event, languages) or the_scheme.key
    right = (pick(level.name, languages) or level.key if level
             else pick(NO_LEVEL, languages) or NO_LEVEL["en"]).upper()
    right_colour = level.colour if level else BADGE_NO_LEVEL_COLOUR
    title = f"{_name(area, languages)} — {left}: {level_label(level, languages)}"
    inside = world.beneath(the_scheme.key, area.code, at)
    if inside is not None and (level is None or inside.level.rank > level.rank):
        # Higher inside than on the whole area: a third part says so, named and coloured.
        title += "; " + i18n.beneath(lang if lang in i18n.UI else "en",
                                     level_label(inside.level, languages), inside.count,
                                     [_name(world.tree.areas[c], languages)
                                      for c in inside.where])
        extra = "▲ " + (pick(inside.level.name, languages) or inside.level.key).upper()
        extra_colour = inside.level.colour
    else:
        extra, extra_colour = "", ""
    left_text = _text_width(left, BADGE_FONT_SIZE)
    right_text = _text_width(right, BADGE_FONT_SIZE)
    extra_text = _text_width(extra, BADGE_FONT_SIZE) if extra else 0.0
    left_width = left_text + 2 * BADGE_PADDING
    right_width = right_text + 2 * BADGE_PADDING
    extra_width = extra_text + 2 * BADGE_PADDING if extra else 0.0
    width = left_width + right_width + extra_width
    w, lw = _num(width), _num(left_width)
    third = "" if not extra else (
        f'<rect x="{_num(left_width + right_width)}" width="{_num(extra_width)}" '
        f'height="{BADGE_HEIGHT}" fill="{extra_colour}"/>')

    def label(text: str, x: float, text_width: float, background: str) -> str:
        return (f'<text x="{_num(x)}" y="14" fill="{text_colour_on(background)}" '
                f'textLength="{_num(text_width)}">{_text(text)}</text>')

    aria = f"{left} — {right}" + (f" — {extra}" if extra else "")
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {BADGE_HEIGHT}" '
        f'width="{w}" height="{BADGE_HEIGHT}" role="img" aria-label={_attr(aria)} '
        f"xml:lang={_attr(lang)}>",
        f"<title>{_text(title)}</title>",
        f'<rect width="{w}" height="{BADGE_HEIGHT}" rx="3" fill="{right_colour}"/>',
        f'<rect width="{lw}" height="{BADGE_HEIGHT}" rx="3" fill="{BADGE_LABEL_COLOUR}"/>',
        f'<rect x="{_num(left_width - 4)}" width="4" height="{BADGE_HEIGHT}" '
        f'fill="{BADGE_LABEL_COLOUR}"/>',
        third,
        f'<g font-family={_attr(FONT)} font-size="{BADGE_FONT_SIZE}">',
        label(left, BADGE_PADDING, left_text, BADGE_LABEL_COLOUR),
        label(right, left_width + BADGE_PADDING, right_text, right_colour),
        label(extra, left_width + right_width + BADGE_PADDING, extra_text, extra_colour)
        if extra else "",
        "</g></svg>\n",
    ])
