"""Waiting for the store to change: what an idle server or worker does all day, so it must
cost (almost) nothing, and end soon after a commit.

- PostgreSQL: every change NOTIFYs `NOTIFY_CHANNEL`; a thread LISTENs (tocsin.store.listen).
- SQLite on Linux: inotify on the database's folder wakes on each write to the database file
  or its WAL. `PRAGMA data_version`, on a connection held for it, then tells a commit by any
  other connection from a write still in progress: a commit becomes visible a moment after
  its last write, so an unchanged version is looked at again a few times (1 to 64 ms later).
- SQLite without inotify: `PRAGMA data_version` every `POLL_SECONDS`.

A wake-up says the store may have changed; callers then look at what they care about (the
state version, due deliveries). Whatever they wait for, they also look when their timeout
runs out, so a lost signal (a LISTEN connection being re-made) costs time, never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import sqlite3
import struct
import sys
import threading
from pathlib import Path

from sqlalchemy import Engine

from tocsin.store.listen import NOTIFY_CHANNEL, listen

log = logging.getLogger("tocsin.store")
POLL_SECONDS = 0.25
"""SQLite without inotify: how often data_version is read (a few microseconds each time)."""
RECHECKS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064)
"""Seconds between the looks at data_version after a write that did not yet show."""

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x2, 0x8, 0x80, 0x100
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class Changes:
    """Wakes a waiter when the store may have changed. Make it in the event loop that waits
    (`watch`), and close it when done."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Until the store may have changed since the last wait (True) or `timeout`
        seconds pass (False)."""
        if not self._changed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))
        changed = self._changed.is_set()
        self._changed.clear()
        return changed or self._moved()

    def _moved(self) -> bool:
        """A last look when the wait timed out (the fallback for lost signals)."""
        return False

    def close(self) -> None:
        """Stop watching; idempotent."""


class _Listening(Changes):
    """PostgreSQL: NOTIFY, heard by a LISTEN thread."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._stopping = threading.Event()
        threading.Thread(target=listen, name="tocsin-listen", daemon=True, args=(
            engine, NOTIFY_CHANNEL, asyncio.get_running_loop(), self._changed,
            self._stopping)).start()

    def close(self) -> None:
        self._stopping.set()


class _DataVersion(Changes):
    """SQLite: PRAGMA data_version on a connection of its own, read on a timer or when
    inotify says the database's files were written."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        # Never writes, so every change of data_version is another connection's commit.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False)
        self._version = self._read()
        self._recheck: asyncio.TimerHandle | None = None
        self._inotify = _open_inotify(path)
        if self._inotify is not None:
            self._loop.add_reader(self._inotify.fd, self._on_write)

    @property
    def polling(self) -> bool:
        """True when there is no inotify here and data_version is read on a timer."""
        return self._inotify is None

    async def wait(self, timeout: float) -> bool:
        if self._inotify is not None:
            return await super().wait(timeout)
        deadline = self._loop.time() + max(0.0, timeout)
        while True:
            if self._moved():
                self._changed.clear()
                return True
            left = deadline - self._loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(POLL_SECONDS, left))

    def _read(self) -> int:
        assert self._db is not None
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _moved(self) -> bool:
        if self._db is None:
            return False
        try:
            version = self._read()
        except sqlite3.Error:  # e.g. the file is being replaced; the next look will tell
            log.debug("could not read data_version", exc_info=True)
            return False
        moved, self._version = version != self._version, version
        return moved

    def _on_write(self) -> None:
        assert self._inotify is not None
        if self._inotify.written():
            if self._recheck is not None:
                self._recheck.cancel()
            self._look(0)

    def _look(self, attempt: int) -> None:
        self._recheck = None
        if self._moved():
            self._changed.set()
        elif attempt < len(RECHECKS):
            self._recheck = self._loop.call_later(RECHECKS[attempt], self._look, attempt + 1)

    def close(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        if self._inotify is not None:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        if self._db is not None:
            self._db.close()
            self._db = None


class _Inotify:
    """An inotify watch on a folder, reporting writes to some of its files (Linux, ctypes)."""

    def __init__(self, fd: int, names: set[bytes]) -> None:
        self.fd = fd
        self._names = names

    def written(self) -> bool:
        """Drain the pending events; True when one was about a watched file."""
        hit = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return hit
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
                hit = hit or name in self._names
                offset += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


def _open_inotify(path: Path) -> _Inotify | None:
    """A watch on the database's folder, or None where inotify is missing or exhausted
    (fs.inotify.max_user_instances): the caller then polls."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(path.parent), mask) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, "inotify_add_watch")
    except (OSError, AttributeError) as error:
        log.info("no inotify for %s (%s); polling SQLite every %g s", path, error,
                 POLL_SECONDS)
        return None
    base = os.fsencode(path.name)
    return _Inotify(fd, {base, base + b"-wal", base + b"-journal"})


def watch(engine: Engine) -> Changes:
    """The cheapest way to hear of the store's changes here. Call it in the running event
    loop that will wait."""
    if engine.dialect.name == "postgresql":
        return _Listening(engine)
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return Changes()  # nothing outside this process writes it: callers' timeouts do
    return _DataVersion(Path(database).expanduser().resolve())
