"""Hardening shared by every door: security headers, request size and rate limits, back-off.

Limits are kept per process; each worker of `tocsin serve --workers N` counts on its own, and
accounts lock in the database, so a password is never guessed faster by spreading attempts.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from tocsin.domain.access import FREE_FAILURES, lockout
from tocsin.domain.errors import RateLimited

MAX_BODY = 64 * 1024
"""The largest request body the authority API and console read."""

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
"""Sent with every answer, public and private."""
PRIVATE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
]
"""Sent with authority answers instead of the public caching headers."""

KEYS_KEPT = 50_000
"""How many clients a limiter remembers; the oldest are forgotten first."""


class _Recent(OrderedDict[str, "_State"]):
    def touch(self, key: str) -> _State:
        state = self.get(key)
        if state is None:
            state = self[key] = _State()
            if len(self) > KEYS_KEPT:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return state


@dataclass
class _State:
    tokens: float = -1.0
    stamp: datetime | None = None
    failures: int = 0
    locked_until: datetime | None = None


class Limiter:
    """Per-client limits: a token bucket on requests, and back-off after failures.

    The back-off follows the account rule of `domain.access.lockout`, after `free` failures.
    """

    def __init__(self, *, per_minute: int, burst: int, free_failures: int = 10) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.free = free_failures
        self._clients = _Recent()
        self._lock = threading.Lock()

    def take(self, key: str, now: datetime) -> None:
        """Count one request; RateLimited when the client is over its rate or locked out."""
        with self._lock:
            state = self._clients.touch(key)
            self._check_locked(state, now)
            if state.stamp is None or state.tokens < 0:
                state.tokens = self.burst
            else:
                elapsed = (now - state.stamp).total_seconds()
                state.tokens = min(self.burst, state.tokens + max(0.0, elapsed) * self.rate)
            state.stamp = now
            if state.tokens < 1:
                wait = math.ceil((1 - state.tokens) / self.rate) if self.rate else 60
                raise RateLimited("too many requests from this client",
                                  f"wait {wait} seconds and slow down", retry_after=wait)
            state.tokens -= 1

    def failed(self, key: str, now: datetime) -> None:
        """Count a failed sign-in or a bad token; locks the client out a while past `free`."""
        with self._lock:
            state = self._clients.touch(key)
            state.failures += 1
            over = state.failures - self.free
            pause = lockout(FREE_FAILURES + over - 1) if over > 0 else None
            if pause:
                state.locked_until = now + pause

    def succeeded(self, key: str) -> None:
        with self._lock:
            state = self._clients.touch(key)
            state.failures = 0
            state.locked_until = None

    def _check_locked(self, state: _State, now: datetime) -> None:
        if state.locked_until is not None and state.locked_until > now:
            wait = math.ceil((state.locked_until - now) / timedelta(seconds=1))
            raise RateLimited("too many failed attempts from this client",
                              f"try again in {wait} seconds", retry_after=wait)
