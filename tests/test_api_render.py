"""The JSON API v1 documents, the query parser, and the OpenAPI document that describes both.

Every document api.py emits is validated against the response schema the OpenAPI document
gives its path, so the description cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import request, utc

from tocsin import demo
from tocsin.domain.area import Area, AreaKind
from tocsin.domain.errors import InvalidInput, NotFound
from tocsin.domain.times import iso
from tocsin.render import api
from tocsin.render.errors import error_of
from tocsin.render.openapi import openapi_document
from tocsin.render.query import ParamKind, param_schema, parse_query
from tocsin.service import commands, people, queries
from tocsin.service.queries import World
from tocsin.store.database import connect

JAN_8 = utc(2022, 1, 8, 6)
JAN_15 = utc(2022, 1, 15)
COUNTRYWIDE = iso(demo.COUNTRYWIDE_AT)  # 2022-01-07T03:00:00Z
SWITCH = iso(demo.STEP_DOWN_EFFECTIVE)  # 2022-01-13T18:00:00Z
PATHS = {"/api/v1/levels": "get", "/api/v1/areas/{code}": "get",
         "/api/v1/declarations": "get", "/api/v1/declarations/{id}": "get",
         "/api/v1/schemes": "get", "/api/v1/audit/head": "get", "/api/v1/history": "get",
         "/api/v1/push/subscriptions": "post", "/api/v1/push/key": "get"}
"""Every path anyone may call without a token, in the document's order, with its method."""


@dataclass(frozen=True)
class Demo:
    world: World
    replay: demo.Replay
    draft: str
    url: str

    @property
    def published(self) -> list[str]:
        return [self.replay.countrywide.id, *(d.id for d in self.replay.step_down)]


