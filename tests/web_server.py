"""A real tocsin server on a loopback socket for tests: the app under uvicorn in a thread
(`running`), or `tocsin serve` itself, Granian in a process of its own (`serving`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from tocsin.web.app import TocsinApp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: TocsinApp, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


TOCSIN = Path(sys.executable).with_name("tocsin")


@contextmanager
def serving(db_url: str, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `tocsin serve` on a free loopback port until the block ends; yields the base URL.
    Each answer names its worker process (X-Tocsin-Process)."""
    port = free_port()
    environment = {**os.environ, "TOCSIN_DATABASE_URL": db_url,
                   "TOCSIN_TEST_PROCESS_HEADER": "1", **(env or {})}
    process = subprocess.Popen([str(TOCSIN), "serve", "--port", str(port), "--workers",
                                str(workers)], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/api/v1/schemes", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read() if process.stdout else ""
            process.kill()
            raise AssertionError(f"tocsin serve did not start:\n{output}")
        time.sleep(0.1)
    try:
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            if process.stdout:
                process.stdout.close()
