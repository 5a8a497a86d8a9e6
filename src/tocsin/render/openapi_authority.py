"""The OpenAPI description of the authority API (/api/v1/authority/…, with subscriptions and
deliveries) and of browser push registration (/api/v1/push/…), joined to the public document
by openapi.py. The schemas mirror web/authority.py and web/subscriptions_api.py; tests run
Schemathesis over them with real tokens."""

from __future__ import annotations

from typing import Any

from tocsin.domain.access import AREA_ROLES, USER_NAME, Role, Scope
from tocsin.domain.area import CODE_PATTERN
from tocsin.domain.declaration import HEADLINE_MAX, Status
from tocsin.domain.notify import Channel, DeliveryStatus, SubscriptionStatus
from tocsin.ingest.document import LANGUAGE as LANGUAGE_TAG
from tocsin.ingest.schemes import KEY as SCHEME_KEY
from tocsin.render.query import INSTANT_PATTERN, LIMIT_MAX
from tocsin.service.people import LONGEST_TOKEN_LIFETIME, MIN_PASSWORD
from tocsin.service.subscriptions import LANGUAGES, MAX_AREAS

JSON = "application/json"
Schema = dict[str, Any]
PREFIX = "/api/v1/authority"
PUSH = "/api/v1/push"
STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INSTANT: Schema = {"type": "string", "format": "date-time"}
INSTANT_GIVEN: Schema = {"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN,
                         "description": "ISO 8601 with a UTC offset, in the years 1000 to 8999"}
"""An instant in a request: the range the one instant parser accepts."""
INTEGER: Schema = {"type": "integer"}
AREAS: Schema = {"type": "array", "minItems": 1, "maxItems": MAX_AREAS,
                 "items": {"type": "string", "pattern": CODE_PATTERN.pattern},
                 "description": "Area codes; a change in an area inside one is heard too."}
SCHEMES: Schema = {"type": "array", "items": {"type": "string", "pattern": SCHEME_KEY.pattern},
                   "description": "Only these schemes (see /api/v1/schemes); none: every one."}
HTTP_URL = r"^https?://[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*(:[1-9][0-9]{0,3})?(/[!-~]*)?$"
"""An absolute http(s) URL on a named host (or IPv4 address), without a user name."""
LANGUAGE: Schema = {"type": "string", "enum": list(LANGUAGES), "default": "en",
                    "description": "The language of names and messages."}
_SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
"""What str.strip() removes (U+3000 is the last such character): a text made only of these
is refused as empty. Spelled out, so that every regex dialect reads the pattern alike."""
NOT_BLANK: Schema = {"type": "string",
                     "pattern": "[^" + "".join(f"\\u{ord(c):04x}" for c in _SPACES) + "]"}
"""A text with something in it besides white space."""
NO_TEXT: Schema = {"enum": ["", None]}
"""An optional text left out: the server reads "" and null as not given."""
CODE: Schema = {"type": "string", "pattern": CODE_PATTERN.pattern}
KEY: Schema = {"type": "string", "pattern": SCHEME_KEY.pattern}
USER: Schema = {"type": "string", "pattern": USER_NAME.pattern}
PASSWORD: Schema = {**NOT_BLANK, "minLength": MIN_PASSWORD}
BREAK_GLASS: Schema = {"anyOf": [NOT_BLANK, NO_TEXT],
                       "description": "Publish alone, for this reason (needs the break-glass "
                                      "right). Empty or null: the usual rules."}
ROLES: Schema = {"type": "array", "items": {"enum": [r.value for r in Role]}, "minItems": 1}
NEEDS_JURISDICTION: Schema = {
    "if": {"properties": {"roles": {"contains": {"enum": [r.value for r in AREA_ROLES]}}},
           "required": ["roles"]},
    "then": {"properties": {"areas": {"minItems": 1}}, "required": ["areas"]}}
