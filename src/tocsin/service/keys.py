"""The key store: the signing keys of the authority, in a private folder (TOCSIN_KEYS_DIR).

Two kinds of key. A `document` key is Ed25519 and makes detached signatures over public
documents (JSON, feeds, pages); its id is the first 16 hex digits of the SHA-256 of the raw
public key. A `cap` key is RSA or ECDSA P-256 with an X.509 certificate and signs CAP alerts
(XML-DSig); its id is the first 16 hex digits of the certificate's SHA-256 fingerprint.

`manifest.json` lists every key and says which one of each kind is active; keys taken out of
use stay, retired, so that what they signed can still be checked. Private keys are PEM files
of mode 0600 in a folder of mode 0700, written to a temporary file and renamed into place.
A key that is configured but cannot be used is an error (KeyUnusable), never a reason to
publish unsigned.

Browser push has its own ECDSA P-256 key (VAPID, RFC 8292), `vapid.key.pem` in the same
folder under the same rules. It is not in the manifest: there is one, made on first use, and
replacing it means every browser must subscribe again.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import Engine

from tocsin.cap.sign import CapSigner, SigningError
from tocsin.domain.errors import InvalidInput, NotFound, unknown
from tocsin.domain.times import iso, parse_instant
from tocsin.service.change import change
from tocsin.store.database import check_current

MANIFEST = "manifest.json"
DOCUMENT_ALGORITHM = "ed25519"
CAP_ALGORITHMS = {"rsa": "rsa-3072", "ecdsa": "ecdsa-p256"}
MAX_DAYS = 3650
VAPID_FILE = "vapid.key.pem"


class KeyKind(StrEnum):
    DOCUMENT = "document"
    CAP = "cap"


class KeyState(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class KeyUnusable(SigningError):
    """A key is configured but cannot be used: missing file, unreadable PEM, loose mode."""


@dataclass(frozen=True)
class KeyInfo:
    """What the manifest says about a key: never the private key itself."""

    id: str
    kind: KeyKind
    algorithm: str
    state: KeyState
    created: datetime
    public_key: str | None = None
    """Document keys: the raw Ed25519 public key, base64."""
    subject: str | None = None
    not_after: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": str(self.kind),
                               "algorithm": self.algorithm, "state": str(self.state),
                               "created": iso(self.created)}
        if self.kind is KeyKind.DOCUMENT:
            out["public_key"] = self.public_key
        else:
            out["subject"] = self.subject
            out["not_after"] = iso(self.not_after) if self.not_after else None
        return out


@dataclass(frozen=True)
class DocumentSigner:
    key_id: str
    private_key: ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class VapidKey:
    """The key that signs browser push requests (VAPID)."""

    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key_b64url(self) -> str:
        """The uncompressed public point, base64url without padding: what a browser is given
        as `applicationServerKey`."""
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def create_document_key(folder: Path, *, now: datetime) -> KeyInfo:
    """A new Ed25519 key, made the active document key (the previous one is retired)."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    info = KeyInfo(id=hashlib.sha256(raw).hexdigest()[:16], kind=KeyKind.DOCUMENT,
                   algorithm=DOCUMENT_ALGORITHM, state=KeyState.ACTIVE, created=now,
                   public_key=base64.b64encode(raw).decode())
    return _add(folder, info, _private_pem(key), None)


def create_cap_key(folder: Path, *, subject: str, days: int, algorithm: str,
                   now: datetime) -> KeyInfo:
    """A new RSA-3072 or ECDSA P-256 key with a self-signed certificate for `subject` (an
    RFC 4514 name such as 'CN=Alerts,O=Authority,C=KZ') valid `days` days from `now`, made
    the active CAP key. Refuses (InvalidInput) a bad subject, days or algorithm."""
    name = _subject(subject)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"--days {days} is out of range", f"give 1 to {MAX_DAYS} days")
    if algorithm not in CAP_ALGORITHMS:
        raise InvalidInput(f"--algorithm {algorithm!r} is not known",
                           f"use one of {', '.join(CAP_ALGORITHMS)}")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=3072) if algorithm == "rsa"
        else ec.generate_private_key(ec.SECP256R1()))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    return _add_cap(folder, key, [certificate], now)


