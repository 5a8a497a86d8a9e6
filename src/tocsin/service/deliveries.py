"""The delivery queue, on tocsin's own tables (the same on SQLite and PostgreSQL).

Outbox events are fanned out into one delivery per subscriber; workers lease due deliveries
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer serialises the claim), try
them, and record each attempt. A worker that dies leaves leases that run out; another worker
then takes them again, so every delivery is made at least once, with the same idempotency key.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from tocsin.domain import notify
from tocsin.domain.errors import InvalidInput, NotFound
from tocsin.domain.notify import DeliveryStatus, Outcome, SubscriptionStatus
from tocsin.service import subscriptions, websub
from tocsin.service.change import change
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import check_current, queueing, reading
from tocsin.store.listen import NOTIFY_CHANNEL

LEASE = timedelta(seconds=60)
"""How long a claimed delivery belongs to its worker; longer than any one attempt."""
DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
LARGEST_ID = 2**63 - 1
"""Ids are 64-bit on both databases; a larger number names nothing."""
FEED_TOPICS = frozenset({notify.LEVELS_CHANGED, "declaration.published",
                         "declaration.cancelled"})
"""Events after which a feed may have changed: WebSub subscribers get the new version."""


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with its event, ready to become a channel's Job."""

    id: int
    event_id: int
    topic: str
    payload: Mapping[str, Any]
    channel: notify.Channel
    target: str
    subscription_id: str | None
    attempt: int
    event_at: datetime


@dataclass(frozen=True)
class Result:
    delivery_id: int
    outcome: Outcome
    at: datetime
    duration_ms: int


FAN_OUT_CHUNK = 2000
"""Subscribers expanded per transaction: each chunk commits (and wakes the workers) at once,
so sending starts while a large fan-out is still being written."""


def fan_out(engine: Engine, now: datetime, *, chunk: int = FAN_OUT_CHUNK
            ) -> list[tuple[int, int]]:
    """Expand every outbox event not yet fanned out into deliveries; returns (event,
    deliveries made) for each. Idempotent and safe with many workers (see `fan_out_step`)."""
    made: dict[int, int] = {}
    while (step := fan_out_step(engine, now, chunk=chunk)) is not None:
        event_id, count, _ = step
        made[event_id] = made.get(event_id, 0) + count
    return sorted(made.items())


def fan_out_step(engine: Engine, now: datetime, *, chunk: int = FAN_OUT_CHUNK
                 ) -> tuple[int, int, bool] | None:
    """Expand the oldest waiting event by at most `chunk` subscribers, in one transaction;
    returns (event, deliveries made, whether the event is now done), or None when no event
    waits. The event's row is locked while a chunk is written (other workers take other
    events: SKIP LOCKED) and remembers how far it got, so a chunk is never written twice."""
    pg = engine.dialect.name == "postgresql"
    o = t.outbox
    with queueing(engine) as conn:
        query = (select(o.c.id, o.c.topic, o.c.payload, o.c.fanned_out_to)
                 .where(o.c.fanned_out_at.is_(None)).order_by(o.c.id).limit(1))
        if pg:
            query = query.with_for_update(skip_locked=True)
        event = conn.execute(query).first()
        if event is None:
            return None
        done = True
        if event.topic == notify.LEVELS_CHANGED:
            made, last = _to_subscribers_chunk(conn, event.id, event.payload, now,
                                               after=event.fanned_out_to, chunk=chunk)
            done = last is None
            if not done:
                conn.execute(update(o).where(o.c.id == event.id).values(fanned_out_to=last))
        else:
            made = _to_one(conn, event.id, event.topic, event.payload, now)
        if done:
            if event.topic in FEED_TOPICS:
                made += _to_websub(conn, event.id, now)
            conn.execute(update(o).where(o.c.id == event.id).values(fanned_out_at=now))
        if pg and made:
            conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return int(event.id), made, done


