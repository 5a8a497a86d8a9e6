"""Notifications, as pure rules: who hears which level change, and when a failed delivery is
tried again.

A subscription names areas (and, optionally, schemes). It hears a change of the effective
level in each of its areas and in every area inside one of them; a change inherited from a
country is a change of the region's own effective level, so a region's subscriber hears a
countrywide declaration too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tocsin.domain.area import AreaTree
from tocsin.domain.errors import InvalidInput


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    PUSH = "push"
    WEBSUB = "websub"


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    """An e-mail address that has not yet confirmed (double opt-in)."""
    ACTIVE = "active"
    DISABLED = "disabled"
    """Removed, unsubscribed, or gone (410): hears nothing more."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its next attempt (`next_attempt_at`)."""
    LEASED = "leased"
    """A worker is trying it; if the worker dies, the lease runs out and another takes it."""
    DELIVERED = "delivered"
    DEAD = "dead"
    """Every attempt failed for about three days; an operator may replay it."""
    DROPPED = "dropped"
    """Not sent: the subscription was removed or its endpoint said it is gone."""


LEVELS_CHANGED = "levels.changed"
"""Outbox topic: effective levels moved (a publication, a cancellation, a term start or end)."""
CONFIRM = "subscription.confirm"
"""Outbox topic: an e-mail address must confirm its subscription."""
TERM_ENDING = "term.ending"
"""Outbox topic: a declaration's term ends soon; its issuer is reminded."""

FIRST_RETRY = timedelta(seconds=10)
RETRY_FACTOR = 3.0
LONGEST_WAIT = timedelta(hours=12)
GIVE_UP_AFTER = timedelta(hours=72)
"""Attempts stop this long after the first one (10 s, 30 s, 1.5 min, … then every 12 h)."""
LONGEST_RETRY_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt at a delivery came to, as a channel reports it."""

    delivered: bool
    detail: str
    """For the operator: e.g. '204 No Content', '503 Service Unavailable', 'timed out'."""
    status: int | None = None
    """The HTTP or SMTP status code, when there was an answer."""
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (Retry-After), if it said."""
    gone: bool = False
    """The endpoint is gone for good (HTTP 410, a push subscription that expired): the
    subscription is disabled and nothing more is sent to it."""
    permanent: bool = False
    """Trying again cannot help (e.g. a refused private address): the delivery is dead now."""


EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")


