"""Who the client is, over real sockets, on SQLite and PostgreSQL: behind trusted reverse
proxies (TOCSIN_TRUSTED_PROXIES) each client is limited as itself, forwarding headers from
anyone else are ignored, and the console works behind a TLS-terminating proxy; sign-ins are
throttled by client and by account without revealing which user names exist, and a locked
account still opens to a client that has not failed on it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import Engine
from tests.helpers import AUTHORITY_PASSWORD, assert_error
from tests.web_server import free_port, serving
from typer.testing import CliRunner

from tocsin.cli.main import app as cli_app
from tocsin.domain.access import FREE_FAILURES, ROLE_SCOPES, Role
from tocsin.service import people
from tocsin.settings import TRUSTED_PROXIES, parse_networks
from tocsin.store.database import connect
from tocsin.web.app import TocsinApp, create_app
from tocsin.web.guard import Proxies

API = "/api/v1/authority"
PASSWORD = AUTHORITY_PASSWORD
WRONG = "not the password at all"
APPROVER = "approver-almaty"
NOBODY = "approver-nowhere"
"""A name that is nobody's."""
OPERATOR = "local-operator:test"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""These tests are about who is counted: argon2's production cost would only slow them."""


@contextmanager
def listening(app: TocsinApp) -> Iterator[str]:
    """`app` on 127.0.0.1 under uvicorn, with uvicorn's own proxy handling off: by default it
    believes X-Forwarded-* from 127.0.0.1 and would answer in tocsin's place."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on",
                                           access_log=False, proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def connecting_from(base: str, source: str = "127.0.0.1") -> httpx.Client:
    """A client whose socket comes from `source`, one of the loopback addresses."""
    return httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address=source))


def add_approver(engine: Engine) -> str:
    """The approver, and a token of hers."""
    at = datetime.now(UTC)
    people.add_user(engine, APPROVER, PASSWORD, [Role.APPROVER], ["KZ-75"], break_glass=False,
                    now=at, by=None, actor=OPERATOR)
    return people.create_token(engine, APPROVER, sorted(ROLE_SCOPES[Role.APPROVER]),
                               label="t", now=at, by=None, actor=OPERATOR).secret


def flags(cookie: str) -> set[str]:
    return {flag.strip().lower() for flag in cookie.split(";")[1:]}


def cookies(response: httpx.Response) -> dict[str, str]:
    """Each cookie set, by name: its whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def csrf_in(html: str) -> str:
    return str(re.findall(r'name="csrf" value="([^"]+)"', html)[0])


def bad_bearer(n: int) -> dict[str, str]:
    return {"authorization": f"Bearer tocsin_{n:012x}_{'x' * 43}"}


def until_held(send: Callable[[int], httpx.Response]) -> list[int]:
    """Statuses of bad attempts, until one is held up (429) or twenty were not."""
    statuses: list[int] = []
    while len(statuses) < 20 and 429 not in statuses:
        statuses.append(send(len(statuses)).status_code)
    return statuses


@pytest.fixture
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(people, "_hasher", CHEAP)


# --- behind proxies --------------------------------------------------------------------------


FORWARDING: dict[str, tuple[tuple[str, str], Callable[[str], dict[str, str]]]] = {
    # how a proxy names the client; a client's own claim on the left changes nothing, and a
    # trusted proxy in between (10.9.0.5) is skipped
    "x-forwarded-for": (("198.51.100.7", "198.51.100.8"), lambda who: {
        "x-forwarded-for": f"192.0.2.1, {who}, 10.9.0.5", "x-forwarded-proto": "https"}),
    "forwarded": (("2001:db8::7", "2001:db8::8"), lambda who: {
        "forwarded": f'for=192.0.2.1, for="[{who}]:4711";proto=https, for=10.9.0.5'}),
}


