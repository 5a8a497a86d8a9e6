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
import importlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
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
"""The notification worker's main, a module-level function: (database URL, the pid to
outlive, or None when the kernel watches for it). It runs in a process of its own and
returns on SIGTERM or SIGINT."""


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
        beside = _Beside(start_notifier(notifier, os.environ["TOCSIN_DATABASE_URL"]))
    if beside is not None:
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
    """The notification worker process, stopped with the server."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.stop_asked: float | None = None

    def pass_on_stop_signals(self) -> None:
        """Pass SIGINT and SIGTERM on to the worker as Granian receives them, so that both
        stop at the same time. A Granian startup hook: its own handlers are set by then."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            granian_handler = signal.getsignal(sig)

            def handler(signum: int, frame: FrameType | None,
                        passed: Any = granian_handler) -> None:
                self.stop_asked = self.stop_asked or time.monotonic()
                with contextlib.suppress(OSError):
                    self.process.send_signal(signal.SIGTERM)
                if callable(passed):
                    passed(signum, frame)

            signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop it (SIGTERM: it gives back what it holds and ends); kill it when it has not
        ended in time for the STOP_SECONDS promise."""
        asked = self.stop_asked or time.monotonic()
        with contextlib.suppress(OSError):
            self.process.terminate()
        try:
            self.process.wait(max(0.1, asked + STOP_SECONDS - 0.5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl  # noqa: B018 - present, or AttributeError
    except (OSError, AttributeError):
        return None
    return libc


def _ask_for_parent_death_signal() -> bool:
    """Linux: have the kernel send this process SIGTERM when its parent ends, however it
    ends (the setting survives exec). Safe between fork and exec: one system call."""
    libc = _libc()
    return libc is not None and libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0


def die_with_parent(parent: int) -> bool:
    """End with `parent`, this process's parent: True when the kernel will see to it (and
    SIGTERM now if `parent` has ended already); False where the caller must watch."""
    if not _ask_for_parent_death_signal():
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def app_in_server_process() -> TocsinApp:
    """The app of one Granian server process (forked from the main one), which ends with
    the main process."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)
    return app_from_environment()


NOTIFIER_MAIN = "from tocsin.web.serve import run_notifier; run_notifier()"


def start_notifier(notifier: Notifier, url: str) -> subprocess.Popen[bytes]:
    """Start `notifier` on the database at `url` in a fresh interpreter (its own engine and
    event loop), told by module and name; the URL goes through a pipe, never onto a command
    line that `ps` shows. The parent-death signal is set between fork and exec, so that the
    worker ends with this process even while it is still importing."""
    name = f"{notifier.__module__}:{notifier.__qualname__}"
    process = subprocess.Popen(
        [sys.executable, "-c", NOTIFIER_MAIN, name, str(os.getpid())], stdin=subprocess.PIPE,
        preexec_fn=_ask_for_parent_death_signal if _libc() is not None else None)
    assert process.stdin is not None
    with process.stdin:
        process.stdin.write(url.encode() + b"\n")
    return process


def run_notifier() -> None:
    """The worker process of `tocsin serve` (`python -c NOTIFIER_MAIN NAME PARENT`, the
    database URL on stdin): ends with the server (by the kernel's signal, or by watching
    PARENT where there is none), and on SIGTERM or SIGINT."""
    name, parent = sys.argv[1], int(sys.argv[2])
    watched = die_with_parent(parent)
    url = sys.stdin.readline().strip()
    module, _, function = name.partition(":")
    notifier: Notifier = getattr(importlib.import_module(module), function)
    with contextlib.suppress(KeyboardInterrupt):
        notifier(url, None if watched else parent)