def _to_subscribers_chunk(conn: Connection, event_id: int, payload: Mapping[str, Any],
                          now: datetime, *, after: str | None, chunk: int
                          ) -> tuple[int, str | None]:
    """Deliveries for the next `chunk` subscribers (by id, after `after`) who hear this
    change; returns how many, and the last id when more may follow (None: done)."""
    tree = records.load_tree(conn)
    changes = payload.get("changes", [])
    areas = notify.audience(tree, [c["area"] for c in changes if c["area"] in tree])
    if not areas:
        return 0, None
    schemes = sorted({c["scheme"] for c in changes})
    s, sa, ss = t.subscriptions, t.subscription_areas, t.subscription_schemes
    hears = [
        s.c.status == SubscriptionStatus.ACTIVE.value,
        exists().where(sa.c.subscription_id == s.c.id, sa.c.area_code.in_(sorted(areas))),
        or_(~exists().where(ss.c.subscription_id == s.c.id),
            exists().where(ss.c.subscription_id == s.c.id, ss.c.scheme.in_(schemes))),
    ]
    if after is not None:
        hears.append(s.c.id > after)
    # The chunk's bounds first, then one INSERT … SELECT: the rows never pass through Python.
    ids = select(s.c.id).where(*hears).order_by(s.c.id).limit(chunk).subquery()
    last, count = conn.execute(select(func.max(ids.c.id), func.count())).one()
    if not count:
        return 0, None
    chosen = select(
        literal(event_id), s.c.id, s.c.channel, s.c.target,
        literal(DeliveryStatus.PENDING.value), literal(0), literal(now, t.UTCDateTime),
        literal(now, t.UTCDateTime),
    ).where(*hears, s.c.id <= last)
    conn.execute(insert(t.deliveries).from_select(
        ["event_id", "subscription_id", "channel", "target", "status", "attempts",
         "created_at", "next_attempt_at"], chosen))
    return int(count), (last if count == chunk else None)


def _to_websub(conn: Connection, event_id: int, now: datetime) -> int:
    """A push to every WebSub subscriber whose lease holds (those whose lease ran out are
    dropped here); at delivery time the worker sends its feed if its version moved since
    the last push."""
    d, w = t.deliveries, t.websub_subscriptions
    websub.expire(conn, now=now)
    chosen = select(
        literal(event_id), w.c.id, literal(notify.Channel.WEBSUB.value), w.c.callback,
        literal(DeliveryStatus.PENDING.value), literal(0), literal(now, t.UTCDateTime),
        literal(now, t.UTCDateTime),
    ).where(w.c.state == "active")
    before = _count(conn, event_id)
    conn.execute(insert(d).from_select(
        ["event_id", "subscription_id", "channel", "target", "status", "attempts",
         "created_at", "next_attempt_at"], chosen))
    return _count(conn, event_id) - before


def _count(conn: Connection, event_id: int) -> int:
    """Counted, since drivers do not all report the rows an INSERT … SELECT made."""
    d = t.deliveries
    return int(conn.execute(select(func.count()).select_from(d)
                            .where(d.c.event_id == event_id)).scalar_one())


def _to_one(conn: Connection, event_id: int, topic: str, payload: Mapping[str, Any],
            now: datetime) -> int:
    """The delivery of an event that goes to one address: a confirmation, a reminder."""
    d, s = t.deliveries, t.subscriptions
    pending = {"status": DeliveryStatus.PENDING.value, "attempts": 0, "created_at": now,
               "next_attempt_at": now}
    if topic == notify.CONFIRM:
        row = conn.execute(select(s.c.id, s.c.channel, s.c.target, s.c.status)
                           .where(s.c.id == payload["subscription"])).first()
        if row is None or row.status != SubscriptionStatus.PENDING.value:
            return 0
        conn.execute(insert(d).values(event_id=event_id, subscription_id=row.id,
                                      channel=row.channel, target=row.target, **pending))
        return 1
    if topic == notify.TERM_ENDING and payload.get("email"):
        conn.execute(insert(d).values(event_id=event_id, subscription_id=None,
                                      channel=notify.Channel.EMAIL.value,
                                      target=payload["email"], **pending))
        return 1
    return 0