def check_email(address: str) -> str:
    """An e-mail address as tocsin sends to it (domain in lower case); InvalidInput else."""
    address = address.strip()
    if len(address) > 254 or not EMAIL.match(address):
        raise InvalidInput(f"{address!r} is not an e-mail address",
                           "give an address like name@example.kz")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def retry_wait(failed_attempts: int, jitter: float) -> timedelta:
    """How long to wait after the `failed_attempts`-th failure: exponential back-off with
    ±20 % jitter (`jitter` in [0, 1), passed in so that this stays deterministic)."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts counts from 1")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter lies in [0, 1)")
    exponent = min(failed_attempts - 1, 64)
    seconds = FIRST_RETRY.total_seconds() * math.pow(RETRY_FACTOR, exponent)
    seconds = min(seconds, LONGEST_WAIT.total_seconds())
    return timedelta(seconds=seconds * (0.8 + 0.4 * jitter))


def next_attempt(*, failed_attempts: int, first_attempt: datetime, now: datetime,
                 jitter: float, outcome: Outcome) -> datetime | None:
    """When to try a failed delivery again, or None when it is dead (gone, permanent, or
    past the three days). A Retry-After longer than the back-off is honoured, up to a day."""
    if outcome.delivered:
        raise ValueError("a delivered attempt is not retried")
    if outcome.gone or outcome.permanent:
        return None
    wait = retry_wait(failed_attempts, jitter)
    if outcome.retry_after is not None and outcome.retry_after > 0:
        asked = timedelta(seconds=min(outcome.retry_after,
                                      LONGEST_RETRY_AFTER.total_seconds()))
        wait = max(wait, asked)
    when = now + wait
    if when - first_attempt > GIVE_UP_AFTER:
        return None
    return when


def audience(tree: AreaTree, changed: Iterable[str]) -> set[str]:
    """The area codes a subscription may name to hear a change in `changed`: each changed
    area and every area it lies inside."""
    out: set[str] = set()
    for code in changed:
        out.add(code)
        out.update(tree.ancestors(code))
    return out


def relevant(tree: AreaTree, changes: Sequence[Mapping[str, Any]], areas: Iterable[str],
             schemes: Iterable[str]) -> list[Mapping[str, Any]]:
    """The changes a subscription to `areas` (and `schemes`; none: all) hears."""
    wanted_schemes = set(schemes)
    roots = set(areas)
    out = []
    for change in changes:
        if wanted_schemes and change["scheme"] not in wanted_schemes:
            continue
        if change["area"] in tree and roots & audience(tree, [change["area"]]):
            out.append(change)
    return out


def level_changes(before: Mapping[tuple[str, str], str | None],
                  after: Mapping[tuple[str, str], str | None]) -> list[dict[str, str | None]]:
    """The (scheme, area) pairs whose effective level differs, in a stable order."""
    out = []
    for scheme, area in sorted(set(before) | set(after)):
        old, new = before.get((scheme, area)), after.get((scheme, area))
        if old != new:
            out.append({"scheme": scheme, "area": area, "from": old, "to": new})
    return out


def idempotency_key(event_id: int, subscription_id: str) -> str:
    """The same for every attempt and every duplicate of one event to one subscriber."""
    return f"msg_{event_id}_{subscription_id}"


@dataclass(frozen=True, slots=True)
class Subscription:
    """Someone who asked to hear level changes: a webhook, an e-mail address or a browser."""

    id: str
    channel: Channel
    target: str
    areas: tuple[str, ...]
    schemes: tuple[str, ...]
    """Empty: every scheme."""
    language: str
    status: SubscriptionStatus
    owner: str
    """Who made it: 'user:NAME', 'local-operator:LOGIN', or 'public' (page forms)."""
    created_at: datetime
    details: Mapping[str, Any]
    """Push: the browser's keys {'p256dh', 'auth'}."""
    confirmed_at: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """What the API and `--json` show; never the secret."""
        return {
            "id": self.id, "channel": self.channel.value, "target": self.target,
            "areas": list(self.areas), "schemes": list(self.schemes),
            "language": self.language, "status": self.status.value, "owner": self.owner,
            "created_at": self.created_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "disabled_reason": self.disabled_reason,
        }


@dataclass(frozen=True)
class Links:
    """Absolute addresses a message may carry."""

    site: str
    """The public site, without a trailing slash."""
    confirm: str | None = None
    """The double opt-in page of an e-mail subscription."""
    unsubscribe: str | None = None
    """The signed one-click unsubscribe address."""
    console: str | None = None
    """The console page of a declaration (reminders)."""


@dataclass(frozen=True)
class Job:
    """One attempt at one delivery, as a worker hands it to a channel (and a channel's
    renderer, e.g. the e-mail templates, reads it)."""

    delivery_id: int
    event_id: int
    topic: str
    payload: Mapping[str, Any]
    channel: Channel
    target: str
    subscription: Subscription | None
    """None for a reminder to an issuer."""
    attempt: int
    """1 for the first attempt."""
    key: str
    """The idempotency key: the same on every attempt and every duplicate."""
    changes: list[dict[str, Any]]
    """Level changes only: what this subscriber hears, described in its language."""
    links: Links
    secret: str = ""
    """Webhooks: the subscriber's whsec_ signing secret."""
    subscription_id: str | None = None
    """The subscription's id (WebSub subscribers have no Subscription record)."""
