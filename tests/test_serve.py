"""`tocsin serve` as a real process (Granian) on a loopback port: pages, 304s, live events,
and a clean stop."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine
from tests.helpers import request
from tests.test_web import read_events
from tests.web_server import TOCSIN, running, serving

from tocsin.service import commands
from tocsin.web.app import create_app


@pytest.fixture
def server(db_url: str) -> Iterator[str]:
    with serving(db_url) as base:
        yield base


def test_serve_answers_pages_api_304_and_live_events(server: str, engine: Engine) -> None:
    with httpx.Client(base_url=server) as client:
        page = client.get("/", headers={"accept-language": "kk"})
        assert page.status_code == 200 and '<html lang="kk"' in page.text
        first = client.get("/api/v1/levels")
        cached = client.get("/api/v1/levels", headers={"if-none-match": first.headers["etag"]})
        assert cached.status_code == 304
        assert client.get("/api/v1/areas/KZ-99").json()["error"]["code"] == "not_found"

    events: list[tuple[str, str, str]] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_events, args=(server, None, 1, events, ready))
    reader.start()
    assert ready.wait(10)
    time.sleep(0.3)
    commands.declare(engine, [request("critical", ("KZ-75",))], now=datetime.now(UTC),
                     actor="tester")
    reader.join(15)
    assert events and events[0][1] == "levels" and "KZ-75" in events[0][2]
    # A fresh connection each time (one keep-alive connection stays with one process), until
    # both processes have answered, and each has answered with the change.
    seen: dict[str, bool] = {}
    deadline = time.monotonic() + 15
    while len(seen) < 2 or not all(seen.values()):
        assert time.monotonic() < deadline, f"both workers should see the change: {seen}"
        with httpx.Client(base_url=server) as fresh:
            answer = fresh.get("/api/v1/areas/KZ-75")
        pid = answer.headers["x-tocsin-process"]
        seen[pid] = seen.get(pid, False) or "critical" in answer.text
        time.sleep(0.02)


def test_the_process_header_is_off_unless_a_test_asks(engine: Engine) -> None:
    with running(create_app(engine)) as base:
        assert "x-tocsin-process" not in httpx.get(base + "/api/v1/schemes").headers
    with running(create_app(engine, process_header=True)) as base:
        assert httpx.get(base + "/api/v1/schemes").headers["x-tocsin-process"] == str(os.getpid())


def test_serve_refuses_a_port_in_use(db_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(TOCSIN), "serve", "--port", str(port)],
                                env={**os.environ, "TOCSIN_DATABASE_URL": db_url},
                                capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in \
        result.stderr
