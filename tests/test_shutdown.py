"""`tocsin serve` as real processes: SIGTERM stops all of them (server processes and the
notification worker) within 5 s at any moment, a SIGKILLed server leaves no worker behind,
a stopping worker gives back what it holds, and an idle server uses (almost) no CPU.

Processes are found through /proc (Linux), not psutil: the server's descendants, among them
the worker (the interpreter whose command line runs tocsin.web.serve.run_notifier).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from tests.receiver import Behaviour, receiving
from tests.web_server import free_port

from tocsin import settings
from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.domain.notify import Channel
from tocsin.notify import worker as worker_module
from tocsin.notify.worker import Worker
from tocsin.service import commands, deliveries, subscriptions
from tocsin.web.live import Holder

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

TOCSIN = Path(sys.executable).with_name("tocsin")
STOP_SECONDS = 5.0
WORKER_MARK = "run_notifier"
TICKS = os.sysconf("SC_CLK_TCK")


# --- /proc ------------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, …; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has ended


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found.extend(frontier)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes so far (those still there)."""
    total = 0
    for pid in pids:
        if (fields := stat_fields(pid)) is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Wait until every pid has ended; those still running after `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


# --- a real server ----------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    log: Path

    def worker(self) -> int:
        [pid] = [p for p in descendants(self.process.pid) if WORKER_MARK in command_line(p)]
        return pid

    def everything(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]


def demo_like(engine: Engine) -> None:
    """A countrywide level and regional ones on top, as the demo has them."""
    for level, areas in (("moderate", ("KZ",)), ("critical", ("KZ-75", "KZ-19")),
                         ("high", ("KZ-71",))):
        commands.declare(engine, [DeclarationRequest(
            scheme="kz-terror", level=level, areas=areas, texts={"en": Statement(level)},
            sender="Test")], now=datetime.now(UTC), actor="test")


@contextmanager
def serving(db_url: str, tmp_path: Path, *, ready: bool = True) -> Iterator[Served]:
    """`tocsin serve` with its worker on a free port; every process it started is killed
    at the end if a test left it running."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "TOCSIN_DATABASE_URL": db_url}
    with open(log, "w") as out:
        process = subprocess.Popen([str(TOCSIN), "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, text=True)
    served = Served(process, f"http://127.0.0.1:{port}", log)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 90  # start-up imports are slow on a busy machine
        while ready:
            started = served.everything()
            with_worker = any(WORKER_MARK in command_line(p) for p in started)
            try:
                if with_worker and httpx.get(served.base + "/api/v1/schemes",
                                             timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tocsin serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        for pid in [*started, *served.everything()]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)


def stopped_within(served: Served, seconds: float = STOP_SECONDS) -> float:
    """SIGTERM the server; how long until it and everything it started had gone."""
    pids = served.everything()
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(seconds + 5)
    left = wait_gone(pids, max(0.0, started + seconds - time.monotonic()))
    assert not left, (f"still running {seconds} s after SIGTERM: "
                      + "; ".join(command_line(p) for p in left) + "\n"
                      + served.log.read_text())
    return time.monotonic() - started


# --- SIGTERM ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_the_server_and_its_worker_at_once(engine: Engine, db_url: str,
                                                         tmp_path: Path) -> None:
    demo_like(engine)
    with serving(db_url, tmp_path) as served:
        assert len(served.everything()) >= 3  # server, a server process, the worker
        stopped_within(served)
        assert served.process.returncode == 0, served.log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigterm_during_start_up(db_url: str, tmp_path: Path) -> None:
    with serving(db_url, tmp_path, ready=False) as served:
        deadline = time.monotonic() + 60
        while not any(WORKER_MARK in command_line(p) for p in served.everything()):
            assert time.monotonic() < deadline and served.process.poll() is None
            time.sleep(0.01)
        stopped_within(served)


@pytest.mark.slow
@pytest.mark.parametrize("pause", [0.0, 0.05])
def test_sigterm_during_a_rebuild_with_a_page_listening(engine: Engine, db_url: str,
                                                         tmp_path: Path, pause: float) -> None:
    """Right after `tocsin declare` has committed, the servers are making the next snapshot
    (in a thread); an open page holds a live-events stream."""
    demo_like(engine)
    env = {**os.environ, "TOCSIN_DATABASE_URL": db_url}
    with serving(db_url, tmp_path) as served:
        listening = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream("GET", served.base + "/events", timeout=30) as events:
                    listening.set()
                    for _ in events.iter_lines():
                        pass
            except httpx.HTTPError:
                pass

        threading.Thread(target=listen, daemon=True).start()
        assert listening.wait(30)
        subprocess.run([str(TOCSIN), "declare", "--scheme", "kz-terror", "--level", "critical",
                        "--area", "KZ", "--headline", "Critical countrywide"], env=env,
                       check=True, capture_output=True)
        time.sleep(pause)
        stopped_within(served)


def test_a_server_process_does_not_wait_for_a_rebuild_to_stop(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """At national scale a rebuild takes seconds: stopping abandons it with its daemon
    thread (the interpreter does not wait for it at exit)."""
    holder = Holder(engine)
    rebuilding, release = threading.Event(), threading.Event()

    def slow_check() -> None:
        rebuilding.set()
        release.wait(60)

    monkeypatch.setattr(holder, "check", slow_check)

    async def main() -> float:
        holder.start()
        assert await asyncio.to_thread(rebuilding.wait, 10)
        started = time.monotonic()
        await holder.stop()
        return time.monotonic() - started

    try:
        assert asyncio.run(main()) < 0.5
        busy = [t for t in threading.enumerate() if t.name == "tocsin-snapshot"]
        assert busy and all(t.daemon for t in busy)
    finally:
        release.set()


# --- the server dies --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_server_leaves_no_worker_behind(engine: Engine, db_url: str,
                                                 tmp_path: Path) -> None:
    demo_like(engine)
    with serving(db_url, tmp_path) as served:
        worker = served.worker()
        pids = served.everything()
        served.process.kill()
        served.process.wait(5)
        left = wait_gone(pids, STOP_SECONDS)
        assert worker not in left, "the worker outlived its server"
        assert not left, "processes outlived their server: " + "; ".join(
            command_line(p) for p in left)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_without_the_kernels_help_the_worker_notices_its_parent_is_gone(db_url: str) -> None:
    """The portable fallback (no PR_SET_PDEATHSIG): the worker looks for its parent."""
    worker = ("import sys\n"
              "from tocsin import settings\n"
              "from tocsin.notify.worker import run_forever\n"
              "from tocsin.store.database import connect\n"
              "run_forever(connect(sys.argv[1]), settings.read(), parent=int(sys.argv[2]))\n"
              "print('stopped', flush=True)\n")
    parent = ("import os, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2],"
              " str(os.getpid())])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(600)\n")
    middle = subprocess.Popen([sys.executable, "-c", parent, worker, db_url],
                              stdout=subprocess.PIPE, text=True)
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    try:
        time.sleep(3)  # the worker is up and idle
        assert alive(child)
        middle.kill()
        middle.wait()
        assert not wait_gone([child], worker_module.PARENT_LOOK + 3)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


# --- a stopping worker ------------------------------------------------------------------------


def test_a_stopping_worker_gives_back_an_attempt_in_flight(engine: Engine,
                                                            tmp_path: Path) -> None:
    config = settings.Settings(database_url=engine.url.render_as_string(hide_password=False),
                               sender="t", allow_private_targets=True,
                               keys_dir=str(tmp_path / "keys"), public_url="https://x.test")
    with receiving() as receiver:
        url = receiver.behave("/slow", Behaviour(delay=30))
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                          owner="t", now=datetime.now(UTC), allow_private=True)
        commands.declare(engine, [DeclarationRequest(
            scheme="kz-terror", level="high", areas=("KZ",), texts={"en": Statement("T")},
            sender="Test")], now=datetime.now(UTC), actor="test")
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        worker = Worker(engine, config)
        thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not any(r["status"] == "leased" for r in deliveries.listing(engine)):
                assert time.monotonic() < deadline, deliveries.listing(engine)
                time.sleep(0.05)
            time.sleep(0.2)  # the request is on its way
            asked = time.monotonic()
            loop.call_soon_threadsafe(stop.set)
            thread.join(worker_module.STOP_GRACE + 5)
            took = time.monotonic() - asked
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(30)
            loop.close()
    assert took < worker_module.STOP_GRACE + 2, took
    [row] = deliveries.listing(engine)
    assert row["status"] == "pending" and row["last_detail"] == worker_module.INTERRUPTED, row


# --- idle means idle --------------------------------------------------------------------------


def settle_until_quiet(pids: list[int], seconds: float = 90.0) -> None:
    """Wait for the start-up work to end (the worker's imports and first round take a few
    seconds of CPU on a busy machine): until one second passes with under 1% used."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = cpu_seconds(pids)
        time.sleep(1.0)
        if cpu_seconds(pids) - before < 0.01:
            return
    raise AssertionError("tocsin serve never went quiet")


@pytest.mark.slow
def test_an_idle_server_and_its_worker_use_under_one_percent_of_a_core(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    demo_like(engine)
    with serving(db_url, tmp_path) as served:
        pids = served.everything()
        settle_until_quiet(pids)
        before = cpu_seconds(pids)
        time.sleep(10)
        used = (cpu_seconds(pids) - before) / 10 * 100
        assert used < 1.0, f"{used:.2f}% of a core while idle"
        stopped_within(served)
