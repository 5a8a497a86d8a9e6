"""The CAP 1.2 builder: schema-valid, in the schema's order, stable bytes, refusals named."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree
from shapely.geometry import Polygon
from tests.conftest import CORPUS, require_corpus
from tests.helpers import utc

from tocsin.cap.alert import (
    CAP_NS,
    MAX_RING_POINTS,
    MsgType,
    Reference,
    cap_alert,
    identifier_of,
)
from tocsin.demo import kazakhstan_areas_file
from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.declaration import Declaration, DeclarationRequest, Statement, publish_as
from tocsin.domain.errors import InvalidInput, NotFound
from tocsin.domain.scheme import Scheme
from tocsin.ingest.areas import GeoJSONMapping, read_areas_csv, read_areas_geojson
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file

CAP_XSD = CORPUS / "cap" / "schema" / "CAP-v1.2.xsd"
KZ_GEOJSON = CORPUS / "geo" / "kz_admin1_20_regions.geojson"
NS = {"cap": CAP_NS}
SENDER = "kz.antiterror.gov"
JAN_7 = utc(2022, 1, 7, 3)
JAN_13 = utc(2022, 1, 13, 12)
ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "source", "scope",
               "restriction", "addresses", "code", "note", "references", "incidents", "info"]
INFO_ORDER = ["language", "category", "event", "responseType", "urgency", "severity",
              "certainty", "audience", "eventCode", "effective", "onset", "expires",
              "senderName", "headline", "description", "instruction", "web", "contact",
              "parameter", "resource", "area"]
AREA_ORDER = ["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"]
TEXTS = {
    "en": Statement("Critical terrorism threat level in Almaty", "Shots were fired.",
                    "Checkpoints on all roads.", "Stay at home."),
    "ru": Statement("Критический уровень террористической опасности в Алматы"),
    "kk": Statement("Алматыда террористік қауіптің қатерлі деңгейі"),
}
SQUARE = {"type": "Polygon", "coordinates": [[[76.0, 43.0], [77.0, 43.0], [77.0, 44.0],
                                              [76.0, 44.0], [76.0, 43.0]]]}
TWO_SQUARES = {"type": "MultiPolygon", "coordinates": [
    SQUARE["coordinates"],
    [[[78.5, 45.25], [79.5, 45.25], [79.5, 46.125], [78.5, 46.125], [78.5, 45.25]]],
]}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    require_corpus()
    return etree.XMLSchema(etree.parse(str(CAP_XSD)))


@pytest.fixture(scope="module")
def scheme() -> Scheme:
    schemes = {s.key: s for s in (load_scheme_file(p)[0] for p in builtin_scheme_files())}
    return schemes["kz-terror"]


@pytest.fixture(scope="module")
def tree() -> AreaTree:
    shaped = [Area("KZ-75-SQ", AreaKind.CUSTOM, {"en": "Square", "kk": "Шаршы"}, parent="KZ-75",
                   geocodes=(("ISO3166-2", "KZ-75"), ("tocsin", "KZ-75-SQ")), geometry=SQUARE),
              Area("KZ-TWO", AreaKind.CUSTOM, {"ru": "Два квадрата"}, parent="KZ",
                   geometry=TWO_SQUARES)]
    return AreaTree.build(read_areas_csv(kazakhstan_areas_file())).merged(shaped)


def declare(scheme: Scheme, tree: AreaTree, *, level: str = "critical",
            areas: tuple[str, ...] = ("KZ-75",), texts: dict[str, Statement] = TEXTS,
            expires: datetime | None = None, replaces: dict[str, Declaration] | None = None,
            now: datetime = JAN_7, id: str = "20220107-0001") -> Declaration:
    request = DeclarationRequest(scheme="kz-terror", level=level, areas=areas, texts=texts,
                                 sender="Counter-terrorism authorities", expires=expires,
                                 replaces=tuple(replaces or {}))
    return publish_as(request, id=id, scheme=scheme, tree=tree, known=replaces or {}, now=now,
                      actor="test", publish=True)


def render(declaration: Declaration, scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema,
           **options: Any) -> etree._Element:
    """The alert's root, after checking it is XSD-valid and in UTF-8 with a declaration."""
    options = {"sender": SENDER, "sent": declaration.published_at, "msg_type": MsgType.ALERT,
               **options}
    document = cap_alert(declaration, scheme=scheme, tree=tree, **options)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<alert xmlns=")
    root = etree.fromstring(document)
    schema.assertValid(root)
    return root


