"""Every request tocsin sends out goes through one guard: a name that resolves to a public
address when it is checked and to 127.0.0.1 when it is connected to (DNS rebinding) is refused
on every path — webhook delivery, WebSub verification and delivery, browser push and
`tocsin ingest URL` — and IPv6 forms that embed a private IPv4 address are private.

Names under `.rebind.test` are answered by a resolver the tests switch; every connection a
test could make goes to 127.0.0.1 or ::1 only."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import Engine
from tests.helpers import request, utc
from tests.push_service import running_push_service
from tests.receiver import Behaviour, receiving
from tests.test_push import change, job
from tests.test_websub import (
    FEED,
    Subscriber,
    declare,
    hub_of,
    serving_subscriber,
    wait_for,
)
from tests.test_websub import subscriptions as websub_subscriptions
from tests.web_server import free_port, running
from typer.testing import CliRunner

from tocsin import settings
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import Channel, DeliveryStatus
from tocsin.notify.push import PushSender
from tocsin.notify.worker import Worker
from tocsin.service import commands, deliveries, importing, subscriptions, targets, websub
from tocsin.service.keys import vapid_key
from tocsin.web.app import TocsinApp, create_app
from tocsin.web.websub import StoreFeeds

PUBLIC = "93.184.216.34"
T0 = utc(2022, 1, 5, 9)


class Rebinding:
    """A resolver: names under .rebind.test answer PUBLIC for their first `honest` lookups,
    then `then`; other names go to the system resolver."""

    def __init__(self, honest: int = 1, then: str = "127.0.0.1") -> None:
        self.honest = honest
        self.then = then
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
        if not host.endswith(".rebind.test"):
            return targets.system_lookup(host, port)
        self.asked.append(host)
        address = PUBLIC if self.asked.count(host) <= self.honest else self.then
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, address)]


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    resolver = Rebinding()
    monkeypatch.setattr(targets, "lookup", resolver)
    return resolver


def renamed(url: str, name: str) -> str:
    """`url` (on 127.0.0.1) with the host `name` instead."""
    return url.replace("127.0.0.1", name, 1)


# --- the filter ------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "::127.0.0.1", "::10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "64:ff9b::a00:1",
    "64:ff9b:1:7f00:0:1::", "2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::",
    "2001:0:7f00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe", "::1", "fe80::1%eth0",
    "fc00::1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
])
def test_private_addresses_and_ipv6_forms_embedding_them_are_private(address: str) -> None:
    assert not targets.is_public(address)


@pytest.mark.parametrize("address", [PUBLIC, "2606:4700::1111", "64:ff9b::808:808",
                                     "2002:808:808::1", "::ffff:8.8.8.8"])
def test_public_addresses_are_public(address: str) -> None:
    assert targets.is_public(address)


@pytest.mark.parametrize("url", ["http://[::127.0.0.1]/hook", "http://[64:ff9b::127.0.0.1]/",
                                 "https://[2002:7f00:1::]/hook", "http://[::ffff:7f00:1]/",
                                 "http://[2001:0:7f00:1::]/"])
def test_webhook_targets_embedding_loopback_are_refused(engine: Engine, url: str) -> None:
    with pytest.raises(InvalidInput, match="private address"):
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                          owner="t", now=T0, allow_private=False)


# --- webhooks ----------------------------------------------------------------------------

def config(engine: Engine, tmp_path: Path, *, allow_private: bool) -> settings.Settings:
    return settings.Settings(database_url=engine.url.render_as_string(hide_password=False),
                             sender="t", allow_private_targets=allow_private,
                             keys_dir=str(tmp_path / "keys"), public_url="https://levels.test")


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_webhook_name_rebound_to_loopback_is_refused_at_delivery(
        engine: Engine, tmp_path: Path, rebinding: Rebinding, allow_private: bool) -> None:
    """Registered while it answered a public address; delivered when it answers 127.0.0.1.
    With private targets allowed the same delivery arrives: the guard's resolver is the one
    the connection uses."""
    with receiving() as receiver:
        url = renamed(receiver.behave("/hook", Behaviour()), "hook.rebind.test")
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                          owner="t", now=T0, allow_private=False)
        commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC),
                         actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path,
                                          allow_private=allow_private)).once())
        arrived = len(receiver.received)
    [row] = deliveries.listing(engine)
    if allow_private:
        assert arrived == 1 and row["status"] == DeliveryStatus.DELIVERED.value
    else:
        assert arrived == 0 and row["status"] == DeliveryStatus.DEAD.value
        assert "hook.rebind.test resolves to a private address (127.0.0.1)" in row["last_detail"]
    assert rebinding.asked.count("hook.rebind.test") == 2


# --- WebSub ------------------------------------------------------------------------------

@pytest.fixture
def subscriber_server() -> Iterator[Subscriber]:
    with serving_subscriber() as state:
        yield state


@pytest.fixture
def private_app(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TocsinApp]:
    """The app, serving at TOCSIN_PUBLIC_URL, with private targets refused."""
    port = free_port()
    monkeypatch.setenv("TOCSIN_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TOCSIN_ALLOW_PRIVATE_TARGETS", "0")
    app = create_app(engine)
    with running(app, port=port):
        yield app


@pytest.fixture
def private_hub(private_app: TocsinApp) -> str:
    return settings.read().public_url


def test_a_websub_callback_rebound_to_loopback_is_not_verified(
        engine: Engine, private_app: TocsinApp, private_hub: str,
        subscriber_server: Subscriber, rebinding: Rebinding) -> None:
    callback = renamed(subscriber_server.url, "cb.rebind.test")
    answer = httpx.post(f"{private_hub}/websub", data={
        "hub.mode": "subscribe", "hub.topic": private_hub + FEED, "hub.callback": callback})
    assert answer.status_code == 202  # checked: the name answered a public address
    wait_for(lambda: rebinding.asked.count("cb.rebind.test") >= 2)
    wait_for(lambda: not hub_of(private_app).tasks)  # the verification is over
    assert subscriber_server.verifications == [] and websub_subscriptions(engine) == []


def test_a_websub_push_to_a_callback_rebound_to_loopback_is_refused(
        engine: Engine, private_hub: str, subscriber_server: Subscriber,
        rebinding: Rebinding) -> None:
    rebinding.honest = 0  # it answered a public address when it was verified
    topic = private_hub + FEED
    callback = renamed(subscriber_server.url, "cb.rebind.test")
    websub.activate(engine, topic, callback, None, websub.DEFAULT_LEASE,
                    now=datetime.now(UTC), etag=None)
    config = settings.read()
    declare(engine)
    asyncio.run(Worker(engine, config, feeds=StoreFeeds(engine, config)).once())
    assert subscriber_server.pushes == []
    tried = [r for r in deliveries.listing(engine) if r["channel"] == Channel.WEBSUB.value
             and r["last_detail"] != "this version of the feed was pushed already"]
    assert tried
    for row in tried:
        assert "cb.rebind.test resolves to a private address (127.0.0.1)" in row["last_detail"]
        assert row["status"] == DeliveryStatus.DEAD.value


# --- browser push ------------------------------------------------------------------------

@pytest.mark.parametrize("allow_private", [False, True])
def test_a_push_service_rebound_to_loopback_is_refused(tmp_path: Path, rebinding: Rebinding,
                                                       allow_private: bool) -> None:
    vapid = vapid_key(tmp_path / "keys", create=True)
    assert vapid is not None
    rebinding.honest = 0
    with running_push_service() as service:
        browser = service.browser()
        browser.endpoint = renamed(browser.endpoint, "push.rebind.test")
        the_job = job(browser, [change("en")])

        async def go() -> Any:
            sender = PushSender(vapid, contact="mailto:a@example.kz",
                                allow_private=allow_private)
            try:
                return await sender.send(the_job)
            finally:
                await sender.close()
        outcome = asyncio.run(go())
        arrived = len(service.received)
    if allow_private:
        assert outcome.delivered and arrived == 1
    else:
        assert not outcome.delivered and outcome.permanent and arrived == 0
        assert "push.rebind.test resolves to a private address (127.0.0.1)" in outcome.detail


# --- tocsin ingest URL -------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str]]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status, headers = self.routes.get(self.path, (200, {}))
        body = b"<alert/>"
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def alerts() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_ingest_refuses_a_name_rebound_to_loopback(alerts: str, rebinding: Rebinding) -> None:
    rebinding.honest = 0
    url = renamed(alerts, "alerts.rebind.test") + "/a.xml"
    with pytest.raises(InvalidInput, match=r"alerts\.rebind\.test resolves to a private "
                       r"address \(127\.0\.0\.1\).*TOCSIN_ALLOW_PRIVATE_TARGETS"):
        importing.read_location(url, allow_private=False)
    assert _Handler.seen == []
    data, _ = importing.read_location(url, allow_private=True)
    assert data == b"<alert/>" and _Handler.seen == ["/a.xml"]


def test_ingest_refuses_localhost_unless_private_targets_are_allowed(alerts: str) -> None:
    url = renamed(alerts, "localhost") + "/a.xml"
    with pytest.raises(InvalidInput, match="private address"):
        importing.read_location(url, allow_private=False)
    assert _Handler.seen == []


@pytest.mark.parametrize("location", ["http://[::1]:{port}/x.xml",
                                      "http://[::ffff:127.0.0.1]:{port}/x.xml",
                                      "http://inside.rebind.test:{port}/x.xml"])
def test_ingest_checks_every_redirect(alerts: str, rebinding: Rebinding,
                                      monkeypatch: pytest.MonkeyPatch, location: str) -> None:
    """The first hop stands in for a public server (127.0.0.1 counted as public here); the
    redirect it answers, to a private address, is refused before it is connected to."""
    real = targets.is_public
    monkeypatch.setattr(targets, "is_public", lambda a: a == "127.0.0.1" or real(a))
    rebinding.honest, rebinding.then = 0, "::1"
    port = alerts.rsplit(":", 1)[1]
    _Handler.routes = {"/moved": (302, {"Location": location.format(port=port)})}
    with pytest.raises(InvalidInput, match="private address"):
        importing.read_location(f"{alerts}/moved", allow_private=False)
    assert _Handler.seen == ["/moved"]


@pytest.mark.parametrize(("allowed", "refused"), [("0", True), ("1", False)])
def test_tocsin_ingest_honours_the_private_targets_setting(alerts: str, allowed: str,
                                                            refused: bool) -> None:
    """`tocsin ingest URL` reads TOCSIN_ALLOW_PRIVATE_TARGETS like every other sender; the
    setting's 1 lets it reach the (loopback) server, whose answer is then not a CAP alert."""
    result = CliRunner().invoke(app, ["ingest", renamed(alerts, "localhost") + "/a.xml"],
                                env={"TOCSIN_ALLOW_PRIVATE_TARGETS": allowed,
                                     "TOCSIN_SOURCES": "", "COLUMNS": "200"})
    assert result.exit_code == 2
    assert ("private address" in result.output) is refused
    assert (_Handler.seen == []) is refused
