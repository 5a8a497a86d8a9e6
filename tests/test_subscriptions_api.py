"""The notifications API over a real socket, on both databases: subscribers register webhooks
and read their deliveries with a bearer token (their own only; others' answer 404), bad bodies
are refused naming the field and write nothing, and browsers register for push without one."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from standardwebhooks import Webhook
from tests.helpers import AUTHORITY_PASSWORD, AUTHORITY_USERS, assert_error, dump, request
from tests.push_service import Browser
from tests.receiver import Behaviour, Receiver, receiving
from tests.web_server import running

from tocsin import settings
from tocsin.domain.access import ROLE_SCOPES, Role
from tocsin.domain.notify import Channel
from tocsin.notify.worker import Worker
from tocsin.service import authority, deliveries, people, subscriptions
from tocsin.store import tables as t
from tocsin.store.database import connect
from tocsin.web.app import create_app

if TYPE_CHECKING:
    from tests.conftest import Databases

API = "/api/v1/authority"
PUSH = "/api/v1/push"
OPERATOR = "local-operator:test"
USERS = {**AUTHORITY_USERS,
         "newsroom": ((Role.SUBSCRIBER,), (), False),
         "agency": ((Role.SUBSCRIBER,), (), False)}
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""These tests are about policy: argon2's production cost would only slow them down."""
REF = re.compile(r"<([^>]+)>")
HOOK = {"webhook": "http://127.0.0.1:9/new-hook", "areas": ["KZ-75"]}
NO_SUCH = "sub_0000000000000000"


@dataclass
class Site:
    engine: Engine
    api: httpx.Client
    tokens: dict[str, str]
    refs: dict[str, str]
    """'<newsroom>' in a path stands for that subscriber's webhook; '<delivery:newsroom>' for
    the delivery made to it."""
    receiver: Receiver
    keys_dir: Path

    def path(self, template: str) -> str:
        return REF.sub(lambda m: self.refs[m[1]], template)

    def call(self, who: str, method: str, path: str,
             json: dict[str, Any] | None = None) -> httpx.Response:
        """As `who` with their token ('nobody': none); paths under /api/v1/authority."""
        headers = {"authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        json = {} if json is None and method == "POST" else json
        return self.api.request(method, API + self.path(path), json=json, headers=headers)

    def quiet(self, *who: str) -> dict[str, Any]:
        """Every table, once these tokens' last use is stamped (done at most once a minute)."""
        for name in who:
            self.call(name, "GET", "/me")
        return dump(self.engine)

    def worker_round(self) -> None:
        config = settings.Settings(
            database_url=self.engine.url.render_as_string(hide_password=False), sender="t",
            allow_private_targets=True, keys_dir=str(self.keys_dir))
        asyncio.run(Worker(self.engine, config).once())


@contextmanager
def serve(engine: Engine, keys_dir: Path, *, allow_private: bool = True,
          rate_limit: int = 100_000) -> Iterator[Site]:
    """The users, a token each with every scope its roles allow, a webhook for each
    subscriber that has heard one level change, and a server."""
    with pytest.MonkeyPatch.context() as patch, ExitStack() as closing:
        patch.setattr(people, "_hasher", CHEAP)
        patch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "1" if allow_private else "0")
        patch.setenv("TOCSIN_KEYS_DIR", str(keys_dir))
        at, tokens, refs = datetime.now(UTC), {}, {}
        for name, (roles, areas, glass) in USERS.items():
            people.add_user(engine, name, AUTHORITY_PASSWORD, roles, areas, break_glass=glass,
                            now=at, by=None, actor=OPERATOR)
            scopes = sorted(frozenset().union(*(ROLE_SCOPES[role] for role in roles)))
            tokens[name] = people.create_token(engine, name, scopes, label="t", now=at,
                                               by=None, actor=OPERATOR).secret
        receiver = closing.enter_context(receiving())
        for name, area in (("newsroom", "KZ-75"), ("agency", "KZ")):
            sub, _ = subscriptions.add(
                engine, channel=Channel.WEBHOOK, target=f"{receiver.url}/{name}", areas=[area],
                owner=f"user:{name}", now=at, allow_private=True)
            refs[name] = sub.id
        issuer = people.get_user(engine, "issuer-almaty").principal()
        authority.create(engine, issuer, request("moderate", ("KZ-75",)), now=at, submit=True)
        base = closing.enter_context(running(create_app(engine, rate_limit=rate_limit)))
        site = Site(engine, closing.enter_context(httpx.Client(base_url=base)), tokens, refs,
                    receiver, keys_dir)
        site.worker_round()
        for name in ("newsroom", "agency"):
            [made] = deliveries.listing(engine, subscription=refs[name])
            refs[f"delivery:{name}"] = str(made["id"])
        yield site


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Iterator[Site]:
    with serve(engine, tmp_path / "keys") as fresh:
        yield fresh


