"""The issuing console (/console): server-rendered forms that work without JavaScript.

Sessions live in the database (any worker serves any request) behind an HttpOnly, SameSite=Strict
cookie, Secure on HTTPS. Every form carries a CSRF token: the session's, or before sign-in a
random one that must match its cookie. Requests from another origin are refused.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import partial, wraps
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tocsin import settings
from tocsin.domain import access
from tocsin.domain.access import Principal, Scope, parse_roles, parse_scopes
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.errors import InvalidInput, RateLimited, TocsinError, Unauthenticated
from tocsin.domain.times import iso, parse_duration
from tocsin.ingest.declarations import parse_declaration
from tocsin.ingest.document import Document
from tocsin.render import console as views
from tocsin.render import urls
from tocsin.render.console import CONSOLE, Chrome
from tocsin.render.console_text import texts
from tocsin.render.errors import Refusal, status_of
from tocsin.render.i18n import language_name
from tocsin.service import authority, people, queries
from tocsin.service.queries import World
from tocsin.web import console_forms as forms
from tocsin.web.authority import client_key, grouped, now, read_body
from tocsin.web.guard import PRIVATE_HEADERS, Limiter, SignIns
from tocsin.web.site import negotiate

SESSION_COOKIE = "tocsin_session"
CSRF_COOKIE = "tocsin_csrf"
LANG_COOKIE = "tocsin_lang"
T = TypeVar("T")


class SignIn(Exception):
    """No session: send the browser to the sign-in page."""


class Console:
    def __init__(self, engine: Engine, limiter: Limiter, signins: SignIns | None = None) -> None:
        self.engine = engine
        self.limiter = limiter
        self.signins = signins or SignIns(limiter)
        self.sender = settings.read().sender
        self.cap_sender = settings.read().cap_sender
        self.public_url = settings.read().public_url

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    # -- plumbing -----------------------------------------------------------------------------

    def lang(self, request: Request) -> str:
        asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        if asked in urls.PAGE_LANGUAGES:
            return asked
        return negotiate(request.headers.get("accept-language"))

    async def session(self, request: Request) -> people.Session:
        token = request.cookies.get(SESSION_COOKIE)
        found = await self.run(people.session, self.engine, token, now=now()) if token else None
        if found is None:
            raise SignIn
        return found

    def chrome(self, request: Request, title: str, s: people.Session | None,
               csrf: str | None = None) -> Chrome:
        return Chrome(lang=self.lang(request), title=title,
                      user=s.user.name if s else None,
                      rights=s.user.principal().rights if s else frozenset(),
                      csrf=s.csrf if s else (csrf or ""), path=request.url.path)

    def page(self, request: Request, html: str, status: int = 200,
             cookies: dict[str, str] | None = None) -> Response:
        response = HTMLResponse(html, status_code=status)
        for key, value in PRIVATE_HEADERS:
            response.headers[key.decode()] = value.decode()
        self._remember_language(request, response)
        for cookie, text in (cookies or {}).items():
            self._cookie(request, response, cookie, text)
        return response

    def _cookie(self, request: Request, response: Response, name: str, value: str,
                max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=CONSOLE, httponly=True,
                            samesite="strict", secure=_https(request))

    def _remember_language(self, request: Request, response: Response) -> None:
        asked = request.query_params.get("lang")
        if asked in urls.PAGE_LANGUAGES:
            self._cookie(request, response, LANG_COOKIE, asked, max_age=365 * 86400)

    def redirect(self, request: Request, path: str) -> Response:
        response = RedirectResponse(path, status_code=303)
        for key, value in PRIVATE_HEADERS:
            response.headers[key.decode()] = value.decode()
        return response

    async def form(self, request: Request, expected_csrf: str) -> dict[str, list[str]]:
        """The posted form, after the origin and CSRF checks."""
        self.limiter.take(client_key(request), now())
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin(request):
            raise Refusal(403, f"this form was sent from {origin}", "use the console itself")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise Refusal(415, "the console takes HTML forms only",
                          "send application/x-www-form-urlencoded")
        body = (await read_body(request)).decode("utf-8", errors="replace")
        fields: dict[str, list[str]] = {}
        for key, value in parse_qsl(body, keep_blank_values=True):
            fields.setdefault(key, []).append(value)
        sent = fields.get("csrf", [""])[0]
        if not expected_csrf or not hmac.compare_digest(sent.encode(), expected_csrf.encode()):
            raise Refusal(403, "the form's security token is missing or out of date",
                          "reload the page and send the form again")
        return fields

    def error(self, request: Request, error: TocsinError, s: people.Session | None) -> Response:
        chrome = self.chrome(request, texts_of(self.lang(request))["error"], s)
        status = status_of(error)
        response = self.page(request, views.render(
            "error.html", chrome, status=status, problem=error.problem, fix=error.fix,
            back=CONSOLE), status)
        if status == 429 and hasattr(error, "retry_after"):
            response.headers["retry-after"] = str(error.retry_after)
        return response

    # -- sign in and out ----------------------------------------------------------------------

    async def login_form(self, request: Request, problem: str | None = None,
                         status: int = 200) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        chrome = self.chrome(request, texts_of(self.lang(request))["sign_in_title"], None, csrf)
        return self.page(request, views.render("login.html", chrome, problem=problem,
                                               next=_next(request.query_params.get("next"))),
                         status, cookies={CSRF_COOKIE: csrf})

    async def login(self, request: Request) -> Response:
        key = client_key(request)
        fields = await self.form(request, request.cookies.get(CSRF_COOKIE, ""))
        name, password = forms.one(fields, "name"), forms.one(fields, "password")
        # form() has counted the request and checked the client's lock-out; this checks the
        # client's back-off on this name, alike for every name, user or not.
        self.signins.check(key, name, now())
        try:
            made = await self.run(people.login, self.engine, name, password, now=now(),
                                  lock_applies=self.signins.lock_applies(key, name))
        except Unauthenticated as error:
            self.signins.failed(key, name, now())
            return await self.login_form(request, error.message, 401)
        except RateLimited:  # a locked account answers as an unknown name does
            self.signins.failed(key, name, now())
            return await self.login_form(request, people.WRONG.message, 401)
        self.signins.succeeded(key, name)
        response = self.redirect(request, _next(forms.one(fields, "next")))
        self._cookie(request, response, SESSION_COOKIE, made.token,
                     max_age=int(people.SESSION_LIFETIME.total_seconds()))
        return response

    async def logout(self, request: Request) -> Response:
        s = await self.session(request)
        await self.form(request, s.csrf)
        await self.run(people.logout, self.engine, request.cookies.get(SESSION_COOKIE, ""))
        response = self.redirect(request, f"{CONSOLE}/login")
        response.delete_cookie(SESSION_COOKIE, path=CONSOLE)
        return response

    # -- the desk -----------------------------------------------------------------------------

    async def desk(self, request: Request) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        found = await self.run(authority.desk, self.engine, p, now=now())
        world = await self.run(queries.load_world, self.engine)
        lang = self.lang(request)
        return self.page(request, views.render(
            "desk.html", self.chrome(request, texts_of(lang)["desk"], s),
            mine=views.rows(world, found.mine, lang),
            to_decide=views.rows(world, found.to_decide, lang),
            active=views.rows(world, found.active, lang),
            ending=views.rows(world, found.ending, lang)))

    # -- declaring ----------------------------------------------------------------------------

    async def declare_form(self, request: Request) -> Response:
        s = await self.session(request)
        world = await self.run(queries.load_world, self.engine)
        values: dict[str, list[str]] = {}
        title = texts_of(self.lang(request))["new_declaration"]
        old_id = request.query_params.get("replaces")
        if old_id:
            old = await self.run(authority.get, self.engine, s.user.principal(), old_id)
            values = forms.values_of(old, world)
            values["replaces"] = [old.id]
            values["effective"] = []
            title = texts_of(self.lang(request))["extend_title"].format(id=old.id)
        return self._declaration_form(request, s, world, values, title, f"{CONSOLE}/declare")

    def _declaration_form(self, request: Request, s: people.Session, world: World,
                          values: dict[str, list[str]], title: str, action: str, *,
                          preview: views.Preview | None = None, problem: TocsinError | None = None,
                          editing: Declaration | None = None) -> Response:
        p = s.user.principal()
        lang = self.lang(request)
        html = views.render(
            "declare.html", self.chrome(request, title, s), v=values, action=action,
            levels=forms.level_options(world, lang),
            areas=[(code, depth, name, not access.outside(p, world.tree, [code]))
                   for code, depth, name in forms.area_options(world, lang)],
            languages=[(code, language_name(code, lang)) for code in forms.text_languages(world)],
            zones=forms.zones(world), preview=preview,
            problem=problem, editing=editing, break_glass=p.break_glass)
        return self.page(request, html, status_of(problem) if problem else 200)

    async def declare(self, request: Request) -> Response:
        s = await self.session(request)
        fields = await self.form(request, s.csrf)
        return await self._save(request, s, fields, None)

    async def _save(self, request: Request, s: people.Session, fields: dict[str, list[str]],
                    editing: Declaration | None) -> Response:
        world = await self.run(queries.load_world, self.engine)
        p = s.user.principal()
        step = forms.one(fields, "step") or "preview"
        lang = self.lang(request)
        title = (texts_of(lang)["edit_title"].format(id=editing.id) if editing
                 else texts_of(lang)["new_declaration"])
        action = f"{CONSOLE}/declarations/{editing.id}/edit" if editing else f"{CONSOLE}/declare"
        try:
            req = parse_declaration(Document(forms.request_document(fields), "form"),
                                    default_sender=self.sender)
            if step == "preview":
                world = forms.seen_by(world, p)  # another's draft must not show through
                candidate = forms.candidate(world, p, req, now=now())
                scheme = world.scheme(req.scheme)
                replaced = [world.declarations[i] for i in req.replaces
                            if i in world.declarations]
                shown = views.preview(
                    world, candidate, now=now(), lang=lang, cap_sender=self.cap_sender,
                    needs_approval=access.needs_approval(scheme, scheme.approval, world.tree,
                                                         candidate, replaced, now=now()))
                return self._declaration_form(request, s, world, fields, title, action,
                                              preview=shown, editing=editing)
            if editing is not None:
                saved = await self.run(authority.edit, self.engine, p, editing.id, req,
                                       now=now())
                return self.redirect(request, f"{CONSOLE}/declarations/{saved.id}")
            reason = forms.one(fields, "break_glass_reason") if step == "break-glass" else None
            outcome = await self.run(authority.create, self.engine, p, req, now=now(),
                                     submit=step in ("submit", "break-glass"),
                                     break_glass=reason)
            return self.redirect(request, f"{CONSOLE}/declarations/{outcome.declaration.id}")
        except TocsinError as error:
            return self._declaration_form(request, s, world, fields, title, action,
                                          problem=error, editing=editing)

    async def declaration(self, request: Request) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        d = await self.run(authority.get, self.engine, p, request.path_params["id"])
        world = await self.run(queries.load_world, self.engine, published_only=True)
        lang = self.lang(request)
        scheme = world.scheme(d.scheme)
        everything = await self.run(queries.load_world, self.engine)
        replaced = [everything.declarations[i] for i in d.replaces
                    if i in everything.declarations]
        shown = views.preview(world, d, now=now(), lang=lang, cap_sender=self.cap_sender,
                              needs_approval=d.status is Status.PENDING or (
                                  d.status is Status.DRAFT and access.needs_approval(
                                      scheme, scheme.approval, world.tree, d, replaced,
                                      now=now())))
        may = _may(p, world, d)
        return self.page(request, views.render(
            "declaration.html",
            self.chrome(request, texts_of(lang)["declaration_title"].format(id=d.id), s),
            d=d, row=views.rows(everything, [d], lang)[0], preview=shown, may=may,
            times={"effective": iso(d.effective) if d.effective else None,
                   "expires": iso(d.expires) if d.expires else None}))

    async def edit_form(self, request: Request) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        d = await self.run(authority.get, self.engine, p, request.path_params["id"])
        access.may_edit(p, d)
        world = await self.run(queries.load_world, self.engine)
        return self._declaration_form(
            request, s, world, forms.values_of(d, world),
            texts_of(self.lang(request))["edit_title"].format(id=d.id),
            f"{CONSOLE}/declarations/{d.id}/edit", editing=d)

    async def edit(self, request: Request) -> Response:
        s = await self.session(request)
        fields = await self.form(request, s.csrf)
        d = await self.run(authority.get, self.engine, s.user.principal(),
                           request.path_params["id"])
        access.may_edit(s.user.principal(), d)
        return await self._save(request, s, fields, d)

    async def act(self, request: Request) -> Response:
        """submit, approve, reject or cancel a declaration, then show it again."""
        s = await self.session(request)
        fields = await self.form(request, s.csrf)
        p = s.user.principal()
        target = request.path_params["id"]
        verb = request.path_params["verb"]
        reason = forms.one(fields, "reason")
        glass = forms.one(fields, "break_glass_reason") if "break_glass_reason" in fields else None
        if verb == "submit":
            await self.run(authority.submit, self.engine, p, target, now=now(),
                           break_glass=glass)
        elif verb == "approve":
            revision = forms.one(fields, "revision")
            if not (revision.isascii() and revision.isdigit() and len(revision) <= 9):
                raise InvalidInput(f"revision {revision!r} is not a whole number",
                                   "approve from the declaration's page")
            await self.run(authority.approve, self.engine, p, target, now=now(),
                           revision=int(revision))
        elif verb == "reject":
            await self.run(authority.reject, self.engine, p, target, reason=reason, now=now())
        elif verb == "cancel":
            await self.run(authority.cancel, self.engine, p, target, reason=reason, now=now(),
                           break_glass=glass)
        else:
            raise Refusal(404, f"there is no action {verb!r}", "use the buttons on the page")
        return self.redirect(request, f"{CONSOLE}/declarations/{target}")

    # -- people -------------------------------------------------------------------------------

    async def users(self, request: Request, reset: people.PasswordReset | None = None
                    ) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        found = await self.run(people.list_users, self.engine, by=p)
        world = await self.run(queries.load_world, self.engine, published_only=True)
        lang = self.lang(request)
        return self.page(request, views.render(
            "users.html", self.chrome(request, texts_of(lang)["users"], s), users=found,
            roles=list(access.Role), areas=forms.area_options(world, lang), now=now(),
            reset=reset, reset_link=reset_link(self.public_url, reset) if reset else None))

    async def reset_post(self, request: Request) -> Response:
        """An admin issues a one-time link for a user to choose her own password: shown
        once, on this page, to hand over."""
        s = await self.session(request)
        await self.form(request, s.csrf)
        p = s.user.principal()
        made = await self.run(people.issue_password_reset, self.engine,
                              request.path_params["name"], now=now(), by=p, actor=p.actor)
        return await self.users(request, reset=made)

    async def reset_form(self, request: Request, problem: str | None = None,
                         status: int = 200, token: str | None = None) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        chrome = self.chrome(request, texts_of(self.lang(request))["reset_title"], None, csrf)
        token = request.query_params.get("token", "") if token is None else token
        return self.page(request, views.render("reset.html", chrome, problem=problem,
                                               token=token), status, cookies={CSRF_COOKIE: csrf})

    async def reset(self, request: Request) -> Response:
        """The user sets her own password with the link; it works once."""
        key = client_key(request)
        fields = await self.form(request, request.cookies.get(CSRF_COOKIE, ""))
        token, password = forms.one(fields, "token"), forms.one(fields, "password")
        try:
            if password != forms.one(fields, "password_again"):
                raise InvalidInput("the two passwords differ", "type the same password twice")
            user = await self.run(people.reset_password, self.engine, token, password,
                                  now=now())
        except Unauthenticated as error:
            self.limiter.failed(key, now())
            return await self.reset_form(request, error.message, 401, token)
        except InvalidInput as error:
            return await self.reset_form(request, f"{error.message} ({error.fix})",
                                         400, token)
        self.signins.forget(user.name)
        return self.redirect(request, f"{CONSOLE}/login")

    async def user_post(self, request: Request) -> Response:
        s = await self.session(request)
        fields = await self.form(request, s.csrf)
        p = s.user.principal()
        name = request.path_params.get("name")
        roles = sorted(parse_roles(fields.get("roles", [])))
        areas = [a for a in fields.get("areas", []) if a]
        password = forms.one(fields, "password")
        if name is None:
            await self.run(people.add_user, self.engine, forms.one(fields, "name"), password, roles,
                           areas, break_glass="break_glass" in fields, now=now(), by=p,
                           actor=p.actor)
        else:  # a password is never set here: the user chooses hers with a reset link
            await self.run(people.set_user, self.engine, name, roles=roles, jurisdiction=areas,
                           break_glass="break_glass" in fields,
                           disabled="disabled" in fields, password=password or None,
                           now=now(), by=p, actor=p.actor)
        return self.redirect(request, f"{CONSOLE}/users")

    async def tokens(self, request: Request, secret: str | None = None) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        found = await self.run(people.list_tokens, self.engine, by=p)
        return self.page(request, views.render(
            "tokens.html", self.chrome(request, texts_of(self.lang(request))["tokens"], s),
            tokens=found, scopes=sorted(p.rights), secret=secret, now=now()))

    async def token_post(self, request: Request) -> Response:
        s = await self.session(request)
        fields = await self.form(request, s.csrf)
        p = s.user.principal()
        token_id = request.path_params.get("id")
        if token_id is not None:
            await self.run(people.revoke_token, self.engine, token_id, now=now(), by=p,
                           actor=p.actor)
            return self.redirect(request, f"{CONSOLE}/tokens")
        lifetime = forms.one(fields, "expires")
        made = await self.run(
            people.create_token, self.engine, forms.one(fields, "user") or p.name,  # only oneself
            sorted(parse_scopes(fields.get("scopes", []))), label=forms.one(fields, "label"),
            lifetime=parse_duration(lifetime, "lifetime") if lifetime
            else people.DEFAULT_TOKEN_LIFETIME, now=now(), by=p, actor=p.actor)
        return await self.tokens(request, secret=made.secret)

    async def audit(self, request: Request) -> Response:
        s = await self.session(request)
        p = s.user.principal()
        access.require(p, Scope.READ_AUDIT, "read the audit log")
        verdict = await self.run(queries.verify_audit, self.engine)
        entries = await self.run(queries.audit_tail, self.engine, 200)
        return self.page(request, views.render(
            "audit.html", self.chrome(request, texts_of(self.lang(request))["audit"], s),
            verdict=verdict, entries=list(reversed(entries))))


def reset_link(public_url: str, reset: people.PasswordReset) -> str:
    """Where the user chooses her password: the console's page, with the link's secret."""
    return f"{public_url}{CONSOLE}/reset?" + urlencode({"token": reset.secret})


def texts_of(lang: str) -> Any:
    return texts(lang)


def _https(request: Request) -> bool:
    """The scheme the browser used: behind a trusted proxy, the one it forwarded."""
    return request.url.scheme == "https"


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def _next(path: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    if path and path.startswith(CONSOLE) and not path.startswith("//") and "\\" not in path:
        return path
    return CONSOLE


def _may(p: Principal, world: World, d: Declaration) -> dict[str, bool]:
    def ok(check: Callable[[], None]) -> bool:
        try:
            check()
        except TocsinError:
            return False
        return True

    tree = world.tree
    mine = d.created_by == p.actor
    unpublished = d.status in (Status.DRAFT, Status.PENDING)
    asker = d.cancel_request.by if d.cancel_request else d.created_by
    replaced = [world.declarations[i] for i in d.replaces if i in world.declarations]
    stake = access.at_stake(d, replaced) if d.status is Status.PENDING else list(d.areas)
    return {
        "edit": mine and unpublished and p.has(Scope.DECLARE),
        "submit": mine and d.status is Status.DRAFT and p.has(Scope.DECLARE),
        "decide": (d.status is Status.PENDING or d.cancel_request is not None) and ok(
            lambda: access.may_approve(p, tree, d, asker, stake)),
        "cancel": d.is_published and d.cancellation is None and d.cancel_request is None
        and ok(lambda: access.may_cancel(p, tree, d)),
        "extend": d.is_published and d.cancellation is None and p.has(Scope.DECLARE),
        "break_glass": p.break_glass and p.has(Scope.DECLARE),
    }


def _guarded(console: Console, endpoint: Callable[..., Any]) -> Callable[[Request], Any]:
    @wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except SignIn:
            target = f"{CONSOLE}/login?" + urlencode({"next": request.url.path})
            return console.redirect(request, target)
        except TocsinError as error:
            token = request.cookies.get(SESSION_COOKIE)
            s = await console.run(people.session, console.engine, token,
                                  now=now()) if token else None
            return console.error(request, error, s)
    return run


def routes(engine: Engine, limiter: Limiter, signins: SignIns | None = None) -> list[Route]:
    c = Console(engine, limiter, signins)
    table: list[tuple[str, Callable[..., Any], list[str]]] = [
        (CONSOLE, c.desk, ["GET"]),
        (f"{CONSOLE}/login", c.login_form, ["GET"]),
        (f"{CONSOLE}/login", c.login, ["POST"]),
        (f"{CONSOLE}/logout", c.logout, ["POST"]),
        (f"{CONSOLE}/declare", c.declare_form, ["GET"]),
        (f"{CONSOLE}/declare", c.declare, ["POST"]),
        (f"{CONSOLE}/declarations/{{id}}", c.declaration, ["GET"]),
        (f"{CONSOLE}/declarations/{{id}}/edit", c.edit_form, ["GET"]),
        (f"{CONSOLE}/declarations/{{id}}/edit", c.edit, ["POST"]),
        (f"{CONSOLE}/declarations/{{id}}/{{verb}}", c.act, ["POST"]),
        (f"{CONSOLE}/users", c.users, ["GET"]),
        (f"{CONSOLE}/users", c.user_post, ["POST"]),
        (f"{CONSOLE}/users/{{name}}", c.user_post, ["POST"]),
        (f"{CONSOLE}/users/{{name}}/reset", c.reset_post, ["POST"]),
        (f"{CONSOLE}/reset", c.reset_form, ["GET"]),
        (f"{CONSOLE}/reset", c.reset, ["POST"]),
        (f"{CONSOLE}/tokens", c.tokens, ["GET"]),
        (f"{CONSOLE}/tokens", c.token_post, ["POST"]),
        (f"{CONSOLE}/tokens/{{id}}/revoke", c.token_post, ["POST"]),
        (f"{CONSOLE}/audit", c.audit, ["GET"]),
    ]
    return grouped([(path, _guarded(c, fn), methods) for path, fn, methods in table])