@pytest.mark.parametrize("header", FORWARDING)
def test_behind_a_trusted_proxy_each_client_is_limited_as_itself(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, cheap: None, header: str) -> None:
    token = add_approver(engine)
    (bad, good), via = FORWARDING[header]
    monkeypatch.setenv(TRUSTED_PROXIES.name, "127.0.0.1, 10.9.0.0/16")
    with listening(create_app(engine, rate_limit=100_000)) as base, \
            connecting_from(base) as proxy:
        statuses = until_held(lambda n: proxy.get(f"{API}/me", headers={
            **bad_bearer(n), **via(bad)}))
        assert set(statuses[:-1]) == {401} and statuses[-1] == 429, statuses
        mine = {"authorization": f"Bearer {token}"}
        # another client behind the same proxy is not held up by the first one's failures
        assert proxy.get(f"{API}/me", headers={**mine, **via(good)}).status_code == 200
        # the one that failed waits, whatever it sends
        assert_error(proxy.get(f"{API}/me", headers={**mine, **via(bad)}), 429,
                     "too many failed attempts")


def test_forwarding_headers_from_anyone_else_are_ignored(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUSTED_PROXIES.name, "10.0.0.0/8")  # not this test's loopback
    with listening(create_app(engine, rate_limit=100_000)) as base, \
            connecting_from(base) as sender:
        # a client that names a new address each time is still one client
        statuses = until_held(lambda n: sender.get(f"{API}/me", headers={
            **bad_bearer(n), "x-forwarded-for": f"198.51.100.{n}",
            "forwarded": f"for=198.51.100.{n}"}))
        assert set(statuses[:-1]) == {401} and statuses[-1] == 429, statuses
        # nor does it choose the scheme: no Secure cookie over plain HTTP, and a form claiming
        # to come from https:// is another origin
        claims = {"x-forwarded-proto": "https", "forwarded": "proto=https"}
        with connecting_from(base, "127.0.0.2") as browser:
            page = browser.get("/console/login", headers=claims)
            assert "secure" not in flags(cookies(page)["tocsin_csrf"])
            host = base.removeprefix("http://")
            refused = browser.post("/console/login", headers={
                **claims, "origin": f"https://{host}"}, data={
                "csrf": csrf_in(page.text), "name": APPROVER, "password": PASSWORD})
            assert refused.status_code == 403 and "was sent from" in refused.text


def test_the_console_works_behind_a_tls_terminating_proxy(db_url: str) -> None:
    """`tocsin serve` itself (Granian), the proxies named in its environment."""
    engine = connect(db_url)
    try:
        add_approver(engine)
    finally:
        engine.dispose()
    with serving(db_url, workers=1, env={TRUSTED_PROXIES.name: "127.0.0.1"}) as base, \
            connecting_from(base) as proxy:
        host = base.removeprefix("http://")
        tls = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"}
        page = proxy.get("/console/login", headers=tls)
        csrf_cookie = cookies(page)["tocsin_csrf"]
        assert "secure" in flags(csrf_cookie)
        # the browser's cookies, sent by hand: httpx keeps Secure ones off plain HTTP
        jar = csrf_cookie.split(";")[0]
        signed = proxy.post("/console/login", headers={
            **tls, "origin": f"https://{host}", "cookie": jar}, data={
            "csrf": csrf_in(page.text), "name": APPROVER, "password": PASSWORD,
            "next": "/console"})
        assert (signed.status_code, signed.headers.get("location")) == (303, "/console"), \
            signed.text
        session = cookies(signed)["tocsin_session"]
        assert {"secure", "httponly", "samesite=strict"} <= flags(session)
        desk = proxy.get("/console", headers={**tls, "cookie": session.split(";")[0]})
        assert desk.status_code == 200 and APPROVER in desk.text


