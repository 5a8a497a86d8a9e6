"""The answers that guard the site, from the production server itself: `tocsin serve` (Granian,
two worker processes) on a loopback port, not the app under uvicorn in a thread. Security
headers on every kind of answer, CSRF on the console's forms, 304 on a matching ETag."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from tests.helpers import AUTHORITY_PASSWORD, AUTHORITY_USERS, dump
from tests.web_server import serving

from tocsin.domain.access import ROLE_SCOPES
from tocsin.service import people

API = "/api/v1/authority"
DECLARE = "/console/declare"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def csrf_in(html: str) -> str:
    return str(re.findall(r'name="csrf" value="([^"]+)"', html)[0])


@pytest.fixture
def served(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[str, dict[str, str]]]:
    """`tocsin serve` on the test database with the authority users; the base URL and a
    token for each user."""
    monkeypatch.setattr(people, "_hasher", CHEAP)
    at, tokens = datetime.now(UTC), {}
    for name, (roles, areas, glass) in AUTHORITY_USERS.items():
        people.add_user(engine, name, AUTHORITY_PASSWORD, roles, areas, break_glass=glass,
                        now=at, by=None, actor="local-operator:test")
        scopes = sorted(frozenset().union(*(ROLE_SCOPES[role] for role in roles)))
        tokens[name] = people.create_token(engine, name, scopes, label="serve", now=at, by=None,
                                           actor="local-operator:test").secret
    with serving(db_url) as base:
        yield base, tokens


HEADER_CASES = [  # path, whose token (None: no token)
    ("/", None), ("/api/v1/levels", None), ("/en/areas/KZ-75", None), ("/api/v1/nothing", None),
    ("/console/login", None), ("/console", None), (f"{API}/me", None), (f"{API}/me", "auditor"),
    (f"{API}/nothing", None), (f"{API}/audit", "issuer-kz"),
]


def test_every_answer_of_tocsin_serve_carries_the_security_headers(
        served: tuple[str, dict[str, str]]) -> None:
    base, tokens = served
    for path, who in HEADER_CASES:  # one server for them all: it takes seconds to start
        response = httpx.get(base + path, headers={
            "authorization": f"Bearer {tokens[who]}"} if who else {})
        assert "x-tocsin-process" in response.headers  # Granian answered, not a test server
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert response.headers["x-content-type-options"] == "nosniff", path
        private = path.startswith(("/console", API))
        assert response.headers["referrer-policy"] in (
            ("no-referrer", "same-origin") if private else ("strict-origin-when-cross-origin",))
        assert (response.headers["cache-control"] == "no-store") is private, path


def test_tocsin_serve_refuses_a_forged_console_form(
        served: tuple[str, dict[str, str]], engine: Engine) -> None:
    base, _ = served
    with httpx.Client(base_url=base) as console, httpx.Client(base_url=base) as other:
        for browser in (console, other):
            page = browser.get("/console/login")
            signed = browser.post("/console/login", data={
                "csrf": csrf_in(page.text), "name": "issuer-almaty",
                "password": AUTHORITY_PASSWORD, "next": "/console"})
            assert signed.status_code == 303, signed.text
        own = csrf_in(console.get("/console").text)
        fields: dict[str, Any] = {"level": "kz-terror/moderate", "areas": ["KZ-75"],
                                  "zone": "Asia/Almaty", "text-en-headline": "Test level",
                                  "step": "submit"}
        forgeries = {  # the token sent instead of the session's, and the Origin
            "no token": (None, base), "wrong token": ("A" * 43, base),
            "another session's token": (csrf_in(other.get("/console").text), base),
            "the pre-login token": (console.cookies["tocsin_csrf"], base),
            "foreign origin": (own, "https://evil.example"), "opaque origin": (own, "null")}
        before = dump(engine)
        for forgery, (token, origin) in forgeries.items():
            refused = console.post(DECLARE, headers={"origin": origin},
                                   data={**fields, **({"csrf": token} if token else {})})
            assert refused.status_code == 403, forgery
            assert "security token" in refused.text or "was sent from" in refused.text, forgery
            assert "x-tocsin-process" in refused.headers
        assert dump(engine) == before
        genuine = console.post(DECLARE, headers={"origin": base}, data={**fields, "csrf": own})
        assert genuine.status_code == 303, genuine.text


def test_tocsin_serve_answers_304_to_a_matching_etag(served: tuple[str, dict[str, str]]) -> None:
    base, _ = served
    for path in ("/api/v1/levels", "/en/", "/map/kz-terror.svg"):
        with httpx.Client(base_url=base) as client:
            first = client.get(path)
        assert first.status_code == 200 and "x-tocsin-process" in first.headers, path
        etag = first.headers["etag"]
        # fresh connections: whichever worker answers, the same state has the same ETag
        for _ in range(4):
            again = httpx.get(base + path, headers={"if-none-match": etag})
            assert (again.status_code, again.content) == (304, b""), path
            assert again.headers["etag"] == etag
            assert again.headers["x-content-type-options"] == "nosniff"
        other = httpx.get(base + path, headers={"if-none-match": '"nope"'})
        assert other.status_code == 200 and other.content == first.content, path
