"""WebSub subscriptions (W3C WebSub): who wants which feed pushed to which callback.

A subscription is stored only once its subscriber has confirmed the intent; each delivery is
claimed through `last_etag`, so that of many server processes exactly one pushes each new
version of a feed to each subscriber.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, insert, or_, select, update

from tocsin.store import tables as t
from tocsin.store.database import reading, writing

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
             lease: timedelta, *, now: datetime, etag: str | None) -> Subscription:
    """Store (or renew) a confirmed subscription; `etag` is the topic's current version,
    which the subscriber does not need pushed again."""
    expires = now + lease
    with writing(engine) as conn:
        found = conn.execute(select(t.websub_subscriptions.c.id).where(
            t.websub_subscriptions.c.topic == topic,
            t.websub_subscriptions.c.callback == callback)).scalar()
        if found is None:
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


def remove(engine: Engine, topic: str, callback: str) -> bool:
    with writing(engine) as conn:
        result = conn.execute(delete(t.websub_subscriptions).where(
            t.websub_subscriptions.c.topic == topic,
            t.websub_subscriptions.c.callback == callback))
    return bool(result.rowcount)


def due(engine: Engine, topic: str, etag: str, *, now: datetime) -> list[Subscription]:
    """Subscriptions to `topic` whose lease holds and which have not had version `etag`."""
    c = t.websub_subscriptions.c
    with writing(engine) as conn:
        conn.execute(delete(t.websub_subscriptions).where(c.lease_expires_at <= now))
        rows = conn.execute(select(t.websub_subscriptions).where(
            c.topic == topic, c.state == "active",
            or_(c.last_etag.is_(None), c.last_etag != etag))).all()
    return [Subscription(r.id, r.topic, r.callback, r.secret, r.lease_expires_at, r.last_etag)
            for r in rows]


def claim(engine: Engine, subscription: Subscription, etag: str) -> bool:
    """Take the delivery of version `etag` to this subscriber; False if another process did."""
    c = t.websub_subscriptions.c
    with writing(engine) as conn:
        result = conn.execute(update(t.websub_subscriptions).where(
            c.id == subscription.id,
            or_(c.last_etag.is_(None), and_(c.last_etag != etag,
                                            c.last_etag == subscription.last_etag)),
        ).values(last_etag=etag))
    return bool(result.rowcount)


def record(engine: Engine, subscription_id: str, status: str, *, now: datetime,
           gone: bool = False) -> None:
    """Note a delivery's outcome; a subscriber that answered 410 Gone is removed."""
    with writing(engine) as conn:
        if gone:
            conn.execute(delete(t.websub_subscriptions).where(
                t.websub_subscriptions.c.id == subscription_id))
        else:
            conn.execute(update(t.websub_subscriptions)
                         .where(t.websub_subscriptions.c.id == subscription_id)
                         .values(last_delivery_at=now, last_status=status))


def topics(engine: Engine) -> list[str]:
    """Every topic someone subscribes to."""
    with reading(engine) as conn:
        return list(conn.execute(
            select(t.websub_subscriptions.c.topic).distinct()).scalars().all())
