"""Running the server: Granian (a Rust HTTP server) with tocsin's ASGI app, 1 or N processes,
and beside them, in a process of its own, a notification worker (handed in by the caller, so
that the web layer does not import the notification layer).

Chosen by measurement (bench/serve.py): on the 2-core development machine Granian served the
pre-rendered documents about twice as fast as uvicorn with uvloop and httptools.

Stopping: SIGINT or SIGTERM stops every process within STOP_SECONDS: the worker is told at
once, in parallel with Granian's own shutdown of its processes, and whatever has not ended
by then is killed. On Linux every process started here also gets SIGTERM from the kernel
when the server process dies (even by SIGKILL), so nothing stays behind; elsewhere the
worker looks for its parent once a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import gc
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels
from sqlalchemy import Engine

from tocsin.domain.errors import InvalidInput
from tocsin.web.app import TocsinApp, app_from_environment

APP = "tocsin.web.serve:app_in_server_process"
STOP_SECONDS = 5.0
"""The promise: after SIGTERM, every process of `tocsin serve` is gone within this."""
GRANIAN_KILL_AFTER = 3
"""Seconds Granian waits for a server process to stop before it kills it."""
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

Notifier = Callable[[str, "int | None"], None]
"""The notification worker's main: (database URL, the pid to outlive, or None when the
kernel watches it). It runs in a spawned process and returns on SIGTERM or SIGINT."""


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


def serve_http(engine: Engine, *, host: str, port: int, workers: int,
               notifier: Notifier | None = None) -> None:
    """Serve until SIGINT or SIGTERM. Each server process holds its own snapshot; with
    `notifier`, a notification worker runs beside them and stops with them."""
    check_port(host, port)
    # Server processes build the app from the environment, so they open this same database.
    os.environ["TOCSIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    if not os.environ.get("TOCSIN_PUBLIC_URL", "").strip():
        # Absolute links (feeds, CAP, WebSub topics) then name the address being served.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        os.environ["TOCSIN_PUBLIC_URL"] = f"http://{shown}:{port}"
    # Granian forks its server processes from this one. Frozen objects are left alone by the
    # collector: the children keep sharing their pages, and this process's final collection
    # at exit (over a second on a busy machine) is skipped.
    gc.freeze()
    server = Granian(APP, factory=True, address=host, port=port, interface=Interfaces.ASGI,
                     workers=workers, log_level=LogLevels.warning, log_access=False,
                     websockets=False, workers_kill_timeout=GRANIAN_KILL_AFTER)
    beside = None
    if notifier is not None:
        # Spawned, not forked: a fresh interpreter with its own engine and event loop.
        beside = _Beside(multiprocessing.get_context("spawn").Process(
            target=run_notifier, args=(notifier, os.environ["TOCSIN_DATABASE_URL"],
                                       os.getpid()),
            name="tocsin-worker", daemon=True))
        server.on_startup(beside.pass_on_stop_signals)
    print(f"tocsin is serving on http://{host}:{port}/"
          + (" with a notification worker" if beside else "") + " (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve()
    finally:
        if beside is not None:
            beside.stop()


class _Beside:
    """The notification worker process, started now, stopped with the server."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process
        self.stop_asked: float | None = None
        process.start()

    def pass_on_stop_signals(self) -> None:
        """Pass SIGINT and SIGTERM on to the worker as Granian receives them, so that both
        stop at the same time. A Granian startup hook: its own handlers are set by then."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            granian_handler = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None,
                        passed: Any = granian_handler) -> None:
                self.stop_asked = self.stop_asked or time.monotonic()
                self.process.terminate()
                if callable(passed):
                    passed(signum, frame)

            signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop it (SIGTERM: it gives back what it holds and ends); kill it when it has not
        ended in time for the STOP_SECONDS promise."""
        asked = self.stop_asked or time.monotonic()
        self.process.terminate()
        self.process.join(max(0.1, asked + STOP_SECONDS - 0.5 - time.monotonic()))
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def die_with_parent() -> bool:
    """Linux: have the kernel send this process SIGTERM when the process that started it
    ends, however it ends. False where that cannot be arranged."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it ended before we asked
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def app_in_server_process() -> TocsinApp:
    """The app of one Granian server process, which ends with the main process."""
    die_with_parent()
    return app_from_environment()


def run_notifier(notifier: Notifier, url: str, parent: int) -> None:
    """The worker process of `tocsin serve`: ends with the server (by the kernel's signal, or
    by watching `parent` where there is none), and on SIGTERM or SIGINT."""
    watched = die_with_parent()
    with contextlib.suppress(KeyboardInterrupt):
        notifier(url, None if watched else parent)