@pytest.mark.parametrize(("value", "fix"), [
    ("10.0.0.1/8", "write the network, 10.0.0.0/8"),
    ("nginx", "e.g. 127.0.0.1, ::1, 10.0.0.0/8"),
    ("127.0.0.1, 10.0.0.0/33", "e.g. 127.0.0.1, ::1, 10.0.0.0/8"),
])
def test_a_bad_trusted_proxies_setting_is_refused_with_the_fix(tmp_path: Path, value: str,
                                                               fix: str) -> None:
    result = CliRunner().invoke(cli_app, ["users", "list"], env={
        TRUSTED_PROXIES.name: value, "COLUMNS": "200",
        "TOCSIN_DATABASE_URL": f"sqlite:///{tmp_path / 'tocsin.sqlite3'}"})
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert TRUSTED_PROXIES.name in output and fix in output, output


def test_trusted_proxies_are_addresses_and_networks() -> None:
    assert [str(n) for n in parse_networks(" 127.0.0.1, ::1 10.0.0.0/8,,fd00::/8 ")] == [
        "127.0.0.1/32", "::1/128", "10.0.0.0/8", "fd00::/8"]
    assert parse_networks("") == ()


PROXY_RULES: list[tuple[str, list[tuple[str, str]], tuple[str, str]]] = [
    # peer, headers -> (client, scheme); trusted: 127.0.0.1 and 10.9.0.0/16
    ("203.0.113.5", [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "https")],
     ("203.0.113.5", "http")),  # not a proxy: nothing believed
    ("127.0.0.1", [], ("127.0.0.1", "http")),  # a proxy that forwards nothing
    ("127.0.0.1", [("x-forwarded-for", "198.51.100.7")], ("198.51.100.7", "http")),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, 198.51.100.7")], ("198.51.100.7", "http")),
    ("127.0.0.1", [("x-forwarded-for", "198.51.100.7, 10.9.0.5"), ("x-forwarded-for", "10.9.1.1"),
                   ("x-forwarded-proto", "https")], ("198.51.100.7", "https")),
    ("127.0.0.1", [("x-forwarded-for", "10.9.0.4, 10.9.0.5")], ("10.9.0.4", "http")),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
                   ("x-forwarded-proto", "http, https")], ("198.51.100.7", "https")),
    ("127.0.0.1", [("x-forwarded-for", "[2001:db8::7]:4711")], ("2001:db8::7", "http")),
    ("127.0.0.1", [("x-forwarded-for", "::ffff:198.51.100.7")], ("198.51.100.7", "http")),
    ("::ffff:127.0.0.1", [("x-forwarded-for", "198.51.100.7")], ("198.51.100.7", "http")),
    ("127.0.0.1", [("x-forwarded-proto", "https")], ("127.0.0.1", "https")),
    ("127.0.0.1", [("x-forwarded-proto", "gopher")], ("127.0.0.1", "http")),
    ("127.0.0.1", [("forwarded", 'for=6.6.6.6, for="198.51.100.7:80";proto=https;by=x')],
     ("198.51.100.7", "https")),
    ("127.0.0.1", [("forwarded", 'For="[2001:db8::7]";Proto=HTTPS')], ("2001:db8::7", "https")),
    ("127.0.0.1", [("forwarded", "for=unknown")], ("unknown", "http")),
    # X-Forwarded-For wins over Forwarded (and a client's Forwarded through nginx is ignored)
    ("127.0.0.1", [("forwarded", "for=6.6.6.6;proto=https"),
                   ("x-forwarded-for", "198.51.100.7")], ("198.51.100.7", "http")),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), PROXY_RULES)