@pytest.fixture(scope="module")
def shared(databases: Databases, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Callable[[str], Site]]:
    """A site per backend for the cells that write nothing (reads, refusals: they check)."""
    sites: dict[str, Site] = {}
    with ExitStack() as stack:
        def site_on(backend: str) -> Site:
            if backend not in sites:
                engine = connect(databases.ready(backend))
                stack.callback(engine.dispose)
                keys_dir = tmp_path_factory.mktemp("keys") / "keys"
                sites[backend] = stack.enter_context(serve(engine, keys_dir))
            return sites[backend]
        yield site_on


def cells(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One cell per principal named in a row's first column."""
    return [(who, *rest) for names, *rest in rows for who in names.split()]


def cell_id(value: object) -> str | None:
    return value if isinstance(value, str) else None


MINE = "/subscriptions/<newsroom>"
SUBSCRIBERS = "newsroom agency admin"
NO_RIGHT = "issuer-kz approver-kz auditor"
MATRIX = cells([
    # who, method, path, body, status. A refusal must leave every table as it was.
    (SUBSCRIBERS, "POST", "/subscriptions", HOOK, 201),
    (NO_RIGHT, "POST", "/subscriptions", HOOK, 403),
    (SUBSCRIBERS, "GET", "/subscriptions", None, 200),
    (NO_RIGHT, "GET", "/subscriptions", None, 403),
    ("newsroom admin", "GET", MINE, None, 200),
    ("agency", "GET", MINE, None, 404),  # another's: as if it did not exist
    (NO_RIGHT, "GET", MINE, None, 403),
    ("newsroom admin", "DELETE", MINE, None, 200),
    ("agency", "DELETE", MINE, None, 404),
    (NO_RIGHT, "DELETE", MINE, None, 403),
    ("newsroom admin", "GET", f"{MINE}/deliveries", None, 200),
    ("agency", "GET", f"{MINE}/deliveries", None, 404),
    (NO_RIGHT, "GET", f"{MINE}/deliveries", None, 403),
    ("newsroom admin", "GET", "/deliveries/<delivery:newsroom>", None, 200),
    ("agency", "GET", "/deliveries/<delivery:newsroom>", None, 404),
    (NO_RIGHT, "GET", "/deliveries/<delivery:newsroom>", None, 403),
    ("newsroom admin", "GET", f"/subscriptions/{NO_SUCH}", None, 404),
    ("newsroom", "DELETE", "/subscriptions/nope", None, 404),
    ("newsroom admin", "GET", "/deliveries/0", None, 404),
    ("newsroom", "GET", "/deliveries/99999999999999999999999", None, 404),
    ("newsroom", "GET", "/deliveries/x1", None, 404),
    # query strings: the parameter and the fix are named
    ("newsroom", "GET", f"{MINE}/deliveries?limit=0", None, 400),
    ("newsroom", "GET", f"{MINE}/deliveries?limit=501", None, 400),
    ("newsroom", "GET", f"{MINE}/deliveries?status=sent", None, 400),
    ("newsroom", "GET", f"{MINE}/deliveries?colour=red", None, 400),
    ("newsroom", "GET", "/subscriptions?limit=3", None, 400),
])
MATRIX += sorted({("nobody", method, path, None, 401)  # no token: refused everywhere
                  for _, method, path, *_ in MATRIX if "?" not in path})


@pytest.mark.parametrize(("who", "method", "path", "payload", "status"), MATRIX, ids=cell_id)
def test_api_matrix(request: pytest.FixtureRequest, backend: str, who: str, method: str,
                    path: str, payload: dict[str, Any] | None, status: int) -> None:
    writes = status < 400 and method != "GET"
    site = cast(Site, request.getfixturevalue("site") if writes
                else request.getfixturevalue("shared")(backend))
    before = site.quiet(who) if who in site.tokens else dump(site.engine)
    response = site.call(who, method, path, payload)
    if status >= 400:
        assert_error(response, status, "no bearer token given" if who == "nobody" else "")
        assert dump(site.engine) == before
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="tocsin"'
    if status == 400:
        problem = response.json()["error"]
        assert re.search(r"query parameter \W?(limit|status|colour)", problem["message"])
        assert problem["fix"]
    assert "whsec_" not in response.text or (method, status) == ("POST", 201)
    if (method, status) == ("DELETE", 200):
        assert response.json()["status"] == "disabled"
        assert subscriptions.get(site.engine, site.refs["newsroom"]).status.value == "disabled"


def test_a_subscriber_sees_the_secret_once_and_only_its_own(site: Site) -> None:
    made = site.call("newsroom", "POST", "/subscriptions", {
        "webhook": "http://127.0.0.1:9/desk", "areas": ["KZ-19", "KZ-75"],
        "schemes": ["kz-terror"], "language": "ru"})
    assert made.status_code == 201, made.text
    created = made.json()
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert {k: created[k] for k in ("channel", "target", "areas", "schemes", "language",
                                    "status", "owner")} == {
        "channel": "webhook", "target": "http://127.0.0.1:9/desk", "areas": ["KZ-19", "KZ-75"],
        "schemes": ["kz-terror"], "language": "ru", "status": "active",
        "owner": "user:newsroom"}
    listed = site.call("newsroom", "GET", "/subscriptions")
    assert [s["id"] for s in listed.json()["subscriptions"]] == [site.refs["newsroom"],
                                                                 created["id"]]
    shown = site.call("newsroom", "GET", f"/subscriptions/{created['id']}")
    assert shown.json() == created
    for answer in (listed, shown):
        assert secret not in answer.text and "secret" not in answer.text
    assert "secret" not in str(site.call("admin", "GET", "/audit").json())
    agency = site.call("agency", "GET", "/subscriptions").json()["subscriptions"]
    assert [s["id"] for s in agency] == [site.refs["agency"]]
    assert site.call("agency", "GET", "/subscriptions?owner=user:newsroom").json() == {
        "subscriptions": []}
    everyone = site.call("admin", "GET", "/subscriptions").json()["subscriptions"]
    assert {s["id"] for s in everyone} == {site.refs["newsroom"], site.refs["agency"],
                                           created["id"]}
    only = site.call("admin", "GET", "/subscriptions?owner=user:agency").json()
    assert [s["id"] for s in only["subscriptions"]] == [site.refs["agency"]]


def test_another_owners_subscription_is_answered_as_if_it_did_not_exist(
        shared: Callable[[str], Site], backend: str) -> None:
    site = shared(backend)
    theirs = site.call("agency", "GET", f"/subscriptions/{site.refs['newsroom']}")
    absent = site.call("agency", "GET", f"/subscriptions/{NO_SUCH}")
    assert theirs.json()["error"]["fix"] == absent.json()["error"]["fix"]
    assert site.refs["newsroom"] in theirs.json()["error"]["message"]


URL = "http://127.0.0.1:9/hook"
BAD_BODIES = [  # body, status, message: an unknown area or scheme is a 404, as elsewhere
    ({"webhook": URL}, 400, "request body: areas: is missing"),
    ({"areas": ["KZ"]}, 400, "request body: webhook: is missing"),
    ({"webhook": URL, "areas": []}, 400, "a subscription needs at least one area"),
    ({"webhook": URL, "areas": ["KZ-99"]}, 404, "area 'KZ-99' is not known"),
    ({"webhook": URL, "areas": ["KZ", " "]}, 400, "an empty area was given"),
    ({"webhook": URL, "areas": ["KZ"], "schemes": ["kz-weather"]}, 404,
     "scheme 'kz-weather' is not known"),
    ({"webhook": URL, "areas": ["KZ"], "language": "de"}, 400, "language 'de' is not one"),
    ({"webhook": "not a url", "areas": ["KZ"]}, 400,
     "webhook URL 'not a url' has spaces"),
    ({"webhook": "notaurl", "areas": ["KZ"]}, 400,
     "webhook URL 'notaurl' is not an absolute"),
    ({"webhook": "ftp://example.org/x", "areas": ["KZ"]}, 400,
     "is not an absolute http(s) URL"),
    ({"webhook": "http://a:b@example.org/", "areas": ["KZ"]}, 400, "carries a user name"),
    ({"webhook": "http://" + "a" * 70 + ".kz/", "areas": ["KZ"]}, 400,
     "request body: webhook: 'http://aaaa"),
    ({"webhook": "http://example.org/\u0000", "areas": ["KZ"]}, 400,
     "request body: webhook: has control characters"),
    ({"webhook": 7, "areas": ["KZ"]}, 400, "request body: webhook: must be a string, not int"),
    ({"webhook": URL, "areas": "KZ"}, 400, "request body: areas: must be a list of strings"),
    ({"webhook": URL, "areas": [75]}, 400, "request body: areas: must be a list of strings"),
    ({"webhook": URL, "areas": ["KZ"], "schemes": None}, 400,
     "request body: schemes: must be a list of strings"),
    ({"webhook": URL, "areas": ["KZ"], "language": ["en"]}, 400,
     "request body: language: must be a string"),
    ({"webhook": URL, "areas": ["KZ"], "secret": "mine"}, 400,
     "request body: secret: is not a known key"),
]


@pytest.mark.parametrize(("payload", "status", "message"), BAD_BODIES,
                         ids=[m for *_, m in BAD_BODIES])
def test_a_bad_body_is_refused_naming_the_field_and_writes_nothing(
        shared: Callable[[str], Site], backend: str, payload: dict[str, Any], status: int,
        message: str) -> None:
    site = shared(backend)
    before = site.quiet("newsroom")
    assert_error(site.call("newsroom", "POST", "/subscriptions", payload), status, message)
    assert dump(site.engine) == before


@pytest.mark.parametrize(("content", "media", "status", "message"), [
    (b'{"webhook": "' + b"x" * 70 * 1024 + b'"}', "application/json", 413, "bytes"),
    (b'{"areas": ["KZ"]}', "text/plain", 415, "not JSON"),
    (b'{"areas": ', "application/json", 400, "not valid JSON"),
    (b'["KZ"]', "application/json", 400, "must be a JSON object"),
], ids=cell_id)
def test_bodies_too_large_not_json_or_broken_are_refused(
        shared: Callable[[str], Site], backend: str, content: bytes, media: str, status: int,
        message: str) -> None:
    site = shared(backend)
    before = site.quiet("newsroom")
    for path, headers in ((f"{API}/subscriptions",
                           {"authorization": f"Bearer {site.tokens['newsroom']}"}),
                          (f"{PUSH}/subscriptions", {})):
        response = site.api.post(path, content=content,
                                 headers={**headers, "content-type": media})
        assert_error(response, status, message)
    assert dump(site.engine) == before


def test_a_private_webhook_is_refused_unless_the_operator_allows_it(
        engine: Engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path / "keys", allow_private=False) as site:
        before = site.quiet("newsroom")
        refused = site.call("newsroom", "POST", "/subscriptions", HOOK)
        assert_error(refused, 400, "webhook URL 'http://127.0.0.1:9/new-hook' points at a "
                                   "private address")
        assert "TOCSIN_ALLOW_PRIVATE_TARGETS=1" in refused.json()["error"]["fix"]
        assert dump(site.engine) == before


def test_deliveries_appear_after_a_worker_round_signed_with_the_secret(site: Site) -> None:
    hook = site.receiver.behave("/fresh", Behaviour(status=204))
    made = site.call("newsroom", "POST", "/subscriptions", {"webhook": hook, "areas": ["KZ"]})
    assert made.status_code == 201, made.text
    sub_id, secret = made.json()["id"], made.json()["secret"]
    assert site.call("newsroom", "GET", f"/subscriptions/{sub_id}/deliveries").json() == {
        "deliveries": []}
    issuer = people.get_user(site.engine, "issuer-kz").principal()
    authority.create(site.engine, issuer, request("moderate", ("KZ-19",)),
                     now=datetime.now(UTC), submit=True)
    site.worker_round()
    [received] = site.receiver.delivered("/fresh")
    assert Webhook(secret).verify(received.body, received.headers)["data"]["subscription"] == (
        sub_id)
    listed = site.call("newsroom", "GET", f"/subscriptions/{sub_id}/deliveries").json()
    [delivery] = listed["deliveries"]
    assert (delivery["status"], delivery["subscription"], delivery["attempts"],
            delivery["key"]) == ("delivered", sub_id, 1, received.headers["webhook-id"])
    assert site.call("newsroom", "GET",
                     f"/subscriptions/{sub_id}/deliveries?status=dead&limit=5").json() == {
        "deliveries": []}
    one = site.call("newsroom", "GET", f"/deliveries/{delivery['id']}").json()
    [attempt] = one.pop("attempt_log")
    assert one == delivery
    assert (attempt["delivered"], attempt["status"]) == (True, 204)
    assert site.call("agency", "GET", f"/deliveries/{delivery['id']}").status_code == 404
    assert site.call("admin", "GET", f"/deliveries/{delivery['id']}").status_code == 200


# -- browser push -------------------------------------------------------------------------------

def push_body(**extra: Any) -> dict[str, Any]:
    info = Browser("http://127.0.0.1:9/push/abc").subscription_info()
    return {**info, "expirationTime": None, "areas": ["KZ-75"], "language": "kk", **extra}


def test_a_browser_subscribes_for_push_without_a_token(site: Site) -> None:
    body = push_body()
    made = site.api.post(f"{PUSH}/subscriptions", json=body)
    assert made.status_code == 201, made.text
    answer = made.json()
    assert set(answer) == {"id", "status", "unsubscribe"} and answer["status"] == "active"
    sub = subscriptions.get(site.engine, answer["id"])
    assert (sub.channel, sub.target, sub.areas, sub.language, sub.owner, dict(sub.details)) == (
        Channel.PUSH, body["endpoint"], ("KZ-75",), "kk", "public", body["keys"])
    with site.engine.connect() as conn:
        secret = subscriptions.secret_of(conn, sub.id)
    signature = subscriptions.link_signature(secret, sub.id, "unsubscribe")
    assert answer["unsubscribe"] == f"/subscriptions/{sub.id}/unsubscribe?sig={signature}"
    assert made.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in made.headers["content-security-policy"]
    again = site.api.post(f"{PUSH}/subscriptions", json=body)  # the same browser, once
    assert (again.status_code, again.json()) == (201, answer)


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"keys": {"p256dh": "not base64!", "auth": "QUJD"}}, 400,
     "keys.p256dh is missing or not base64"),
    ({"keys": {"p256dh": "QUJD"}}, 400, "request body: keys.auth: is missing"),
    ({"keys": {"p256dh": "QUJD", "auth": 5}}, 400, "request body: keys.auth: must be a string"),
    ({"keys": "QUJD"}, 400, "request body: keys: must be a table"),
    ({"keys": {"p256dh": "QUJD", "auth": "QUJD", "x": "y"}}, 400,
     "keys.x: is not a known key"),
    ({"endpoint": "mailto:a@example.org"}, 400, "push endpoint 'mailto:a@example.org' is not"),
    ({"expirationTime": "soon"}, 400, "request body: expirationTime: must be a number or null"),
    ({"areas": ["KZ-99"]}, 404, "area 'KZ-99' is not known"),
    ({"language": "de"}, 400, "language 'de' is not one"),
    ({"owner": "user:admin"}, 400, "request body: owner: is not a known key"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_push_subscription_is_refused_and_writes_nothing(
        shared: Callable[[str], Site], backend: str, change: dict[str, Any], status: int,
        message: str) -> None:
    site = shared(backend)
    before = dump(site.engine)
    refused = site.api.post(f"{PUSH}/subscriptions", json=push_body(**change))
    assert_error(refused, status, message)
    assert dump(site.engine) == before


def test_the_push_key_is_made_once_and_stays_the_same(site: Site) -> None:
    first = site.api.get(f"{PUSH}/key")
    assert first.status_code == 200 and set(first.json()) == {"public_key"}
    key = first.json()["public_key"]
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    assert len(raw) == 65 and raw[0] == 4 and "=" not in key
    assert site.api.get(f"{PUSH}/key").json() == {"public_key": key}
    assert (site.keys_dir / "vapid.key.pem").stat().st_mode & 0o777 == 0o600
    assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
    assert first.headers["x-content-type-options"] == "nosniff"
    assert_error(site.api.get(f"{PUSH}/key?x=1"), 400, "query parameter 'x' is not known")
    wrong = site.api.put(f"{PUSH}/key")
    assert_error(wrong, 405, "PUT is not allowed")
    assert "GET" in wrong.headers["allow"]
    assert_error(site.api.get(f"{PUSH}/nothing"), 404, "there is nothing at")


def test_an_unusable_push_key_is_a_503_that_names_no_path(site: Site) -> None:
    assert site.api.get(f"{PUSH}/key").status_code == 200
    (site.keys_dir / "vapid.key.pem").chmod(0o644)
    refused = site.api.get(f"{PUSH}/key")
    assert_error(refused, 503, "browser push is not available")
    assert str(site.keys_dir) not in refused.text


def test_push_subscriptions_are_rate_limited(engine: Engine, tmp_path: Path) -> None:
    with serve(engine, tmp_path / "keys", rate_limit=60) as site:
        before = dump(site.engine)
        answers = [site.api.post(f"{PUSH}/subscriptions", json={}) for _ in range(30)]
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 400 and 429 in statuses and statuses.index(429) <= 13, statuses
        assert_error(answers[statuses.index(429)], 429, "too many requests")
        assert int(answers[statuses.index(429)].headers["retry-after"]) >= 1
        assert dump(site.engine) == before
        with site.engine.connect() as conn:
            assert conn.execute(select(t.subscriptions.c.id).where(
                t.subscriptions.c.channel == "push")).first() is None
