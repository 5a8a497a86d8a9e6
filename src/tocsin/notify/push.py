"""Browser push (Web Push, RFC 8030): a level change, encrypted for one browser (RFC 8291,
aes128gcm) and signed with the authority's VAPID key (RFC 8292), POSTed to the push service
that holds the browser's subscription.

pywebpush encrypts and py_vapid signs; the POST is ours, through tocsin's guarded client
(tocsin.service.outgoing), so that redirects are not followed, private addresses are refused
unless allowed, and every answer (Retry-After, 404/410) reaches the Outcome.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from http_ece import ECEException  # type: ignore[import-untyped]
from py_vapid import Vapid02, VapidException  # type: ignore[import-untyped]
from pywebpush import WebPusher, WebPushException  # type: ignore[import-untyped]

from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import LEVELS_CHANGED, Job, Outcome
from tocsin.service.keys import VapidKey
from tocsin.service.outgoing import GuardedClient, client_error
from tocsin.service.targets import PRIVATE_FIX, PrivateAddress

MAX_PLAINTEXT = 3993
"""A push message body is at most 4096 octets (RFC 8291); aes128gcm adds an 86-octet header,
a 16-octet tag and a padding delimiter."""
TOKEN_LIFETIME = 12 * 3600
"""A VAPID token may live 24 h (RFC 8292); half leaves room for a push service's clock."""
DELIVERED = {200, 201, 202}
GONE = {404, 410}
REFUSED = {400, 413}
"""The push service cannot take this message; sending it again cannot help."""

WORDS: dict[str, dict[str, str]] = {
    "kk": {"changed": "Қауіп деңгейі өзгерді", "no_level": "деңгей жоқ", "more": "тағы {n}"},
    "ru": {"changed": "Уровень угрозы изменился", "no_level": "уровня нет",
           "more": "и ещё {n}"},
    "en": {"changed": "Threat level changed", "no_level": "no level", "more": "and {n} more"},
}
"""The few words of a notification; the names of areas and levels come with the changes."""


class PushSender:
    """Sends level changes to browsers (the `push` channel)."""

    def __init__(self, vapid: VapidKey, *, contact: str, allow_private: bool,
                 ttl: int = 86400, timeout: float = 10.0) -> None:
        """`contact` is the VAPID `sub`: a mailto: address or an https URL where the push
        services can reach the operator. Refuses (InvalidInput) anything else. Push services
        on private addresses are refused unless `allow_private`."""
        self._vapid = Vapid02(private_key=vapid.private_key)
        try:
            self._vapid.sign({"sub": contact, "aud": "https://push.example"})
        except VapidException:
            raise InvalidInput(f"the push contact {contact!r} is neither a mailto: address "
                               "nor an https URL",
                               "give e.g. mailto:alerts@example.kz or https://alerts.example.kz"
                               ) from None
        if ttl < 0 or timeout <= 0:
            raise InvalidInput(f"push ttl {ttl} or timeout {timeout} is out of range",
                               "give a ttl of 0 or more seconds and a positive timeout")
        self._contact = contact
        self._ttl = ttl
        self._timeout = timeout
        self._allow_private = allow_private
        self._guarded: GuardedClient | None = None

    async def send(self, job: Job) -> Outcome:
        """One POST to the browser's push service. 2xx: delivered; 404/410: gone; 400/413:
        permanent; anything else, a timeout or a network error: try again (with the
        service's Retry-After, if it gave one)."""
        if job.topic != LEVELS_CHANGED or job.subscription is None:
            return Outcome(False, f"browser push carries level changes, not {job.topic!r}",
                           permanent=True)
        try:
            audience = _origin(job.target)
            keys = {name: job.subscription.details[name] for name in ("p256dh", "auth")}
            body = WebPusher({"endpoint": job.target, "keys": keys}).encode(
                _fit(payload(job)), "aes128gcm")["body"]
        except (KeyError, TypeError, ValueError, WebPushException, ECEException) as error:
            return Outcome(False, f"cannot encrypt for this browser ({error!s})",
                           permanent=True)
        try:
            authorization = self._vapid.sign({"sub": self._contact, "aud": audience,
                                              "exp": int(time.time()) + TOKEN_LIFETIME})
        except VapidException as error:
            return Outcome(False, f"cannot sign for {audience} ({error!s})", permanent=True)
        headers = {**authorization, "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream", "TTL": str(self._ttl),
                   "Urgency": "high" if any(_raised(c) for c in job.changes) else "normal"}
        try:
            async with self._client().request("POST", job.target, data=body,
                                              headers=headers) as response:
                said = b"" if response.status in DELIVERED else await response.content.read(200)
                return _outcome(response.status, response.reason or "",
                                response.headers.get("Retry-After"),
                                said.decode("utf-8", "replace").strip())
        except PrivateAddress as error:
            return Outcome(False, f"refused: {error}; {PRIVATE_FIX}", permanent=True)
        except TimeoutError:
            return Outcome(False, f"timed out after {self._timeout:g} s")
        except (client_error(), OSError) as error:
            return Outcome(False, f"cannot reach the push service ({error!s})")

    async def close(self) -> None:
        if self._guarded is not None:
            await self._guarded.close()
            self._guarded = None

    def _client(self) -> GuardedClient:
        if self._guarded is None:
            self._guarded = GuardedClient(allow_private=self._allow_private,
                                          timeout=self._timeout)
        return self._guarded


