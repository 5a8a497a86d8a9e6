"""Subscriptions: webhooks, e-mail addresses (double opt-in) and browser push endpoints that
want the level changes of some areas and schemes.

Secrets are shown once: the webhook's `whsec_…` signing secret is returned by `add` and
never again. E-mail subscriptions start pending; a signed link confirms them, another signed
link (also the one-click List-Unsubscribe) ends them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update

from tocsin.domain.errors import Forbidden, InvalidInput, NotFound, unknown
from tocsin.domain.notify import (
    CONFIRM,
    Channel,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    check_email,
)
from tocsin.service import targets
from tocsin.service.change import Change, change
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import check_current, queueing, reading
from tocsin.store.listen import NOTIFY_CHANNEL

LANGUAGES = ("kk", "ru", "en")
PUBLIC = "public"
"""The owner of subscriptions made from the public pages."""
MAX_AREAS = 200
CONFIRM_WINDOW = timedelta(hours=1)
"""At most one confirmation message per e-mail address in this window, however often (and for
whichever areas) the form is posted with it: the form must not mail-bomb someone else."""
PUSH_KEY = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


def add(engine: Engine, *, channel: Channel, target: str, areas: Sequence[str],
        schemes: Sequence[str] = (), owner: str, language: str = "en", now: datetime,
        details: Mapping[str, Any] | None = None, allow_private: bool = False,
        actor: str | None = None) -> tuple[Subscription, str]:
    """Register a subscription; returns it with its secret (shown once).

    E-mail subscriptions wait for confirmation: a confirmation message is queued in the same
    transaction. An address already subscribed to the same areas and schemes is not added
    twice: that subscription is returned (and, if pending, its confirmation sent again). An
    address gets at most one confirmation per CONFIRM_WINDOW, whatever is asked.
    """
    check_current(engine)
    target, details = _check_target(channel, target, details or {}, allow_private)
    if language not in LANGUAGES:
        raise InvalidInput(f"language {language!r} is not one tocsin writes",
                           f"choose one of {', '.join(LANGUAGES)}")
    area_codes = _unique(areas, "area")
    scheme_keys = _unique(schemes, "scheme")
    if not area_codes:
        raise InvalidInput("a subscription needs at least one area",
                           "name an area, e.g. KZ (the whole country) or KZ-75")
    if len(area_codes) > MAX_AREAS:
        raise InvalidInput(f"{len(area_codes)} areas is more than {MAX_AREAS}",
                           "subscribe to a parent area instead: it hears the areas inside it")
    with _writing(engine, now, actor or owner, audited=owner != PUBLIC) as unit:
        conn = unit.conn
        tree = records.load_tree(conn)
        known = records.load_schemes(conn)
        for code in area_codes:
            tree.get(code)
        for key in scheme_keys:
            if key not in known:
                raise unknown("scheme", key, known, "try 'tocsin schemes list'")
        if channel is not Channel.WEBHOOK:
            existing = _same(conn, channel, target, area_codes, scheme_keys)
            if existing is not None:
                if existing.status is SubscriptionStatus.PENDING:
                    _confirm_once_a_window(unit, existing.id, target)
                return existing, ""
        secret = _new_secret(channel)
        sub_id = "sub_" + secrets.token_hex(8)
        status = (SubscriptionStatus.PENDING if channel is Channel.EMAIL
                  else SubscriptionStatus.ACTIVE)
        conn.execute(insert(t.subscriptions).values(
            id=sub_id, channel=channel.value, target=target, secret=secret,
            details=dict(details), language=language, status=status.value, owner=owner,
            created_at=now, confirmed_at=None if status is SubscriptionStatus.PENDING else now))
        conn.execute(insert(t.subscription_areas),
                     [{"subscription_id": sub_id, "area_code": c} for c in area_codes])
        if scheme_keys:
            conn.execute(insert(t.subscription_schemes),
                         [{"subscription_id": sub_id, "scheme": k} for k in scheme_keys])
        unit.audit("subscription.added", sub_id, {
            "channel": channel.value, "target": _shown_target(channel, target),
            "areas": area_codes, "schemes": scheme_keys, "owner": owner})
        if status is SubscriptionStatus.PENDING:
            _confirm_once_a_window(unit, sub_id, target)
        sub = _load(conn, sub_id)
    return sub, secret if channel is Channel.WEBHOOK else ""


def get(engine: Engine, sub_id: str) -> Subscription:
    check_current(engine)
    with reading(engine) as conn:
        return _load(conn, sub_id)


def list_subscriptions(engine: Engine, *, owner: str | None = None,
                       channel: Channel | None = None,
                       include_disabled: bool = False) -> list[Subscription]:
    check_current(engine)
    query = select(t.subscriptions.c.id).order_by(t.subscriptions.c.created_at,
                                                    t.subscriptions.c.id)
    if owner is not None:
        query = query.where(t.subscriptions.c.owner == owner)
    if channel is not None:
        query = query.where(t.subscriptions.c.channel == channel.value)
    if not include_disabled:
        query = query.where(t.subscriptions.c.status != SubscriptionStatus.DISABLED.value)
    with reading(engine) as conn:
        ids = list(conn.execute(query).scalars())
        return _load_many(conn, ids)


def remove(engine: Engine, sub_id: str, *, now: datetime, actor: str,
           owner: str | None = None, reason: str = "removed") -> Subscription:
    """Disable a subscription and drop what it still had queued. With `owner`, only that
    owner's subscription may be removed (others answer NotFound)."""
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        sub = _load(unit.conn, sub_id)
        if owner is not None and sub.owner != owner:
            raise _not_found(sub_id)
        if sub.status is not SubscriptionStatus.DISABLED:
            disable(unit.conn, sub_id, now=now, reason=reason)
            unit.audit("subscription.removed", sub_id, {"reason": reason})
        return _load(unit.conn, sub_id)


