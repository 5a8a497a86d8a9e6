"""Standard Webhooks signatures (standardwebhooks.com): `webhook-id`, `webhook-timestamp`
and `webhook-signature` over `ID.TIMESTAMP.BODY`, with the subscriber's `whsec_` secret
(HMAC-SHA256, `v1`) and with tocsin's public Ed25519 key (`v1a`), which anyone can check
against /.well-known/tocsin-keys.json without holding a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import ed25519

SECRET_PREFIX = "whsec_"


def secret_bytes(secret: str) -> bytes:
    """The key inside a `whsec_…` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def headers(*, msg_id: str, timestamp: int, body: bytes, secret: str,
            key: ed25519.Ed25519PrivateKey | None) -> dict[str, str]:
    """The three headers of one attempt; `v1a` too when tocsin has a document key."""
    content = signed_content(msg_id, timestamp, body)
    mac = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    signatures = [f"v1,{base64.b64encode(mac).decode()}"]
    if key is not None:
        signatures.append(f"v1a,{base64.b64encode(key.sign(content)).decode()}")
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures)}

