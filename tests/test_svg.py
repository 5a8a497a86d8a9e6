"""The SVG map and badges: colours per level, words beside colours, stable bytes, contrast."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import CORPUS
from tests.helpers import utc

from tocsin import demo
from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.errors import NotFound
from tocsin.ingest.areas import GeoJSONMapping, read_areas_geojson
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file
from tocsin.render.colour import contrast_ratio, text_colour_on
from tocsin.render.explain import level_label
from tocsin.render.svg import badge_svg, map_svg
from tocsin.service import queries
from tocsin.service.queries import World
from tocsin.store.database import connect

SVG = "{http://www.w3.org/2000/svg}"
JAN_8 = utc(2022, 1, 8, 6)
JAN_15 = utc(2022, 1, 15, 6)
KZ_GEOJSON = CORPUS / "geo" / "kz_admin1_20_regions.geojson"
# kz-terror's colours and the ink each takes (WCAG contrast: white on red 5.19, black on
# orange 9.00, on yellow 14.67, on the no-level grey 14.7), written out, not computed
RED, ORANGE, YELLOW, GREY = "#D7191C", "#FF8C00", "#FFD400", "#D9D9D9"
INK = {RED: "#FFFFFF", ORANGE: "#000000", YELLOW: "#000000", GREY: "#000000"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("svg") / "demo.sqlite3"
    engine = connect(f"sqlite:///{path}")
    demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    yield queries.load_world(engine)
    engine.dispose()


def tiles(svg: str) -> dict[str, ET.Element]:
    """Each area's tile group, by area code."""
    root = ET.fromstring(svg)
    return {g.attrib["data-code"]: g for g in root.iter(f"{SVG}g") if "data-code" in g.attrib}


def tile_fill(tile: ET.Element) -> str:
    rect = tile.find(f"{SVG}rect")
    assert rect is not None
    return rect.attrib["fill"]


def test_countrywide_critical_colours_every_tile(world: World) -> None:
    found = tiles(map_svg(world, demo.SCHEME, JAN_8, "en"))
    assert len(found) == 20 and "KZ" not in found  # the country holds the tiles, isn't one
    assert {tile_fill(t) for t in found.values()} == {RED}


def test_regional_levels_colour_their_tiles_and_titles_name_them(world: World) -> None:
    found = tiles(map_svg(world, demo.SCHEME, JAN_15, "en"))
    assert tile_fill(found["KZ-75"]) == RED
    assert tile_fill(found["KZ-71"]) == ORANGE
    assert tile_fill(found["KZ-11"]) == YELLOW
    assert found["KZ-75"].findtext(f"{SVG}title") == "Almaty — Critical (red)"
    assert found["KZ-71"].findtext(f"{SVG}title") == "Astana — High (orange)"
    assert "75" in [t.text for t in found["KZ-75"].iter(f"{SVG}text")]


@pytest.mark.parametrize("lang", ["en", "kk"])
def test_legend_names_every_level_in_words(world: World, lang: str) -> None:
    root = ET.fromstring(map_svg(world, demo.SCHEME, JAN_15, lang))
    [legend] = [g for g in root.iter(f"{SVG}g") if g.attrib.get("class") == "legend"]
    words = [t.text for t in legend.iter(f"{SVG}text")]
    scheme = world.scheme(demo.SCHEME)
    assert words == [*(level_label(lv, [lang, "en"]) for lv in reversed(scheme.levels)),
                     "no level" if lang == "en" else "деңгей жоқ"]
    swatches = [r.attrib["fill"] for r in legend.iter(f"{SVG}rect")]
    assert swatches == [RED, ORANGE, YELLOW, GREY]
    if lang == "kk":
        assert "Қатерлі (қызыл)" in words


def test_map_is_accessible_small_and_stable(world: World) -> None:
    svg = map_svg(world, demo.SCHEME, JAN_15, "kk")
    root = ET.fromstring(svg)
    assert root.attrib["role"] == "img" and root.attrib["aria-label"]
    assert root.findtext(f"{SVG}title") == root.attrib["aria-label"]
    assert svg == map_svg(world, demo.SCHEME, JAN_15, "kk")
    assert len(svg.encode()) < 12_000