def confirm(engine: Engine, sub_id: str, signature: str, *, now: datetime) -> Subscription:
    """Double opt-in: the signed link from the confirmation message activates it."""
    check_current(engine)
    with _writing(engine, now, PUBLIC, audited=False) as unit:
        sub = _load(unit.conn, sub_id)
        _check_signature(unit.conn, sub_id, "confirm", signature)
        if sub.status is SubscriptionStatus.DISABLED:
            raise Forbidden("this subscription has ended",
                            "subscribe again from the area's page")
        if sub.status is SubscriptionStatus.PENDING:
            unit.conn.execute(update(t.subscriptions).where(t.subscriptions.c.id == sub_id)
                              .values(status=SubscriptionStatus.ACTIVE.value, confirmed_at=now))
            unit.audit("subscription.confirmed", sub_id, {"channel": sub.channel.value})
        return _load(unit.conn, sub_id)


def unsubscribe(engine: Engine, sub_id: str, signature: str, *, now: datetime) -> Subscription:
    """The signed unsubscribe link (and RFC 8058 one-click POST) ends the subscription."""
    check_current(engine)
    with _writing(engine, now, PUBLIC, audited=False) as unit:
        _load(unit.conn, sub_id)
        _check_signature(unit.conn, sub_id, "unsubscribe", signature)
        sub = _load(unit.conn, sub_id)
        if sub.status is not SubscriptionStatus.DISABLED:
            disable(unit.conn, sub_id, now=now, reason="unsubscribed")
            unit.audit("subscription.removed", sub_id, {"reason": "unsubscribed"})
        return _load(unit.conn, sub_id)


