"""tocsin as its own WebSub hub, over real sockets on loopback: intent verification, leases,
signed content distribution on every change, unsubscribing, 410 Gone, and refusals."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.routing import Route
from tests.delivering import delivering
from tests.web_server import free_port, running

from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.domain.notify import DeliveryStatus
from tocsin.service import commands
from tocsin.store import tables as t
from tocsin.store.database import reading
from tocsin.web.app import TocsinApp, create_app
from tocsin.web.websub import HUB_PATH, Hub

FEED = "/feeds/alerts.atom"


@dataclass
class Subscriber:
    """A WebSub subscriber: confirms (or not) and records what the hub pushes."""

    confirm: bool = True
    answer: int = 204
    verifications: list[dict[str, list[str]]] = field(default_factory=list)
    pushes: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    with serving_subscriber() as state:
        yield state


@contextmanager
def serving_subscriber() -> Iterator[Subscriber]:
    """A subscriber's callback server on 127.0.0.1 until the block ends."""
    state = Subscriber()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            state.verifications.append(query)
            body = query["hub.challenge"][0].encode() if state.confirm else b"no"
            self.send_response(200 if state.confirm else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.pushes.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.answer)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?from=tocsin"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "1")
    with running(create_app(engine), port=port) as base, delivering(engine):
        yield base


def wait_for(predicate: Callable[[], object], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def settled(engine: Engine) -> bool:
    """The workers' round is over: every outbox event fanned out, no delivery still pending
    or under way. Only then does "nothing (more) arrived" mean anything."""
    with reading(engine) as conn:
        waiting = conn.execute(select(func.count()).select_from(t.outbox)
                               .where(t.outbox.c.fanned_out_at.is_(None))).scalar_one()
        open_ = conn.execute(select(func.count()).select_from(t.deliveries).where(
            t.deliveries.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.LEASED]))
        ).scalar_one()
    return waiting == 0 and open_ == 0


def hub_of(app: TocsinApp) -> Hub:
    """The app's WebSub hub, to see whether a verification is still under way."""
    [route] = [r for r in cast(Starlette, app.private).routes
               if getattr(r, "path", None) == HUB_PATH]
    return cast(Hub, cast(Route, route).endpoint.__self__)  # type: ignore[attr-defined]


def subscriptions(engine: Engine) -> list[tuple[str, str]]:
    with reading(engine) as conn:
        rows = conn.execute(select(t.websub_subscriptions.c.topic,
                                   t.websub_subscriptions.c.callback)).all()
    return [(row.topic, row.callback) for row in rows]


def declare(engine: Engine, area: str = "KZ-75", level: str = "high") -> str:
    [made] = commands.declare(engine, [DeclarationRequest(
        scheme="kz-terror", level=level, areas=(area,), texts={"en": Statement("Test")},
        sender="Test")], now=datetime.now(UTC), actor="test")
    return made.id


def form(hub: str, **fields: str) -> httpx.Response:
    return httpx.post(f"{hub}/websub", data={f"hub.{k}": v for k, v in fields.items()})


def test_subscribe_verify_push_signed_then_unsubscribe(engine: Engine, hub: str,
                                                       subscriber: Subscriber) -> None:
    topic = hub + FEED
    answer = form(hub, mode="subscribe", topic=topic, callback=subscriber.url,
                  secret="s3cret", lease_seconds="3600")
    assert answer.status_code == 202
    wait_for(lambda: subscriptions(engine) == [(topic, subscriber.url)])
    [check] = subscriber.verifications
    assert check["hub.mode"] == ["subscribe"] and check["hub.topic"] == [topic]
    assert check["hub.lease_seconds"] == ["3600"] and check["from"] == ["tocsin"]
    assert subscriber.pushes == []  # the version current at subscription is not pushed

    declare(engine)
    wait_for(lambda: subscriber.pushes)
    headers, body = subscriber.pushes[0]
    served = httpx.get(topic)
    assert body == served.content and headers["content-type"] == served.headers["content-type"]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature"] == f"sha256={expected}"
    assert f'<{hub}/websub>; rel="hub"' in headers["link"]
    assert f'<{topic}>; rel="self"' in headers["link"]
    wait_for(lambda: settled(engine))
    assert len(subscriber.pushes) == 1, "each new version is pushed once"

    assert form(hub, mode="unsubscribe", topic=topic, callback=subscriber.url).status_code == 202
    wait_for(lambda: subscriptions(engine) == [])
    declare(engine, "KZ-71")
    wait_for(lambda: settled(engine))
    assert len(subscriber.pushes) == 1


def test_a_subscriber_that_does_not_confirm_is_not_subscribed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, subscriber: Subscriber) -> None:
    subscriber.confirm = False
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "1")
    app = create_app(engine)
    with running(app, port=port) as base:
        assert form(base, mode="subscribe", topic=base + FEED,
                    callback=subscriber.url).status_code == 202
        wait_for(lambda: subscriber.verifications)
        wait_for(lambda: not hub_of(app).tasks)  # the verification is over, not just slow
    assert subscriptions(engine) == []


def test_a_subscriber_answering_410_is_dropped(engine: Engine, hub: str,
                                               subscriber: Subscriber) -> None:
    subscriber.answer = 410
    form(hub, mode="subscribe", topic=hub + FEED, callback=subscriber.url)
    wait_for(lambda: subscriptions(engine))
    declare(engine)
    wait_for(lambda: subscriber.pushes)
    wait_for(lambda: subscriptions(engine) == [])


def test_two_workers_push_each_version_once(engine: Engine, hub: str,
                                            subscriber: Subscriber) -> None:
    with running(create_app(engine)), delivering(engine):
        form(hub, mode="subscribe", topic=hub + FEED, callback=subscriber.url)
        wait_for(lambda: subscriptions(engine))
        declare(engine)
        wait_for(lambda: subscriber.pushes)
        wait_for(lambda: settled(engine))
        assert len(subscriber.pushes) == 1