@pytest.fixture(scope="module")
def dem(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The January 2022 replay, plus one draft that must never show."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'demo.sqlite3'}"
    engine = connect(url)
    replay = demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    [draft] = commands.declare(engine, [request("high", ("KZ-75",), headline="Not yet")],
                               now=utc(2022, 1, 20), actor="tester", publish=False)
    world = queries.load_world(engine)
    engine.dispose()
    return Demo(world, replay, draft.id, url)


# -- levels and areas ------------------------------------------------------------------------

def test_levels_on_8_january_are_critical_everywhere_inherited_from_the_country(
        dem: Demo) -> None:
    doc = api.levels_doc(dem.world, JAN_8)
    assert doc["at"] == "2022-01-08T06:00:00Z"
    levels = doc["levels"]
    assert len(levels) == 21 and {x["scheme"] for x in levels} == {"kz-terror"}
    assert {x["level"] for x in levels} == {"critical"}
    by_area = {x["area"]: x for x in levels}
    assert by_area["KZ"]["inherited_from"] is None
    assert {x["inherited_from"] for code, x in by_area.items() if code != "KZ"} == {"KZ"}
    almaty = by_area["KZ-75"]
    assert list(almaty) == ["area", "area_name", "scheme", "level", "name", "colour",
                            "baseline", "inherited_from", "since", "until", "sources", "beneath",
                            "links"]
    assert almaty["area_name"]["en"] == "Almaty" and almaty["name"]["en"] == "Critical"
    assert almaty["colour"].startswith("#") and almaty["baseline"] is False
    assert (almaty["since"], almaty["until"]) == (COUNTRYWIDE, None)  # critical on after
    assert (by_area["KZ-15"]["since"], by_area["KZ-15"]["until"]) == (COUNTRYWIDE, SWITCH)
    assert almaty["sources"] == [{"declaration": dem.replay.countrywide.id, "via": "KZ",
                                  "effective": COUNTRYWIDE, "ends": SWITCH}]
    assert almaty["links"] == {"area": "/api/v1/areas/KZ-75", "page": "/en/areas/KZ-75"}


def test_levels_before_any_declaration_are_none(dem: Demo) -> None:
    assert api.levels_doc(dem.world, utc(2022, 1, 1))["levels"] == []  # none above baseline
    doc = api.levels_doc(dem.world, utc(2022, 1, 1), level="any")
    assert {(x["level"], x["name"], x["colour"], x["since"]) for x in doc["levels"]} == {
        (None, None, None, None)}


def test_area_document_for_almaty_on_15_january(dem: Demo) -> None:
    doc = api.area_doc(dem.world, "KZ-75", JAN_15)
    assert doc["at"] == "2022-01-15T00:00:00Z"
    assert doc["area"]["code"] == "KZ-75" and doc["area"]["parent"] == "KZ"
    assert (doc["ancestors"], doc["children"]) == (["KZ"], [])
    [level] = doc["levels"]
    assert level["scheme"] == "kz-terror" and level["level"] == "critical"
    assert level["inherited_from"] is None  # its own declaration since 14 January
    critical_regions = dem.replay.step_down[0]
    assert [s["declaration"] for s in level["sources"]] == [critical_regions.id]
    assert (level["since"], level["until"]) == (COUNTRYWIDE, None)  # no break at the switch
    assert level["timeline"] == [
        {"level": None, "start": None, "end": COUNTRYWIDE},
        {"level": "critical", "start": COUNTRYWIDE, "end": None},
    ]
    assert level["explanation"].startswith("KZ-75 Almaty is Critical (red) because declaration")
    assert set(level["meaning"]) == {"kk", "ru", "en"}
    assert level["measures"]["en"] and level["guidance"]["en"]
    assert doc["links"] == {"self": "/api/v1/areas/KZ-75", "page": "/en/areas/KZ-75"}


def test_area_timeline_of_a_region_stepped_down_for_ten_days(dem: Demo) -> None:
    [level] = api.area_doc(dem.world, "KZ-15", JAN_15)["levels"]
    assert level["level"] == "moderate" and level["since"] == SWITCH
    assert [(p["level"], p["start"], p["end"]) for p in level["timeline"]] == [
        (None, None, COUNTRYWIDE), ("critical", COUNTRYWIDE, SWITCH),
        ("moderate", SWITCH, "2022-01-23T18:00:00Z"), (None, "2022-01-23T18:00:00Z", None)]


def test_area_without_a_level_has_no_meaning(dem: Demo) -> None:
    [level] = api.area_doc(dem.world, "KZ", JAN_15)["levels"]
    assert level["level"] is None
    assert (level["name"], level["meaning"], level["measures"], level["guidance"]) == (
        None, None, None, None)
    assert "has no kz-terror level" in level["explanation"]


def test_country_document_lists_its_regions(dem: Demo) -> None:
    doc = api.area_doc(dem.world, "KZ", JAN_8)
    assert doc["ancestors"] == [] and len(doc["children"]) == 20


# -- declarations ----------------------------------------------------------------------------

def test_declarations_are_newest_first_and_paginate(dem: Demo) -> None:
    first = api.declarations_doc(dem.world, limit=2)
    assert (first["total"], first["limit"], first["offset"]) == (6, 2, 0)
    assert first["links"] == {"self": "/api/v1/declarations?limit=2",
                              "next": "/api/v1/declarations?limit=2&offset=2", "prev": None}
    seen = []
    for offset in (0, 2, 4):
        page = api.declarations_doc(dem.world, limit=2, offset=offset)
        seen += [d["id"] for d in page["items"]]
    assert sorted(seen) == sorted(dem.published)
    assert seen[-1] == dem.replay.countrywide.id  # the oldest comes last
    effective = [d.effective for d in (dem.world.declarations[i] for i in seen)]
    assert effective == sorted(effective, reverse=True)

    middle = api.declarations_doc(dem.world, limit=2, offset=2)["links"]
    assert middle["prev"] == "/api/v1/declarations?limit=2"
    assert middle["next"] == "/api/v1/declarations?limit=2&offset=4"
    last = api.declarations_doc(dem.world, limit=2, offset=4)
    assert len(last["items"]) == 2 and last["links"]["next"] is None

    beyond = api.declarations_doc(dem.world, limit=2, offset=100)
    assert beyond["items"] == [] and beyond["total"] == 6
    assert beyond["links"]["next"] is None
    assert beyond["links"]["prev"] == "/api/v1/declarations?limit=2&offset=4"  # the last page


def test_default_page_holds_everything_with_short_links(dem: Demo) -> None:
    doc = api.declarations_doc(dem.world)
    assert doc["limit"] == api.DEFAULT_LIMIT and len(doc["items"]) == 6
    assert doc["links"] == {"self": "/api/v1/declarations", "next": None, "prev": None}


def test_declaration_items_carry_their_replacements(dem: Demo) -> None:
    items = {d["id"]: d for d in api.declarations_doc(dem.world)["items"]}
    countrywide = items[dem.replay.countrywide.id]
    assert countrywide["replaced_by"] == sorted(d.id for d in dem.replay.step_down)
    assert {d["status"] for d in items.values()} == {"published"}


def test_declarations_filter_by_scheme_area_and_time(dem: Demo) -> None:
    def ids(**filters: Any) -> set[str]:
        return {d["id"] for d in api.declarations_doc(dem.world, **filters)["items"]}

    countrywide, critical, _high, moderate_10, *_ = dem.published
    assert ids(scheme="kz-terror") == set(dem.published)
    assert ids(scheme="uk-terror") == set()
    assert ids(area="KZ") == {countrywide}
    assert ids(area="KZ-75") == {countrywide, critical}
    assert ids(area="KZ-15") == {countrywide, moderate_10}
    assert ids(since=demo.STEP_DOWN_EFFECTIVE) == set(dem.published) - {countrywide}
    assert ids(until=demo.STEP_DOWN_EFFECTIVE) == {countrywide}
    assert ids(since=demo.STEP_DOWN_EFFECTIVE, until=demo.STEP_DOWN_EFFECTIVE) == set()
    assert ids(area="KZ-75", since=demo.STEP_DOWN_EFFECTIVE) == {critical}


def test_links_keep_the_filters(dem: Demo) -> None:
    doc = api.declarations_doc(dem.world, scheme="kz-terror", area="KZ-75",
                               since=utc(2022, 1, 1), until=utc(2022, 2, 1), limit=1)
    query = "scheme=kz-terror&area=KZ-75&since=2022-01-01T00:00:00Z&until=2022-02-01T00:00:00Z"
    assert doc["total"] == 2
    assert doc["links"] == {"self": f"/api/v1/declarations?{query}&limit=1",
                            "next": f"/api/v1/declarations?{query}&limit=1&offset=1",
                            "prev": None}


def test_drafts_are_never_public(dem: Demo) -> None:
    assert dem.draft in dem.world.declarations
    assert dem.draft not in {d["id"] for d in api.declarations_doc(dem.world)["items"]}
    assert dem.draft not in {d["id"] for d in api.declarations_doc(
        dem.world, area="KZ-75", limit=500)["items"]}
    assert dem.draft not in {d["id"] for d in api.history_doc(dem.world)["declarations"]}
    with pytest.raises(NotFound, match=r"declaration '.*' is not known"):
        api.declaration_doc(dem.world, dem.draft)


def test_one_declaration(dem: Demo) -> None:
    doc = api.declaration_doc(dem.world, dem.replay.countrywide.id)
    assert doc["id"] == dem.replay.countrywide.id and doc["areas"] == ["KZ"]
    assert doc["effective"] == COUNTRYWIDE and doc["status"] == "published"
    assert doc["texts"]["en"]["headline"].startswith("Critical (red)")
    assert doc["replaced_by"] == sorted(d.id for d in dem.replay.step_down)


@pytest.mark.parametrize(("call", "problem"), [
    (lambda w: api.area_doc(w, "KZ-99", JAN_8), "area 'KZ-99' is not known"),
    (lambda w: api.declaration_doc(w, "20220107-00000000"),
     "declaration '20220107-00000000' is not known"),
    (lambda w: api.declarations_doc(w, area="KZ-99"), "area 'KZ-99' is not known"),
    (lambda w: api.declarations_doc(w, scheme="kz-teror"), "scheme 'kz-teror' is not known"),
    (lambda w: api.history_doc(w, area="kz-75"), "area 'kz-75' is not known"),
    (lambda w: api.history_doc(w, scheme="nope"), "scheme 'nope' is not known"),
])
def test_unknown_names_are_not_found_with_a_fix(dem: Demo, call: Callable[[World], Any],
                                               problem: str) -> None:
    with pytest.raises(NotFound) as caught:
        call(dem.world)
    assert caught.value.problem == problem and caught.value.fix
    assert error_of(caught.value)["error"]["status"] == 404


def test_unknown_names_suggest_close_matches(dem: Demo) -> None:
    with pytest.raises(NotFound) as caught:
        api.declarations_doc(dem.world, scheme="kz-teror")
    assert caught.value.fix
    assert caught.value.fix.startswith("did you mean 'kz-terror'")
    assert caught.value.fix.endswith("try /api/v1/schemes")


# -- schemes and history ---------------------------------------------------------------------

def test_schemes_document_lists_every_scheme_by_key(dem: Demo) -> None:
    keys = [s["key"] for s in api.schemes_doc(dem.world)["schemes"]]
    assert keys == sorted(dem.world.schemes) and "kz-terror" in keys


def test_history_of_one_region_within_a_span(dem: Demo) -> None:
    doc = api.history_doc(dem.world, area="KZ-15", scheme="kz-terror",
                          since=utc(2022, 1, 10), until=utc(2022, 1, 20))
    assert (doc["area"], doc["scheme"], doc["since"], doc["until"]) == (
        "KZ-15", "kz-terror", "2022-01-10T00:00:00Z", "2022-01-20T00:00:00Z")
    [timeline] = doc["timelines"]
    assert timeline["area"] == "KZ-15"
    assert [(p["level"], p["start"], p["end"]) for p in timeline["periods"]] == [
        ("critical", COUNTRYWIDE, SWITCH), ("moderate", SWITCH, "2022-01-23T18:00:00Z")]
    moderate_10 = dem.replay.step_down[2]
    assert doc["declarations"] == [{
        "id": moderate_10.id, "scheme": "kz-terror", "level": "moderate",
        "areas": list(moderate_10.areas), "effective": SWITCH,
        "links": {"self": f"/api/v1/declarations/{moderate_10.id}"}}]


def test_history_of_everything_is_oldest_first(dem: Demo) -> None:
    doc = api.history_doc(dem.world)
    assert len(doc["timelines"]) == 21
    effective = [d["effective"] for d in doc["declarations"]]
    assert effective == sorted(effective) and effective[0] == COUNTRYWIDE
    assert {d["id"] for d in doc["declarations"]} == set(dem.published)


def test_history_of_everything_is_bounded_and_says_where_the_rest_is(
        dem: Demo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without an area: the newest HISTORY_DECLARATIONS declarations (oldest first among
    them), how many there are, a link to the rest; the timelines of the top two levels of
    the tree only, however deep it goes."""
    monkeypatch.setattr(api, "HISTORY_DECLARATIONS", 2)
    doc = api.history_doc(dem.world)
    def order(key: str) -> tuple[Any, str]:
        found = dem.world.declaration(key)
        assert found is not None
        return found.effective, key
    newest = sorted(dem.published, key=order)[-2:]
    assert [d["id"] for d in doc["declarations"]] == newest
    assert doc["declarations_total"] == len(dem.published)
    assert doc["more_declarations"] == "/api/v1/declarations?limit=2&offset=2"
    engine = connect(f"sqlite:///{tmp_path / 'deep.sqlite3'}")
    demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    commands.import_areas(engine, [Area("KZ-75-D001", AreaKind.DISTRICT, {"en": "Almaly"},
                                        parent="KZ-75")], now=utc(2022, 1, 20), actor="tester")
    deep = queries.load_world(engine)
    engine.dispose()
    shown = {t["area"] for t in api.history_doc(deep)["timelines"]}
    assert "KZ" in shown and "KZ-75" in shown and "KZ-75-D001" not in shown
    assert [t["area"] for t in api.history_doc(deep, area="KZ-75-D001")["timelines"]] == [
        "KZ-75-D001"]


def test_history_of_an_empty_span_is_empty(dem: Demo) -> None:
    doc = api.history_doc(dem.world, since=utc(2022, 1, 20), until=utc(2022, 1, 10))
    assert all(t["periods"] == [] for t in doc["timelines"]) and doc["declarations"] == []


def test_documents_are_deterministic(dem: Demo) -> None:
    engine = connect(dem.url)
    again = queries.load_world(engine)
    engine.dispose()
    for make in (lambda w: api.levels_doc(w, JAN_15), lambda w: api.area_doc(w, "KZ", JAN_15),
                 lambda w: api.declarations_doc(w), lambda w: api.history_doc(w),
                 lambda w: api.schemes_doc(w)):
        assert json.dumps(make(dem.world), ensure_ascii=False) == json.dumps(
            make(again), ensure_ascii=False)


# -- query strings ---------------------------------------------------------------------------

ALL = {"at": ParamKind.INSTANT, "q": ParamKind.TEXT, "area": ParamKind.AREA,
       "scheme": ParamKind.SCHEME, "limit": ParamKind.LIMIT, "offset": ParamKind.OFFSET,
       "lang": ParamKind.LANGUAGE}


def test_parse_query_converts_each_kind() -> None:
    parsed = parse_query([("at", "2022-01-07T09:00+06:00"), ("q", "Almaty"), ("area", "KZ-75"),
                          ("scheme", "kz-terror"), ("limit", "500"), ("offset", "0"),
                          ("lang", "en-GB")], ALL)
    assert parsed == {"at": demo.COUNTRYWIDE_AT, "q": "Almaty", "area": "KZ-75",
                      "scheme": "kz-terror", "limit": 500, "offset": 0, "lang": "en-GB"}
    assert parse_query([], ALL) == {}


@pytest.mark.parametrize("text", ["2022-01-07T03:00:00Z", "2022-01-07T09:00:00.000+06:00",
                                  "2022-01-07T09:00 06:00"])  # a bare '+' decodes to a space
def test_instants_in_every_accepted_form(text: str) -> None:
    assert parse_query([("at", text)], ALL)["at"] == demo.COUNTRYWIDE_AT


@pytest.mark.parametrize(("params", "problem", "fix"), [
    ([("at", "2022-13-01")], "query parameter at='2022-13-01' is not an ISO 8601 time",
     "with a UTC offset"),
    ([("at", "2022-13-01T00:00Z")], "query parameter at='2022-13-01T00:00Z' is not an ISO 8601 "
     "time", "e.g. 2022-01-07T00:00+06:00"),
    ([("at", "2022-01-07T00:00")], "query parameter at='2022-01-07T00:00' is not an ISO 8601 "
     "time", "with a UTC offset"),
    ([("at", "0999-12-31T00:00Z")], "is not an ISO 8601 time", "years 1000 to 8999"),
    ([("at", "")], "query parameter 'at' is empty", "give an ISO 8601 time or leave it out"),
    ([("limit", "")], "query parameter 'limit' is empty", "or leave it out"),
    ([("sort", "id")], "query parameter 'sort' is not known", "use at, q, area"),
    ([("at", "2022-01-07T00:00Z"), ("at", "2022-01-08T00:00Z")],
     "query parameter 'at' is given twice", "give it once"),
    ([("limit", "0")], "query parameter limit='0' is not a whole number from 1 to 500",
     "limit=50"),
    ([("limit", "501")], "query parameter limit='501' is not a whole number from 1 to 500",
     "limit=50"),
    ([("limit", "ten")], "limit='ten' is not a whole number", "limit=50"),
    ([("limit", "+5")], "limit='+5' is not a whole number", "limit=50"),
    ([("limit", "1.5")], "limit='1.5' is not a whole number", "limit=50"),
    ([("limit", "٥")], "limit='٥' is not a whole number", "limit=50"),
    ([("offset", "-1")], "query parameter offset='-1' is not a whole number of 0 or more",
     "offset=0"),
    ([("offset", "9" * 5000)], "is not a whole number of 0 or more", "offset=0"),
    ([("area", "KZ 75")], "query parameter area='KZ 75' is not an area code", "e.g. KZ-75"),
    ([("area", "KZ-75\n")], "area='KZ-75\\n' is not an area code", "e.g. KZ-75"),
    ([("scheme", "KZ-Terror")], "query parameter scheme='KZ-Terror' is not a scheme key",
     "/api/v1/schemes"),
    ([("lang", "english")], "query parameter lang='english' is not a language tag", "'en'"),
    ([("q", "x" * 201)], "query parameter q='xxxx", "shorten it"),
])
def test_parse_query_refuses_with_the_parameter_named(params: list[tuple[str, str]],
                                                      problem: str, fix: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_query(params, ALL)
    assert not isinstance(caught.value, NotFound)
    assert problem in caught.value.problem
    assert caught.value.fix and fix in caught.value.fix
    assert error_of(caught.value)["error"]["status"] == 400


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_query([("area", "K" * 5000)], ALL)
    assert len(caught.value.problem) < 200


def test_endpoints_without_parameters_refuse_any() -> None:
    with pytest.raises(InvalidInput, match="takes no query parameters"):
        parse_query([("at", "2022-01-07T00:00Z")], api.NO_PARAMS)


# -- the OpenAPI document --------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi_document()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_openapi_structure(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "tocsin API" and spec["info"]["version"] == "1"
    public = {p: item for p, item in spec["paths"].items()
              if not p.startswith("/api/v1/authority")}
    assert list(public) == list(PATHS)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert ("requestBody" in op) == ("415" in op["responses"]), path
            if path in public or path == "/api/v1/authority/password-reset":
                assert "security" not in op, path  # (there the reset link is the credential)
                continue
            assert op["security"] == [{"bearer": []}], path
            assert {"401", "403", "429"} <= set(op["responses"]), path
    for path, item in public.items():
        assert set(item) <= {PATHS[path], "parameters"}, path
        op = item[PATHS[path]]
        success = "201" if PATHS[path] == "post" else "200"
        assert set(op["responses"]) >= {success, "400"}, path
        templated = {p["name"] for p in item.get("parameters", ())}
        assert templated == {part[1:-1] for part in path.split("/") if part.startswith("{")}
        if templated or path in ("/api/v1/declarations", "/api/v1/history"):
            assert "404" in op["responses"], path
        for param in op["parameters"]:
            assert param["in"] == "query" and param["required"] is False
    for ref in _refs(spec):
        assert _resolve(spec, ref) is not None, ref
    json.dumps(spec)  # serialisable as is


def test_openapi_query_parameters_are_the_parsers(spec: dict[str, Any]) -> None:
    maps = {"/api/v1/levels": api.LEVELS_PARAMS, "/api/v1/areas/{code}": api.AREA_PARAMS,
            "/api/v1/declarations": api.DECLARATIONS_PARAMS,
            "/api/v1/declarations/{id}": api.NO_PARAMS, "/api/v1/schemes": api.NO_PARAMS,
            "/api/v1/history": api.HISTORY_PARAMS}
    for path, allowed in maps.items():
        params = spec["paths"][path]["get"]["parameters"]
        assert [p["name"] for p in params] == list(allowed)
        for param in params:
            expected = param_schema(allowed[param["name"]])
            assert {k: v for k, v in param["schema"].items() if k != "default"} == expected


def test_openapi_request_patterns_say_what_the_server_checks(spec: dict[str, Any]) -> None:
    """A text the server refuses as empty is what str.strip() empties, in all of Unicode; a
    token lasts whole days up to the longest lifetime."""
    schemas = spec["components"]["schemas"]
    not_blank = re.compile(schemas["ReasonInput"]["properties"]["reason"]["pattern"])
    kept = [chr(c) for c in range(sys.maxunicode + 1) if not_blank.search(chr(c))]
    assert kept == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).strip()]
    expires = schemas["TokenInput"]["properties"]["expires"]["anyOf"][0]["pattern"]
    days = [n for n in range(1000) if re.search(expires, f"P{n}D")]
    assert days == list(range(1, people.LONGEST_TOKEN_LIFETIME.days + 1))


def test_openapi_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(spec)
        return
    # schemathesis (a dev dependency) carries the official OpenAPI 3.1 meta-schema.
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    errors = _validator(definitions.OPENAPI_31)(spec)
    assert errors == []


# -- the documents against their schemas -----------------------------------------------------

def _validator(schema: dict[str, Any]) -> Callable[[Any], list[str]]:
    """A Draft 2020-12 validator that checks formats, from jsonschema or jsonschema_rs."""
    try:
        import jsonschema
    except ImportError:
        import jsonschema_rs

        rs = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        return lambda instance: [f"{e.instance_path}: {e.message}"
                                 for e in rs.iter_errors(instance)]
    cls = jsonschema.Draft202012Validator
    py = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return lambda instance: [f"{list(e.absolute_path)}: {e.message}"
                             for e in py.iter_errors(instance)]


def _response_validator(spec: dict[str, Any], path: str,
                        status: str = "200") -> Callable[[Any], list[str]]:
    response = spec["paths"][path]["get"]["responses"][status]
    if "$ref" in response:
        response = _resolve(spec, response["$ref"])
    schema = response["content"]["application/json"]["schema"]
    return _validator({**schema, "components": spec["components"]})


def _check(spec: dict[str, Any], path: str, docs: list[Any], status: str = "200") -> None:
    validate = _response_validator(spec, path, status)
    for doc in docs:
        wire = json.loads(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        assert validate(wire) == [], (path, doc)


INSTANTS = [utc(2021, 12, 1), demo.COUNTRYWIDE_AT, JAN_8, JAN_15, utc(2022, 1, 25),
            utc(2022, 2, 1), utc(2030, 1, 1)]


def test_levels_documents_match_the_spec(spec: dict[str, Any], dem: Demo) -> None:
    _check(spec, "/api/v1/levels", [api.levels_doc(dem.world, at) for at in INSTANTS])


def test_area_documents_match_the_spec(spec: dict[str, Any], dem: Demo) -> None:
    _check(spec, "/api/v1/areas/{code}", [api.area_doc(dem.world, code, at)
                                          for code in dem.world.tree.order
                                          for at in (JAN_8, JAN_15, utc(2022, 2, 1))])


def test_declaration_documents_match_the_spec(spec: dict[str, Any], dem: Demo) -> None:
    pages = [api.declarations_doc(dem.world, limit=limit, offset=offset)
             for limit in (1, 2, 500) for offset in (0, 1, 5, 6, 100)]
    pages.append(api.declarations_doc(dem.world, scheme="uk-terror"))
    _check(spec, "/api/v1/declarations", pages)
    _check(spec, "/api/v1/declarations/{id}",
           [api.declaration_doc(dem.world, i) for i in dem.published])


def test_scheme_and_history_documents_match_the_spec(spec: dict[str, Any], dem: Demo) -> None:
    _check(spec, "/api/v1/schemes", [api.schemes_doc(dem.world)])
    _check(spec, "/api/v1/history", [
        api.history_doc(dem.world), api.history_doc(dem.world, area="KZ-75"),
        api.history_doc(dem.world, scheme="kz-terror", since=JAN_8),
        api.history_doc(dem.world, area="KZ-15", since=JAN_8, until=utc(2022, 1, 20)),
    ])


def test_errors_match_the_spec(spec: dict[str, Any], dem: Demo) -> None:
    with pytest.raises(InvalidInput) as bad:
        parse_query([("limit", "0")], api.DECLARATIONS_PARAMS)
    with pytest.raises(NotFound) as missing:
        api.area_doc(dem.world, "KZ-99", JAN_8)
    _check(spec, "/api/v1/declarations", [error_of(bad.value)], "400")
    _check(spec, "/api/v1/areas/{code}", [error_of(missing.value)], "404")


def test_schemas_refuse_what_the_code_does_not_emit(spec: dict[str, Any], dem: Demo) -> None:
    validate = _response_validator(spec, "/api/v1/levels")
    doc = api.levels_doc(dem.world, JAN_8)
    assert validate(doc) == []
    doc["levels"][0]["extra"] = 1
    doc["at"] = "8 January"
    assert len(validate(doc)) == 2


@pytest.mark.parametrize(("kind", "good", "bad"), [
    (ParamKind.INSTANT, ["2022-01-07T00:00:00Z", "1000-01-01T00:00:00+14:00",
                         "8999-12-31T23:59:59.999999-12:00"],
     ["2022-01-07T00:00:00", "2022-02-30T00:00:00Z", "0999-12-31T23:00:00Z",
      "9000-01-01T00:00:00Z", "2022-01-07t00:00:00z", "2022-01-07T24:00:00Z", ""]),
    (ParamKind.AREA, ["KZ", "KZ-75", "a.b_c"], ["-KZ", "KZ 75", "K" * 65, ""]),
    (ParamKind.SCHEME, ["kz-terror", "uk"], ["KZ", "kz_terror", ""]),
    (ParamKind.LANGUAGE, ["en", "en-GB", "kk"], ["EN", "e", "en_GB", ""]),
])
def test_parameter_schemas_accept_what_the_parser_accepts(
        kind: ParamKind, good: list[str], bad: list[str]) -> None:
    validate = _validator(param_schema(kind))
    for value in good:
        assert validate(value) == [], value
        parse_query([("x", value)], {"x": kind})
    for value in bad:
        assert validate(value) != [], value
        with pytest.raises(InvalidInput):
            parse_query([("x", value)], {"x": kind})


def test_the_spec_is_the_same_for_every_call(spec: dict[str, Any]) -> None:
    assert json.dumps(openapi_document()) == json.dumps(spec)


def test_levels_filter_by_level_and_subtree_and_page_with_a_cursor(dem: Demo) -> None:
    """On 15 January: four regions critical, Astana and Shymkent high, the rest moderate."""
    critical = api.levels_doc(dem.world, JAN_15, level="critical")
    assert {x["area"] for x in critical["levels"]} == {"KZ-75", "KZ-19", "KZ-31", "KZ-33"}
    inside = api.levels_doc(dem.world, JAN_15, area="KZ-19")
    assert [x["area"] for x in inside["levels"]] == ["KZ-19"]
    pages, doc = [], api.levels_doc(dem.world, JAN_15, limit=7)
    while True:
        pages.append([x["area"] for x in doc["levels"]])
        if doc["next"] is None:
            break
        cursor = doc["next"].rpartition("cursor=")[2]
        doc = api.levels_doc(dem.world, JAN_15, limit=7, cursor=cursor)
    everything = [x["area"] for x in api.levels_doc(dem.world, JAN_15)["levels"]]
    assert [code for page in pages for code in page] == everything and len(pages) > 1
    assert all(len(page) <= 7 for page in pages)