def link_signature(secret: str, sub_id: str, purpose: str) -> str:
    """The signature of a confirm or unsubscribe link: HMAC-SHA256 with the subscription's
    own key, so a link works for that subscription and that purpose only."""
    mac = hmac.new(secret.encode(), f"{purpose}:{sub_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def signed_path(conn: Connection, sub_id: str, purpose: str) -> str:
    """`/subscriptions/ID/PURPOSE?sig=…`, relative to the public site."""
    secret = conn.execute(select(t.subscriptions.c.secret)
                          .where(t.subscriptions.c.id == sub_id)).scalar_one()
    return f"/subscriptions/{sub_id}/{purpose}?sig={link_signature(secret, sub_id, purpose)}"


def disable(conn: Connection, sub_id: str, *, now: datetime, reason: str) -> None:
    """Stop a subscription and drop its deliveries not yet made (same transaction)."""
    conn.execute(update(t.subscriptions).where(t.subscriptions.c.id == sub_id).values(
        status=SubscriptionStatus.DISABLED.value, disabled_at=now, disabled_reason=reason))
    conn.execute(update(t.deliveries).where(
        t.deliveries.c.subscription_id == sub_id,
        t.deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.DEAD.value]),
    ).values(status=DeliveryStatus.DROPPED.value, last_detail=f"subscription {reason}",
             lease_until=None))


def secret_of(conn: Connection, sub_id: str) -> str:
    value: str = conn.execute(select(t.subscriptions.c.secret)
                              .where(t.subscriptions.c.id == sub_id)).scalar_one()
    return value


def load_many(conn: Connection, ids: Sequence[str], *,
              secrets: dict[str, str] | None = None) -> dict[str, Subscription]:
    """Subscriptions by id; with `secrets`, their secrets are put there too (for delivery)."""
    return {s.id: s for s in _load_many(conn, ids, secrets)}


class _Quiet:
    """The writes of the public's own subscriptions: not audited changes, so they do not
    take the state row's lock nor move the version that makes every server rebuild its
    snapshot (a busy subscribe form must not make the site rebuild)."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.entries: list[Any] = []

    def audit(self, action: str, subject: str, details: Mapping[str, Any]) -> None:
        pass


@contextmanager
def _writing(engine: Engine, now: datetime, actor: str, *, audited: bool
             ) -> Iterator[Change | _Quiet]:
    if audited:
        with change(engine, now=now, actor=actor) as unit:
            yield unit
        return
    with queueing(engine) as conn:
        yield _Quiet(conn, now)


def _confirm_once_a_window(unit: Change | _Quiet, sub_id: str, target: str) -> None:
    """Queue the confirmation of `sub_id` unless one went to its address (for any of its
    subscriptions) within CONFIRM_WINDOW; silently, so the answer tells nothing."""
    conn, subs = unit.conn, t.subscriptions
    if conn.dialect.name == "postgresql":  # two posts at once for one address: one mail
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     {"key": f"tocsin-confirm:{target}"})
    last = conn.execute(select(subs.c.confirm_sent_at).where(
        subs.c.channel == Channel.EMAIL.value, subs.c.target == target,
        subs.c.confirm_sent_at.is_not(None)).order_by(subs.c.confirm_sent_at.desc())
        .limit(1)).scalar()
    if last is not None and unit.now - last < CONFIRM_WINDOW:
        return
    conn.execute(update(subs).where(subs.c.id == sub_id).values(confirm_sent_at=unit.now))
    _queue_confirmation(unit, sub_id)


def _queue_confirmation(unit: Change | _Quiet, sub_id: str) -> None:
    unit.audit("subscription.confirmation-sent", sub_id, {})
    seq = (unit.entries[-1].seq if unit.entries
           else int(records.read_state(unit.conn).audit_seq or 0))
    unit.conn.execute(insert(t.outbox).values(created_at=unit.now, topic=CONFIRM,
                                              payload={"subscription": sub_id},
                                              audit_seq=seq))
    if not unit.entries and unit.conn.dialect.name == "postgresql":
        unit.conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))  # wake the workers


def _check_target(channel: Channel, target: str, details: Mapping[str, Any],
                  allow_private: bool) -> tuple[str, dict[str, Any]]:
    target = target.strip()
    if channel is Channel.WEBHOOK:
        return targets.check_url(target, what="webhook URL", allow_private=allow_private), {}
    if channel is Channel.EMAIL:
        return check_email(target), {}
    if channel is Channel.PUSH:
        url = targets.check_url(target, what="push endpoint", allow_private=allow_private)
        if not url.startswith("https://") and not allow_private:
            raise InvalidInput(f"push endpoint {url!r} is not https",
                               "browsers give https endpoints; send the one the browser gave")
        keys = {name: details.get(name) for name in ("p256dh", "auth")}
        for name, value in keys.items():
            if not isinstance(value, str) or not PUSH_KEY.match(value) or len(value) > 200:
                raise InvalidInput(f"the push subscription's keys.{name} is missing or not "
                                   "base64url", "send the browser's PushSubscription.toJSON()")
        return url, dict(keys)
    raise InvalidInput(f"channel {channel.value!r} cannot be subscribed to here",
                       "use webhook, email or push")


def _new_secret(channel: Channel) -> str:
    raw = secrets.token_bytes(32)
    if channel is Channel.WEBHOOK:
        return "whsec_" + base64.b64encode(raw).decode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _shown_target(channel: Channel, target: str) -> str:
    """What the audit log keeps: a webhook's URL; an address or endpoint only in part."""
    if channel is Channel.EMAIL:
        local, _, domain = target.rpartition("@")
        return f"{local[:1]}…@{domain}"
    if channel is Channel.PUSH:
        return target.split("/")[2] if target.count("/") >= 2 else "…"
    return target


