"""Keeping the snapshot current, and telling open pages about level changes (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from tocsin.service.change import NOTIFY_CHANNEL
from tocsin.store.listen import listen
from tocsin.web import snapshot as snapshots
from tocsin.web.snapshot import Snapshot

log = logging.getLogger("tocsin.web")
POLL_SECONDS = 0.005
"""How often SQLite's version counter is read: a one-row primary-key read."""
LISTEN_POLL_SECONDS = 1.0
"""On PostgreSQL, NOTIFY wakes the watcher at once; the counter is still read this often."""
PRERENDER_PAUSE = 0.001
KEEP_EVENTS = 1000
HEARTBEAT_SECONDS = 15.0


@dataclass(frozen=True)
class Event:
    id: str
    data: str


class Broadcaster:
    """Level-change events with ids, kept for reconnecting clients (Last-Event-ID)."""

    def __init__(self) -> None:
        self.boot = f"{int(time.time() * 1000):x}"
        self._seq = 0
        self._events: deque[Event] = deque(maxlen=KEEP_EVENTS)
        self._waiters: set[asyncio.Event] = set()

    def publish(self, payload: dict[str, object]) -> Event:
        self._seq += 1
        event = Event(f"{self.boot}-{self._seq}", json.dumps(payload, ensure_ascii=False,
                                                           separators=(",", ":")))
        self._events.append(event)
        for waiter in self._waiters:
            waiter.set()
        return event

    def since(self, last_id: str | None) -> list[Event] | None:
        """Events after `last_id`; None when some of them are no longer known (reset)."""
        if not last_id:
            return []
        boot, _, seq = last_id.partition("-")
        if boot != self.boot or not seq.isdigit() or int(seq) > self._seq:
            return None
        oldest = _seq_of(self._events[0].id) if self._events else self._seq + 1
        if int(seq) < oldest - 1:
            return None
        return [e for e in self._events if _seq_of(e.id) > int(seq)]

    async def stream(self, last_id: str | None) -> AsyncIterator[str]:
        """The text/event-stream body for one client: what it missed, then what comes."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            yield "retry: 2000\n\n"
            missed = self.since(last_id)
            if missed is None:
                yield f"id: {self.boot}-{self._seq}\nevent: reset\ndata: {{}}\n\n"
            for event in missed or ():
                yield _frame(event)
            sent = self._seq
            while True:
                try:
                    await asyncio.wait_for(waiter.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                waiter.clear()
                for event in [e for e in self._events if _seq_of(e.id) > sent]:
                    yield _frame(event)
                    sent = _seq_of(event.id)
        finally:
            self._waiters.discard(waiter)


def _seq_of(event_id: str | None) -> int:
    if not event_id:
        return 0
    tail = event_id.partition("-")[2]
    return int(tail) if tail.isdigit() else 0


def _frame(event: Event) -> str:
    return f"id: {event.id}\nevent: levels\ndata: {event.data}\n\n"


class Holder:
    """The current snapshot of this process, rebuilt off the request path."""

    def __init__(self, engine: Engine, broadcaster: Broadcaster) -> None:
        self.engine = engine
        self.broadcaster = broadcaster
        self.current: Snapshot = snapshots.build(engine)
        self._task: asyncio.Task[None] | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rebuilding = False
        self.listeners: list[Callable[[Snapshot, Snapshot], Awaitable[None]]] = []
        """Told of every new snapshot (old, new), e.g. to push changed feeds."""

    def refresh(self) -> Snapshot:
        """Build a new snapshot now and swap it in; announce level changes.

        The new world is served at once: a document not yet pre-rendered renders on its
        first request, and `prerender` fills in the rest afterwards.
        """
        old = self.current
        self._rebuilding = True  # pre-rendering of the old snapshot stops now
        try:
            new = snapshots.build(self.engine, prerender=False)
        finally:
            self._rebuilding = False
        self.current = new
        changed = snapshots.changes(old, new)
        if changed:
            self.broadcaster.publish({"version": new.version, "at": new.built_at.isoformat(),
                                      "changes": changed})
        return new

    def prerender(self, snapshot: Snapshot) -> None:
        """Render every document of `snapshot`; stop early once a newer one has taken over.

        Runs behind the requests: it pauses between documents so that requests (and the
        next rebuild) never queue behind it for the interpreter.
        """
        for path in snapshot.site.paths():
            if self.current is not snapshot or self._rebuilding:
                return
            snapshot.site.render(path)
            time.sleep(PRERENDER_PAUSE)

    async def watch(self) -> None:
        """Rebuild when the store's version moves or when a level starts or ends."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        interval = POLL_SECONDS
        if self.engine.dialect.name == "postgresql":
            interval = LISTEN_POLL_SECONDS
            self._listener = threading.Thread(
                target=listen, args=(self.engine, NOTIFY_CHANNEL, loop, woken, self._stopping),
                daemon=True)
            self._listener.start()
        while True:
            timeout = interval
            due = self.current.next_change
            if due is not None:
                timeout = min(interval, max(0.0, (due - datetime.now(UTC)).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout)
            woken.clear()
            try:
                version, _, _ = await loop.run_in_executor(None, snapshots.read_version,
                                                        self.engine)
                due = self.current.next_change
                if version != self.current.version or (due and datetime.now(UTC) >= due):
                    old = self.current
                    new = await loop.run_in_executor(None, self.refresh)
                    for listener in self.listeners:
                        _background(listener(old, new))
                    # Not awaited: the watcher keeps watching while documents render.
                    loop.run_in_executor(None, self.prerender, new)
            except Exception:  # keep serving the last good snapshot
                log.exception("could not rebuild the snapshot; serving the previous one")
                await asyncio.sleep(1.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


_running: set[asyncio.Task[None]] = set()


def _background(work: Awaitable[None]) -> None:
    """Run `work` without waiting for it; log what it raises."""
    task = asyncio.ensure_future(work)
    _running.add(task)

    def done(finished: asyncio.Task[None]) -> None:
        _running.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.error("a snapshot listener failed", exc_info=finished.exception())
    task.add_done_callback(done)
