"""Waiting for the store to change (tocsin.store.changes): a commit elsewhere wakes the waiter
at once; nothing else does, so an idle server and worker sleep."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.service import commands
from tocsin.store import changes
from tocsin.store.database import reading


def declare(engine: Engine, area: str = "KZ-75") -> None:
    commands.declare(engine, [DeclarationRequest(
        scheme="kz-terror", level="high", areas=(area,), texts={"en": Statement("Test")},
        sender="Test")], now=datetime.now(UTC), actor="test")


async def woken_by(engine: Engine, write: Callable[[], None], timeout: float) -> bool:
    """Whether a watcher wakes after `write` (run in a thread)."""
    watch = changes.watch(engine)
    try:
        assert not await watch.wait(0.05)  # nothing written yet
        done = asyncio.get_running_loop().run_in_executor(None, write)
        woke = await watch.wait(timeout)
        await done
        return woke
    finally:
        watch.close()


def test_a_commit_wakes_the_waiter_at_once(engine: Engine) -> None:
    """From the commit (the write returning) to the waiter awake, three times."""
    seconds = []
    for area in ("KZ-11", "KZ-15", "KZ-19"):
        async def timed(a: str = area) -> float:
            watch = changes.watch(engine)
            try:
                committed: list[float] = []

                def write() -> None:
                    declare(engine, a)
                    committed.append(time.perf_counter())

                threading.Thread(target=write).start()
                assert await watch.wait(5.0)
                woke = time.perf_counter()
                while not committed:
                    await asyncio.sleep(0.001)
                return max(0.0, woke - committed[0])
            finally:
                watch.close()
        seconds.append(asyncio.run(timed()))
    assert statistics.median(seconds) < 0.05, seconds


def test_reading_does_not_wake_the_waiter(engine: Engine) -> None:
    async def main() -> bool:
        watch = changes.watch(engine)
        try:
            def read() -> None:
                for _ in range(20):
                    with reading(engine) as conn:
                        conn.exec_driver_sql("SELECT 1 FROM state")
            await asyncio.get_running_loop().run_in_executor(None, read)
            return await watch.wait(0.3)
        finally:
            watch.close()
    assert not asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_commit_in_another_process_wakes_the_waiter(engine: Engine, db_url: str) -> None:
    script = ("import sys; from datetime import UTC, datetime\n"
              "from tocsin.store.database import connect\n"
              "from tocsin.service import commands\n"
              "from tocsin.domain.declaration import DeclarationRequest, Statement\n"
              "commands.declare(connect(sys.argv[1]), [DeclarationRequest(scheme='kz-terror',"
              " level='high', areas=('KZ-75',), texts={'en': Statement('T')}, sender='T')],"
              " now=datetime.now(UTC), actor='test')\n")

    def write() -> None:
        subprocess.run([sys.executable, "-c", script, db_url], check=True)

    assert asyncio.run(woken_by(engine, write, timeout=30.0))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_without_inotify_sqlite_is_polled(engine: Engine, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setattr(changes, "_open_inotify", lambda path: None)

    async def main() -> tuple[bool, float, bool]:
        watch = changes.watch(engine)
        try:
            assert getattr(watch, "polling", False)
            started = time.perf_counter()
            idle = await watch.wait(0.3)
            threading.Thread(target=declare, args=(engine,)).start()
            woke = await watch.wait(5.0)
            return woke, time.perf_counter() - started, idle
        finally:
            watch.close()

    woke, took, idle = asyncio.run(main())
    assert woke and not idle
    assert took < 0.3 + 5 * changes.POLL_SECONDS


def test_closing_twice_is_harmless(engine: Engine) -> None:
    async def main() -> None:
        watch = changes.watch(engine)
        watch.close()
        watch.close()
    asyncio.run(main())
