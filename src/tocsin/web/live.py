"""Keeping the snapshot current, and telling open pages about level changes (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from tocsin.service import levels
from tocsin.store.listen import NOTIFY_CHANNEL, listen
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
    """Level-change events for open pages, fed from the outbox: an event's id is its outbox
    id, the same in every server process and after restarts, so a page that reconnects
    (Last-Event-ID) to any process gets exactly what it missed, or a reset when that is
    no longer known here."""

    def __init__(self, floor: int = 0) -> None:
        self._events: deque[Event] = deque(maxlen=KEEP_EVENTS)
        self._waiters: set[asyncio.Event] = set()
        self.last_id = floor
        """The newest event this process knows of."""
        self._floor = floor
        """Every event after this id is (or was) here."""

    def publish(self, event_id: int, payload: dict[str, object]) -> Event | None:
        """Add an outbox event; an event at or before the newest known is ignored."""
        if event_id <= self.last_id:
            return None
        if len(self._events) == self._events.maxlen:
            self._floor = int(self._events[0].id)
        self.last_id = event_id
        event = Event(str(event_id), json.dumps(payload, ensure_ascii=False,
                                                separators=(",", ":")))
        self._events.append(event)
        for waiter in self._waiters:
            waiter.set()
        return event

    def since(self, last_id: str | None) -> list[Event] | None:
        """Events after `last_id`; None when some of them are not known here (reset)."""
        if not last_id:
            return []
        if not last_id.isdigit() or int(last_id) < self._floor:
            return None
        return [e for e in self._events if int(e.id) > int(last_id)]

    async def stream(self, last_id: str | None) -> AsyncIterator[str]:
        """The text/event-stream body for one client: what it missed, then what comes."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            yield "retry: 2000\n\n"
            missed = self.since(last_id)
            sent = self.last_id
            if missed is None:
                yield f"id: {self.last_id}\nevent: reset\ndata: {{}}\n\n"
            elif last_id:
                for event in missed:
                    yield _frame(event)
                sent = max([int(last_id), *(int(e.id) for e in missed)])
            while True:
                try:
                    await asyncio.wait_for(waiter.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                waiter.clear()
                for event in [e for e in self._events if int(e.id) > sent]:
                    yield _frame(event)
                    sent = int(event.id)
        finally:
            self._waiters.discard(waiter)


def _frame(event: Event) -> str:
    return f"id: {event.id}\nevent: levels\ndata: {event.data}\n\n"


class Holder:
    """The current snapshot of this process, rebuilt off the request path."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        recent = levels.announcements(engine, last=KEEP_EVENTS)
        # With fewer than KEEP_EVENTS announcements in the store, this process knows them all.
        floor = recent[0][0] - 1 if len(recent) == KEEP_EVENTS else 0
        self.broadcaster = Broadcaster(floor)
        self.current: Snapshot = snapshots.build(engine)
        self._announce(recent, self.current)
        self._task: asyncio.Task[None] | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rebuilding = False

    def refresh(self) -> Snapshot:
        """Build a new snapshot now and swap it in; announce level changes.

        The new world is served at once: a document not yet pre-rendered renders on its
        first request, and `prerender` fills in the rest afterwards.
        """
        # Read before building: every announcement read is in the snapshot built after it.
        pending = levels.announcements(self.engine, after=self.broadcaster.last_id)
        self._rebuilding = True  # pre-rendering of the old snapshot stops now
        try:
            new = snapshots.build(self.engine, prerender=False)
        finally:
            self._rebuilding = False
        self.current = new
        self._announce(pending, new)
        return new

    def _announce(self, events: list[tuple[int, dict[str, Any]]], snapshot: Snapshot) -> None:
        for event_id, payload in events:
            self.broadcaster.publish(event_id, {"version": snapshot.version,
                                                "at": payload["at"],
                                                "changes": payload["changes"]})

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
                    new = await loop.run_in_executor(None, self.refresh)
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
