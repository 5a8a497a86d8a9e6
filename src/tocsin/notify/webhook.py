"""Webhooks: a signed JSON POST per delivery (Standard Webhooks headers), through aiohttp.

aiohttp rather than httpx here: the delivery path is the hot one (a countrywide level goes to
every subscriber at once) and aiohttp's client does more requests a second per core.
Every connection goes through tocsin's one guarded client (tocsin.service.outgoing), which
connects only to addresses it checked as public unless the operator allows private ones, so
a host name that changes its answer after it was registered (DNS rebinding) cannot turn
tocsin against the network it runs in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ed25519

from tocsin.domain.notify import Job, Outcome
from tocsin.notify import signing
from tocsin.service.outgoing import GuardedClient, client_error
from tocsin.service.targets import PRIVATE_FIX, PrivateAddress

USER_AGENT = "tocsin-webhooks/1"


class Poster:
    """POSTs to subscribers' endpoints: public addresses only (unless allowed), at most
    `per_endpoint` at once to one origin, within a timeout; every answer an Outcome."""

    def __init__(self, *, allow_private: bool, per_endpoint: int = 16, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._allow_private = allow_private
        self._per_endpoint = per_endpoint
        self._timeout = timeout
        self._clock = clock
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._guarded: GuardedClient | None = None

    def _client(self) -> GuardedClient:
        if self._guarded is None:
            self._guarded = GuardedClient(
                allow_private=self._allow_private, timeout=self._timeout,
                per_host=self._per_endpoint, headers={"User-Agent": USER_AGENT},
                auto_decompress=False)
        return self._guarded

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        limit = self._limits.setdefault(origin, asyncio.Semaphore(self._per_endpoint))
        try:
            async with limit, self._client().request("POST", url, data=body,
                                                      headers=headers) as answer:
                await answer.read()
                return outcome_of(answer.status, answer.reason or "",
                                  answer.headers.get("Retry-After"), self._clock())
        except PrivateAddress as error:
            return Outcome(False, f"refused: {error}; {PRIVATE_FIX}", permanent=True)
        except TimeoutError:
            return Outcome(False, "timed out")
        except client_error() as error:
            return Outcome(False, f"could not connect: {error}"[:300])
        except OSError as error:
            return Outcome(False, f"network error: {error}"[:300])

    async def close(self) -> None:
        if self._guarded is not None:
            await self._guarded.close()
            self._guarded = None


class WebhookSender:
    """Standard Webhooks: the JSON event, signed with the subscriber's secret (`v1`) and
    with tocsin's Ed25519 document key (`v1a`) when there is one."""

    def __init__(self, *, key: ed25519.Ed25519PrivateKey | None, allow_private: bool,
                 per_endpoint: int = 16, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock
        self._poster = Poster(allow_private=allow_private, per_endpoint=per_endpoint,
                              timeout=timeout, clock=clock)

    async def send(self, job: Job) -> Outcome:
        body = body_of(job)
        headers = signing.headers(msg_id=job.key, timestamp=int(self._clock()), body=body,
                                  secret=job.secret, key=self._key)
        headers["Content-Type"] = "application/json"
        return await self._poster.post(job.target, body, headers)

    async def close(self) -> None:
        await self._poster.close()


def body_of(job: Job) -> bytes:
    """The JSON body: Standard Webhooks' {type, timestamp, data}; the same on every attempt."""
    document: dict[str, Any] = {
        "type": job.topic,
        "timestamp": job.payload.get("at") or "",
        "data": {"event": job.event_id, "subscription": job.subscription.id
                 if job.subscription else None, "changes": job.changes},
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def outcome_of(status: int, reason: str, retry_after: str | None, now: float) -> Outcome:
    detail = f"{status} {reason}".strip()
    if 200 <= status < 300:
        return Outcome(True, detail, status)
    if status == 410:
        return Outcome(False, detail, status, gone=True)
    wait = parse_retry_after(retry_after, now) if status in (429, 503) else None
    return Outcome(False, detail, status, retry_after=wait)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)

