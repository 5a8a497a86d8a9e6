"""The authority API and the console over a real socket, on both databases: who may do what
(principal × endpoint × inside or outside their jurisdiction × own or another's work),
sign-in, tokens, CSRF, back-off, rate limits, security headers, break-glass, audit head."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from tests.helpers import AUTHORITY_PASSWORD, AUTHORITY_USERS, assert_error, dump, request
from tests.web_server import running

from tocsin.domain.access import FREE_FAILURES, ROLE_SCOPES, Scope
from tocsin.service import authority, people, queries
from tocsin.store.database import connect
from tocsin.web.app import create_app

if TYPE_CHECKING:
    from tests.conftest import Databases

API = "/api/v1/authority"
OPERATOR = "local-operator:test"
PASSWORD = AUTHORITY_PASSWORD
USERS = AUTHORITY_USERS
WORLD: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    # name: (author, level, areas, submit) -- what every cell starts from
    "draft-75": ("issuer-almaty", "moderate", ("KZ-75",), False),
    "draft-high-75": ("issuer-almaty", "high", ("KZ-75",), False),
    "pending-75": ("issuer-almaty", "high", ("KZ-75",), True),
    "pending-kz": ("issuer-kz", "high", ("KZ",), True),
    "pending-both": ("both", "high", ("KZ-75",), True),
    "live-75": ("issuer-almaty", "moderate", ("KZ-75",), True),
    "live-kz": ("issuer-kz", "moderate", ("KZ",), True),
}
REF = re.compile(r"<([^>]+)>")
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""These tests are about policy: argon2's production cost would only slow them down."""


def body(level: str, *areas: str, **extra: Any) -> dict[str, Any]:
    """A declaration request as the API takes it."""
    return {"scheme": "kz-terror", "level": level, "areas": list(areas),
            "texts": {"en": {"headline": "Test level"}}, **extra}


def form(level: str, *areas: str, step: str = "submit", **extra: str) -> dict[str, Any]:
    """The console's declaration form, filled in."""
    return {"level": f"kz-terror/{level}", "areas": list(areas), "zone": "Asia/Almaty",
            "text-en-headline": "Test level", "step": step, **extra}


def csrf_in(html: str) -> str:
    return str(re.findall(r'name="csrf" value="([^"]+)"', html)[0])


class Browser(httpx.Client):
    """A browser on the console: its cookies and, once signed in, the session's CSRF token."""

    csrf = ""

    def send_form(self, path: str, fields: dict[str, Any] | None = None) -> httpx.Response:
        return self.post(path, data={"csrf": self.csrf, **(fields or {})})


