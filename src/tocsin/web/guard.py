"""Hardening shared by every door: security headers, request size and rate limits, back-off,
and who the client is behind a reverse proxy.

Limits are kept per process: each worker of `tocsin serve --workers N`, and each machine,
counts on its own, so N processes allow a client N times the rate and the failures. Accounts
lock in the database, for every process at once (see `people.login`).
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tocsin.domain.access import FREE_FAILURES, lockout
from tocsin.domain.errors import RateLimited
from tocsin.settings import Network

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

    def forget(self, which: Callable[[str], bool]) -> None:
        """Drop what is counted against the keys `which` picks."""
        with self._lock:
            for key in [key for key in self._clients if which(key)]:
                del self._clients[key]

    def check(self, key: str, now: datetime) -> None:
        """RateLimited when the key is locked out; counts nothing."""
        with self._lock:
            state = self._clients.get(key)
            if state is not None:
                self._check_locked(state, now)

    def has_failed(self, key: str) -> bool:
        """Whether a failure is counted against the key (since its last success)."""
        with self._lock:
            state = self._clients.get(key)
            return state is not None and state.failures > 0

    def _check_locked(self, state: _State, now: datetime) -> None:
        if state.locked_until is not None and state.locked_until > now:
            wait = math.ceil((state.locked_until - now) / timedelta(seconds=1))
            raise RateLimited("too many failed attempts from this client",
                              f"try again in {wait} seconds", retry_after=wait)


class SignIns:
    """Failed sign-ins counted per client *and* name, alike for names that exist and names
    that do not: after `FREE_FAILURES` the pair waits, following `domain.access.lockout`.

    Every answer depends only on what this client sent, never on whether the name is a user,
    so the back-off reveals no names. A client that has not failed on a name may try it even
    while the account is locked (`lock_applies`): nobody can lock an approver out.
    """

    NAME_KEPT = 100
    """Characters of a name that count; longer names are cut, to bound the memory."""

    def __init__(self, per_client: Limiter) -> None:
        self.per_client = per_client
        self._pairs = Limiter(per_minute=0, burst=0, free_failures=FREE_FAILURES - 1)

    def _key(self, client: str, name: str) -> str:
        return f"{client}\n{name.strip()[:self.NAME_KEPT]}"

    def check(self, client: str, name: str, now: datetime) -> None:
        """RateLimited when this client must wait before trying this name again. (The
        request itself is counted, and the client's own lock-out checked, by `per_client`.)"""
        try:
            self._pairs.check(self._key(client, name), now)
        except RateLimited as limited:
            raise RateLimited("too many failed sign-ins from this client",
                              limited.fix, retry_after=limited.retry_after) from None

    def lock_applies(self, client: str, name: str) -> bool:
        """Whether an account lock holds for this client: only once it has failed on it."""
        return self._pairs.has_failed(self._key(client, name))

    def failed(self, client: str, name: str, now: datetime) -> None:
        self.per_client.failed(client, now)
        self._pairs.failed(self._key(client, name), now)

    def succeeded(self, client: str, name: str) -> None:
        self.per_client.succeeded(client)
        self._pairs.succeeded(self._key(client, name))

    def forget(self, name: str) -> None:
        """Drop every client's failures on `name`: its password was just reset."""
        self._pairs.forget(lambda key: key.endswith(self._key("", name)))


AsgiScope = MutableMapping[str, Any]
HOST_KEPT = 100
"""Characters kept of a forwarded client that is not an address (`unknown`, `_hidden`)."""


class Proxies:
    """Who the client is, and the scheme it used, when reverse proxies stand in between.

    Only a peer inside `trusted` is believed. From it, the X-Forwarded-For chain (or, when
    there is none, the RFC 7239 Forwarded header) is read from the right: the first address
    that is not a trusted proxy is the client, and X-Forwarded-Proto (or the element's
    `proto=`) at that hop is its scheme. From any other peer the headers are ignored.
    """

    def __init__(self, trusted: Iterable[Network]) -> None:
        self.trusted = tuple(trusted)

    def trusts(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in net for net in self.trusted)

    def resolve(self, scope: AsgiScope) -> AsgiScope:
        """`scope`, with the client and scheme the trusted proxies forwarded (a copy), or
        itself when the peer is not one of them or forwarded nothing."""
        client = scope.get("client")
        if not self.trusted or not client or not self.trusts(client[0]):
            return scope
        headers: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.lower(), []).append(value.decode("latin-1"))
        hops = _hops(headers)
        if not hops:
            return scope
        index = len(hops) - 1  # every hop a trusted proxy: the outermost is the client
        while index > 0 and self.trusts(hops[index][0]):
            index -= 1
        host, proto = hops[index]
        resolved = dict(scope)
        if host:
            resolved["client"] = (_plain(host), 0)
        if proto in ("http", "https"):
            resolved["scheme"] = proto
        return resolved


def _hops(headers: dict[bytes, list[str]]) -> list[tuple[str, str | None]]:
    """(client as forwarded, its scheme or None) for each hop, the nearest last."""
    chain = _items(headers.get(b"x-forwarded-for", []))
    protos = [p.lower() for p in _items(headers.get(b"x-forwarded-proto", []))]
    if chain:
        # Aligned from the right; a single X-Forwarded-Proto (a proxy that sets it rather
        # than appends) holds for the outermost hop too.
        shift = len(protos) - len(chain)
        return [(host, protos[max(0, i + shift)] if protos else None)
                for i, host in enumerate(chain)]
    forwarded = [_pairs(element) for element in _items(headers.get(b"forwarded", []))]
    if forwarded:
        return [(pairs.get("for", ""), pairs.get("proto", "").lower() or None)
                for pairs in forwarded]
    return [("", protos[-1])] if protos else []


def _items(values: list[str]) -> list[str]:
    """The comma-separated items of repeated headers; a comma inside quotes stays."""
    items: list[str] = []
    for value in values:
        current, quoted = "", False
        for char in value:
            if char == '"':
                quoted = not quoted
            if char == "," and not quoted:
                items.append(current.strip())
                current = ""
            else:
                current += char
        items.append(current.strip())
    return [item for item in items if item]


def _pairs(element: str) -> dict[str, str]:
    """One Forwarded element's parameters, `for=...;proto=...`, names lower-cased."""
    found: dict[str, str] = {}
    for part in element.split(";"):
        name, _, value = part.partition("=")
        found.setdefault(name.strip().lower(), value.strip().strip('"'))
    return found


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in a forwarded client: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`;
    IPv4-mapped IPv6 addresses as IPv4. None for anything else."""
    text = host.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _plain(host: str) -> str:
    """The forwarded client as rate limits key it: the bare address, or the token cut short."""
    address = _address(host)
    return str(address) if address is not None else host.strip()[:HOST_KEPT]
