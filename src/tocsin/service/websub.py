"""WebSub subscriptions (W3C WebSub): who wants which feed pushed to which callback.

A subscription is stored only once its subscriber has confirmed the intent; each delivery is
claimed through `last_etag`, so that of many server processes exactly one pushes each new
version of a feed to each subscriber.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from tocsin.domain.errors import Conflict
from tocsin.store import tables as t
from tocsin.store.database import queueing, reading

DEFAULT_LEASE = timedelta(days=10)
LONGEST_LEASE = timedelta(days=30)
SHORTEST_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class Subscription:
    id: str
    topic: str
    callback: str
    secret: str | None
    lease_expires_at: datetime | None
    last_etag: str | None


def lease_for(asked: int | None) -> timedelta:
    """The lease the hub grants: what was asked, within the hub's bounds."""
    if asked is None:
        return DEFAULT_LEASE
    return min(max(timedelta(seconds=asked), SHORTEST_LEASE), LONGEST_LEASE)


def activate(engine: Engine, topic: str, callback: str, secret: str | None,
             lease: timedelta, *, now: datetime, etag: str | None,
             per_host: int | None = None) -> Subscription:
    """Store (or renew) a confirmed subscription; `etag` is the topic's current version,
    which the subscriber does not need pushed again. Conflict when it is new and the
    callback's host holds `per_host` subscriptions already."""
    expires = now + lease
    with queueing(engine) as conn:
        found = conn.execute(select(t.websub_subscriptions.c.id).where(
            t.websub_subscriptions.c.topic == topic,
            t.websub_subscriptions.c.callback == callback)).scalar()
        if found is None:
            host = urlsplit(callback).hostname or ""
            if per_host is not None and _count_for_host(conn, host) >= per_host:
                raise Conflict(f"hub.callback host {host!r} has {per_host} subscriptions "
                               "already", "unsubscribe from topics you no longer need")
            found = secrets.token_hex(8)
            conn.execute(insert(t.websub_subscriptions).values(
                id=found, topic=topic, callback=callback, secret=secret, state="active",
                created_at=now, lease_expires_at=expires, last_etag=etag))
        else:
            conn.execute(update(t.websub_subscriptions)
                         .where(t.websub_subscriptions.c.id == found)
                         .values(secret=secret, state="active", lease_expires_at=expires,
                                 last_etag=etag))
    return Subscription(found, topic, callback, secret, expires, etag)


def exists(engine: Engine, topic: str, callback: str) -> bool:
    """Whether `callback` holds a subscription to `topic`."""
    c = t.websub_subscriptions.c
    with reading(engine) as conn:
        return conn.execute(select(func.count()).where(
            c.topic == topic, c.callback == callback)).scalar_one() > 0


def count_for_host(engine: Engine, host: str) -> int:
    """How many subscriptions have their callback on `host`."""
    with reading(engine) as conn:
        return _count_for_host(conn, host)


def _count_for_host(conn: Connection, host: str) -> int:
    c = t.websub_subscriptions.c
    pattern = "%://%" + host.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    callbacks = conn.execute(select(c.callback).where(
        func.lower(c.callback).like(pattern, escape="\\"))).scalars()
    return sum(urlsplit(callback).hostname == host for callback in callbacks)


def remove(engine: Engine, topic: str, callback: str) -> bool:
    with queueing(engine) as conn:
        result = conn.execute(delete(t.websub_subscriptions).where(
            t.websub_subscriptions.c.topic == topic,
            t.websub_subscriptions.c.callback == callback))
    return bool(result.rowcount)


def get(engine: Engine, subscription_id: str, *, now: datetime) -> Subscription | None:
    """The subscription, if it still exists and its lease holds."""
    c = t.websub_subscriptions.c
    with reading(engine) as conn:
        r = conn.execute(select(t.websub_subscriptions).where(
            c.id == subscription_id, c.state == "active")).first()
    if r is None or (r.lease_expires_at is not None and r.lease_expires_at <= now):
        return None
    return Subscription(r.id, r.topic, r.callback, r.secret, r.lease_expires_at, r.last_etag)


def record(engine: Engine, subscription_id: str, status: str, *, now: datetime,
           etag: str | None = None, gone: bool = False) -> None:
    """Note a push's outcome (and, when it was delivered, the version sent); a subscriber
    that answered 410 Gone is removed."""
    with queueing(engine) as conn:
        if gone:
            conn.execute(delete(t.websub_subscriptions).where(
                t.websub_subscriptions.c.id == subscription_id))
            return
        values: dict[str, object] = {"last_delivery_at": now, "last_status": status}
        if etag is not None:
            values["last_etag"] = etag
        conn.execute(update(t.websub_subscriptions)
                     .where(t.websub_subscriptions.c.id == subscription_id).values(**values))


def claim(engine: Engine, subscription: Subscription, etag: str) -> bool:
    """Take the push of version `etag` to this subscriber; False when it has it already or
    another worker took it first (the version it had moved meanwhile)."""
    c = t.websub_subscriptions.c
    with queueing(engine) as conn:
        result = conn.execute(update(t.websub_subscriptions).where(
            c.id == subscription.id,
            c.last_etag.is_(None) if subscription.last_etag is None
            else c.last_etag == subscription.last_etag,
        ).values(last_etag=etag))
    return bool(result.rowcount)


def release(engine: Engine, subscription: Subscription, etag: str) -> None:
    """Give back a claimed version that could not be pushed, so that a retry sends it."""
    c = t.websub_subscriptions.c
    with queueing(engine) as conn:
        conn.execute(update(t.websub_subscriptions).where(
            c.id == subscription.id, c.last_etag == etag).values(
            last_etag=subscription.last_etag))


def expire(conn: Connection, *, now: datetime) -> None:
    """Drop subscriptions whose lease has run out (in the caller's transaction)."""
    conn.execute(delete(t.websub_subscriptions).where(
        t.websub_subscriptions.c.lease_expires_at <= now))