def names(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def texts(element: etree._Element, path: str) -> list[str]:
    return [e.text for e in element.findall(path, NS)]


def pairs(element: etree._Element, name: str) -> list[tuple[str, str]]:
    return [(e.findtext("cap:valueName", namespaces=NS), e.findtext("cap:value", namespaces=NS))
            for e in element.findall(f"cap:{name}", NS)]


def in_order(found: list[str], order: list[str]) -> bool:
    ranks = [order.index(name) for name in found]
    return ranks == sorted(ranks)


def test_alert_has_one_info_per_language_in_the_schemes_order(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    declaration = declare(scheme, tree, areas=("KZ-75", "KZ-71"))
    root = render(declaration, scheme, tree, schema, permalink="https://tocsin.kz/d/1")
    assert root.findtext("cap:identifier", namespaces=NS) == f"{SENDER}.20220107-0001"
    assert root.findtext("cap:sent", namespaces=NS) == "2022-01-07T03:00:00-00:00"
    assert texts(root, "cap:msgType") == ["Alert"] and texts(root, "cap:scope") == ["Public"]
    assert root.find("cap:references", NS) is None
    infos = root.findall("cap:info", NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["kk", "ru", "en"]
    assert [i.findtext("cap:event", namespaces=NS) for i in infos] == [
        "Террористік қауіп", "Террористическая опасность", "Terrorism threat"]
    kk, _, en = infos
    assert texts(en, "cap:category") == ["Security"]
    assert [texts(en, f"cap:{n}")[0] for n in ("urgency", "severity", "certainty")] == [
        "Immediate", "Extreme", "Observed"]
    assert pairs(en, "eventCode") == [("tocsin:scheme", "kz-terror"), ("tocsin:level", "critical")]
    assert pairs(en, "parameter") == [("level", "critical"), ("colour", "#D7191C"),
                                      ("measures", "Checkpoints on all roads.")]
    assert en.findtext("cap:effective", namespaces=NS) == "2022-01-07T03:00:00-00:00"
    assert en.findtext("cap:senderName", namespaces=NS) == "Counter-terrorism authorities"
    assert en.findtext("cap:description", namespaces=NS) == "Shots were fired."
    assert en.findtext("cap:instruction", namespaces=NS) == "Stay at home."
    assert en.findtext("cap:web", namespaces=NS) == "https://tocsin.kz/d/1"
    assert texts(kk, "cap:area/cap:areaDesc") == ["Алматы", "Астана"]
    assert texts(en, "cap:area/cap:areaDesc") == ["Almaty", "Astana"]
    assert [pairs(a, "geocode") for a in en.findall("cap:area", NS)] == [
        [("ISO3166-2", "KZ-75")], [("ISO3166-2", "KZ-71")]]


def test_elements_follow_the_schemas_order(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    declaration = declare(scheme, tree, areas=("KZ-75-SQ", "KZ-TWO"),
                          expires=JAN_7 + timedelta(days=14))
    root = render(declaration, scheme, tree, schema, note="Exercise note",
                  permalink="https://tocsin.kz/d/1")
    assert in_order(names(root), ALERT_ORDER)
    for info in root.findall("cap:info", NS):
        assert names(info) == ["language", "category", "event", "responseType", "urgency",
                               "severity", "certainty", "eventCode", "eventCode", "effective",
                               "expires", "senderName", "headline", "description",
                               "instruction", "web", "parameter", "parameter", "parameter",
                               "area", "area"]
        assert in_order(names(info), INFO_ORDER)
        for area in info.findall("cap:area", NS):
            assert in_order(names(area), AREA_ORDER)
    # the schema check has teeth: the same document with two children swapped is refused
    info = root.find("cap:info", NS)
    info.insert(0, info.find("cap:event", NS))
    assert not schema.validate(root)


def test_update_lists_the_messages_it_replaces(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    first = declare(scheme, tree)
    second = declare(scheme, tree, level="high", replaces={first.id: first}, now=JAN_13,
                     id="20220113-0002")
    earlier = [Reference(SENDER, identifier_of(SENDER, first.id), JAN_7),
               Reference("kz.other", "kz.other.9", datetime(2022, 1, 6, 23, 30, 15, 999,
                                                           tzinfo=timezone(timedelta(hours=6))))]
    root = render(second, scheme, tree, schema, msg_type=MsgType.UPDATE, references=earlier)
    assert root.findtext("cap:msgType", namespaces=NS) == "Update"
    assert root.findtext("cap:references", namespaces=NS) == (
        f"{SENDER},{SENDER}.20220107-0001,2022-01-07T03:00:00-00:00 "
        "kz.other,kz.other.9,2022-01-06T17:30:15-00:00")
    assert root.findtext("cap:sent", namespaces=NS) == "2022-01-13T12:00:00-00:00"
    assert root.findtext("cap:info/cap:severity", namespaces=NS) == "Severe"


def test_cancel_keeps_its_info_blocks(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    declaration = declare(scheme, tree)
    reference = Reference(SENDER, identifier_of(SENDER, declaration.id), JAN_7)
    root = render(declaration, scheme, tree, schema, msg_type=MsgType.CANCEL, sent=JAN_13,
                  references=[reference], note="Threat has passed")
    assert names(root)[:9] == ["identifier", "sender", "sent", "status", "msgType", "scope",
                               "note", "references", "info"]
    assert root.findtext("cap:msgType", namespaces=NS) == "Cancel"
    assert root.findtext("cap:references", namespaces=NS) == reference.text
    assert len(root.findall("cap:info", NS)) == 3


def test_areas_with_geometry_carry_lat_lon_polygons(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    root = render(declare(scheme, tree, areas=("KZ-75-SQ", "KZ-TWO")), scheme, tree, schema)
    kk, ru, _ = root.findall("cap:info", NS)
    square, two = kk.findall("cap:area", NS)
    assert square.findtext("cap:areaDesc", namespaces=NS) == "Шаршы"
    assert texts(square, "cap:polygon") == ["43.0,76.0 43.0,77.0 44.0,77.0 44.0,76.0 43.0,76.0"]
    assert pairs(square, "geocode") == [("ISO3166-2", "KZ-75"), ("tocsin", "KZ-75-SQ")]
    assert two.findtext("cap:areaDesc", namespaces=NS) == "Два квадрата"  # only name there is
    assert texts(two, "cap:polygon") == ["43.0,76.0 43.0,77.0 44.0,77.0 44.0,76.0 43.0,76.0",
                                         ("45.25,78.5 45.25,79.5 46.125,79.5 46.125,78.5 "
                                          "45.25,78.5")]
    assert texts(ru, "cap:area/cap:polygon") == texts(kk, "cap:area/cap:polygon")


def test_big_rings_are_simplified_and_stay_valid(
        scheme: Scheme, schema: etree.XMLSchema, tree: AreaTree) -> None:
    ring = [[76.9 + 0.2 * math.cos(2 * math.pi * i / 5000),
             43.2 + 0.1 * math.sin(2 * math.pi * i / 5000)] for i in range(5000)]
    circle = Area("KZ-75-C", AreaKind.CUSTOM, {"en": "Circle"}, parent="KZ-75",
                  geometry={"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    bigger = tree.merged([circle])
    root = render(declare(scheme, bigger, areas=("KZ-75-C",)), scheme, bigger, schema)
    polygon = root.findtext("cap:info/cap:area/cap:polygon", namespaces=NS)
    points = [tuple(map(float, pair.split(","))) for pair in polygon.split(" ")]
    assert 4 <= len(points) <= MAX_RING_POINTS and points[0] == points[-1]
    assert all(len(p.split(",")[0].split(".")[-1]) <= 6 for p in polygon.split(" "))
    shape = Polygon([(lon, lat) for lat, lon in points])
    assert shape.is_valid and shape.area == pytest.approx(math.pi * 0.2 * 0.1, rel=0.01)


@pytest.mark.corpus
def test_real_boundaries_make_valid_alerts(scheme: Scheme, schema: etree.XMLSchema) -> None:
    regions = AreaTree.build(read_areas_geojson(KZ_GEOJSON, GeoJSONMapping(
        code="ADM1_PCODE", names={"en": "ADM1_EN"}, repair=True)))
    declaration = declare(scheme, regions, areas=("KAZ004", "KAZ001"))
    root = render(declaration, scheme, regions, schema)
    polygons = root.findall("cap:info/cap:area/cap:polygon", NS)
    assert polygons and all(len(p.text.split(" ")) <= MAX_RING_POINTS for p in polygons)


@pytest.mark.parametrize("expires", [None, JAN_7 + timedelta(days=10, microseconds=5)])
def test_expires_only_when_the_declaration_ends(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema, expires: datetime | None) -> None:
    root = render(declare(scheme, tree, expires=expires), scheme, tree, schema)
    found = texts(root, "cap:info/cap:expires")
    assert found == ([] if expires is None else ["2022-01-17T03:00:00-00:00"] * 3)


def test_level_texts_fill_what_the_statement_leaves_out(
        scheme: Scheme, tree: AreaTree, schema: etree.XMLSchema) -> None:
    root = render(declare(scheme, tree, level="moderate"), scheme, tree, schema)
    moderate = scheme.level("moderate")
    kk = root.find("cap:info", NS)
    assert kk.findtext("cap:responseType", namespaces=NS) == "Prepare"
    assert kk.findtext("cap:description", namespaces=NS) == moderate.meaning["kk"]
    assert kk.findtext("cap:instruction", namespaces=NS) == "\n".join(moderate.guidance["kk"])
    assert pairs(kk, "parameter")[2] == ("measures", "; ".join(moderate.measures["kk"]))
    assert root.find("cap:info/cap:web", NS) is None


def test_same_input_same_bytes(scheme: Scheme, tree: AreaTree) -> None:
    declaration = declare(scheme, tree, areas=("KZ-75-SQ", "KZ-TWO", "KZ"))

    def make() -> bytes:
        return cap_alert(declaration, scheme=scheme, tree=tree, sender=SENDER, sent=JAN_7,
                         msg_type=MsgType.ALERT)

    assert make() == make()


@pytest.mark.parametrize("sender", ["Counter terrorism", "kz,gov", "a<b", "a&b", ""])
def test_sender_cap_cannot_carry_is_refused(scheme: Scheme, tree: AreaTree, sender: str) -> None:
    with pytest.raises(InvalidInput, match="space, comma, '<' or '&'"):
        cap_alert(declare(scheme, tree), scheme=scheme, tree=tree, sender=sender, sent=JAN_7,
                  msg_type=MsgType.ALERT)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"msg_type": MsgType.UPDATE}, "CAP Update names no earlier message"),
        ({"msg_type": MsgType.CANCEL}, "CAP Cancel names no earlier message"),
        ({"references": [Reference(SENDER, "x", JAN_7)]}, "Alert cannot reference"),
        ({"status": "Real"}, "status 'Real' is not a CAP status"),
        ({"sent": datetime(2022, 1, 7)}, "sent time 2022-01-07T00:00:00 has no UTC offset"),
        ({"note": "bell \x07"}, "CAP <note> text .* characters XML cannot carry"),
    ],
)
def test_what_cap_cannot_express_is_refused(
        scheme: Scheme, tree: AreaTree, options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"sender": SENDER, "sent": JAN_7, "msg_type": MsgType.ALERT,
                                 **options}
    with pytest.raises(InvalidInput, match=message):
        cap_alert(declare(scheme, tree), scheme=scheme, tree=tree, **arguments)


def test_identifiers_and_references_refuse_spaces_and_commas() -> None:
    assert identifier_of(SENDER, "20220107-0001") == "kz.antiterror.gov.20220107-0001"
    with pytest.raises(InvalidInput, match="declaration id 'a b'"):
        identifier_of(SENDER, "a b")
    with pytest.raises(InvalidInput, match="referenced identifier 'x,y'"):
        Reference(SENDER, "x,y", JAN_7)
    assert Reference(SENDER, "x", datetime(2022, 1, 7, 9, tzinfo=timezone(
        timedelta(hours=6)))).text == f"{SENDER},x,2022-01-07T03:00:00-00:00"


def test_unknown_area_and_other_scheme_are_refused(scheme: Scheme, tree: AreaTree) -> None:
    declaration = declare(scheme, tree)
    small = AreaTree.build([tree.get("KZ")])
    with pytest.raises(NotFound, match="area 'KZ-75' is not known"):
        cap_alert(declaration, scheme=scheme, tree=small, sender=SENDER, sent=JAN_7,
                  msg_type=MsgType.ALERT)
    other = next(s for s in (load_scheme_file(p)[0] for p in builtin_scheme_files())
                 if s.key == "uk-terror")
    with pytest.raises(InvalidInput, match="is of scheme 'kz-terror', not 'uk-terror'"):
        cap_alert(declaration, scheme=other, tree=tree, sender=SENDER, sent=JAN_7,
                  msg_type=MsgType.ALERT)