def claim(engine: Engine, now: datetime, *, worker: str, limit: int,
          lease: timedelta = LEASE) -> list[Claimed]:
    """Lease up to `limit` due deliveries (waiting ones whose time has come, and leased ones
    whose worker let the lease run out) to `worker`, in one statement."""
    d, o = t.deliveries, t.outbox
    due = or_(and_(d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt_at <= now),
              and_(d.c.status == DeliveryStatus.LEASED.value, d.c.lease_until < now))
    chosen = select(d.c.id).where(due).order_by(d.c.next_attempt_at, d.c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    with queueing(engine) as conn:
        rows = list(conn.execute(update(d).where(d.c.id.in_(chosen.scalar_subquery())).values(
            status=DeliveryStatus.LEASED.value, lease_until=now + lease, leased_by=worker,
            attempts=d.c.attempts + 1,
            first_attempt_at=func.coalesce(d.c.first_attempt_at, now),
        ).returning(d.c.id, d.c.event_id, d.c.channel, d.c.target, d.c.subscription_id,
                    d.c.attempts)))
        if not rows:
            return []
        events = {e.id: e for e in conn.execute(
            select(o.c.id, o.c.topic, o.c.payload, o.c.created_at)
            .where(o.c.id.in_(sorted({r.event_id for r in rows}))))}
    rows.sort(key=lambda r: r.id)
    return [Claimed(int(r.id), int(r.event_id), events[r.event_id].topic,
                    events[r.event_id].payload, notify.Channel(r.channel), r.target,
                    r.subscription_id, int(r.attempts), events[r.event_id].created_at)
            for r in rows]


def record(engine: Engine, results: Sequence[Result], *, worker: str,
           rng: random.Random | None = None) -> None:
    """Write what the attempts came to, in one transaction: each attempt, and each
    delivery's new state (delivered; waiting again after back-off; dead; dropped)."""
    if not results:
        return
    rng = rng or random.Random()
    d = t.deliveries
    with queueing(engine) as conn:
        conn.execute(insert(t.delivery_attempts), [
            {"delivery_id": r.delivery_id, "at": r.at, "worker": worker,
             "delivered": r.outcome.delivered, "status": r.outcome.status,
             "detail": r.outcome.detail[:500], "duration_ms": r.duration_ms} for r in results])
        delivered = [r for r in results if r.outcome.delivered]
        if delivered:
            conn.execute(update(d).where(d.c.id == bindparam("b_id")).values(
                status=DeliveryStatus.DELIVERED.value, delivered_at=bindparam("b_at"),
                last_status=bindparam("b_status"), last_detail=bindparam("b_detail"),
                lease_until=None), [
                {"b_id": r.delivery_id, "b_at": r.at, "b_status": r.outcome.status,
                 "b_detail": r.outcome.detail[:500]} for r in delivered])
        failed = [r for r in results if not r.outcome.delivered]
        if not failed:
            return
        rows = {row.id: row for row in conn.execute(
            select(d.c.id, d.c.attempts, d.c.first_attempt_at, d.c.subscription_id, d.c.status)
            .where(d.c.id.in_([r.delivery_id for r in failed])))}
        for r in failed:
            row = rows[r.delivery_id]
            if row.status != DeliveryStatus.LEASED.value:
                continue  # dropped meanwhile (the subscription was removed)
            # Back-off counts the attempts since the first one of this round (a replay
            # starts a new round); `attempts` keeps counting them all.
            this_round = conn.execute(select(func.count()).select_from(t.delivery_attempts)
                                      .where(t.delivery_attempts.c.delivery_id == r.delivery_id,
                                             t.delivery_attempts.c.at >= (row.first_attempt_at
                                                                          or r.at))).scalar_one()
            when = notify.next_attempt(failed_attempts=max(1, int(this_round)),
                                       first_attempt=row.first_attempt_at or r.at, now=r.at,
                                       jitter=rng.random(), outcome=r.outcome)
            values: dict[str, Any] = {"last_status": r.outcome.status,
                                      "last_detail": r.outcome.detail[:500], "lease_until": None}
            if when is not None:
                values.update(status=DeliveryStatus.PENDING.value, next_attempt_at=when)
            elif r.outcome.gone:
                values.update(status=DeliveryStatus.DROPPED.value)
            else:
                values.update(status=DeliveryStatus.DEAD.value)
            conn.execute(update(d).where(d.c.id == r.delivery_id).values(**values))
            if r.outcome.gone and row.subscription_id:
                subscriptions.disable(conn, row.subscription_id, now=r.at,
                                      reason=f"the endpoint answered {r.outcome.detail}")


def drop(engine: Engine, delivery_ids: Iterable[int], *, detail: str) -> None:
    """Mark leased deliveries as not to be sent (e.g. nothing in them for that subscriber)."""
    ids = list(delivery_ids)
    if not ids:
        return
    with queueing(engine) as conn:
        conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(ids)).values(
            status=DeliveryStatus.DROPPED.value, last_detail=detail, lease_until=None))


