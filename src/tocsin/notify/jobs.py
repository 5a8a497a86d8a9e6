"""One attempt at one delivery, as the worker hands it to a channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tocsin.domain.notify import Channel, Outcome, Subscription


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


class Sender(Protocol):
    async def send(self, job: Job) -> Outcome: ...

    async def close(self) -> None: ...