"""Issuers and approvers act for a jurisdiction: without areas they are refused (400)."""
EMAIL_OR_NONE = {
    "anyOf": [{"type": "string", "maxLength": 254, "pattern":
               r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
               r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"},
              {"type": "string", "maxLength": 0}, {"type": "null"}],
    "description": "Where reminders go before this user's declarations end; empty or null: "
                   "none (on a change: removes it). Narrower than the server, which takes "
                   "any address of the usual form."}
TOKEN_DAYS = r"^P(36[0-6]|3[0-5][0-9]|[12][0-9]{2}|[1-9][0-9]?)D$"
"""P1D to P366D. The server also takes weeks, hours and minutes (P2W, PT12H), but its limit
(at most LONGEST_TOKEN_LIFETIME, in total) is no pattern: generated lifetimes above it would
be refused, so the document offers whole days within it."""
ERRORS = {
    "400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
    "409": "Conflict", "413": "TooLarge", "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
}
PUBLIC_ERRORS = {"400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "413": "TooLarge",
                 "415": "UnsupportedMediaType", "429": "TooManyRequests", "503": "Unavailable"}


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


def _public_op(name: str, summary: str, description: str, response: str, *,
               status: str = "200", body: str | None = None,
               errors: tuple[str, ...] = ()) -> Schema:
    """An operation anyone may call, without a token."""
    responses: dict[str, Any] = {
        status: {"description": summary, "content": {JSON: {"schema": _ref(response)}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
    }
    for code in errors:
        responses[code] = {"$ref": f"#/components/responses/{PUBLIC_ERRORS[code]}"}
    op: Schema = {"operationId": name, "summary": summary, "description": description,
                  "tags": ["public"], "parameters": [], "responses": responses}
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
    s_id = _path_param("id", "The subscription's id.", r"^sub_[0-9a-f]{16}$")
    delivery = _path_param("id", "The delivery's id.", r"^[1-9][0-9]{0,17}$")
    owner = {"name": "owner", "in": "query", "required": False,
             "description": "Admins: only this owner's (user:NAME, local-operator:LOGIN, "
                            "public). Others always see only their own.",
             "schema": {"type": "string", "pattern": r"^[^\x00-\x1f\x7f]{1,200}$"}}
    status = {"name": "status", "in": "query", "required": False,
              "description": "Only deliveries in this state.",
              "schema": {"type": "string", "enum": [s.value for s in DeliveryStatus]}}
    newest = {"name": "limit", "in": "query", "required": False,
              "description": "How many of the newest deliveries.",
              "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 50}}
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
            "jurisdiction must cover all its areas. The revision read is required (a changed "
            "text is refused, 409).", "AuthorityDeclaration", body="ApproveInput",
            scope="approve")},
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
            "setUser", "Change a user", "Only the fields given change. A password only for "
            "oneself (others get a reset link, 403); one's own roles, areas and break-glass "
            "right only by another admin (403).", "User",
            body="UserPatch", scope="admin")},
        f"{PREFIX}/users/{{name}}/password-reset": {"parameters": [user], "post": _op(
            "issuePasswordReset", "Issue a one-time password reset link",
            "The user chooses her own password with it (POST /password-reset, or the "
            "console's page at the link) once, within 24 hours; an earlier unused link stops "
            "working. The token is in this answer only: hand it over.", "PasswordReset",
            status="201", body="Empty", scope="admin")},
        f"{PREFIX}/password-reset": {"post": _public_op(
            "resetPassword", "Set one's own password with a reset link",
            "No bearer token: the link's token is the credential, and works once. A token "
            "unknown, used or expired is refused (401).", "User", body="ResetInput",
            errors=("401", "413", "415", "429"))},
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
        **_subscription_paths(s_id, delivery, owner, status, newest),
    }


def _subscription_paths(s_id: Schema, delivery: Schema, owner: Schema, status: Schema,
                        newest: Schema) -> dict[str, Any]:
    subs = f"{PREFIX}/subscriptions"
    return {
        subs: {
            "get": _op("subscriptions", "My subscriptions",
                       "One's own, never with their secrets; admins see everyone's. Removed "
                       "ones are left out.", "Subscriptions", scope="subscribe",
                       params=[owner]),
            "post": _op("subscribe", "Register a webhook",
                        "It hears the level changes of its areas (and of every area inside "
                        "them) under its schemes. Each delivery is a JSON POST signed with "
                        "Standard Webhooks headers: check webhook-signature with the secret, "
                        "which is in this answer only.", "NewSubscription", status="201",
                        body="SubscriptionInput", scope="subscribe"),
        },
        f"{subs}/{{id}}": {
            "parameters": [s_id],
            "get": _op("subscription", "One subscription",
                       "Another owner's answers 404, as if it did not exist.",
                       "Subscription", scope="subscribe"),
            "delete": _op("unsubscribe", "Remove a subscription",
                          "It hears nothing more; deliveries still queued are dropped. "
                          "Answers the subscription, disabled.", "Subscription",
                          scope="subscribe"),
        },
        f"{subs}/{{id}}/deliveries": {"parameters": [s_id], "get": _op(
            "subscriptionDeliveries", "What was sent to a subscription",
            "Its deliveries, newest first: state, attempts, the last answer.", "Deliveries",
            scope="subscribe", params=[status, newest])},
        f"{PREFIX}/deliveries/{{id}}": {"parameters": [delivery], "get": _op(
            "delivery", "One delivery, with every attempt",
            "Only a delivery to one's own subscription (admins: any).", "DeliveryDetail",
            scope="subscribe")},
        f"{PUSH}/subscriptions": {"post": _public_op(
            "subscribePush", "Register a browser for push notifications",
            "The body is the browser's PushSubscription.toJSON() with the areas, schemes and "
            "language chosen. The answer names the signed path that ends the subscription.",
            "PushSubscribed", status="201", body="PushSubscriptionInput",
            errors=("404", "413", "415", "429"))},
        f"{PUSH}/key": {"get": _public_op(
            "pushKey", "The push key of this server",
            "The VAPID public key (RFC 8292) to give PushManager.subscribe() as "
            "applicationServerKey: an uncompressed P-256 point, base64url.", "PushKey",
            errors=("503",))},
    }