def _unique(values: Sequence[str], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            raise InvalidInput(f"an empty {what} was given", f"name each {what}, or leave it out")
        if value not in out:
            out.append(value)
    return out


def _same(conn: Connection, channel: Channel, target: str, areas: list[str],
          schemes: list[str]) -> Subscription | None:
    ids = conn.execute(select(t.subscriptions.c.id).where(
        t.subscriptions.c.channel == channel.value, t.subscriptions.c.target == target,
        t.subscriptions.c.status != SubscriptionStatus.DISABLED.value)).scalars()
    for sub in _load_many(conn, list(ids)):
        if set(sub.areas) == set(areas) and set(sub.schemes) == set(schemes):
            return sub
    return None


def _check_signature(conn: Connection, sub_id: str, purpose: str, signature: str) -> None:
    expected = link_signature(secret_of(conn, sub_id), sub_id, purpose)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Forbidden(f"this {purpose} link is not valid",
                        "use the link exactly as the message gave it")


def _not_found(sub_id: str) -> NotFound:
    return NotFound(f"no subscription {sub_id!r}", "list them with 'tocsin subscriptions list'")


def _load(conn: Connection, sub_id: str) -> Subscription:
    found = _load_many(conn, [sub_id])
    if not found:
        raise _not_found(sub_id)
    return found[0]


def _load_many(conn: Connection, ids: Sequence[str],
               secrets: dict[str, str] | None = None) -> list[Subscription]:
    if not ids:
        return []
    rows: list[Any] = []
    areas: dict[str, list[str]] = {}
    schemes: dict[str, list[str]] = {}
    for chunk in [ids[i:i + 500] for i in range(0, len(ids), 500)]:
        rows += list(conn.execute(select(t.subscriptions)
                                  .where(t.subscriptions.c.id.in_(chunk))))
        for sid, code in conn.execute(select(t.subscription_areas).where(
                t.subscription_areas.c.subscription_id.in_(chunk))):
            areas.setdefault(sid, []).append(code)
        for sid, key in conn.execute(select(t.subscription_schemes).where(
                t.subscription_schemes.c.subscription_id.in_(chunk))):
            schemes.setdefault(sid, []).append(key)
    if secrets is not None:
        secrets.update((r.id, r.secret) for r in rows)
    order = {sid: i for i, sid in enumerate(ids)}
    rows.sort(key=lambda r: order[r.id])
    return [Subscription(
        id=r.id, channel=Channel(r.channel), target=r.target,
        areas=tuple(sorted(areas.get(r.id, ()))), schemes=tuple(sorted(schemes.get(r.id, ()))),
        language=r.language, status=SubscriptionStatus(r.status), owner=r.owner,
        created_at=r.created_at, details=r.details, confirmed_at=r.confirmed_at,
        disabled_at=r.disabled_at, disabled_reason=r.disabled_reason) for r in rows]