def import_cap_key(folder: Path, *, key_pem: bytes, cert_pem: bytes, now: datetime) -> KeyInfo:
    """Import a CAP key and its certificate (leaf first, then any chain) from PEM, made the
    active CAP key. Refuses (InvalidInput) unreadable or encrypted PEM, a key that is not
    RSA (2048 bits or more) or ECDSA P-256, a key that does not match the certificate, and
    a certificate not valid at `now`."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise InvalidInput("the private key is encrypted", "decrypt it first, e.g. "
                           "openssl pkey -in KEY.pem -out PLAIN.pem") from None
    except ValueError as error:
        raise InvalidInput(f"the key file is not a PEM private key ({error})",
                           "give the PEM file that starts with -----BEGIN PRIVATE KEY-----"
                           ) from None
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as error:
        raise InvalidInput(f"the certificate file is not PEM ({error})", "give the PEM file "
                           "that starts with -----BEGIN CERTIFICATE-----") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"a {type(key).__name__.removeprefix('_')} cannot sign CAP alerts",
                           "import an RSA or ECDSA P-256 key")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise InvalidInput(f"the RSA key has {key.key_size} bits", "use 2048 bits or more")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(f"the ECDSA key is on curve {key.curve.name}",
                           "use P-256 (secp256r1): CAP signs with ECDSA-SHA256")
    if _spki(chain[0].public_key()) != _spki(key.public_key()):
        raise InvalidInput("the key does not match the certificate: the certificate was "
                           "issued for another public key",
                           "give the key the certificate was issued for (leaf first in "
                           "--cert)")
    leaf = chain[0]
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise InvalidInput(f"the certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d}"
                           f" to {leaf.not_valid_after_utc:%Y-%m-%d}, not now",
                           "import a current certificate")
    return _add_cap(folder, key, chain, now)


def audited(engine: Engine, folder: Path, action: str, make: Callable[[], KeyInfo], *,
            now: datetime, actor: str) -> KeyInfo:
    """Run one change to the key store (`make`: create, import, activate or retire) and write
    its audit entry (`key.ACTION`: the key, and any key it retired) in one transaction: the
    store changes only when the database is there to record it, and a refused change
    records nothing."""
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        before = {k.id: k.state for k in list_keys(folder)}
        info = make()
        retired = sorted(k.id for k in list_keys(folder) if k.id != info.id
                         and k.state is KeyState.RETIRED and before.get(k.id) is KeyState.ACTIVE)
        unit.audit(f"key.{action}", info.id, {
            "kind": str(info.kind), "algorithm": info.algorithm, "state": str(info.state),
            "subject": info.subject, "not_after": iso(info.not_after) if info.not_after else None,
            "retired": retired})
        return info


def list_keys(folder: Path) -> list[KeyInfo]:
    """Every key in the store, oldest first; empty when there is no store yet."""
    return [_info(entry) for entry in _read_manifest(folder)["keys"]]


def activate(folder: Path, key_id: str, *, now: datetime) -> KeyInfo:
    """Make `key_id` the active key of its kind; the one active before is retired. Refuses
    (InvalidInput) a CAP key whose certificate is not valid at `now`."""
    with _locked(folder):
        manifest = _read_manifest(folder)
        entry = _entry(manifest, key_id)
        info = _info(entry)
        if info.not_after is not None and info.not_after < now:
            raise InvalidInput(f"key {key_id}: its certificate expired on "
                               f"{info.not_after:%Y-%m-%d}",
                               "create or import a current key: tocsin keys create cap …")
        for other in manifest["keys"]:
            if other["kind"] == entry["kind"] and other["state"] == KeyState.ACTIVE:
                other["state"] = str(KeyState.RETIRED)
        entry["state"] = str(KeyState.ACTIVE)
        _write_manifest(folder, manifest)
    return _info(entry)


def retire(folder: Path, key_id: str) -> KeyInfo:
    """Take `key_id` out of use but keep it for verification. Retiring the active key leaves
    its kind without one: nothing of that kind is signed until another is activated."""
    with _locked(folder):
        manifest = _read_manifest(folder)
        entry = _entry(manifest, key_id)
        entry["state"] = str(KeyState.RETIRED)
        _write_manifest(folder, manifest)
    return _info(entry)


def document_signer(folder: Path) -> DocumentSigner | None:
    """The active document key, or None when none is active; KeyUnusable if it cannot be
    loaded."""
    entry = _active(folder, KeyKind.DOCUMENT)
    if entry is None:
        return None
    key = _load_private(folder, entry)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyUnusable(f"document key {entry['id']}: the file holds a "
                          f"{type(key).__name__.removeprefix('_')}, not an Ed25519 key",
                          "retire it and create a new one: tocsin keys create document")
    return DocumentSigner(entry["id"], key)


def cap_signer(folder: Path) -> CapSigner | None:
    """The active CAP key with its certificate, or None when none is active; KeyUnusable if
    it cannot be loaded or does not match its certificate."""
    entry = _active(folder, KeyKind.CAP)
    if entry is None:
        return None
    key = _load_private(folder, entry)
    chain = _load_chain(folder, entry)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyUnusable(f"CAP key {entry['id']}: the file holds a "
                          f"{type(key).__name__.removeprefix('_')}, not an RSA or ECDSA key",
                          "retire it and create a new one: tocsin keys create cap …")
    if _spki(chain[0].public_key()) != _spki(key.public_key()):
        raise KeyUnusable(f"CAP key {entry['id']}: the private key does not match its "
                          "certificate", "import them again together: tocsin keys import cap")
    return CapSigner(entry["id"], key, chain[0], tuple(chain[1:]))


def vapid_key(folder: Path, *, create: bool) -> VapidKey | None:
    """The VAPID key of browser push; made (P-256, mode 0600) when there is none and `create`,
    else None when there is none. KeyUnusable if the folder or file is open to others or the
    file is not a P-256 private key."""
    path = folder / VAPID_FILE
    if not path.exists():
        if not create:
            return None
        _prepare(folder)
        with _locked(folder):
            if not path.exists():
                _write(path, _private_pem(ec.generate_private_key(ec.SECP256R1())), 0o600)
    _check_mode(folder, f"the key folder {folder}", f"chmod 700 {folder}")
    _check_mode(path, f"the VAPID key {path}", f"chmod 600 {path}")
    fix = (f"restore it from a backup, or delete {path} to make a new one (every browser must "
           "then subscribe again)")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise KeyUnusable(f"the VAPID key {path} is not a readable PEM private key ({error})",
                          fix) from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey)
            and isinstance(key.curve, ec.SECP256R1)):
        raise KeyUnusable(f"the VAPID key {path} is not an ECDSA P-256 key", fix)
    return VapidKey(key)


def active_certificate_pem(folder: Path) -> bytes | None:
    """The active CAP key's certificate chain as PEM, or None when none is active."""
    entry = _active(folder, KeyKind.CAP)
    if entry is None:
        return None
    return b"".join(c.public_bytes(serialization.Encoding.PEM)
                    for c in _load_chain(folder, entry))


