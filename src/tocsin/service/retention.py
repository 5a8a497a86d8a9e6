"""Retention: pruning the notification bookkeeping (`tocsin prune`, and every worker hourly).

`delivery_attempts`, `deliveries` and `outbox` grow with every change and every subscriber.
They are pruned by age (settings.Retention), a batch at a time, each batch one transaction,
so that a prune never holds the database for long and a crash leaves nothing half-deleted.
Never pruned:

- the attempts of a delivery still queued or in flight (its back-off counts them);
- a delivery queued or in flight, or one whose last activity is within its retention (it can
  still be shown and replayed); a pruned delivery takes its attempts with it;
- an event not yet (fully) fanned out (the workers read the outbox from the oldest such
  event), and an event a kept delivery points at (its payload is what a replay sends);
- the newest event: servers read the events after the newest they saw (a snapshot's
  `outbox`), so ids must never go backwards, and SQLite hands out max(id) + 1 again once
  the newest row is gone. For the same reason the newest row of each of the three tables
  is kept;
- the newest change of areas and the newest of schemes, by which the read model dates the
  structure (records.structure_changed_at);
- the audit log, ever: it is the hash-chained history.

Attempts and events are walked in id order from the oldest (ids follow time closely): a walk
stops at the first batch with nothing old in it, so an hourly prune costs what it deletes,
not the size of the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, delete, exists, func, or_, select

from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import DeliveryStatus
from tocsin.settings import Retention
from tocsin.store import tables as t
from tocsin.store.database import check_current, queueing
from tocsin.store.records import STRUCTURE_TOPICS

BATCH = 1000
"""Rows looked at (and at most deleted) per transaction."""
SETTLED = (DeliveryStatus.DELIVERED.value, DeliveryStatus.DEAD.value,
           DeliveryStatus.DROPPED.value)
UNSETTLED = (DeliveryStatus.PENDING.value, DeliveryStatus.LEASED.value)

Transaction = Callable[[], AbstractContextManager[Connection]]


@dataclass(frozen=True)
class Pruned:
    """Rows deleted (or, in a dry run, that would be) from each table."""

    delivery_attempts: int = 0
    deliveries: int = 0
    outbox: int = 0

    def as_json(self) -> dict[str, int]:
        return {"delivery_attempts": self.delivery_attempts, "deliveries": self.deliveries,
                "outbox": self.outbox}


class _DryRun(Exception):
    def __init__(self, pruned: Pruned) -> None:
        self.pruned = pruned


def prune(engine: Engine, *, now: datetime, keep: Retention, batch: int = BATCH,
          dry_run: bool = False, halt: Callable[[], bool] = lambda: False) -> Pruned:
    """Delete what `keep` lets go as of `now` (see the module doc); returns how many rows of
    each table. A dry run does the same in one transaction and rolls it back, so its counts
    are exact (on SQLite it holds the write lock meanwhile). Once `halt()` is true, no
    further batch is begun (a stopping worker)."""
    check_current(engine)
    if batch < 1:
        raise InvalidInput(f"batch {batch} is not a positive number", "give e.g. 1000")
    if not dry_run:
        return _prune(lambda: queueing(engine), now, keep, batch, halt)
    try:
        with queueing(engine) as conn:
            @contextmanager
            def same() -> Iterator[Connection]:
                yield conn
            raise _DryRun(_prune(same, now, keep, batch, halt))
    except _DryRun as done:  # leaving the block by an exception rolls the deletions back
        return done.pruned


def _prune(tx: Transaction, now: datetime, keep: Retention, batch: int,
           halt: Callable[[], bool]) -> Pruned:
    attempts = deliveries = events = 0
    if keep.delivery_attempts is not None:
        attempts = _attempts(tx, now - keep.delivery_attempts, batch, halt)
    if keep.deliveries is not None:
        deliveries, with_them = _deliveries(tx, now - keep.deliveries, batch, halt)
        attempts += with_them
    if keep.events is not None:
        events = _events(tx, now - keep.events, batch, halt)
    return Pruned(attempts, deliveries, events)


def _newest(tx: Transaction, column: Column[Any]) -> int:
    with tx() as conn:
        return int(conn.execute(select(func.max(column))).scalar() or 0)


def _attempts(tx: Transaction, cutoff: datetime, batch: int, halt: Callable[[], bool]
              ) -> int:
    """Attempts older than `cutoff`, except those of deliveries still queued or in flight."""
    a, d = t.delivery_attempts, t.deliveries
    newest = _newest(tx, a.c.id)
    queued = exists().where(d.c.id == a.c.delivery_id, d.c.status.in_(UNSETTLED))
    deleted, after = 0, 0
    while not halt():
        with tx() as conn:
            rows = list(conn.execute(select(a.c.id, a.c.at).where(a.c.id > after)
                                     .order_by(a.c.id).limit(batch)))
            old = [r.id for r in rows if r.at < cutoff and r.id != newest]
            if old:
                deleted += conn.execute(delete(a).where(
                    a.c.id.in_(old), a.c.at < cutoff, ~queued)).rowcount
        if len(rows) < batch or not any(r.at < cutoff for r in rows):
            break
        after = rows[-1].id
    return deleted


def _deliveries(tx: Transaction, cutoff: datetime, batch: int, halt: Callable[[], bool]
                ) -> tuple[int, int]:
    """Settled deliveries whose last activity is before `cutoff`, with their attempts;
    returns (deliveries, attempts) deleted. Found through the queue's index (status,
    next_attempt_at); a replay sets next_attempt_at to its time, so a replayed delivery is
    recent again."""
    d, a = t.deliveries, t.delivery_attempts
    newest = _newest(tx, d.c.id)
    old = select(d.c.id).where(
        d.c.status.in_(SETTLED), d.c.next_attempt_at < cutoff, d.c.created_at < cutoff,
        or_(d.c.delivered_at.is_(None), d.c.delivered_at < cutoff),
        ~exists().where(a.c.delivery_id == d.c.id, a.c.at >= cutoff),
        d.c.id != newest).limit(batch)
    deliveries = attempts = gone = 0
    while not halt():
        with tx() as conn:
            query = old
            if conn.dialect.name == "postgresql":  # a replay of one waits, or is skipped here
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if ids:
                attempts += conn.execute(delete(a).where(a.c.delivery_id.in_(ids))).rowcount
                gone = conn.execute(delete(d).where(d.c.id.in_(ids))).rowcount
                deliveries += gone
        if len(ids) < batch or not gone:
            break
    return deliveries, attempts


def _events(tx: Transaction, cutoff: datetime, batch: int, halt: Callable[[], bool]
            ) -> int:
    """Outbox events created and fanned out before `cutoff` that no delivery points at,
    except the newest event and the newest of each structure topic."""
    o, d = t.outbox, t.deliveries
    later = o.alias("later")
    newest = _newest(tx, o.c.id)
    deletable = [
        o.c.created_at < cutoff, o.c.fanned_out_at.is_not(None), o.c.fanned_out_at < cutoff,
        o.c.id != newest,
        ~exists().where(d.c.event_id == o.c.id),
        # Of areas and schemes changes, those with a later one no older keep neither the
        # newest id nor the newest time of their topic.
        or_(o.c.topic.not_in(STRUCTURE_TOPICS),
            exists().where(later.c.topic == o.c.topic, later.c.id > o.c.id,
                           later.c.created_at >= o.c.created_at)),
    ]
    deleted, after = 0, 0
    while not halt():
        with tx() as conn:
            rows = list(conn.execute(select(o.c.id, o.c.created_at).where(o.c.id > after)
                                     .order_by(o.c.id).limit(batch)))
            old = [r.id for r in rows if r.created_at < cutoff and r.id != newest]
            if old:
                deleted += conn.execute(delete(o).where(o.c.id.in_(old), *deletable)).rowcount
        if len(rows) < batch or not any(r.created_at < cutoff for r in rows):
            break
        after = rows[-1].id
    return deleted
