"""The authority JSON API (/api/v1/authority/…): declare, approve, manage people, read the
audit log, with bearer tokens. Every answer is JSON; every refusal has the one error shape."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial, wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tocsin import settings
from tocsin.domain.access import Principal, Scope, parse_roles, parse_scopes, require
from tocsin.domain.errors import RateLimited, TocsinError, Unauthenticated
from tocsin.domain.times import parse_duration
from tocsin.ingest.declarations import parse_declaration
from tocsin.ingest.document import Document
from tocsin.render.data import audit_entry_json, declaration_json, verdict_json
from tocsin.render.errors import Refusal, error_body, status_of
from tocsin.render.query import ParamKind, parse_query
from tocsin.service import authority, people, queries
from tocsin.web.guard import MAX_BODY, PRIVATE_HEADERS, Limiter, SignIns

PREFIX = "/api/v1/authority"
T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]


def now() -> datetime:
    return datetime.now(UTC)


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def error_response(error: TocsinError) -> JSONResponse:
    status = status_of(error)
    headers = dict((k.decode(), v.decode()) for k, v in PRIVATE_HEADERS)
    if isinstance(error, RateLimited):
        headers["retry-after"] = str(error.retry_after)
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="tocsin"'
    return JSONResponse(error_body(status, error.problem, error.fix), status_code=status,
                        headers=headers)


def answer(value: Any, status: int = 200) -> JSONResponse:
    headers = dict((k.decode(), v.decode()) for k, v in PRIVATE_HEADERS)
    return JSONResponse(value, status_code=status, headers=headers)


async def read_body(request: Request) -> bytes:
    """The request body, refusing more than MAX_BODY bytes before reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise Refusal(413, f"the request body has {declared} bytes",
                      f"send at most {MAX_BODY // 1024} KiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refusal(413, "the request body is too large",
                          f"send at most {MAX_BODY // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> Document:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Refusal(415, f"the body is {media or 'of no stated type'}, not JSON",
                      "send Content-Type: application/json")
    raw = await read_body(request)
    try:
        value = json.loads(raw or b"{}")
    except ValueError as error:  # bad syntax or encoding, or a number of 4,300+ digits
        raise Refusal(400, f"the body is not valid JSON: {error}", "fix the syntax") from None
    except RecursionError:
        raise Refusal(400, "the body is nested too deeply", "send a flat JSON object") from None
    if not isinstance(value, dict):
        raise Refusal(400, "the body must be a JSON object", 'send {"…": …}')
    return Document(value, "request body")