def payload(job: Job) -> dict[str, Any]:
    """What the browser decrypts: {"title", "body", "url", "tag", "changes"}, in the
    subscriber's language. The title names the first change in one of the subscriber's own
    areas (else the first change)."""
    language = job.subscription.language if job.subscription else "en"
    words = WORDS.get(language, WORDS["en"])
    own = set(job.subscription.areas) if job.subscription else set()
    changes = sorted(job.changes, key=lambda c: c.get("area") not in own)
    if not changes:
        return {"title": words["changed"], "body": "", "url": f"{job.links.site}/",
                "tag": job.key, "changes": []}
    first = changes[0]

    def name(key: str) -> str:
        return str(first.get(f"{key}_name") or first.get(key) or words["no_level"])

    body = f"{first.get('scheme_name') or first.get('scheme')}: {name('from')} → {name('to')}"
    if len(changes) > 1:
        body += "\n" + words["more"].format(n=len(changes) - 1)
    return {"title": f"{first.get('area_name') or first.get('area')}: {name('to')}",
            "body": body, "url": first.get("url") or f"{job.links.site}/", "tag": job.key,
            "changes": changes}


def _fit(message: Mapping[str, Any]) -> bytes:
    """Compact JSON of at most MAX_PLAINTEXT octets: the last changes are left out if need
    be (the body still counts them)."""
    changes: Sequence[Any] = message["changes"]
    while True:
        data = json.dumps({**message, "changes": changes}, ensure_ascii=False,
                          separators=(",", ":")).encode()
        if len(data) <= MAX_PLAINTEXT or not changes:
            return data
        changes = changes[:-1]


def _raised(change: Mapping[str, Any]) -> bool:
    """Whether a change raises a level: its `raised` flag, else from no level to one."""
    if "raised" in change:
        return bool(change["raised"])
    return change.get("from") is None and change.get("to") is not None


def _origin(url: str) -> str:
    """The origin of a push endpoint: the VAPID token's audience."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"the endpoint {url!r} is not an http(s) URL")
    port = parts.port
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port not in (None, default)
                                                   else "")


def _outcome(status: int, reason: str, retry_after: str | None, said: str) -> Outcome:
    detail = f"{status} {reason}".strip() + (f": {said}" if said else "")
    if status in DELIVERED:
        return Outcome(True, detail, status)
    if status in GONE:
        return Outcome(False, detail, status, gone=True)
    if status in REFUSED:
        return Outcome(False, detail, status, permanent=True)
    return Outcome(False, detail, status, retry_after=_seconds(retry_after))


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date; None if unreadable."""
    if retry_after is None:
        return None
    text = retry_after.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
