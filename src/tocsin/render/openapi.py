"""The OpenAPI 3.1 description of the public JSON API v1 (served at /openapi.json).

Query parameters come from the maps api.py declares and the schemas query.py derives from
its own patterns; the response schemas mirror api.py and data.py, and tests validate every
document api.py emits against them, so the description cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from tocsin.domain.area import CODE_PATTERN, AreaKind
from tocsin.domain.cap import Category, Certainty, Severity, Urgency
from tocsin.render import api, openapi_authority
from tocsin.render.errors import CODES
from tocsin.render.query import LIMIT_MAX, ParamKind, param_schema

JSON = "application/json"
Schema = dict[str, Any]

_PARAMETERS = {
    "at": ("The instant to answer for; the current time when left out. ISO 8601 with a UTC "
           "offset (RFC 3339; seconds may be left out), in the years 1000 to 8999.",
           "2022-01-08T12:00:00+06:00"),
    "scheme": ("Only this level scheme (see /api/v1/schemes); 404 when it is not known.",
               "kz-terror"),
    "area": ("Only this area: declarations naming it or an area containing it; 404 when "
             "it is not known.", "KZ-75"),
    "since": ("Only what takes effect (or holds) at or after this instant.",
              "2022-01-01T00:00:00Z"),
    "until": ("Only what takes effect (or holds) before this instant.", "2022-02-01T00:00:00Z"),
    "limit": (f"How many items per page, 1 to {LIMIT_MAX}.", api.DEFAULT_LIMIT),
    "level": ("Only areas at this level (a level key of the scheme), or 'any' for every area "
              "including those at the baseline or without a level; by default only areas "
              "above the scheme's baseline.", "critical"),
    "changed_since": ("Only areas whose documents changed at or after this instant: their "
                      "level, its explanation, or what is in force inside them.",
                      "2022-01-13T00:00:00+06:00"),
    "cursor": ("Where the page starts: copy it from the previous page's 'next' link.",
               "a3otdGVycm9yOjIw"),
    "offset": ("How many declarations to skip, for the next pages.", 0),
}
_DEFAULTS = {"limit": api.DEFAULT_LIMIT, "offset": 0}


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1.0 document, the same for every call."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tocsin API",
            "version": "1",
            "summary": "Colour-coded threat levels declared for a country and its areas.",
            "description": (
                "Read the current and past threat levels, the declarations that set them, "
                "and the level schemes: no login is needed. Authorities declare, approve and "
                "manage people under /api/v1/authority with a bearer token. Every instant "
                "is written in UTC (2022-01-07T03:00:00Z). A bad query answers 400 and an "
                "unknown area, scheme or declaration answers 404, both with the Error shape."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": {**_paths(), **openapi_authority.paths()},
        "components": {
            "schemas": {**_schemas(), **openapi_authority.schemas()},
            "responses": {**_responses(), **openapi_authority.responses(_error)},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API token (tocsin_…) from 'tocsin tokens create' or the "
                               "console; it acts for its user within its scopes."}},
        },
        "tags": [{"name": "public", "description": "Open to anyone, no login."},
                 {"name": "authority", "description": "Declaring, approving, people and "
                  "the audit log, with a bearer token."}],
    }


def _paths() -> dict[str, Any]:
    code = {"name": "code", "in": "path", "required": True,
            "description": "The area's code (ISO 3166 where one exists).",
            "schema": {"type": "string", "pattern": CODE_PATTERN.pattern}, "example": "KZ-75"}
    declaration_id = {"name": "id", "in": "path", "required": True,
                      "description": "The declaration's id.",
                      "schema": {"type": "string", "pattern": CODE_PATTERN.pattern},
                      "example": "20220107-3fa9c2d1"}
    return {
        "/api/v1/levels": _get(
            "levels", "Areas with a level, under every scheme in use",
            "Per scheme in use (every scheme when none has a declaration yet) and per area, "
            "parents before children; by default only areas above the scheme's baseline, "
            "in pages (follow 'next').", api.LEVELS_PARAMS, "Levels", not_found=True,
            defaults={"limit": api.LEVELS_LIMIT}),
        "/api/v1/areas/{code}": {"parameters": [code], **_get(
            "area", "One area's levels, explained, with their timelines",
            "The area, its place in the tree, and per scheme in use its level at the instant, "
            "why it holds, what it means, and every period of the area's level.",
            api.AREA_PARAMS, "AreaDocument", not_found=True)},
        "/api/v1/declarations": _get(
            "declarations", "Published declarations, newest first",
            "One page of published declarations, newest first by effective time. The links "
            "lead to the next and previous pages with the same filters.",
            api.DECLARATIONS_PARAMS, "Declarations", not_found=True),
        "/api/v1/declarations/{id}": {"parameters": [declaration_id], **_get(
            "declaration", "One published declaration", "Drafts are never public.",
            api.NO_PARAMS, "Declaration", not_found=True)},
        "/api/v1/schemes": _get(
            "schemes", "Every level scheme", "Each scheme with its levels, what they mean, "
            "the measures they bring and the advice to the public.", api.NO_PARAMS, "Schemes"),
        "/api/v1/audit/head": _get(
            "auditHead", "The head of the audit chain",
            "The sequence number and hash of the newest audit entry. Keep it: a later "
            "'tocsin audit verify --head SEQ:HASH' proves the history before it was not "
            "rewritten.", api.NO_PARAMS, "AuditHead"),
        "/api/v1/history": _get(
            "history", "Level changes over a span of time",
            "Per area and scheme, the periods of one level that overlap [since, until), whole "
            "(not cut at the span's edges); then the declarations taking effect in the span, "
            "oldest first. With `area`: that area's timelines and every declaration naming it "
            "or an area above it. Without: the timelines of the top areas and the areas just "
            "below them, and the newest 100 declarations of the span; `declarations_total` "
            "counts them all and `more_declarations` links to the rest in "
            "/api/v1/declarations.",
            api.HISTORY_PARAMS, "History", not_found=True),
    }


def _get(name: str, summary: str, description: str, params: dict[str, ParamKind],
         schema: str, *, not_found: bool = False,
         defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": summary, "content": {JSON: {"schema": _ref(schema)}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
    }
    if not_found:
        responses["404"] = {"$ref": "#/components/responses/NotFound"}
    return {"get": {
        "operationId": name, "summary": summary, "description": description, "tags": ["public"],
        "parameters": [_parameter(key, kind, (defaults or {}).get(key))
                       for key, kind in params.items()],
        "responses": responses,
    }}


def _parameter(name: str, kind: ParamKind, default: Any = None) -> dict[str, Any]:
    description, example = _PARAMETERS[name]
    schema = param_schema(kind)
    if default is not None or name in _DEFAULTS:
        schema["default"] = default if default is not None else _DEFAULTS[name]
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, "example": example}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _responses() -> dict[str, Any]:
    error = _error
    return {
        "BadRequest": error("The query is not valid: an unknown or repeated parameter, or a "
                            "value of the wrong form. The message names it."),
        "NotFound": error("The area, scheme or declaration named is not known."),
    }


# -- schemas ---------------------------------------------------------------------------------

def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], description: str | None = None) -> Schema:
    """An object with exactly these keys, all present."""
    out: Schema = {"type": "object", "required": list(properties), "properties": properties,
                   "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def _or_null(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _enum(values: list[str]) -> Schema:
    return {"type": "string", "enum": values}


STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INSTANT: Schema = {"type": "string", "format": "date-time"}
AREA_CODE: Schema = {"type": "string", "pattern": CODE_PATTERN.pattern}
COLOUR: Schema = {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}


def _schemas() -> dict[str, Schema]:
    text = _ref("LocalizedText")
    lists = _ref("LocalizedList")
    level_fields = {
        "scheme": STRING,
        "level": _or_null(STRING),
        "name": _or_null(text),
        "colour": _or_null(COLOUR),
        "baseline": {"type": "boolean",
                     "description": "True when no declaration holds and the scheme's "
                                    "baseline level applies."},
        "inherited_from": {**_or_null(AREA_CODE),
                           "description": "The containing area whose declaration sets the "
                                          "level, when none names this area itself."},
        "since": {**_or_null(INSTANT), "description": "Start of the unbroken period of this "
                                                      "level; null: before any declaration."},
        "until": {**_or_null(INSTANT), "description": "Its end as known now; null: until "
                                                      "further notice."},
        "sources": _array(_ref("Source")),
        "beneath": {**_or_null(_obj({
            "level": STRING, "name": text, "colour": COLOUR, "count": {"type": "integer"},
            "where": _array(AREA_CODE), "since": INSTANT})),
            "description": "The highest level in force inside the area (not inherited from "
                           "it), the number of topmost areas holding it, the first few of "
                           "them, and when the newest of their declarations took effect; "
                           "null when nothing inside is above the baseline."},
    }
    return {
        "Error": _obj({"error": _obj({
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": _enum(sorted({*CODES.values(), "error"})),
            "message": {"type": "string", "description": "What is wrong, naming the value."},
            "fix": {**_or_null(STRING), "description": "How to put it right, if known."},
        })}),
        "LocalizedText": {"type": "object", "additionalProperties": STRING,
                          "description": "Language tag (kk, ru, en, …) to text."},
        "LocalizedList": {"type": "object", "additionalProperties": _array(STRING),
                          "description": "Language tag to a list of texts."},
        "Level": _obj({
            "key": STRING, "rank": {"type": "integer"}, "colour": COLOUR, "name": text,
            "colour_name": text, "meaning": text, "measures": lists, "guidance": lists,
            "cap": _obj({"severity": _enum([s.value for s in Severity]),
                         "urgency": _enum([u.value for u in Urgency]),
                         "certainty": _enum([c.value for c in Certainty])}),
        }, "A level of a scheme; measures: what the authorities will do; guidance: what "
           "people should do."),
        "Scheme": _obj({
            "key": STRING, "name": text, "event": text, "description": text,
            "category": _enum([c.value for c in Category]),
            "languages": _array(STRING), "default_language": STRING,
            "baseline": _or_null(STRING), "expiry_required": BOOLEAN,
            "max_term": {"type": ["string", "null"], "pattern": "^P[0-9DTHMW]+$",
                         "description": "Longest term of one declaration, ISO 8601."},
            "source": _or_null(STRING), "levels": _array(_ref("Level")),
        }),
        "Schemes": _obj({"schemes": _array(_ref("Scheme"))}),
        "Source": _obj({"declaration": STRING, "via": AREA_CODE, "effective": INSTANT,
                        "ends": _or_null(INSTANT)},
                       "A declaration putting the level on the area, through the area it "
                       "names (via)."),
        "LevelStatus": _obj({
            "area": AREA_CODE, "area_name": text, **level_fields,
            "links": _obj({"area": STRING, "page": STRING}),
        }),
        "Levels": _obj({"at": INSTANT, "levels": _array(_ref("LevelStatus")),
                        "next": {**_or_null(STRING),
                                 "description": "The next page (same filters), if any."}}),
        "Area": _obj({
            "code": AREA_CODE, "kind": _enum([k.value for k in AreaKind]),
            "parent": _or_null(AREA_CODE), "names": text,
            "geocodes": _array(_obj({"valueName": STRING, "value": STRING})),
            "timezone": _or_null(STRING), "has_geometry": BOOLEAN,
            "grid": _or_null(_obj({"row": {"type": "integer"}, "column": {"type": "integer"}})),
        }),
        "Period": _obj({"level": _or_null(STRING), "start": _or_null(INSTANT),
                        "end": _or_null(INSTANT)},
                       "An unbroken stretch of one level (null: no level)."),
        "AreaLevel": _obj({
            **level_fields,
            "explanation": {"type": "string", "description": "Why, in English."},
            "meaning": _or_null(text), "measures": _or_null(lists),
            "guidance": _or_null(lists),
            "timeline": {**_array(_ref("Period")),
                         "description": "The periods around the instant: the 20 before it at "
                                        "most, the one holding then, and those scheduled."},
            "earlier": {**BOOLEAN, "description": "True when earlier periods were left out: "
                                                  "/api/v1/history?area= has them all."},
        }),
        "AreaDocument": _obj({
            "at": INSTANT, "area": _ref("Area"), "ancestors": _array(AREA_CODE),
            "children": _array(AREA_CODE), "levels": _array(_ref("AreaLevel")),
            "links": _obj({"self": STRING, "page": STRING}),
        }),
        "Declaration": _obj({
            "id": STRING, "scheme": STRING, "level": STRING, "status": _enum(["published"]),
            "areas": _array(AREA_CODE), "effective": INSTANT, "expires": _or_null(INSTANT),
            "sender": STRING, "replaces": _array(STRING), "replaced_by": _array(STRING),
            "texts": {"type": "object", "additionalProperties": _obj({
                "headline": STRING, "description": STRING, "measures": STRING,
                "instructions": STRING})},
            "created_at": INSTANT, "created_by": STRING,
            "published_at": INSTANT, "published_by": STRING,
            "cancellation": _or_null(_obj({"at": INSTANT, "reason": STRING, "by": STRING})),
            "break_glass": _or_null({**STRING, "description": (
                "Set when it was published without a second person's approval: the reason "
                "given.")}),
        }),
        "AuditHead": _obj({
            "seq": {"type": "integer", "minimum": 0},
            "hash": _or_null({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
            "at": _or_null(INSTANT)}),
        "Declarations": _obj({
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
            "offset": {"type": "integer", "minimum": 0},
            "items": _array(_ref("Declaration")),
            "links": _obj({"self": STRING, "next": _or_null(STRING), "prev": _or_null(STRING)}),
        }),
        "History": _obj({
            "area": _or_null(AREA_CODE), "scheme": _or_null(STRING),
            "since": _or_null(INSTANT), "until": _or_null(INSTANT),
            "timelines": _array(_obj({"area": AREA_CODE, "scheme": STRING,
                                      "periods": _array(_ref("Period"))})),
            "declarations": _array(_obj({
                "id": STRING, "scheme": STRING, "level": STRING, "areas": _array(AREA_CODE),
                "effective": INSTANT, "links": _obj({"self": STRING})})),
            "declarations_total": {"type": "integer", "minimum": 0},
            "more_declarations": _or_null(STRING),
        }),
    }