@dataclass
class Site:
    engine: Engine
    base: str
    api: httpx.Client
    tokens: dict[str, str]
    refs: dict[str, str]
    """'<pending-75>' or '<token:NAME>' in a path stands for that id."""
    browsers: ExitStack = field(default_factory=ExitStack)
    signed_in: dict[str, Browser] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return REF.sub(lambda m: self.refs[m[1]], template)

    def call(self, who: str, method: str, path: str,
             json: dict[str, Any] | None = None) -> httpx.Response:
        """As `who` with their token ('nobody': none)."""
        headers = {"authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        json = {} if json is None and method in ("POST", "PUT", "PATCH") else json
        return self.api.request(method, API + self.path(path), json=json, headers=headers)

    def browser(self) -> Browser:
        return self.browsers.enter_context(Browser(base_url=self.base))

    def sign_in(self, name: str) -> Browser:
        """Through the real form: the page sets the pre-login CSRF cookie, the POST signs in;
        both cookies are HttpOnly, SameSite=Strict and kept to /console."""
        if name not in self.signed_in:
            browser = self.browser()
            page = browser.get("/console/login")
            signed = browser.post("/console/login", data={
                "csrf": csrf_in(page.text), "name": name, "password": PASSWORD, "next": "/console"})
            assert (signed.status_code, signed.headers["location"]) == (303, "/console")
            assert signed.headers["set-cookie"].startswith("tocsin_session=")
            for cookie in (page.headers["set-cookie"], signed.headers["set-cookie"]):
                flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
                assert {"httponly", "samesite=strict", "path=/console"} <= flags, cookie
            browser.csrf = csrf_in(browser.get("/console").text)
            self.signed_in[name] = browser
        return self.signed_in[name]

    def state(self, key: str) -> str:
        d = queries.load_world(self.engine).declarations[self.refs.get(key, key)]
        return "cancelled" if d.cancellation else d.status.value

    def quiet(self, *who: str) -> dict[str, Any]:
        """Every table, once these tokens' last use is stamped (done at most once a minute)."""
        for name in who:
            self.call(name, "GET", "/me")
        return dump(self.engine)


@contextmanager
def serve(engine: Engine, rate_limit: int = 100_000) -> Iterator[Site]:
    """The users, a token each with every scope its roles allow, the WORLD, and a server."""
    with pytest.MonkeyPatch.context() as patch, ExitStack() as closing:
        patch.setattr(people, "_hasher", CHEAP)
        at, tokens, refs = datetime.now(UTC), {}, {}
        for name, (roles, areas, glass) in USERS.items():
            people.add_user(engine, name, PASSWORD, roles, areas, break_glass=glass, now=at,
                            by=None, actor=OPERATOR)
            scopes = sorted(frozenset().union(*(ROLE_SCOPES[role] for role in roles)))
            made = people.create_token(engine, name, scopes, label="matrix", now=at, by=None,
                                       actor=OPERATOR)
            tokens[name], refs[f"token:{name}"] = made.secret, made.token.id
        for key, (author, level, areas, submit) in WORLD.items():
            author_is = people.get_user(engine, author).principal()
            refs[key] = authority.create(engine, author_is, request(level, areas), now=at,
                                         submit=submit).declaration.id
        base = closing.enter_context(running(create_app(engine, rate_limit=rate_limit)))
        site = Site(engine, base, closing.enter_context(httpx.Client(base_url=base)), tokens, refs)
        closing.enter_context(site.browsers)
        yield site


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    with serve(engine) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def shared(databases: Databases) -> Iterator[Callable[[str], Site]]:
    """A site per backend for the cells that write nothing (reads, refusals: they check)."""
    sites: dict[str, Site] = {}
    with ExitStack() as stack:
        def site_on(backend: str) -> Site:
            if backend not in sites:
                engine = connect(databases.ready(backend))
                stack.callback(engine.dispose)
                sites[backend] = stack.enter_context(serve(engine))
            return sites[backend]
        yield site_on


def site_for(request: pytest.FixtureRequest, backend: str, writes: bool) -> Site:
    return cast(Site, request.getfixturevalue("site") if writes
                else request.getfixturevalue("shared")(backend))


def cells(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One cell per principal named in a row's first column."""
    return [(who, *rest) for names, *rest in rows for who in names.split()]


def cell_id(value: object) -> str | None:
    return value if isinstance(value, str) else None


def on(key: str, verb: str = "", prefix: str = "") -> str:
    return f"{prefix}/declarations/<{key}>" + (f"/{verb}" if verb else "")


REASON, OVER, CREATE = {"reason": "not clear enough"}, {"reason": "over"}, ("POST", "/declarations")
READ, READ_FORM = {"revision": 1}, {"revision": "1"}
"""What an approver read: every declaration in WORLD is at its first revision."""
NEW_USER = {"name": "issuer-astana", "password": PASSWORD, "roles": ["issuer"], "areas": ["KZ-71"]}
MINE = "/tokens/<token:issuer-almaty>"
API_MATRIX = cells([
    # who, method, path, body, status, then: the state of the declaration in the path (or
    # of the one POST /declarations made). A refusal must leave every table as it was.
    (" ".join(USERS), "GET", "/me", None, 200, None),
    # declare: issuers inside their jurisdiction; 'high' and up wait for a second person
    ("issuer-almaty issuer-kz breaker", *CREATE, body("high", "KZ-75"), 201, "pending"),
    ("issuer-almaty", *CREATE, body("moderate", "KZ-75"), 201, "published"),
    ("issuer-kz", *CREATE, body("moderate", "KZ-19"), 201, "published"),
    ("issuer-almaty", *CREATE, body("critical", "KZ-75", submit=False), 201, "draft"),
    ("breaker", *CREATE, body("critical", "KZ", break_glass="imminent"), 201, "published"),
    ("breaker", *CREATE, body("critical", "KZ", break_glass="  "), 400, None),
    ("issuer-kz", *CREATE, body("critical", "KZ", break_glass="imminent"), 403, None),
    ("issuer-almaty", *CREATE, body("high", "KZ"), 403, None),  # the country: outside
    ("issuer-almaty", *CREATE, body("moderate", "KZ-19"), 403, None),  # Almaty region: outside
    ("approver-almaty approver-kz auditor admin", *CREATE, body("high", "KZ-75"), 403, None),
    # the desk, and one declaration: unpublished ones to their author and who may decide
    ("issuer-almaty approver-almaty auditor admin", "GET", "/declarations", None, 200, None),
    ("issuer-almaty approver-almaty approver-kz", "GET", on("pending-75"), None, 200, "pending"),
    ("issuer-kz auditor admin", "GET", on("pending-75"), None, 404, "pending"),
    ("approver-almaty", "GET", on("pending-kz"), None, 404, "pending"),  # outside
    ("issuer-almaty auditor", "GET", on("live-kz"), None, 200, "published"),
    ("approver-kz", "GET", "/declarations/nope", None, 404, None),
    # edit: the author, before publication, inside their jurisdiction
    ("issuer-almaty", "PUT", on("draft-75"), body("moderate", "KZ-75"), 200, "draft"),
    ("issuer-almaty", "PUT", on("pending-75"), body("high", "KZ-75"), 200, "pending"),
    ("issuer-almaty", "PUT", on("draft-75"), body("moderate", "KZ"), 403, "draft"),
    # someone else's draft is invisible: 404, as if it did not exist
    ("issuer-kz approver-almaty admin", "PUT", on("draft-75"), body("moderate", "KZ-75"), 404,
     "draft"),
    ("issuer-almaty", "PUT", on("live-75"), body("moderate", "KZ-75"), 403, "published"),
    # submit: the author
    ("issuer-almaty", "POST", on("draft-75", "submit"), None, 200, "published"),
    ("issuer-almaty", "POST", on("draft-high-75", "submit"), None, 200, "pending"),
    ("issuer-kz approver-almaty", "POST", on("draft-75", "submit"), None, 404, "draft"),
    ("issuer-almaty", "POST", on("pending-75", "submit"), None, 409, "pending"),
    ("issuer-almaty", "POST", on("live-75", "submit"), None, 403, "published"),
    # approve: a second person with the right, inside their jurisdiction
    ("approver-almaty approver-kz", "POST", on("pending-75", "approve"), READ, 200, "published"),
    ("approver-kz", "POST", on("pending-kz", "approve"), READ, 200, "published"),
    ("approver-almaty", "POST", on("pending-kz", "approve"), READ, 404, "pending"),
    ("issuer-almaty", "POST", on("pending-75", "approve"), READ, 403, "pending"),  # the author
    ("issuer-kz breaker auditor admin", "POST", on("pending-75", "approve"), READ, 404,
     "pending"),
    ("both", "POST", on("pending-both", "approve"), READ, 403, "pending"),  # own work
    ("approver-kz", "POST", on("pending-both", "approve"), READ, 200, "published"),
    ("approver-kz", "POST", on("pending-75", "approve"), {"revision": 99}, 409, "pending"),
    ("approver-kz", "POST", on("live-75", "approve"), READ, 409, "published"),
    ("approver-kz", "POST", on("draft-75", "approve"), READ, 404, "draft"),
    ("approver-kz", "POST", "/declarations/nope/approve", READ, 404, None),
    # an approval names the revision it read: without it, nothing is approved
    ("approver-kz", "POST", on("pending-75", "approve"), None, 400, "pending"),
    ("approver-kz", "POST", on("pending-75", "approve"), {"revision": "1"}, 400,
     "pending"),
    # reject: the same people, saying why
    ("approver-almaty", "POST", on("pending-75", "reject"), REASON, 200, "rejected"),
    ("approver-kz", "POST", on("pending-kz", "reject"), REASON, 200, "rejected"),
    ("approver-almaty", "POST", on("pending-kz", "reject"), REASON, 404, "pending"),
    ("issuer-kz auditor", "POST", on("pending-75", "reject"), REASON, 404, "pending"),
    ("both", "POST", on("pending-both", "reject"), REASON, 403, "pending"),
    ("approver-kz", "POST", on("pending-75", "reject"), None, 400, "pending"),
    ("approver-kz", "POST", on("pending-75", "reject"), {"reason": " "}, 400, "pending"),
    # cancel: issuers inside the jurisdiction, anyone's work ('moderate': no second person)
    ("issuer-almaty issuer-kz", "POST", on("live-75", "cancel"), OVER, 200, "cancelled"),
    ("breaker", "POST", on("live-kz", "cancel"), OVER, 200, "cancelled"),
    ("issuer-almaty", "POST", on("live-kz", "cancel"), OVER, 403, "published"),
    ("approver-kz admin", "POST", on("live-75", "cancel"), OVER, 403, "published"),
    ("issuer-kz", "POST", on("live-kz", "cancel"), {**OVER, "break_glass": "now"}, 403,
     "published"),
    ("issuer-almaty", "POST", on("live-75", "cancel"), None, 400, "published"),
    ("issuer-almaty", "POST", on("pending-75", "cancel"), OVER, 409, "pending"),
    ("admin", "GET", "/users", None, 200, None),  # users: admins only
    ("issuer-kz approver-kz auditor", "GET", "/users", None, 403, None),
    ("admin", "POST", "/users", NEW_USER, 201, None),
    ("issuer-kz auditor", "POST", "/users", NEW_USER, 403, None),
    ("admin", "PATCH", "/users/issuer-almaty", {"areas": ["KZ-19"]}, 200, None),
    ("issuer-almaty approver-kz", "PATCH", "/users/issuer-almaty", {"areas": ["KZ"]}, 403, None),
    ("admin", "PATCH", "/users/admin", {"disabled": True}, 409, None),
    ("admin", "PATCH", "/users/nobody", {"disabled": True}, 404, None),
    ("admin issuer-almaty auditor", "GET", "/tokens", None, 200, None),  # tokens: one's own
    ("issuer-kz", "POST", "/tokens", {"scopes": ["declare"]}, 403, None),  # needs admin scope
    ("admin", "POST", "/tokens", {"user": "auditor", "scopes": ["read-audit"]}, 403, None),
    ("issuer-kz", "POST", "/tokens", {"user": "issuer-almaty", "scopes": ["declare"]}, 403, None),
    ("issuer-almaty admin", "DELETE", MINE, None, 200, None),  # one's own, or an admin
    ("issuer-kz approver-kz", "DELETE", MINE, None, 403, None),
    ("admin", "DELETE", "/tokens/000000000000", None, 404, None),
    ("auditor admin", "GET", "/audit", None, 200, None),  # audit: auditors and admins
    ("auditor admin", "GET", "/audit/verify", None, 200, None),
    ("issuer-almaty approver-kz breaker", "GET", "/audit", None, 403, None),
    ("issuer-kz", "GET", "/audit/verify", None, 403, None),
    ("auditor", "GET", "/audit?limit=0", None, 400, None),
])
API_MATRIX += sorted({("nobody", method, path, None, 401, None)  # no token: refused everywhere
                      for _, method, path, *_ in API_MATRIX if "?" not in path})


@pytest.mark.parametrize(("who", "method", "path", "payload", "status", "then"), API_MATRIX,
                         ids=cell_id)
def test_api_matrix(request: pytest.FixtureRequest, backend: str, who: str, method: str,
                    path: str, payload: dict[str, Any] | None, status: int,
                    then: str | None) -> None:
    site = site_for(request, backend, status < 400 and method != "GET")
    before = site.quiet(who)
    response = site.call(who, method, path, payload)
    if status >= 400:
        assert_error(response, status, "no bearer token given" if who == "nobody" else "")
        assert dump(site.engine) == before
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="tocsin"'
    named = REF.search(path)
    made = response.json()["declaration"] if (method, path) == CREATE and status < 400 else None
    if made is not None:
        assert (made["status"], made["created_by"]) == (then, f"user:{who}")
    if then is not None:
        assert site.state(made["id"] if made else named[1] if named else "") == then


DECLARE, TOKENS = "/console/declare", "/console/tokens"
GLASS = form("critical", "KZ", step="break-glass", break_glass_reason="imminent")
NEW_USER_FORM = {**NEW_USER, "roles": "issuer", "areas": "KZ-71"}
CONSOLE_MATRIX = cells([
    # who (signed in through the form), path, form fields (None: GET), status, then: the
    # state of the declaration in the path or of the one made. A refusal writes nothing.
    ("issuer-almaty issuer-kz", DECLARE, form("high", "KZ-75"), 303, "pending"),
    ("issuer-almaty", DECLARE, form("moderate", "KZ-75"), 303, "published"),
    ("issuer-almaty", DECLARE, form("critical", "KZ-75", step="draft"), 303, "draft"),
    ("breaker", DECLARE, GLASS, 303, "published"),
    ("issuer-kz", DECLARE, GLASS, 403, None),  # no break-glass right
    ("issuer-almaty", DECLARE, form("high", "KZ"), 403, None),
    ("approver-almaty auditor admin", DECLARE, form("high", "KZ-75"), 403, None),
    ("issuer-almaty", on("draft-75", "submit", "/console"), {}, 303, "published"),
    ("issuer-kz", on("draft-75", "submit", "/console"), {}, 404, "draft"),
    ("approver-almaty", on("pending-75", "approve", "/console"), READ_FORM, 303, "published"),
    ("approver-kz", on("pending-kz", "approve", "/console"), READ_FORM, 303, "published"),
    ("approver-almaty", on("pending-kz", "approve", "/console"), READ_FORM, 404, "pending"),
    ("issuer-almaty", on("pending-75", "approve", "/console"), READ_FORM, 403, "pending"),
    ("auditor admin", on("pending-75", "approve", "/console"), READ_FORM, 404, "pending"),
    ("both", on("pending-both", "approve", "/console"), READ_FORM, 403, "pending"),
    ("approver-kz", on("pending-75", "approve", "/console"), {}, 400, "pending"),
    ("approver-kz", on("pending-75", "reject", "/console"), REASON, 303, "rejected"),
    ("approver-kz", on("pending-75", "reject", "/console"), {}, 400, "pending"),
    ("issuer-kz", on("pending-75", "reject", "/console"), REASON, 404, "pending"),
    ("issuer-almaty issuer-kz", on("live-75", "cancel", "/console"), OVER, 303, "cancelled"),
    ("issuer-almaty", on("live-kz", "cancel", "/console"), OVER, 403, "published"),
    ("approver-kz", on("live-75", "cancel", "/console"), OVER, 403, "published"),
    ("admin", "/console/users", None, 200, None),
    ("issuer-kz auditor", "/console/users", None, 403, None),
    ("admin", "/console/users", NEW_USER_FORM, 303, None),
    ("approver-kz", "/console/users", NEW_USER_FORM, 403, None),
    ("admin", "/console/users/issuer-almaty", {"roles": "issuer", "areas": "KZ-19"}, 303, None),
    ("issuer-almaty", "/console/users/issuer-almaty", {"roles": "issuer", "areas": "KZ"}, 403,
     None),
    ("issuer-almaty auditor admin", TOKENS, None, 200, None),
    ("issuer-almaty", TOKENS, {"scopes": "declare", "label": "ci"}, 200, None),
    ("admin", TOKENS, {"user": "issuer-kz", "scopes": "declare"}, 403, None),  # never for others
    ("issuer-almaty", TOKENS, {"user": "issuer-kz", "scopes": "declare"}, 403, None),
    ("issuer-almaty", TOKENS, {"scopes": "approve"}, 403, None),  # beyond the user's roles
    ("issuer-almaty admin", f"/console{MINE}/revoke", {}, 303, None),
    ("issuer-kz", f"/console{MINE}/revoke", {}, 403, None),
    ("admin auditor", "/console/audit", None, 200, None),
    ("issuer-almaty approver-kz", "/console/audit", None, 403, None),
    # no one signed in: every page and form sends to the sign-in page, and writes nothing
    ("nobody", "/console/audit", None, 303, None),
    ("nobody", on("pending-75", "approve", "/console"), {"csrf": "x"}, 303, "pending"),
])


@pytest.mark.parametrize(("who", "path", "fields", "status", "then"), CONSOLE_MATRIX, ids=cell_id)
def test_console_matrix(request: pytest.FixtureRequest, backend: str, who: str, path: str,
                        fields: dict[str, Any] | None, status: int, then: str | None) -> None:
    site = site_for(request, backend, status < 400 and fields is not None and who != "nobody")
    console = site.sign_in(who) if who != "nobody" else site.browser()
    before = dump(site.engine)
    url = site.path(path)
    response = console.get(url) if fields is None else console.send_form(url, fields)
    assert response.status_code == status, response.text
    assert status == 303 or response.headers["content-type"].startswith("text/html")
    if status >= 400 or who == "nobody":
        assert dump(site.engine) == before
    named = REF.search(path)
    target = site.refs[named[1]] if named and "/declarations/" in path else None
    if status == 303 and path == DECLARE and who != "nobody":
        target = response.headers["location"].removeprefix("/console/declarations/")
    if status == 303:
        assert response.headers["location"] == (
            "/console/login?next=" + quote(url, safe="") if who == "nobody"
            else f"/console/declarations/{target}" if target else "/console/" + path.split("/")[2])
    if status == 200 and fields is not None:  # a new token, shown once
        assert re.search(r"tocsin_[0-9a-f]{12}_", response.text)
    if then is not None:
        assert target is not None and site.state(target) == then


def test_no_one_approves_their_own_declaration(site: Site) -> None:
    made = site.call("both", *CREATE, body("critical", "KZ-19"))
    assert made.status_code == 201 and made.json()["needs_approval"]
    own = made.json()["declaration"]["id"]
    for verb, payload in (("approve", READ), ("reject", REASON)):
        assert_error(site.call("both", "POST", f"/declarations/{own}/{verb}", payload), 403,
                     "cannot approve or reject it")
    console = site.sign_in("both")
    declared = console.send_form(DECLARE, form("high", "KZ-75"))
    page = console.get(declared.headers["location"])
    assert page.status_code == 200 and "/approve" not in page.text and "/reject" not in page.text
    mine, before = declared.headers["location"].rsplit("/", 1)[1], dump(site.engine)
    for d in (own, mine):
        refused = console.send_form(f"/console/declarations/{d}/approve", {"revision": "1"})
        assert refused.status_code == 403 and "two-person rule" in refused.text
    assert dump(site.engine) == before and {site.state(own), site.state(mine)} == {"pending"}
    assert site.call("approver-kz", "POST", f"/declarations/{own}/approve",
                     READ).status_code == 200
    approved = site.sign_in("approver-kz").send_form(f"/console/declarations/{mine}/approve",
                                                     READ_FORM)
    assert approved.status_code == 303
    assert {site.state(own), site.state(mine)} == {"published"}


@pytest.mark.parametrize("how", ["expired", "revoked", "revoked through the API"])
def test_expired_and_revoked_tokens_are_refused(site: Site, how: str) -> None:
    at = datetime.now(UTC)
    made = people.create_token(site.engine, "issuer-kz", [Scope.DECLARE], label=how,
                               now=at - timedelta(hours=1) if how == "expired" else at,
                               lifetime=timedelta(seconds=1 if how == "expired" else 3600),
                               by=None, actor=OPERATOR)
    site.tokens[how] = made.secret
    if how == "revoked":
        people.revoke_token(site.engine, made.token.id, now=at, by=None, actor=OPERATOR)
    elif how == "revoked through the API":
        assert site.call(how, "DELETE", f"/tokens/{made.token.id}").status_code == 200
    before = dump(site.engine)
    for refused in (site.call(how, "GET", "/me"), site.call(how, *CREATE, body("high", "KZ"))):
        assert_error(refused, 401, f"the bearer token was {how.split()[0]} at ")
        assert refused.headers["www-authenticate"] == 'Bearer realm="tocsin"'
    assert dump(site.engine) == before


FORGERIES = {  # forgery: (the token it sends instead of the session's, its Origin)
    "no token": (None, None), "wrong token": ("A" * 43, None),
    "another session's token": ("other", None), "the pre-login token": ("pre-login", None),
    "foreign origin": ("own", "https://evil.example"), "opaque origin": ("own", "null")}


@pytest.mark.parametrize("forgery", [*FORGERIES, "sign-in without its token"])
def test_a_forged_console_form_is_refused_and_writes_nothing(site: Site, forgery: str) -> None:
    console = site.sign_in("issuer-almaty")
    sent, origin = FORGERIES.get(forgery, (None, None))
    token = {"own": console.csrf, "other": site.sign_in("issuer-kz").csrf,
             "pre-login": console.cookies["tocsin_csrf"]}.get(sent or "", sent)
    fields: dict[str, Any] = {**form("moderate", "KZ-75"), **OVER}
    paths = [DECLARE, f"/console/declarations/{site.refs['live-75']}/cancel", "/console/logout"]
    if forgery.startswith("sign-in"):
        paths, fields = ["/console/login"], {"name": "admin", "password": PASSWORD}
    before = dump(site.engine)
    for path in paths:
        refused = console.post(path, headers={"origin": origin or site.base},
                               data={**fields, **({"csrf": token} if token else {})})
        assert refused.status_code == 403, path
        assert "security token" in refused.text or "was sent from" in refused.text
    assert dump(site.engine) == before
    assert console.get("/console").status_code == 200  # still signed in as before
    assert console.post(DECLARE, headers={"origin": site.base}, data={
        **form("moderate", "KZ-75"), "csrf": console.csrf}).status_code == 303  # the real one


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(site: Site) -> None:
    browser = site.browser()
    token = csrf_in(browser.get("/console/login").text)
    answers = [browser.post("/console/login", data={
        "csrf": token, "name": "issuer-kz", "password": password, "next": "/console"})
        for password in ["not the password at all"] * FREE_FAILURES + [PASSWORD] * 2]
    assert [a.status_code for a in answers] == [401] * FREE_FAILURES + [429, 429]
    assert "user name or password is wrong" in answers[0].text
    for locked in answers[FREE_FAILURES:]:
        assert 1 <= int(locked.headers["retry-after"]) <= 31
        assert "tocsin_session" not in locked.headers.get("set-cookie", "")
    user = people.get_user(site.engine, "issuer-kz")
    assert user.locked_until is not None and user.locked_until > datetime.now(UTC)
    assert browser.get("/console").status_code == 303  # never signed in


def test_many_bad_bearer_tokens_from_one_client_are_slowed_down(site: Site) -> None:
    statuses: list[int] = []
    while len(statuses) < 20 and 429 not in statuses:
        bad = f"tocsin_{len(statuses):012x}_{'x' * 43}"
        response = site.api.get(f"{API}/me", headers={"authorization": f"Bearer {bad}"})
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429, statuses
    assert_error(response, 429, "too many failed attempts")
    assert int(response.headers["retry-after"]) >= 1
    assert_error(site.call("admin", "GET", "/me"), 429)  # the client waits, whatever it sends


def test_hammering_the_api_is_rate_limited(engine: Engine) -> None:
    with serve(engine, rate_limit=60) as site:
        answers = [site.call("auditor", "GET", "/me") for _ in range(30)]
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200 and 429 in statuses and statuses.index(429) <= 12, statuses
    assert_error(answers[statuses.index(429)], 429, "too many requests")
    assert int(answers[statuses.index(429)].headers["retry-after"]) >= 1


@pytest.mark.parametrize(("path", "who"), [
    ("/", None), ("/api/v1/levels", None), ("/en/areas/KZ-75", None), ("/api/v1/nothing", None),
    ("/console/login", None), ("/console", None), (f"{API}/me", None), (f"{API}/me", "auditor"),
    (f"{API}/nothing", None), (f"{API}/audit", "issuer-kz"),
], ids=cell_id)
def test_every_answer_carries_the_security_headers(shared: Callable[[str], Site], backend: str,
                                                   path: str, who: str | None) -> None:
    response = shared(backend).api.get(path, headers={
        "authorization": f"Bearer {shared(backend).tokens[who]}"} if who else {})
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    private = path.startswith(("/console", API))
    assert response.headers["referrer-policy"] in (
        ("no-referrer", "same-origin") if private else ("strict-origin-when-cross-origin",))
    assert (response.headers["cache-control"] == "no-store") is private


@pytest.mark.parametrize(("content", "media", "status", "message"), [
    (b'{"scheme": "' + b"x" * 70 * 1024 + b'"}', "application/json", 413, "71694 bytes"),
    (None, "application/json", 413, "too large"),  # chunked: no length said up front
    (b'{"scheme": "kz-terror"}', "text/plain", 415, "the body is text/plain, not JSON"),
    (b'{"scheme": ', "application/json", 400, "the body is not valid JSON"),
    (b'["kz-terror"]', "application/json", 400, "must be a JSON object"),
], ids=cell_id)
def test_the_api_refuses_bodies_too_large_not_json_or_broken(
        shared: Callable[[str], Site], backend: str, content: bytes | None, media: str,
        status: int, message: str) -> None:
    site = shared(backend)
    before = site.quiet("issuer-kz")
    response = site.api.post(f"{API}/declarations", headers={
        "authorization": f"Bearer {site.tokens['issuer-kz']}", "content-type": media},
        content=iter([b'{"scheme": "', b"x" * 70 * 1024, b'"}']) if content is None else content)
    assert_error(response, status, message)
    assert dump(site.engine) == before


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_break_glass_publishes_at_once_and_says_why_in_public(site: Site) -> None:
    reason = "Attack under way in Astana, no approver reachable"
    made = site.call("breaker", *CREATE, body("critical", "KZ", break_glass=reason))
    d = made.json()["declaration"]
    assert (made.status_code, d["status"], d["break_glass"], made.json()["needs_approval"]) == (
        201, "published", reason, False)
    public = f"/api/v1/declarations/{d['id']}"
    wait_for(lambda: site.api.get(public).status_code == 200)
    assert site.api.get(public).json()["break_glass"] == reason
    page = site.api.get(f"/en/declarations/{d['id']}")
    assert page.status_code == 200 and reason in page.text


def test_the_public_audit_head_follows_an_approval(site: Site) -> None:
    def head() -> tuple[int, str]:
        found = site.api.get("/api/v1/audit/head").json()
        return found["seq"], found["hash"]

    def verified() -> tuple[int, str]:
        verdict = queries.verify_audit(site.engine)
        return (verdict.head_seq, verdict.head_hash) if verdict.ok else (-1, "broken")
    wait_for(lambda: head() == verified())
    before = head()
    approved = site.call("approver-kz", "POST", f"/declarations/{site.refs['pending-75']}/approve",
                         READ)
    assert approved.status_code == 200 and approved.json()["status"] == "published"
    assert verified()[0] > before[0]
    wait_for(lambda: head() == verified())


@pytest.mark.parametrize("send", [
    pytest.param(lambda s: s.api.post(f"{API}/declarations", content=b"[" * 10_000, headers={
        "authorization": f"Bearer {s.tokens['both']}", "content-type": "application/json"}),
        id="API: deeply nested JSON"),
    pytest.param(lambda s: s.api.post(
        f"{API}/declarations/{s.refs['pending-75']}/approve",
        content=b'{"revision": ' + b"9" * 5000 + b"}", headers={
            "authorization": f"Bearer {s.tokens['both']}",
            "content-type": "application/json"}), id="API: a 5,000-digit number"),
    pytest.param(lambda s: s.sign_in("both").send_form(s.path(on(
        "pending-75", "approve", "/console")), {"revision": "9" * 5000}),
        id="console: a 5,000-digit revision"),
    pytest.param(lambda s: s.call("admin", "PATCH", "/users/issuer-kz", {"roles": []}),
                 id="API: a user left with no role"),
    pytest.param(lambda s: s.sign_in("both").send_form(DECLARE, {
        **form("moderate", "KZ-75"), "text-en": "x"}), id="console: a field text-en"),
    pytest.param(lambda s: s.sign_in("both").send_form(s.path(on(
        "pending-75", "approve", "/console")), {"revision": "²"}), id="console: revision ²"),
])
def test_bad_input_is_a_400_that_writes_nothing(site: Site, send: Callable[..., Any]) -> None:
    site.sign_in("both")
    before = site.quiet("admin", "both")
    response = send(site)
    assert response.status_code == 400, response.text
    assert dump(site.engine) == before


def test_an_admin_sets_and_removes_an_issuers_reminder_address(site: Site) -> None:
    made = site.call("admin", "POST", "/users", {**NEW_USER, "email": "Dana@Example.KZ"})
    assert (made.status_code, made.json()["email"]) == (201, "Dana@example.kz")
    name = made.json()["name"]
    assert_error(site.call("admin", "PATCH", f"/users/{name}", {"email": "not an address"}),
                 400, "is not an e-mail address")
    cleared = site.call("admin", "PATCH", f"/users/{name}", {"email": None})
    assert (cleared.status_code, cleared.json()["email"]) == (200, None)


@pytest.mark.parametrize("old_term", ["in 30 days for a day", "ends tomorrow"])
def test_a_lowering_that_outlasts_what_it_replaces_needs_a_second_person(
        site: Site, old_term: str) -> None:
    """The reproduction of issue 15's defect 2: an issuer 'lowers' an approved critical level
    with an open-ended high one, which holds when the critical one never did. That is a
    raise, and it must wait for an approver."""
    now = datetime.now(UTC)
    start, end = ((now + timedelta(days=30), now + timedelta(days=31))
                  if old_term.startswith("in") else (None, now + timedelta(days=1)))
    term = {"expires": end.isoformat()} | ({"effective": start.isoformat()} if start else {})
    made = site.call("issuer-kz", *CREATE, body("critical", "KZ-19", **term))
    assert made.status_code == 201 and made.json()["needs_approval"]
    critical = made.json()["declaration"]["id"]
    approved = site.call("approver-kz", "POST", f"/declarations/{critical}/approve",
                         {"revision": 1})
    assert approved.status_code == 200 and site.state(critical) == "published"
    lowered = site.call("issuer-kz", *CREATE, body("high", "KZ-19", replaces=[critical]))
    assert lowered.status_code == 201, lowered.text
    assert lowered.json()["needs_approval"] is True
    assert site.state(lowered.json()["declaration"]["id"]) == "pending"
    # within the critical level's own term, a lowering still goes out at once
    inside = {"expires": end.isoformat()} | ({"effective": start.isoformat()} if start else {})
    fair = site.call("issuer-kz", *CREATE, body("high", "KZ-19", replaces=[critical],
                                                 **inside))
    assert fair.status_code == 201 and fair.json()["needs_approval"] is False