def test_who_the_client_is_behind_proxies(peer: str, headers: list[tuple[str, str]],
                                          expected: tuple[str, str]) -> None:
    proxies = Proxies(parse_networks("127.0.0.1, 10.9.0.0/16"))
    scope = {"type": "http", "scheme": "http", "client": (peer, 5000),
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    resolved = proxies.resolve(scope)
    assert (resolved["client"][0], resolved["scheme"]) == expected
    assert scope["client"] == (peer, 5000)  # the server's own scope is left as it was


# --- sign-in: by client and by account, revealing no names --------------------------------


@dataclass
class Clients:
    """Tells clients apart as a test asks: by the socket's own address, or by the address a
    trusted proxy (on 127.0.0.1) forwards."""

    base: str
    by: str

    def sign_in(self, client: int, name: str, password: str) -> httpx.Response:
        """Client `client` (1, 2, …) signs in through the real form."""
        source, headers = f"127.0.0.{client + 1}", {}
        if self.by == "proxy":
            source, headers = "127.0.0.1", {"x-forwarded-for": f"198.51.100.{client}"}
        with connecting_from(self.base, source) as browser:
            page = browser.get("/console/login", headers=headers)
            return browser.post("/console/login", headers=headers, data={
                "csrf": csrf_in(page.text), "name": name, "password": password,
                "next": "/console"})


@pytest.fixture(params=["socket", "proxy"])
def clients(request: pytest.FixtureRequest, engine: Engine, monkeypatch: pytest.MonkeyPatch,
            cheap: None) -> Iterator[Clients]:
    add_approver(engine)
    monkeypatch.setenv(TRUSTED_PROXIES.name, "127.0.0.1")
    with listening(create_app(engine, rate_limit=100_000)) as base:
        yield Clients(base, request.param)


def seen(response: httpx.Response, name: str) -> tuple[int, bool, bool, bool, bool]:
    """What a client learns from an answer: the status, which of the two refusals it is,
    whether it must wait, and whether the name is repeated back."""
    return (response.status_code, "user name or password is wrong" in response.text,
            "too many failed sign-ins from this client" in response.text,
            "retry-after" in response.headers, name in response.text)


def test_the_back_off_is_the_same_for_a_user_and_for_a_name_that_is_nobodys(
        engine: Engine, clients: Clients) -> None:
    tries = FREE_FAILURES + 2
    user = [seen(clients.sign_in(1, APPROVER, WRONG), APPROVER) for _ in range(tries)]
    nobody = [seen(clients.sign_in(2, NOBODY, WRONG), NOBODY) for _ in range(tries)]
    assert user == nobody
    assert [status for status, *_ in user] == [401] * FREE_FAILURES + [429] * 2
    assert not any(repeated for *_, repeated in user)
    locked = people.get_user(engine, APPROVER).locked_until  # locked all the same
    assert locked is not None and locked > datetime.now(UTC)
    # while it is locked, a third client that fails once on each name is answered alike too
    third = [seen(clients.sign_in(3, name, WRONG), name) for name in (APPROVER, NOBODY)]
    assert third[0] == third[1] and third[0][:2] == (401, True)


def test_a_locked_account_still_opens_to_a_client_that_has_not_failed(
        engine: Engine, clients: Clients) -> None:
    for _ in range(FREE_FAILURES):
        assert clients.sign_in(1, APPROVER, WRONG).status_code == 401
    locked = people.get_user(engine, APPROVER).locked_until
    assert locked is not None and locked > datetime.now(UTC)
    # the guesser waits, even with the right password
    assert clients.sign_in(1, APPROVER, PASSWORD).status_code == 429
    # a client that has failed on the account while it is locked gets no more checks: even
    # the right password is answered as a wrong one (as for a name that is nobody's)
    assert seen(clients.sign_in(2, APPROVER, WRONG), APPROVER)[:2] == (401, True)
    late = clients.sign_in(2, APPROVER, PASSWORD)
    assert seen(late, APPROVER) == seen(clients.sign_in(2, NOBODY, PASSWORD), NOBODY)
    assert late.status_code == 401 and "tocsin_session" not in cookies(late)
    # the approver's own client has not failed: she signs in, and the lock is lifted
    hers = clients.sign_in(3, APPROVER, PASSWORD)
    assert hers.status_code == 303 and "tocsin_session" in cookies(hers)
    user = people.get_user(engine, APPROVER)
    assert (user.failed_logins, user.locked_until) == (0, None)