def replay(engine: Engine, *, now: datetime, actor: str, ids: Sequence[int] = (),
           status: DeliveryStatus | None = None) -> int:
    """Queue dead (or chosen) deliveries again, as new: three more days of attempts.
    Returns how many were queued; refuses ids that do not exist or are in flight."""
    check_current(engine)
    if not ids and status is None:
        raise InvalidInput("nothing to replay was named",
                           "give delivery ids, or --dead for every dead delivery")
    d = t.deliveries
    too_large = sorted(i for i in ids if not 0 < i <= LARGEST_ID)
    if too_large:
        raise NotFound(f"no delivery {', '.join(map(str, too_large))}",
                       "list them with 'tocsin deliveries list'")
    with change(engine, now=now, actor=actor) as unit:
        conn = unit.conn
        query = select(d.c.id, d.c.status)
        if ids:
            query = query.where(d.c.id.in_(list(ids)))
        if status is not None:
            query = query.where(d.c.status == status.value)
        rows = list(conn.execute(query))
        missing = sorted(set(ids) - {r.id for r in rows})
        if missing:
            raise NotFound(f"no delivery {', '.join(map(str, missing))}",
                           "list them with 'tocsin deliveries list'")
        busy = [r.id for r in rows if r.status in (DeliveryStatus.LEASED.value,
                                                   DeliveryStatus.PENDING.value)]
        if ids and busy:
            raise InvalidInput(f"delivery {', '.join(map(str, busy))} is still queued or in "
                               "flight", "replay deliveries that are dead, dropped or delivered")
        chosen = [r.id for r in rows if r.id not in busy]
        if chosen:
            conn.execute(update(d).where(d.c.id.in_(chosen)).values(
                status=DeliveryStatus.PENDING.value, next_attempt_at=now, first_attempt_at=None,
                lease_until=None, leased_by=None))
            unit.audit("deliveries.replayed", f"{len(chosen)} deliveries",
                       {"ids": chosen[:1000]})
        return len(chosen)


def listing(engine: Engine, *, status: DeliveryStatus | None = None,
            subscription: str | None = None, event: int | None = None,
            limit: int = 50) -> list[dict[str, Any]]:
    """Deliveries, newest first, as plain dicts for the CLI and the API."""
    check_current(engine)
    d = t.deliveries
    query = (select(d, t.outbox.c.topic).join(t.outbox, t.outbox.c.id == d.c.event_id)
             .order_by(d.c.id.desc()).limit(limit))
    if status is not None:
        query = query.where(d.c.status == status.value)
    if subscription is not None:
        query = query.where(d.c.subscription_id == subscription)
    if event is not None:
        if not 0 < event <= LARGEST_ID:
            return []
        query = query.where(d.c.event_id == event)
    with reading(engine) as conn:
        return [_as_dict(r) for r in conn.execute(query)]