def test_tile_text_follows_its_background(world: World) -> None:
    found = tiles(map_svg(world, demo.SCHEME, JAN_15, "en"))
    assert {tile_fill(t) for t in found.values()} == {RED, ORANGE, YELLOW}
    for tile in found.values():
        for text in tile.iter(f"{SVG}text"):
            assert text.attrib["fill"] == INK[tile_fill(tile)]


def test_tile_text_contrast_for_every_shipped_level_colour(world: World) -> None:
    assert len(world.schemes) == 4
    for scheme in world.schemes.values():
        for level in scheme.levels:
            assert contrast_ratio(level.colour, text_colour_on(level.colour)) >= 4.5, level.key


@pytest.mark.parametrize(("colour", "ink", "ratio"), [
    ("#FFFFFF", "#000000", 21.0), ("#000000", "#FFFFFF", 21.0), ("#777777", "#000000", 4.69),
])
def test_contrast_ratio_matches_wcag(colour: str, ink: str, ratio: float) -> None:
    assert text_colour_on(colour) == ink
    assert contrast_ratio(colour, ink) == pytest.approx(ratio, abs=0.01)


def test_badge_names_the_level_on_its_colour(world: World) -> None:
    svg = badge_svg(world, demo.SCHEME, "KZ-75", JAN_8, "en")
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts == ["Terrorism threat", "CRITICAL"]
    assert root.attrib["aria-label"] == "Terrorism threat — CRITICAL"
    assert root.findtext(f"{SVG}title") == "Almaty — Terrorism threat: Critical (red)"
    fills = [r.attrib["fill"] for r in root.iter(f"{SVG}rect")]
    assert RED in fills
    assert svg == badge_svg(world, demo.SCHEME, "KZ-75", JAN_8, "en")


def test_badge_without_a_level_and_in_kazakh(world: World) -> None:
    before = badge_svg(world, demo.SCHEME, "KZ-75", utc(2022, 1, 1), "en")
    assert [t.text for t in ET.fromstring(before).iter(f"{SVG}text")][-1] == "NO LEVEL"
    kk = ET.fromstring(badge_svg(world, demo.SCHEME, "KZ-71", JAN_15, "kk"))
    assert [t.text for t in kk.iter(f"{SVG}text")] == ["Террористік қауіп", "ЖОҒАРЫ"]
    widths = [float(r.attrib["width"]) for r in kk.iter(f"{SVG}rect")]
    assert widths[0] > widths[1] > 100  # whole badge, then the label part, sized to the text


@pytest.mark.parametrize(("scheme", "code"), [("kz-terror", "KZ-99"), ("nope", "KZ-75")])
def test_unknown_area_or_scheme_is_not_found(world: World, scheme: str, code: str) -> None:
    with pytest.raises(NotFound):
        badge_svg(world, scheme, code, JAN_8, "en")
    if scheme == "nope":
        with pytest.raises(NotFound):
            map_svg(world, scheme, JAN_8, "en")


def geometry_world(path: Path) -> World:
    mapping = GeoJSONMapping(code="ADM1_PCODE", names={"en": "ADM1_EN"}, default_parent="X",
                             repair=True)
    areas = read_areas_geojson(path, mapping)
    tree = AreaTree.build([Area("X", AreaKind.COUNTRY, {"en": "X"}), *areas])
    schemes = {s.key: s for s in (load_scheme_file(f)[0] for f in builtin_scheme_files())}
    return World(tree, schemes, {})


@pytest.mark.corpus
def test_map_draws_real_shapes_when_every_area_has_one() -> None:
    geo = geometry_world(KZ_GEOJSON)
    at = utc(2022, 1, 15)
    svg = map_svg(geo, "kz-terror", at, "en")
    root = ET.fromstring(svg)
    paths = list(root.iter(f"{SVG}path"))
    assert len(paths) == 20
    assert all(p.attrib["d"].startswith("M") and p.findtext(f"{SVG}title") for p in paths)
    assert {p.attrib["fill"] for p in paths} == {GREY}  # nothing declared
    assert float(root.attrib["width"]) > 800
    assert len(svg.encode()) < 200_000
    assert svg == map_svg(geo, "kz-terror", at, "en")
