"""The parsers for areas and schemes, on real-world and hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import CORPUS

from tocsin.domain.area import AreaKind, AreaTree
from tocsin.domain.errors import InvalidInput
from tocsin.ingest.areas import (
    GeoJSONMapping,
    iso_areas,
    parse_areas_csv,
    parse_areas_geojson,
    read_areas_geojson,
)
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file

KZ_GEOJSON = CORPUS / "geo" / "kz_admin1_20_regions.geojson"
KZ_MAPPING = GeoJSONMapping(code="ADM1_PCODE", names={"en": "ADM1_EN"}, default_parent=None)


def test_shipped_schemes_parse_with_every_text_in_every_language() -> None:
    schemes = {load_scheme_file(p)[0].key: load_scheme_file(p)[0] for p in builtin_scheme_files()}
    assert set(schemes) == {"kz-terror", "uk-terror", "us-ntas", "meteoalarm"}
    kz = schemes["kz-terror"]
    assert [lv.key for lv in kz.levels] == ["moderate", "high", "critical"]
    assert kz.languages == ("kk", "ru", "en") and kz.baseline is None
    critical = " ".join(kz.level("critical").measures["en"]).lower()
    for measure in ("special forces", "search", "restrict", "telecommunication"):
        assert measure in critical
    assert [lv.key for lv in schemes["uk-terror"].levels] == [
        "low", "moderate", "substantial", "severe", "critical"]
    assert schemes["us-ntas"].expiry_required
    assert schemes["meteoalarm"].baseline == "green"


@pytest.mark.corpus
def test_real_boundary_file_refuses_its_invalid_shape_then_repairs_it() -> None:
    with pytest.raises(InvalidInput, match=r"feature 20 \(KAZ020\): geometry is not valid: "
                                           r"Ring Self-intersection"):
        read_areas_geojson(KZ_GEOJSON, KZ_MAPPING)
    areas = read_areas_geojson(KZ_GEOJSON, GeoJSONMapping(
        code="ADM1_PCODE", names={"en": "ADM1_EN"}, repair=True))
    assert len(areas) == 20
    by_code = {a.code: a for a in areas}
    assert by_code["KAZ004"].names == {"en": "Almaty"}
    assert by_code["KAZ004"].geometry is not None
    assert by_code["KAZ004"].geometry["type"] == "MultiPolygon"
    assert all(len(p) == 2 for p in by_code["KAZ001"].geometry["coordinates"][0])  # 2-D
    AreaTree.build(areas)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not valid JSON"),
        ('{"type": "Feature"}', "is not a GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection", "features": []}', "has no features"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"name:en": "A"}, "geometry": null}]}', "has no 'code' property"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A"}, "geometry": null}]}', "has no name"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A", "name:en": "A"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}',
         "geometry type 'Point' cannot carry an area"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A", "name:en": "A"}, "geometry": {"type": "Polygon", "coordinates": '
         '[[[0, 0], [1, 0], [1, 1], [0, 1]]]}}]}', "a ring is not closed"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A", "name:en": "A"}, "geometry": {"type": "Polygon", "coordinates": '
         '[[[0, 0], [1, 0], [0, 0]]]}}]}', "fewer than 4 positions"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A", "name:en": "A"}, "geometry": {"type": "Polygon", "coordinates": '
         '[[[0, 0], [200, 0], [1, 1], [0, 0]]]}}]}', "outside longitude"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A", "name:en": "A", "kind": "planet"}, "geometry": null}]}',
         "kind 'planet' is not known"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
         '{"code": "A B", "name:en": "A"}, "geometry": null}]}', "area code 'A B' is not valid"),
    ],
)
def test_bad_geojson_is_refused_with_the_problem_named(document: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_areas_geojson(document, "f.geojson", GeoJSONMapping())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,kind\nA,region\n", "the header has no 'code' column"),
        ("code,colour,name:en\nA,red,A\n", "column 'colour' is not known"),
        ("code,parent\nA,\n", "there is no name column"),
        ("code,name:en\n,A\n", "line 2: code is empty"),
        ("code,name:en\nA,\n", "area 'A' has no name"),
        ("code,name:en,timezone\nA,A,Mars/Olympus\n", "time zone 'Mars/Olympus' is not known"),
        ("code,name:en\nA,A,extra\n", "has more fields than the header"),
        ("code,name:en\n", "has no rows"),
        ("code,name:english\nA,A\n", "'english' is not a language tag"),
    ],
)
def test_bad_csv_is_refused_with_the_line_named(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_areas_csv(text, "areas.csv")


def test_area_tree_rules() -> None:
    csv = "code,parent,kind,name:en\nA,,country,A\nB,A,region,B\nA,,country,A again\n"
    with pytest.raises(InvalidInput, match="area code 'A' appears twice"):
        AreaTree.build(parse_areas_csv(csv, "x.csv"))
    cyclic = "code,parent,name:en\nA,B,A\nB,A,B\n"
    with pytest.raises(InvalidInput, match="A, B form a cycle"):
        AreaTree.build(parse_areas_csv(cyclic, "x.csv"))
    tree = AreaTree.build(parse_areas_csv("code,parent,timezone,name:en\nA,,Asia/Almaty,A\n"
                                          "B,A,,B\nC,B,,C\n", "x.csv"))
    assert tree.ancestors("C") == ["B", "A"] and tree.descendants("A") == ["B", "C"]
    assert tree.timezone("C") == "Asia/Almaty"


def test_iso_import_names_and_kinds() -> None:
    areas = {a.code: a for a in iso_areas("kz")}
    assert areas["KZ"].kind is AreaKind.COUNTRY and areas["KZ"].names["ru"] == "Казахстан"
    assert areas["KZ-75"].kind is AreaKind.CITY and areas["KZ-19"].kind is AreaKind.REGION
    assert ("ISO3166-2", "KZ-75") in areas["KZ-75"].geocodes
    gb = {a.code: a for a in iso_areas("GB")}
    nested = [a for a in gb.values() if a.parent not in (None, "GB")]
    assert nested, "subdivisions with a parent subdivision keep it"
    AreaTree.build(gb.values())


def test_geojson_round_trip_through_the_product_format(tmp_path: Path) -> None:
    features = [{"type": "Feature", "properties": {"code": "C1", "name:en": "Campus",
                                                     "kind": "custom", "parent": None},
                 "geometry": {"type": "Polygon",
                              "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]
    path = tmp_path / "c.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    [area] = read_areas_geojson(path, GeoJSONMapping())
    assert area.kind is AreaKind.CUSTOM and area.geometry == features[0]["geometry"] | {
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]}
