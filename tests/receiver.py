"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every request
and answers as it is told (a status, a share of failures, a delay, Retry-After, or a script of
statuses to answer in turn)."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    status: int = 204
    fail_ratio: float = 0.0
    """This share of requests answers 503 instead."""
    delay: float = 0.0
    retry_after: str | None = None
    seed: int = 7
    script: list[int] = field(default_factory=list)
    """Statuses answered in turn, one a request, before `status` (and `fail_ratio`) take over."""
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def answer(self) -> int:
        """The status of the next request (the caller holds the receiver's lock)."""
        if self.script:
            return self.script.pop(0)
        return 503 if self.rng.random() < self.fail_ratio else self.status


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        self.url = ""

    def behave(self, path: str, behaviour: Behaviour) -> str:
        self.behaviours[path] = behaviour
        return self.url + path

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        return [r for r in self.at(path) if 200 <= r.status < 300]

    def count(self) -> int:
        """How many requests arrived, on every path."""
        with self.lock:
            return len(self.received)

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("the receiver did not get what was expected in time; "
                                     f"got {len(self.received)} requests")
            time.sleep(0.02)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away (timed out, or its process was killed)
        super().handle_error(request, client_address)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            behaviour = receiver.behaviours.get(self.path, Behaviour())
            with receiver.lock:
                status = behaviour.answer()
            if behaviour.delay:
                time.sleep(behaviour.delay)
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()),
                                                  body, status))
            self.send_response(status)
            if behaviour.retry_after and status in (429, 503):
                self.send_header("Retry-After", behaviour.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