DECLARATION_RULES = (
    "The scheme (see /api/v1/schemes) decides the rest, each refused with 400: texts only in "
    "its languages; an expiry when it requires one, after the effective time and within its "
    "longest term; a published declaration never starts in the past.")


def schemas() -> dict[str, Schema]:
    person = {"at": INSTANT, "reason": STRING, "by": STRING}
    statement = _obj({"headline": {**NOT_BLANK, "maxLength": HEADLINE_MAX},
                      "description": STRING, "measures": STRING, "instructions": STRING},
                     required=["headline"])
    declaration_input = {
        "scheme": KEY, "level": KEY,
        "areas": _array(CODE, minItems=1, uniqueItems=True),
        "texts": {"type": "object", "minProperties": 1,
                  "propertyNames": {"pattern": LANGUAGE_TAG.pattern},
                  "additionalProperties": statement,
                  "description": "Language tag (kk, ru, en, en-GB) to the texts in it."},
        "effective": {"anyOf": [INSTANT_GIVEN, NO_TEXT],
                      "description": "Empty: on publication."},
        "expires": {"anyOf": [INSTANT_GIVEN, NO_TEXT]},
        "replaces": _array(STRING, uniqueItems=True,
                           description="Ids of published declarations of the same scheme "
                                       "that this one ends."),
        "sender": NOT_BLANK,
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
        "DeclarationInput": {
            **_obj({**declaration_input, "submit": BOOLEAN, "break_glass": BREAK_GLASS},
                   required=required),
            "description": DECLARATION_RULES,
            # A draft is never published, so it takes no break-glass reason (400).
            "if": {"properties": {"submit": {"const": False}}, "required": ["submit"]},
            "then": {"properties": {"break_glass": NO_TEXT}}},
        "DeclarationEdit": {**_obj(declaration_input, required=required),
                            "description": DECLARATION_RULES},
        "SubmitInput": _obj({"break_glass": BREAK_GLASS}, required=[]),
        "ApproveInput": _obj({"revision": {"type": "integer"}}),
        "ReasonInput": _obj({"reason": NOT_BLANK}),
        "CancelInput": _obj({"reason": NOT_BLANK, "break_glass": BREAK_GLASS},
                            required=["reason"]),
        "Principal": _obj({
            "name": STRING, "roles": _array({"enum": [r.value for r in Role]}),
            "jurisdiction": _array(STRING), "break_glass": BOOLEAN,
            "rights": _array({"enum": [s.value for s in Scope]}),
            "token_scopes": _nullable(_array({"enum": [s.value for s in Scope]})),
        }),
        "User": _obj({
            "name": STRING, "roles": _array({"enum": [r.value for r in Role]}),
            "jurisdiction": _array(STRING), "break_glass": BOOLEAN, "disabled": BOOLEAN,
            "locked_until": _nullable(INSTANT), "created_at": INSTANT,
            "email": _nullable(STRING)}),
        "Users": _obj({"users": _array(_ref("User"))}),
        "Empty": _obj({}),
        "PasswordReset": _obj({"user": STRING, "token": STRING, "link": STRING,
                               "expires_at": INSTANT}),
        "ResetInput": _obj({"token": NOT_BLANK, "password": PASSWORD}),
        "UserInput": {**_obj({
            "name": USER, "password": PASSWORD, "roles": ROLES,
            "areas": _array(CODE, description="The jurisdiction: roots of area subtrees."),
            "break_glass": BOOLEAN, "email": EMAIL_OR_NONE},
            required=["name", "password", "roles"]),
            **NEEDS_JURISDICTION},
        "UserPatch": {**_obj({
            "roles": ROLES, "areas": _array(CODE), "break_glass": BOOLEAN,
            "disabled": BOOLEAN, "password": PASSWORD, "email": EMAIL_OR_NONE}, required=[]),
            "description": "An issuer or approver left without areas is refused (400); so "
                           "is an administrator disabling themself or dropping their own "
                           "admin role (409).",
            # Narrower than the server, which also takes such roles without areas when the
            # user already has a jurisdiction: the document cannot see the stored one.
            **NEEDS_JURISDICTION},
        "Token": _obj(_token_fields()),
        "NewToken": _obj({**_token_fields(), "secret": STRING}),
        "Tokens": _obj({"tokens": _array(_ref("Token"))}),
        "TokenInput": _obj({
            "user": {**USER, "description": "Only oneself (the default)."},
            "scopes": _array({"enum": [s.value for s in Scope]}, minItems=1),
            "label": NOT_BLANK,
            "expires": {"anyOf": [{"type": "string", "pattern": TOKEN_DAYS}, NO_TEXT],
                        "description": "How long it holds, as an ISO 8601 duration of at "
                                       f"most {LONGEST_TOKEN_LIFETIME.days} days (P90D); "
                                       "empty: 90 days."}},
            required=["scopes"]),
        "AuditEntries": _obj({"entries": _array(_obj({
            "seq": {"type": "integer"}, "at": INSTANT, "actor": STRING, "action": STRING,
            "subject": STRING, "details": {"type": "object"}, "prev_hash": STRING,
            "hash": STRING}))}),
        **_subscription_schemas(),
        "Verdict": _obj({
            "ok": BOOLEAN, "checked": {"type": "integer"},
            "head": _obj({"seq": _nullable({"type": "integer"}),
                          "hash": _nullable(STRING)}),
            "broken_entry": _nullable({"type": "integer"}), "problem": _nullable(STRING)}),
    }


