"""The audit chain: append-only entries, each hashed with the one before it.

hash(n) = SHA-256 over the canonical JSON of entry n's fields and hash(n-1); the first entry
chains to GENESIS. Altering, deleting or reordering any entry breaks every later hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tocsin.domain.times import iso

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


def canonical(
    seq: int, at: datetime, actor: str, action: str, subject: str, details: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8."""
    document = {
        "seq": seq,
        "at": iso(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(
    prev: AuditEntry | None, at: datetime, actor: str, action: str, subject: str,
    details: Mapping[str, Any],
) -> AuditEntry:
    """The entry that follows `prev` (None: the first entry)."""
    seq = prev.seq + 1 if prev else 1
    prev_hash = prev.hash if prev else GENESIS
    digest = hashlib.sha256(canonical(seq, at, actor, action, subject, details, prev_hash))
    return AuditEntry(seq, at, actor, action, subject, details, prev_hash, digest.hexdigest())


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


def verify(
    entries: Iterable[AuditEntry], *, expected_head: tuple[int, str] | None = None
) -> Verdict:
    """Walk the chain in stored order and name the first entry that does not hold.

    `expected_head` (seq, hash) is a head published earlier, or the one the store keeps beside
    the chain: the chain must reach it, which also catches entries cut from the end.
    """
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    head_seq, head_hash = expected_head if expected_head is not None else (0, GENESIS)
    for entry in entries:
        expected_seq = prev_seq + 1
        if entry.seq != expected_seq:
            return _broken(checked, prev_seq, prev_hash, expected_seq,
                           f"entry {expected_seq} is missing or out of order (found {entry.seq})")
        if entry.prev_hash != prev_hash:
            return _broken(checked, prev_seq, prev_hash, entry.seq,
                           f"entry {entry.seq} does not chain to entry {prev_seq}")
        body = canonical(entry.seq, entry.at, entry.actor, entry.action, entry.subject,
                         entry.details, entry.prev_hash)
        if hashlib.sha256(body).hexdigest() != entry.hash:
            return _broken(checked, prev_seq, prev_hash, entry.seq,
                           f"entry {entry.seq} was altered (its hash does not match its content)")
        if entry.seq == head_seq and entry.hash != head_hash:
            return _broken(checked, prev_seq, prev_hash, entry.seq,
                           f"entry {entry.seq} differs from the head recorded for it "
                           f"({head_hash[:16]}…): history was rewritten")
        prev_seq, prev_hash, checked = entry.seq, entry.hash, checked + 1
    if prev_seq < head_seq:
        return _broken(checked, prev_seq, prev_hash, prev_seq + 1,
                       f"the chain ends at entry {prev_seq} but the head is entry {head_seq}: "
                       "entries were removed from the end")
    return Verdict(True, checked, prev_seq, prev_hash)


def _broken(checked: int, seq: int, digest: str, broken: int, problem: str) -> Verdict:
    return Verdict(False, checked, seq, digest, broken, problem)


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The newest entry of the audit chain: outsiders keep it to check history is never
    rewritten (`tocsin audit verify --head SEQ:HASH`)."""

    seq: int
    hash: str
    at: datetime
