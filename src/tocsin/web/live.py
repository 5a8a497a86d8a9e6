"""Keeping the snapshot current, and telling open pages about level changes (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from tocsin.service import levels
from tocsin.store import changes as store_changes
from tocsin.web import snapshot as snapshots
from tocsin.web.snapshot import Snapshot

log = logging.getLogger("tocsin.web")
POLL_SECONDS = 5.0
"""The longest wait between two looks at the store's version. A change wakes the watcher at
once (tocsin.store.changes); this only bounds the cost of a lost signal."""
PRERENDER_PAUSE = 0.001
WARM_PATHS = 256
"""After a change, how many of the most recently used documents it touched render ahead."""
WARM_SECONDS = 0.5
"""The rendering time those may take, per change: the rest render when asked for. (A burst
of changes would otherwise keep the interpreter busy rendering pages nobody asks for.)"""
KEEP_EVENTS = 1000
HEARTBEAT_SECONDS = 15.0
T = TypeVar("T")


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
        if not (last_id.isascii() and last_id.isdigit()) or len(last_id) > 19:
            return None  # not an id given out here (outbox ids are 64-bit integers)
        if int(last_id) < self._floor:
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
        """Make the next snapshot from the current one now, swap it in, announce level
        changes. Documents the change cannot have touched are carried over; the others
        render on their first request (and `warm` renders the ones that were asked for)."""
        # Read before building: every announcement read is in the snapshot built after it.
        pending = levels.announcements(self.engine, after=self.broadcaster.last_id)
        self._rebuilding = True  # warming of the old snapshot stops now
        try:
            new = snapshots.build(self.engine, previous=self.current)
        finally:
            self._rebuilding = False
        self.current = new
        self._announce(pending, new)
        return new

    def check(self) -> Snapshot | None:
        """Read the store's counters; make a new snapshot when a public change landed or a
        level starts or ends now (returns it). A change that is not public (people, tokens,
        lock-outs, subscriptions) only moves the published audit head: no rebuild."""
        state = snapshots.read_version(self.engine)
        current = self.current
        due = current.next_change
        if state.outbox != current.outbox or (due is not None and datetime.now(UTC) >= due):
            return self.refresh()
        if state.head != current.site.audit_head:
            current.site.set_audit_head(state.head)
        return None

    def _announce(self, events: list[tuple[int, dict[str, Any]]], snapshot: Snapshot) -> None:
        for event_id, payload in events:
            self.broadcaster.publish(event_id, {"version": snapshot.version,
                                                "at": payload["at"],
                                                "changes": payload["changes"]})

    def warm(self, snapshot: Snapshot, paths: list[str]) -> None:
        """Render `paths` (those the previous snapshot had been asked for and this one did
        not carry over) behind the requests; stop once a newer snapshot has taken over.

        It pauses after each document as long as it took, so that requests (and the next
        rebuild) get at least half of the interpreter, and stops after WARM_PATHS documents
        or WARM_SECONDS of rendering.
        """
        spent = 0.0
        for path in paths[:WARM_PATHS]:
            if self.current is not snapshot or self._rebuilding or spent > WARM_SECONDS:
                return
            began = time.perf_counter()
            with contextlib.suppress(Exception):  # a document that fails renders on request
                snapshot.site.render(path)
            took = time.perf_counter() - began
            spent += took
            time.sleep(max(PRERENDER_PAUSE, took))

    async def watch(self) -> None:
        """Rebuild when the store's version moves or when a level starts or ends; sleep in
        between (an idle server uses no CPU)."""
        changes = store_changes.watch(self.engine)  # before the first look: nothing is missed
        try:
            while True:
                try:
                    old = self.current
                    new = await _in_daemon_thread(self.check)
                    if new is not None:  # render ahead what was asked for before, behind
                        threading.Thread(target=self.warm, args=(
                            new, old.site.missing_in(new.site)), daemon=True).start()
                except Exception:  # keep serving the last good snapshot
                    log.exception("could not rebuild the snapshot; serving the previous one")
                    await asyncio.sleep(1.0)
                timeout = POLL_SECONDS
                due = self.current.next_change
                if due is not None:
                    timeout = min(timeout, max(0.0, (due - datetime.now(UTC)).total_seconds()))
                await changes.wait(timeout)
        finally:
            changes.close()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch())

    async def stop(self) -> None:
        """Stop watching at once; a rebuild or pre-rendering under way is abandoned with
        its daemon thread, so that the process can end now."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _in_daemon_thread(work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run `work` in a daemon thread of its own: unlike the default executor's threads, the
    interpreter does not wait for it at exit, so a long rebuild never delays a shutdown."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(*args), None
        except BaseException as failure:  # handed to the awaiting task
            result, error = None, failure
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="tocsin-snapshot", daemon=True).start()
    return future