@pytest.mark.parametrize(("fields", "status", "names"), [
    ({"mode": "watch"}, 400, "hub.mode"),
    ({"mode": "subscribe", "topic": "https://elsewhere.example/feed"}, 400, "hub.topic"),
    ({"mode": "subscribe", "topic": "{hub}/feeds/nothing.atom"}, 400, "hub.topic"),
    ({"mode": "subscribe", "topic": "{hub}/feeds/alerts.atom", "callback": "ftp://x/y"}, 400,
     "hub.callback"),
    ({"mode": "subscribe", "topic": "{hub}/feeds/alerts.atom", "callback": "{cb}",
      "lease_seconds": "ten"}, 400, "hub.lease_seconds"),
    ({"mode": "subscribe", "topic": "{hub}/feeds/alerts.atom", "callback": "{cb}",
      "lease_seconds": "9" * 40}, 400, "hub.lease_seconds"),
    ({"mode": "subscribe", "topic": "{hub}/feeds/alerts.atom", "callback": "{cb}",
      "secret": "x" * 200}, 400, "hub.secret"),
])
def test_bad_requests_are_refused_by_name(engine: Engine, hub: str, subscriber: Subscriber,
                                          fields: dict[str, str], status: int,
                                          names: str) -> None:
    filled = {k: v.format(hub=hub, cb=subscriber.url) for k, v in fields.items()}
    answer = form(hub, **filled)
    assert answer.status_code == status
    assert names in answer.json()["error"]["message"]
    assert subscriber.verifications == [] and subscriptions(engine) == []


def test_not_a_form_and_private_callbacks(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                          subscriber: Subscriber) -> None:
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "0")
    with running(create_app(engine), port=port) as base:
        assert httpx.post(f"{base}/websub", json={}).status_code == 415
        answer = form(base, mode="subscribe", topic=base + FEED, callback=subscriber.url)
        assert answer.status_code == 400
        assert "private address" in answer.json()["error"]["message"]


def test_a_topic_in_another_language_is_pushed_in_that_language(
        engine: Engine, hub: str, subscriber: Subscriber) -> None:
    """`?lang=kk` is a feed the README offers: its subscribers get that feed's bytes."""
    topic = hub + FEED + "?lang=kk"
    assert form(hub, mode="subscribe", topic=topic, callback=subscriber.url).status_code == 202
    wait_for(lambda: subscriptions(engine) == [(topic, subscriber.url)])
    declare(engine)
    wait_for(lambda: subscriber.pushes)
    headers, body = subscriber.pushes[0]
    assert body == httpx.get(topic).content
    assert body != httpx.get(hub + FEED).content
    assert f'<{topic}>; rel="self"' in headers["link"]
    with reading(engine) as conn:
        [status] = conn.execute(select(t.websub_subscriptions.c.last_status)).scalars()
    assert status is not None and status.startswith("2")



def test_the_hub_answers_429_past_its_rate_limit(engine: Engine, hub: str) -> None:
    """Each hub request may start a request to someone else: a client gets BURST at once."""
    from tocsin.web.websub import BURST
    answers = [form(hub, mode="watch") for _ in range(BURST + 1)]
    assert [a.status_code for a in answers] == [400] * BURST + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    assert "too many requests" in answers[-1].json()["error"]["message"]


def test_one_callback_host_holds_a_bounded_number_of_subscriptions(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, subscriber: Subscriber) -> None:
    monkeypatch.setattr("tocsin.web.websub.MAX_PER_CALLBACK_HOST", 2)
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "1")
    with running(create_app(engine), port=port) as base:
        topic = base + FEED
        first, second = subscriber.url + "&n=1", subscriber.url + "&n=2"
        for callback in (first, second):
            assert form(base, mode="subscribe", topic=topic,
                        callback=callback).status_code == 202
        wait_for(lambda: len(subscriptions(engine)) == 2)
        third = form(base, mode="subscribe", topic=topic, callback=subscriber.url + "&n=3")
        assert third.status_code == 429
        assert "hub.callback host '127.0.0.1' has 2 subscriptions" in (
            third.json()["error"]["message"])
        renewal = form(base, mode="subscribe", topic=topic, callback=first)
        assert renewal.status_code == 202  # a subscription it holds may be renewed
        wait_for(lambda: len(subscriber.verifications) == 3)
    assert sorted(callback for _, callback in subscriptions(engine)) == [first, second]


def test_verifications_under_way_are_bounded(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                             subscriber: Subscriber) -> None:
    """A callback that never answers holds its verification until the timeout; past
    MAX_VERIFYING of those the hub refuses new requests (429) instead of starting more."""
    monkeypatch.setattr("tocsin.web.websub.MAX_VERIFYING", 1)
    monkeypatch.setattr("tocsin.web.websub.TIMEOUT", 2.0)
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "1")
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never answers
    app = create_app(engine)
    with silent, running(app, port=port) as base:
        hanging = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        assert form(base, mode="subscribe", topic=base + FEED,
                    callback=hanging).status_code == 202
        busy = form(base, mode="subscribe", topic=base + FEED, callback=subscriber.url)
        assert busy.status_code == 429
        assert "verifying 1 subscriptions already" in busy.json()["error"]["message"]
        assert subscriber.verifications == []
        wait_for(lambda: not hub_of(app).tasks)  # the silent callback's has timed out
        assert form(base, mode="subscribe", topic=base + FEED,
                    callback=subscriber.url).status_code == 202
        wait_for(lambda: subscriptions(engine) == [(base + FEED, subscriber.url)])