def public_keys_document(folder: Path) -> dict[str, Any]:
    """Every document key, active and retired, to publish at /.well-known/tocsin-keys.json:
    {"keys": [{"id", "algorithm", "public_key" (base64, raw), "state", "created"}]}."""
    return {"keys": [{"id": k.id, "algorithm": k.algorithm, "public_key": k.public_key,
                      "state": str(k.state), "created": iso(k.created)}
                     for k in list_keys(folder) if k.kind is KeyKind.DOCUMENT]}


def sign_document(data: bytes, signer: DocumentSigner) -> dict[str, str]:
    """A detached Ed25519 signature over `data`: {"key_id", "algorithm", "signature"}."""
    signature = signer.private_key.sign(data)
    return {"key_id": signer.key_id, "algorithm": DOCUMENT_ALGORITHM,
            "signature": base64.b64encode(signature).decode()}


def verify_document(data: bytes, signature: Mapping[str, Any],
                    public_keys: Mapping[str, Any]) -> bool:
    """Whether `signature` (as sign_document makes it) holds over `data` for a key listed in
    `public_keys` (a public keys document; retired keys count). False for anything else."""
    entry = next((k for k in public_keys.get("keys", []) if isinstance(k, Mapping)
                  and k.get("id") == signature.get("key_id")), None)
    if (entry is None or signature.get("algorithm") != DOCUMENT_ALGORITHM
            or entry.get("algorithm") != DOCUMENT_ALGORITHM):
        return False
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(
            base64.b64decode(str(entry.get("public_key")), validate=True))
        key.verify(base64.b64decode(str(signature.get("signature")), validate=True), data)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


# --- the folder --------------------------------------------------------------------------

def _add_cap(folder: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
             chain: list[x509.Certificate], now: datetime) -> KeyInfo:
    leaf = chain[0]
    info = KeyInfo(id=leaf.fingerprint(hashes.SHA256()).hex()[:16], kind=KeyKind.CAP,
                   algorithm=_cap_algorithm(key), state=KeyState.ACTIVE, created=now,
                   subject=leaf.subject.rfc4514_string(), not_after=leaf.not_valid_after_utc)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return _add(folder, info, _private_pem(key), pem)