class AuthorityApi:
    def __init__(self, engine: Engine, limiter: Limiter, signins: SignIns | None = None) -> None:
        self.engine = engine
        self.limiter = limiter
        self.signins = signins or SignIns(limiter)
        self.sender = settings.read().sender
        self.public_url = settings.read().public_url

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, value = header.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            # Asking without credentials guesses nothing: answered before any limit.
            raise Unauthenticated("no bearer token given",
                                  "send 'Authorization: Bearer tocsin_…'; make one with "
                                  "'tocsin tokens create' or in the console")
        key = client_key(request)
        self.limiter.take(key, now())
        try:
            found = await self.run(people.authenticate_token, self.engine, value.strip(),
                                   now=now())
        except Unauthenticated:
            self.limiter.failed(key, now())
            raise
        self.limiter.succeeded(key)
        return found

    # -- who am I -----------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        p = await self.principal(request)
        return answer(principal_json(p))

    # -- declarations -------------------------------------------------------------------------

    async def desk(self, request: Request) -> Response:
        p = await self.principal(request)
        parse_query(list(request.query_params.multi_items()), {})
        found = await self.run(authority.desk, self.engine, p, now=now())
        return answer({"mine": [declaration_json(d, authority=True) for d in found.mine],
                       "to_decide": [declaration_json(d, authority=True)
                                     for d in found.to_decide],
                       "active": [declaration_json(d, authority=True) for d in found.active]})

    async def create(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        submit = body.boolean("submit", True)
        break_glass = body.optional_text("break_glass")
        fields = {k: v for k, v in body.data.items() if k not in ("submit", "break_glass")}
        req = parse_declaration(Document(fields, "request body"), default_sender=self.sender)
        outcome = await self.run(authority.create, self.engine, p, req, now=now(),
                                 submit=submit, break_glass=break_glass)
        return answer(outcome_json(outcome), 201)

    async def show(self, request: Request) -> Response:
        p = await self.principal(request)
        d = await self.run(authority.get, self.engine, p, request.path_params["id"])
        return answer(declaration_json(d, authority=True))

    async def edit(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        req = parse_declaration(body, default_sender=self.sender)
        d = await self.run(authority.edit, self.engine, p, request.path_params["id"], req,
                           now=now())
        return answer(declaration_json(d, authority=True))

    async def submit(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"break_glass"})
        outcome = await self.run(authority.submit, self.engine, p, request.path_params["id"],
                                 now=now(), break_glass=body.optional_text("break_glass"))
        return answer(outcome_json(outcome))

    async def approve(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"revision"})
        # Naming the revision read is what stops a later edit from slipping through.
        revision = body.integer("revision")
        d = await self.run(authority.approve, self.engine, p, request.path_params["id"],
                           now=now(), revision=revision)
        return answer(declaration_json(d, authority=True))

    async def reject(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"reason"})
        d = await self.run(authority.reject, self.engine, p, request.path_params["id"],
                           reason=body.text("reason"), now=now())
        return answer(declaration_json(d, authority=True))

    async def cancel(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"reason", "break_glass"})
        outcome = await self.run(authority.cancel, self.engine, p, request.path_params["id"],
                                 reason=body.text("reason"), now=now(),
                                 break_glass=body.optional_text("break_glass"))
        return answer(outcome_json(outcome))

    # -- people -------------------------------------------------------------------------------

    async def users(self, request: Request) -> Response:
        p = await self.principal(request)
        found = await self.run(people.list_users, self.engine, by=p)
        return answer({"users": [user_json(u) for u in found]})

    async def add_user(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"name", "password", "roles", "areas", "break_glass", "email"})
        user = await self.run(
            people.add_user, self.engine, body.text("name"), body.text("password"),
            sorted(parse_roles(body.strings("roles"))), body.strings("areas", []),
            break_glass=body.boolean("break_glass", False), now=now(), by=p, actor=p.actor,
            email=body.optional_text("email"))
        return answer(user_json(user), 201)

    async def set_user(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"roles", "areas", "break_glass", "disabled", "password", "email"})
        # "password" is taken only for oneself: others get a reset link (POST …/password-reset)
        data = body.data
        user = await self.run(
            people.set_user, self.engine, request.path_params["name"],
            roles=sorted(parse_roles(body.strings("roles"))) if "roles" in data else None,
            jurisdiction=body.strings("areas") if "areas" in data else None,
            break_glass=body.boolean("break_glass", False) if "break_glass" in data else None,
            disabled=body.boolean("disabled", False) if "disabled" in data else None,
            password=body.text("password") if "password" in data else None,
            email=(body.optional_text("email") or "") if "email" in data else None,
            now=now(), by=p, actor=p.actor)
        return answer(user_json(user))

    async def issue_reset(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown(set())
        made = await self.run(people.issue_password_reset, self.engine,
                              request.path_params["name"], now=now(), by=p, actor=p.actor)
        return answer({"user": made.user, "token": made.secret,
                       "link": f"{self.public_url}/console/reset?"
                               + urlencode({"token": made.secret}),
                       "expires_at": made.expires_at.isoformat()}, 201)

    async def reset_password(self, request: Request) -> Response:
        """No bearer token: the reset link's secret is the credential, once."""
        key = client_key(request)
        self.limiter.take(key, now())
        body = await json_body(request)
        body.reject_unknown({"token", "password"})
        try:
            user = await self.run(people.reset_password, self.engine, body.text("token"),
                                  body.text("password"), now=now())
        except Unauthenticated:
            self.limiter.failed(key, now())
            raise
        self.signins.forget(user.name)
        return answer(user_json(user))

    async def tokens(self, request: Request) -> Response:
        p = await self.principal(request)
        found = await self.run(people.list_tokens, self.engine, by=p)
        at = now()
        return answer({"tokens": [token_json(t, at) for t in found]})

    async def create_token(self, request: Request) -> Response:
        p = await self.principal(request)
        body = await json_body(request)
        body.reject_unknown({"user", "scopes", "label", "expires"})
        expires = body.optional_text("expires")
        lifetime = parse_duration(expires, "expires") if expires else people.DEFAULT_TOKEN_LIFETIME
        made = await self.run(people.create_token, self.engine, body.text("user", p.name),
                              sorted(parse_scopes(body.strings("scopes"))),
                              label=body.text("label", "token"), lifetime=lifetime, now=now(),
                              by=p, actor=p.actor)
        return answer({**token_json(made.token, now()), "secret": made.secret}, 201)

    async def revoke_token(self, request: Request) -> Response:
        p = await self.principal(request)
        token = await self.run(people.revoke_token, self.engine, request.path_params["id"],
                               now=now(), by=p, actor=p.actor)
        return answer(token_json(token, now()))

    # -- audit --------------------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        p = await self.principal(request)
        require(p, Scope.READ_AUDIT, "read the audit log")
        q = parse_query(list(request.query_params.multi_items()), {"limit": ParamKind.LIMIT})
        entries = await self.run(queries.audit_tail, self.engine, q.get("limit", 100))
        return answer({"entries": [audit_entry_json(e) for e in entries]})

    async def verify(self, request: Request) -> Response:
        p = await self.principal(request)
        require(p, Scope.READ_AUDIT, "verify the audit log")
        parse_query(list(request.query_params.multi_items()), {})
        verdict = await self.run(queries.verify_audit, self.engine)
        return answer(verdict_json(verdict))


def principal_json(p: Principal) -> dict[str, Any]:
    return {"name": p.name, "roles": sorted(p.roles), "jurisdiction": list(p.jurisdiction),
            "break_glass": p.break_glass, "rights": sorted(p.rights),
            "token_scopes": sorted(p.scopes) if p.scopes is not None else None}


def outcome_json(outcome: authority.Outcome) -> dict[str, Any]:
    return {"declaration": declaration_json(outcome.declaration, authority=True),
            "needs_approval": outcome.needs_approval}


def user_json(u: Any) -> dict[str, Any]:
    return {"name": u.name, "roles": sorted(u.roles), "jurisdiction": list(u.jurisdiction),
            "break_glass": u.break_glass, "disabled": u.disabled,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "created_at": u.created_at.isoformat(), "email": u.email}


def token_json(t: Any, at: datetime) -> dict[str, Any]:
    return {"id": t.id, "user": t.user, "label": t.label, "scopes": sorted(t.scopes),
            "created_at": t.created_at.isoformat(), "expires_at": t.expires_at.isoformat(),
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "state": t.state(at)}


def guarded(endpoint: Endpoint) -> Endpoint:
    """The endpoint, answering every TocsinError in the API's one JSON error shape."""
    @wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except TocsinError as error:
            return error_response(error)
    return run


def routes(api: AuthorityApi) -> list[Route]:
    p = PREFIX
    table: list[tuple[str, Endpoint, list[str]]] = [
        (f"{p}/me", api.me, ["GET"]),
        (f"{p}/declarations", api.desk, ["GET"]),
        (f"{p}/declarations", api.create, ["POST"]),
        (f"{p}/declarations/{{id}}", api.show, ["GET"]),
        (f"{p}/declarations/{{id}}", api.edit, ["PUT"]),
        (f"{p}/declarations/{{id}}/submit", api.submit, ["POST"]),
        (f"{p}/declarations/{{id}}/approve", api.approve, ["POST"]),
        (f"{p}/declarations/{{id}}/reject", api.reject, ["POST"]),
        (f"{p}/declarations/{{id}}/cancel", api.cancel, ["POST"]),
        (f"{p}/users", api.users, ["GET"]),
        (f"{p}/users", api.add_user, ["POST"]),
        (f"{p}/users/{{name}}", api.set_user, ["PATCH"]),
        (f"{p}/users/{{name}}/password-reset", api.issue_reset, ["POST"]),
        (f"{p}/password-reset", api.reset_password, ["POST"]),
        (f"{p}/tokens", api.tokens, ["GET"]),
        (f"{p}/tokens", api.create_token, ["POST"]),
        (f"{p}/tokens/{{id}}", api.revoke_token, ["DELETE"]),
        (f"{p}/audit", api.audit, ["GET"]),
        (f"{p}/audit/verify", api.verify, ["GET"]),
    ]
    return grouped([(path, guarded(fn), methods) for path, fn, methods in table])


def grouped(table: list[tuple[str, Endpoint, list[str]]]) -> list[Route]:
    """One route per path, dispatching on the method, so a 405 names every allowed one."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for path, fn, methods in table:
        for method in methods:
            by_path.setdefault(path, {})[method] = fn
            if method == "GET":
                by_path[path]["HEAD"] = fn

    def dispatcher(handlers: dict[str, Endpoint]) -> Endpoint:
        async def dispatch(request: Request) -> Response:
            return await handlers[request.method](request)
        return dispatch

    return [Route(path, dispatcher(handlers), methods=list(handlers))
            for path, handlers in by_path.items()]


def not_found(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 404)
    if code == 405:
        response = error_response(Refusal(405, f"{request.method} is not allowed on "
                                          f"{request.url.path}", "see /openapi.json"))
        allow = (getattr(exc, "headers", None) or {}).get("Allow")
        if allow:
            response.headers["allow"] = allow
        return response
    return error_response(Refusal(404, f"there is nothing at {request.url.path}",
                                  "see /openapi.json"))


