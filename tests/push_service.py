"""A real Web Push service on a loopback socket, in a thread, and a browser that subscribes
to it: what browser push is tested against (RFC 8030 delivery, RFC 8291 message encryption,
RFC 8292 VAPID).

The browser's side is written here from the RFCs with `cryptography` and `http_ece`, not with
the library tocsin sends with, so that the two check each other.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

VAPID_LONGEST = 24 * 3600
"""RFC 8292 §2: a token's `exp` is no more than 24 hours ahead."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Received:
    """One POST as the push service saw it; header names lower-cased."""

    path: str
    headers: dict[str, str]
    body: bytes


class VapidRefused(Exception):
    """The request's VAPID authorization does not hold."""


@dataclass
class PushService:
    """Records every POST and answers `status` with `answer_headers`. With `hold` set, a
    request waits (unanswered) until `release` is set or the service stops."""

    url: str = ""
    status: int = 201
    answer_headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)

    def answer(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.answer_headers = dict(headers or {})

    def browser(self) -> Browser:
        """A browser subscribed here, at an endpoint of its own."""
        return Browser(f"{self.url}/push/{secrets.token_urlsafe(12)}")

    def verify_vapid(self, headers: Mapping[str, str], public_key_b64url: str
                     ) -> dict[str, Any]:
        """The claims of the request's `Authorization: vapid t=…, k=…` after checking that
        k is `public_key_b64url`, the ES256 signature holds for it, aud is this service's
        origin, exp lies within the next 24 hours and sub is a mailto: or https contact.
        VapidRefused otherwise."""
        lower = {name.lower(): value for name, value in headers.items()}
        scheme, _, rest = lower.get("authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            raise VapidRefused(f"Authorization is not a vapid one: {scheme!r}")
        params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        token, key = params.get("t", ""), params.get("k", "")
        if key != public_key_b64url:
            raise VapidRefused(f"k is {key!r}, not the expected key")
        try:
            header_part, claims_part, signature_part = token.split(".")
            header = json.loads(unb64url(header_part))
            signature = unb64url(signature_part)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                      unb64url(key))
        except ValueError as error:
            raise VapidRefused(f"the token is malformed ({error})") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise VapidRefused(f"the token is not ES256: {header}")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        try:
            public_key.verify(der, f"{header_part}.{claims_part}".encode(),
                              ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise VapidRefused("the token's signature does not hold") from None
        claims: dict[str, Any] = json.loads(unb64url(claims_part))
        if claims.get("aud") != self.url:
            raise VapidRefused(f"aud is {claims.get('aud')!r}, not {self.url!r}")
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int) or not now < exp <= now + VAPID_LONGEST:
            raise VapidRefused(f"exp {exp!r} is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            raise VapidRefused(f"sub {claims.get('sub')!r} is not a contact")
        return claims


class Browser:
    """A user agent's side of one push subscription: its own P-256 key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._auth = os.urandom(16)

    def subscription_info(self) -> dict[str, Any]:
        """What PushSubscription.toJSON() gives a page."""
        public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint,
                "keys": {"p256dh": b64url(public), "auth": b64url(self._auth)}}

    def decrypt(self, body: bytes) -> dict[str, Any]:
        """The JSON of an aes128gcm push message body (RFC 8291)."""
        plain = http_ece.decrypt(body, private_key=self._key, auth_secret=self._auth,
                                 version="aes128gcm")
        message: dict[str, Any] = json.loads(plain)
        return message


@contextmanager
def running_push_service() -> Iterator[PushService]:
    """A push service on 127.0.0.1 (a free port) until the block ends."""
    service = PushService()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            service.received.append(Received(self.path, headers, body))
            if service.hold:
                service.release.wait(30)
            status, answer_headers = service.status, service.answer_headers
            # What every push service asks of a request (RFC 8030 §5.2, RFC 8291 §4).
            if "ttl" not in headers:
                status, answer_headers = 400, {}
            elif body and headers.get("content-encoding") != "aes128gcm":
                status, answer_headers = 415, {}
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
