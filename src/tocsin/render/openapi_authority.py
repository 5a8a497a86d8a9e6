"""The OpenAPI description of the authority API (/api/v1/authority/…), joined to the public
document by openapi.py. The schemas mirror web/authority.py; tests run Schemathesis over them
with real tokens."""

from __future__ import annotations

from typing import Any

from tocsin.domain.access import Role, Scope
from tocsin.domain.declaration import Status
from tocsin.render.query import LIMIT_MAX

JSON = "application/json"
Schema = dict[str, Any]
PREFIX = "/api/v1/authority"
STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INSTANT: Schema = {"type": "string", "format": "date-time"}
ERRORS = {
    "400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
    "409": "Conflict", "413": "TooLarge", "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False}


def _array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _op(name: str, summary: str, description: str, response: str | None, *,
        status: str = "200", body: str | None = None, scope: str | None = None,
        params: list[Schema] | None = None) -> Schema:
    responses: dict[str, Any] = {
        status: {"description": summary,
                 "content": {JSON: {"schema": _ref(response)}}} if response else
        {"description": summary},
    }
    for code, ref in ERRORS.items():
        if code in ("413", "415") and body is None:
            continue
        responses[code] = {"$ref": f"#/components/responses/{ref}"}
    op: Schema = {"operationId": name, "summary": summary,
                  "description": description + (f" Needs the '{scope}' right." if scope else ""),
                  "security": [{"bearer": []}], "tags": ["authority"],
                  "parameters": params or [], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


def _path_param(name: str, description: str, pattern: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


def paths() -> dict[str, Any]:
    d_id = _path_param("id", "The declaration's id.", r"^[0-9]{8}-[0-9a-f]{8}$")
    user = _path_param("name", "The user's name.", r"^[a-z0-9][a-z0-9._-]{1,63}$")
    token = _path_param("id", "The token's id.", r"^[0-9a-f]{12}$")
    limit = {"name": "limit", "in": "query", "required": False,
             "description": "How many of the newest entries.",
             "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 100}}
    return {
        f"{PREFIX}/me": {"get": _op("me", "Who this token acts for",
                                    "The user, their roles, jurisdiction and rights.",
                                    "Principal")},
        f"{PREFIX}/declarations": {
            "get": _op("desk", "My desk", "Own drafts, pending and rejected declarations; "
                       "those waiting for my decision; those in force in my jurisdiction.",
                       "Desk"),
            "post": _op("declare", "Draft or submit a declaration",
                        "With submit (the default) it publishes at once, or waits for a "
                        "second person when the scheme's two-person rule says so. With "
                        "break_glass (a reason) a user holding that right publishes alone.",
                        "Outcome", status="201", body="DeclarationInput", scope="declare"),
        },
        f"{PREFIX}/declarations/{{id}}": {
            "parameters": [d_id],
            "get": _op("authorityDeclaration", "One declaration, with its workflow",
                       "Drafts, pending and rejected ones only to their author and to "
                       "those who may decide on them.", "AuthorityDeclaration"),
            "put": _op("editDeclaration", "Change a draft or pending declaration",
                       "Only its author, only before approval; each edit is a new revision.",
                       "AuthorityDeclaration", body="DeclarationEdit", scope="declare"),
        },
        f"{PREFIX}/declarations/{{id}}/submit": {"parameters": [d_id], "post": _op(
            "submitDeclaration", "Submit a draft", "Publishes it, or queues it for approval.",
            "Outcome", body="SubmitInput", scope="declare")},
        f"{PREFIX}/declarations/{{id}}/approve": {"parameters": [d_id], "post": _op(
            "approveDeclaration", "Approve a pending declaration or cancellation",
            "It publishes (or the cancellation takes effect). Never one's own; the approver's "
            "jurisdiction must cover all its areas. Give the revision read to refuse a "
            "changed text.", "AuthorityDeclaration", body="ApproveInput", scope="approve")},
        f"{PREFIX}/declarations/{{id}}/reject": {"parameters": [d_id], "post": _op(
            "rejectDeclaration", "Reject a pending declaration or cancellation",
            "With a reason the author will read.", "AuthorityDeclaration",
            body="ReasonInput", scope="approve")},
        f"{PREFIX}/declarations/{{id}}/cancel": {"parameters": [d_id], "post": _op(
            "cancelDeclaration", "End a published declaration now",
            "Or ask a second person to, when the scheme says cancelling needs approval.",
            "Outcome", body="CancelInput", scope="declare")},
        f"{PREFIX}/users": {
            "get": _op("users", "Every user", "", "Users", scope="admin"),
            "post": _op("addUser", "Add a user", "", "User", status="201", body="UserInput",
                        scope="admin"),
        },
        f"{PREFIX}/users/{{name}}": {"parameters": [user], "patch": _op(
            "setUser", "Change a user", "Only the fields given change.", "User",
            body="UserPatch", scope="admin")},
        f"{PREFIX}/tokens": {
            "get": _op("tokens", "API tokens", "Every token for admins; else one's own. "
                       "Secrets are never shown again.", "Tokens"),
            "post": _op("createToken", "Make an API token",
                        "The secret is in this answer only. Tokens cannot make tokens.",
                        "NewToken", status="201", body="TokenInput"),
        },
        f"{PREFIX}/tokens/{{id}}": {"parameters": [token], "delete": _op(
            "revokeToken", "Revoke a token", "It stops working at once.", "Token")},
        f"{PREFIX}/audit": {"get": _op("audit", "The newest audit entries",
                                       "Oldest of them first.", "AuditEntries",
                                       scope="read-audit", params=[limit])},
        f"{PREFIX}/audit/verify": {"get": _op(
            "verifyAudit", "Verify the whole audit chain",
            "Names the first entry altered, removed or moved.", "Verdict",
            scope="read-audit")},
    }


def schemas() -> dict[str, Schema]:
    person = {"at": INSTANT, "reason": STRING, "by": STRING}
    statement = _obj({"headline": STRING, "description": STRING, "measures": STRING,
                      "instructions": STRING}, required=["headline"])
    declaration_input = {
        "scheme": STRING, "level": STRING,
        "areas": _array(STRING, minItems=1),
        "texts": {"type": "object", "minProperties": 1, "additionalProperties": statement},
        "effective": _nullable(INSTANT), "expires": _nullable(INSTANT),
        "replaces": _array(STRING), "sender": STRING,
    }
    required = ["scheme", "level", "areas", "texts"]
    return {
        "AuthorityDeclaration": _obj({
            "id": STRING, "scheme": STRING, "level": STRING,
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "areas": _array(STRING), "effective": _nullable(INSTANT),
            "expires": _nullable(INSTANT), "sender": STRING, "replaces": _array(STRING),
            "replaced_by": _array(STRING),
            "texts": {"type": "object", "additionalProperties": _obj({
                "headline": STRING, "description": STRING, "measures": STRING,
                "instructions": STRING})},
            "created_at": INSTANT, "created_by": STRING,
            "published_at": _nullable(INSTANT), "published_by": _nullable(STRING),
            "cancellation": _nullable(_obj(person)), "break_glass": _nullable(STRING),
            "revision": {"type": "integer", "minimum": 1},
            "submitted_at": _nullable(INSTANT), "rejection": _nullable(_obj(person)),
            "cancel_request": _nullable(_obj(person)),
        }),
        "Outcome": _obj({"declaration": _ref("AuthorityDeclaration"),
                         "needs_approval": BOOLEAN}),
        "Desk": _obj({key: _array(_ref("AuthorityDeclaration"))
                      for key in ("mine", "to_decide", "active")}),
        "DeclarationInput": _obj({**declaration_input, "submit": BOOLEAN,
                                  "break_glass": STRING}, required=required),
        "DeclarationEdit": _obj(declaration_input, required=required),
        "SubmitInput": _obj({"break_glass": STRING}, required=[]),
        "ApproveInput": _obj({"revision": {"type": "integer"}}, required=[]),
        "ReasonInput": _obj({"reason": STRING}),
        "CancelInput": _obj({"reason": STRING, "break_glass": STRING}, required=["reason"]),
        "Principal": _obj({
            "name": STRING, "roles": _array({"enum": [r.value for r in Role]}),
            "jurisdiction": _array(STRING), "break_glass": BOOLEAN,
            "rights": _array({"enum": [s.value for s in Scope]}),
            "token_scopes": _nullable(_array({"enum": [s.value for s in Scope]})),
        }),
        "User": _obj({
            "name": STRING, "roles": _array({"enum": [r.value for r in Role]}),
            "jurisdiction": _array(STRING), "break_glass": BOOLEAN, "disabled": BOOLEAN,
            "locked_until": _nullable(INSTANT), "created_at": INSTANT}),
        "Users": _obj({"users": _array(_ref("User"))}),
        "UserInput": _obj({
            "name": STRING, "password": {"type": "string", "minLength": 12},
            "roles": _array({"enum": [r.value for r in Role]}, minItems=1),
            "areas": _array(STRING), "break_glass": BOOLEAN},
            required=["name", "password", "roles"]),
        "UserPatch": _obj({
            "roles": _array({"enum": [r.value for r in Role]}, minItems=1),
            "areas": _array(STRING), "break_glass": BOOLEAN, "disabled": BOOLEAN,
            "password": {"type": "string", "minLength": 12}}, required=[]),
        "Token": _obj(_token_fields()),
        "NewToken": _obj({**_token_fields(), "secret": STRING}),
        "Tokens": _obj({"tokens": _array(_ref("Token"))}),
        "TokenInput": _obj({
            "user": STRING, "scopes": _array({"enum": [s.value for s in Scope]}, minItems=1),
            "label": STRING, "expires": {"type": "string", "description": "ISO 8601, P90D"}},
            required=["scopes"]),
        "AuditEntries": _obj({"entries": _array(_obj({
            "seq": {"type": "integer"}, "at": INSTANT, "actor": STRING, "action": STRING,
            "subject": STRING, "details": {"type": "object"}, "prev_hash": STRING,
            "hash": STRING}))}),
        "Verdict": _obj({
            "ok": BOOLEAN, "checked": {"type": "integer"},
            "head": _obj({"seq": _nullable({"type": "integer"}),
                          "hash": _nullable(STRING)}),
            "broken_entry": _nullable({"type": "integer"}), "problem": _nullable(STRING)}),
    }


def _token_fields() -> dict[str, Schema]:
    return {"id": STRING, "user": STRING, "label": STRING,
            "scopes": _array({"enum": [s.value for s in Scope]}), "created_at": INSTANT,
            "expires_at": INSTANT, "revoked_at": _nullable(INSTANT),
            "last_used_at": _nullable(INSTANT),
            "state": {"type": "string", "enum": ["active", "expired", "revoked"]}}


def responses(error: Any) -> dict[str, Any]:
    return {
        "Unauthorized": error("No bearer token, or one that is malformed, unknown, expired "
                              "or revoked."),
        "Forbidden": error("The token's user lacks the right, or the areas are outside "
                           "their jurisdiction, or it is their own declaration."),
        "Conflict": error("The current state does not allow it (already decided, changed "
                          "since read, …)."),
        "TooLarge": error("The body is larger than 64 KiB."),
        "UnsupportedMediaType": error("The body is not application/json."),
        "TooManyRequests": error("Too many requests or failed attempts; see Retry-After."),
    }
