"""Running the server: Granian (a Rust HTTP server) with tocsin's ASGI app, 1 or N processes,
and beside it, in a process of its own, a notification worker.

Chosen by measurement (bench/serve.py): on the 2-core development machine Granian served the
pre-rendered documents about twice as fast as uvicorn with uvloop and httptools.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import socket

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels
from sqlalchemy import Engine

from tocsin import settings
from tocsin.domain.errors import InvalidInput
from tocsin.notify.worker import run_forever
from tocsin.store.database import connect

APP = "tocsin.web.app:app_from_environment"


def check_port(host: str, port: int) -> None:
    """Refuse early, with the fix, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise InvalidInput(f"port {port} on {host} is already in use",
                                   "stop what uses it, or pick another with --port") from None
            raise InvalidInput(f"cannot listen on {host}:{port}: {error.strerror}",
                               "check --host and --port") from None


def serve_http(engine: Engine, *, host: str, port: int, workers: int, worker: bool) -> None:
    """Serve until interrupted. Each server process holds its own snapshot; with `worker`, a
    notification worker runs beside them and stops with them."""
    check_port(host, port)
    # Worker processes build the app from the environment, so they open this same database.
    os.environ["TOCSIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    if not os.environ.get("TOCSIN_PUBLIC_URL", "").strip():
        # Absolute links (feeds, CAP, WebSub topics) then name the address being served.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        os.environ["TOCSIN_PUBLIC_URL"] = f"http://{shown}:{port}"
    notifier = None
    if worker:
        # Spawned, not forked: a fresh interpreter with its own engine and event loop.
        notifier = multiprocessing.get_context("spawn").Process(
            target=run_worker, args=(os.environ["TOCSIN_DATABASE_URL"],),
            name="tocsin-worker", daemon=True)
        notifier.start()
    print(f"tocsin is serving on http://{host}:{port}/"
          + (" with a notification worker" if worker else "") + " (Ctrl-C to stop)", flush=True)
    try:
        Granian(APP, factory=True, address=host, port=port, interface=Interfaces.ASGI,
                workers=workers, log_level=LogLevels.warning, log_access=False,
                websockets=False).serve()
    finally:
        if notifier is not None:
            notifier.terminate()  # SIGTERM: the worker finishes its round's bookkeeping
            notifier.join(15)
            if notifier.is_alive():
                notifier.kill()
                notifier.join()


def run_worker(url: str) -> None:
    """The notification worker process of `tocsin serve`: settings from the environment
    (which the server set), its own engine on `url`; runs until SIGTERM or SIGINT."""
    engine = connect(url)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_forever(engine, settings.read())
    finally:
        engine.dispose()