def _subscription_schemas() -> dict[str, Schema]:
    subscription = {
        "id": STRING, "channel": {"type": "string", "enum": [c.value for c in Channel]},
        "target": STRING, "areas": _array(STRING), "schemes": _array(STRING),
        "language": STRING,
        "status": {"type": "string", "enum": [s.value for s in SubscriptionStatus]},
        "owner": STRING, "created_at": INSTANT, "confirmed_at": _nullable(INSTANT),
        "disabled_at": _nullable(INSTANT), "disabled_reason": _nullable(STRING)}
    delivery = {
        "id": INTEGER, "event": INTEGER, "topic": STRING, "subscription": _nullable(STRING),
        "channel": STRING, "target": STRING,
        "status": {"type": "string", "enum": [s.value for s in DeliveryStatus]},
        "attempts": INTEGER, "created_at": _nullable(INSTANT),
        "next_attempt_at": _nullable(INSTANT), "delivered_at": _nullable(INSTANT),
        "last_status": _nullable(INTEGER), "last_detail": _nullable(STRING),
        "key": {"type": "string", "description": "The idempotency key: the webhook-id of "
                                                  "every attempt."}}
    attempt = _obj({"at": INSTANT, "worker": STRING, "delivered": BOOLEAN,
                    "status": _nullable(INTEGER), "detail": STRING,
                    "duration_ms": _nullable(INTEGER)})
    push_key = {"type": "string", "pattern": "^[A-Za-z0-9_-]+={0,2}$", "maxLength": 200}
    return {
        "Subscription": _obj(subscription),
        "NewSubscription": _obj({**subscription, "secret": {
            "type": "string", "pattern": "^whsec_",
            "description": "The Standard Webhooks signing secret; shown only here."}}),
        "Subscriptions": _obj({"subscriptions": _array(_ref("Subscription"))}),
        "SubscriptionInput": _obj({
            "webhook": {"type": "string", "format": "uri", "maxLength": 2000,
                        "pattern": HTTP_URL,
                        "description": "An absolute http(s) URL on a public host."},
            "areas": AREAS, "schemes": SCHEMES, "language": LANGUAGE},
            required=["webhook", "areas"]),
        "Delivery": _obj(delivery),
        "DeliveryDetail": _obj({**delivery, "attempt_log": _array(attempt)}),
        "Deliveries": _obj({"deliveries": _array(_ref("Delivery"))}),
        "PushSubscriptionInput": _obj({
            "endpoint": {"type": "string", "format": "uri", "maxLength": 2000,
                         "pattern": HTTP_URL,
                         "description": "The push service's URL, as the browser gave it."},
            "expirationTime": {"type": ["number", "null"]},
            "keys": _obj({"p256dh": push_key, "auth": push_key}),
            "areas": AREAS, "schemes": SCHEMES, "language": LANGUAGE},
            required=["endpoint", "keys", "areas"]),
        "PushSubscribed": _obj({
            "id": STRING,
            "status": {"type": "string", "enum": [s.value for s in SubscriptionStatus]},
            "unsubscribe": {"type": "string", "description": "The signed path (on this "
                            "site) that ends the subscription."}}),
        "PushKey": _obj({"public_key": {"type": "string", "pattern": "^[A-Za-z0-9_-]{87}$"}}),
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
        "Unavailable": error("Browser push is off: the server's push key cannot be used."),
    }