def _cap_algorithm(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa-{key.key_size}"
    return "ecdsa-p256"


def _add(folder: Path, info: KeyInfo, private_pem: bytes, cert_pem: bytes | None) -> KeyInfo:
    _prepare(folder)
    with _locked(folder):
        manifest = _read_manifest(folder)
        if any(entry["id"] == info.id for entry in manifest["keys"]):
            raise InvalidInput(f"key {info.id} is in the store already",
                               "see it with: tocsin keys list")
        entry = {**info.as_json(), "private_key": f"{info.kind}-{info.id}.key.pem"}
        _write(folder / entry["private_key"], private_pem, 0o600)
        if cert_pem is not None:
            entry["certificate"] = f"{info.kind}-{info.id}.cert.pem"
            _write(folder / entry["certificate"], cert_pem, 0o644)
        for other in manifest["keys"]:
            if other["kind"] == info.kind and other["state"] == KeyState.ACTIVE:
                other["state"] = str(KeyState.RETIRED)
        manifest["keys"].append(entry)
        _write_manifest(folder, manifest)
    return info


def _prepare(folder: Path) -> None:
    """The store folder, created 0700; refuses one that others can open."""
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)
    _check_mode(folder, f"the key folder {folder}", f"chmod 700 {folder}")


def _check_mode(path: Path, what: str, fix: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyUnusable(f"{what} is open to group or others (mode {mode:04o})", fix)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time (the CLI and a server may share the folder)."""
    if not folder.is_dir():
        raise NotFound(f"there is no key store at {folder}",
                       "create a key first: tocsin keys create document")
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically: a private temporary file, synced, then renamed."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists():
        return {"format": 1, "keys": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KeyUnusable(f"the key manifest {path} cannot be read ({error})",
                          "restore it from a backup") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("keys"), list):
        raise KeyUnusable(f"the key manifest {path} has no list of keys",
                          "restore it from a backup")
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    _write(folder / MANIFEST, text.encode(), 0o600)


def _entry(manifest: dict[str, Any], key_id: str) -> dict[str, Any]:
    for entry in manifest["keys"]:
        if entry["id"] == key_id:
            return entry  # type: ignore[no-any-return]
    raise unknown("key", key_id, [e["id"] for e in manifest["keys"]], "try 'tocsin keys list'")


def _active(folder: Path, kind: KeyKind) -> dict[str, Any] | None:
    if not (folder / MANIFEST).exists():
        return None
    return next((e for e in _read_manifest(folder)["keys"]
                 if e["kind"] == kind and e["state"] == KeyState.ACTIVE), None)


def _info(entry: Mapping[str, Any]) -> KeyInfo:
    try:
        return KeyInfo(
            id=entry["id"], kind=KeyKind(entry["kind"]), algorithm=entry["algorithm"],
            state=KeyState(entry["state"]), created=parse_instant(entry["created"], "created"),
            public_key=entry.get("public_key"), subject=entry.get("subject"),
            not_after=(parse_instant(entry["not_after"], "not_after")
                       if entry.get("not_after") else None))
    except (KeyError, ValueError, InvalidInput) as error:
        raise KeyUnusable(f"the key manifest has a broken entry ({error})",
                          "restore it from a backup") from None


def _load_private(folder: Path, entry: Mapping[str, Any]) -> Any:
    what = f"{entry['kind']} key {entry['id']}"
    path = folder / str(entry.get("private_key", ""))
    if not entry.get("private_key") or not path.is_file():
        raise KeyUnusable(f"{what}: its private key file {path} is missing",
                          f"restore it from a backup, or retire the key: tocsin keys retire "
                          f"{entry['id']}")
    _check_mode(folder, f"the key folder {folder}", f"chmod 700 {folder}")
    _check_mode(path, f"{what}: {path}", f"chmod 600 {path}")
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise KeyUnusable(f"{what}: {path} is not a readable PEM private key ({error})",
                          "restore it from a backup, or retire the key") from None


def _load_chain(folder: Path, entry: Mapping[str, Any]) -> list[x509.Certificate]:
    what = f"CAP key {entry['id']}"
    path = folder / str(entry.get("certificate", ""))
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as error:
        raise KeyUnusable(f"{what}: its certificate {path} cannot be read ({error})",
                          "restore it from a backup, or import the key again") from None


def _private_pem(key: Any) -> bytes:
    out: bytes = key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return out


def _spki(key: Any) -> bytes:
    out: bytes = key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


def _subject(text: str) -> x509.Name:
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as error:
        raise InvalidInput(f"--subject {text!r} is not a distinguished name ({error})",
                           "e.g. --subject 'CN=Alerts,O=Authority,C=KZ'") from None
    if not name.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        raise InvalidInput(f"--subject {text!r} has no CN", "e.g. --subject 'CN=Alerts'")
    return name