def show(engine: Engine, delivery_id: int) -> dict[str, Any]:
    """One delivery with every attempt."""
    check_current(engine)
    d = t.deliveries
    if not 0 < delivery_id <= LARGEST_ID:
        raise NotFound(f"no delivery {delivery_id}", "list them with 'tocsin deliveries list'")
    with reading(engine) as conn:
        row = conn.execute(select(d, t.outbox.c.topic).join(t.outbox, t.outbox.c.id == d.c.event_id)
                           .where(d.c.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no delivery {delivery_id}", "list them with 'tocsin deliveries list'")
        out = _as_dict(row)
        a = t.delivery_attempts
        out["attempt_log"] = [
            {"at": r.at.isoformat(), "worker": r.worker, "delivered": r.delivered,
             "status": r.status, "detail": r.detail, "duration_ms": r.duration_ms}
            for r in conn.execute(select(a).where(a.c.delivery_id == delivery_id)
                                  .order_by(a.c.id))]
        return out


def counts(engine: Engine, *, event: int | None = None) -> dict[str, int]:
    """How many deliveries are in each state (of one event, or of all)."""
    d = t.deliveries
    query = select(d.c.status, func.count()).group_by(d.c.status)
    if event is not None:
        query = query.where(d.c.event_id == (event if 0 < event <= LARGEST_ID else 0))
    with reading(engine) as conn:
        found = {status: int(n) for status, n in conn.execute(query)}
    return {status: found.get(status, 0) for status in DELIVERY_STATUSES}


def last_event(engine: Engine) -> int | None:
    """The newest outbox event that has deliveries."""
    with reading(engine) as conn:
        value = conn.execute(select(func.max(t.deliveries.c.event_id))).scalar()
        return int(value) if value is not None else None


def fanned_out(engine: Engine, event: int) -> bool:
    """Whether the outbox event has been fanned out; NotFound when there is no such event."""
    with reading(engine) as conn:
        row = conn.execute(select(t.outbox.c.fanned_out_at).where(
            t.outbox.c.id == event)).first() if 0 < event <= LARGEST_ID else None
    if row is None:
        raise NotFound(f"no event {event}", "see 'tocsin deliveries list' for event numbers")
    return row.fanned_out_at is not None


def unfanned(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(t.outbox)
                                .where(t.outbox.c.fanned_out_at.is_(None))).scalar_one())


def next_due(engine: Engine) -> datetime | None:
    """The soonest instant some delivery becomes due (a waiting one, or a lease running out),
    or None when nothing is queued. A read, so idle workers never take the write lock."""
    d = t.deliveries
    with engine.connect() as conn:
        waiting = conn.execute(select(func.min(d.c.next_attempt_at)).where(
            d.c.status == DeliveryStatus.PENDING.value)).scalar()
        leased = conn.execute(select(func.min(d.c.lease_until)).where(
            d.c.status == DeliveryStatus.LEASED.value)).scalar()
        pending_events = conn.execute(select(t.outbox.c.created_at).where(
            t.outbox.c.fanned_out_at.is_(None)).limit(1)).scalar()
    found = [x for x in (waiting, leased, pending_events) if x is not None]
    return min(found, default=None)


def _as_dict(r: Any) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": int(r.id), "event": int(r.event_id), "topic": r.topic,
            "subscription": r.subscription_id, "channel": r.channel, "target": r.target,
            "status": r.status, "attempts": int(r.attempts), "created_at": iso(r.created_at),
            "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None,
            "delivered_at": iso(r.delivered_at), "last_status": r.last_status,
            "last_detail": r.last_detail,
            "key": notify.idempotency_key(int(r.event_id), r.subscription_id or r.target)}
