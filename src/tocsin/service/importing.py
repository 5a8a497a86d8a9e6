"""Importing CAP alerts from other authorities: read, check, verify the signature, map, and
record. The message, the declaration it makes (or the ones it cancels) and the audit entries
are written in one transaction; a refusal writes nothing.

Steps, each refusing with a message that names the problem and the fix:
`read_location` (a file, standard input or an http(s) URL) → `receive` (the hardened parser,
then every CAP check; CAP 1.1 is accepted where it reads as 1.2) → `import_alert` (the
source for the sender, its signature policy, the mapping rule, Update/Cancel chains).

A signed alert is read again from the bytes its accepted signature covers, and only that
reading is mapped: whatever the document carries outside the signature cannot change what is
declared. The document as received is what is stored, so that anyone can verify it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

from sqlalchemy import Connection, Engine, insert, select

from tocsin.cap import xml as capxml
from tocsin.cap.check import check
from tocsin.cap.read import read_alert
from tocsin.cap.sign import verify_cap
from tocsin.domain.declaration import Declaration, check_replaceable, publish_as
from tocsin.domain.errors import InvalidInput, TocsinError
from tocsin.domain.incoming import (
    SHOWN,
    IncomingAlert,
    MessageRef,
    MsgType,
    Unmapped,
    cancel_reason,
    check_declarable,
    map_alert,
)
from tocsin.domain.scheme import Scheme
from tocsin.domain.times import iso
from tocsin.ingest.sources import Source, Sources
from tocsin.service.change import Change, change
from tocsin.service.commands import (
    known_declarations,
    new_declaration_id,
    record_cancellation,
    record_declaration,
    stamped,
)
from tocsin.service.outgoing import GuardedClient, client_error
from tocsin.service.targets import PRIVATE_FIX, PrivateAddress
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import check_current

TIMEOUT = 10.0
MAX_REDIRECTS = 3
REDIRECTS = {301, 302, 303, 307, 308}
HEADERS = {"User-Agent": "tocsin", "Accept": "application/cap+xml, application/xml, "
           "text/xml;q=0.9, */*;q=0.1"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CHECK_HINT = "ask the sender for a valid alert; 'tocsin cap check FILE' lists every finding"


class Outcome(StrEnum):
    IMPORTED = "imported"
    DUPLICATE = "duplicate"
    STORED_EXPIRED = "stored-expired"


@dataclass(frozen=True)
class Received:
    """A document read and checked: sound CAP, not yet trusted or mapped."""

    data: bytes
    label: str
    """Where it came from: the path, the URL or 'standard input'."""
    tree: Any
    """The document as received."""
    alert: IncomingAlert
    """As read from `tree`; `import_alert` reads a signed alert again from what was signed."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportReport:
    """What importing one alert did."""

    source: str
    alert: IncomingAlert
    outcome: Outcome
    signature: str
    """A short verdict, as stored with the message: 'unsigned', 'intact, pinned signer', …"""
    declared: tuple[Declaration, ...] = ()
    replaced: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# --- reading -----------------------------------------------------------------------------

def read_location(location: str, *, allow_private: bool,
                  stdin: BinaryIO | None = None) -> tuple[bytes, str]:
    """The bytes at `location` (a path, '-' for standard input, or an http(s) URL) and a label
    naming it; at most one byte over the CAP size limit, so `receive` can refuse the excess.
    A URL (and every redirect) must be on a public address unless `allow_private`."""
    if location == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return stream.read(capxml.MAX_BYTES + 1), "standard input"
    if _URL.match(location):
        if not location.lower().startswith(("http://", "https://")):
            raise InvalidInput(f"{location}: only http and https URLs are read",
                               "download the alert and give the file, or give an http(s) URL")
        return _download(location, allow_private=allow_private), location
    path = Path(location)
    try:
        with path.open("rb") as stream:
            return stream.read(capxml.MAX_BYTES + 1), location
    except FileNotFoundError:
        raise InvalidInput(f"{location}: no such file",
                           "check the path, or give - for standard input or an http(s) URL"
                           ) from None
    except IsADirectoryError:
        raise InvalidInput(f"{location}: is a folder, not a file",
                           "give a CAP XML file") from None
    except OSError as error:
        raise InvalidInput(f"{location}: cannot be read: {error.strerror}",
                           "check the file's permissions") from None


def _download(url: str, *, allow_private: bool) -> bytes:
    """Through tocsin's guarded client (tocsin.service.outgoing): each redirect is a new
    request, so each hop's address is checked again."""
    try:
        return asyncio.run(_fetch(url, allow_private=allow_private))
    except PrivateAddress as error:
        raise InvalidInput(f"{url}: refused, {error}", PRIVATE_FIX) from None
    except TimeoutError:
        raise InvalidInput(f"{url}: no answer within {TIMEOUT:g} seconds",
                           "try again later, or download the alert and give the file") from None
    except (client_error(), OSError, ValueError) as error:
        raise InvalidInput(f"{url}: cannot be fetched: {error or type(error).__name__}",
                           "check the URL and the network") from None


async def _fetch(url: str, *, allow_private: bool) -> bytes:
    client = GuardedClient(allow_private=allow_private, timeout=TIMEOUT, headers=HEADERS)
    try:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            async with client.request("GET", current) as response:
                target = response.headers.get("Location")
                if response.status in REDIRECTS and target:
                    current = urljoin(current, target)
                    if not current.lower().startswith(("http://", "https://")):
                        raise InvalidInput(f"{url}: redirects to {current[:200]!r}",
                                           "give the http(s) URL the alert lives at")
                    continue
                if not 200 <= response.status < 300:
                    raise InvalidInput(f"{url}: the server answered {response.status} "
                                       f"{response.reason or ''}".rstrip(),
                                       "check the URL; the alert may have been withdrawn")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > capxml.MAX_BYTES:
                        break
                return bytes(body[:capxml.MAX_BYTES + 1])
        raise InvalidInput(f"{url}: more than {MAX_REDIRECTS} redirects",
                           "give the URL the alert finally lives at")
    finally:
        await client.close()


def receive(data: bytes, label: str) -> Received:
    """`data` parsed by the hardened reader and checked; InvalidInput lists the error findings.

    A CAP 1.1 alert is accepted when its only error is being 1.1: read as CAP 1.2 it is
    valid, so its elements mean what they mean in 1.2.
    """
    tree = capxml.parse(data, label)
    version = capxml.version(tree, label)
    findings = check(tree)
    errors = [f for f in findings if f.severity == "error"
              and not (version == "1.1" and f.rule == "cap.version")]
    if errors:
        listed = "; ".join(f"{f.path} [{f.rule}] {f.message}" for f in errors[:SHOWN])
        more = f"; and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
        lead = (f"{label}: CAP 1.1 is accepted only where it reads the same as CAP 1.2, and "
                "this one does not" if version == "1.1" else f"{label}: not valid CAP 1.2")
        raise InvalidInput(f"{lead}: {len(errors)} error(s): {listed}{more}", CHECK_HINT)
    warnings = [f"{f.path}: {f.message}" for f in findings if f.severity == "warning"]
    if version == "1.1":
        warnings.insert(0, "the alert is CAP 1.1: read as CAP 1.2, which has the same elements")
    return Received(data, label, tree, read_alert(tree, label), tuple(warnings))


# --- importing ---------------------------------------------------------------------------

def import_document(engine: Engine, data: bytes, label: str, sources: Sources, *,
                    now: datetime, source_name: str | None = None) -> ImportReport:
    """`receive`, then `import_alert`."""
    return import_alert(engine, receive(data, label), sources, now=now, source_name=source_name)


def import_alert(engine: Engine, received: Received, sources: Sources, *, now: datetime,
                 source_name: str | None = None) -> ImportReport:
    """Import a received alert under its source (by sender, or the one named), as of `now`.

    Refuses, writing nothing: no source for the sender (Unmapped); a signature that does
    not hold, an unsigned alert where the source requires a signature, an untrusted signer
    where it pins them, a signed alert that reads otherwise as received than as signed
    (InvalidInput); whatever `map_alert` refuses (Unmapped); a Cancel
    whose references are all unknown (Unmapped); a sources file naming schemes, levels or
    areas the store lacks (InvalidInput). The same (sender, identifier) again is a
    duplicate: reported, nothing written.
    """
    check_current(engine)
    notes: list[str] = []
    sender = received.alert.sender
    if source_name is not None:
        source = sources.named(source_name)
        if not source.rule.covers(sender):
            notes.append(f"sender {sender!r} is not among source {source.name!r}'s "
                         "senders; imported under it because it was named")
    else:
        source = sources.for_sender(sender)
    signature, signature_notes, warnings, verified = _signature(received, source, now)
    if verified is not None:
        received = _as_signed(received, verified)
    alert = received.alert
    notes += signature_notes
    warnings = [*received.warnings, *warnings]
    check_declarable(alert)
    with change(engine, now=now, actor=f"import:{source.name}") as unit:
        schemes = records.load_schemes(unit.conn)
        tree = records.load_tree(unit.conn)
        sources.check(schemes, tree)
        base = ImportReport(source.name, alert, Outcome.IMPORTED, signature,
                            notes=tuple(notes), warnings=tuple(warnings))
        stored = _stored_message(unit.conn, alert.sender, alert.identifier)
        if stored is not None:
            same = stored.sha256 == hashlib.sha256(received.data).hexdigest()
            return replace(base, outcome=Outcome.DUPLICATE, signature=stored.signature, notes=(
                *notes, f"already imported from source {stored.source!r} at "
                f"{iso(stored.received_at)}" + ("" if same else " (with other content: the "
                                                "sender reused the identifier)")))
        scheme = schemes[source.rule.scheme]
        if alert.msg_type is MsgType.CANCEL:
            return _cancel(unit, received, source, base)
        return _declare(unit, received, source, scheme, tree, base)


def _signature(received: Received, source: Source, now: datetime
               ) -> tuple[str, list[str], list[str], bytes | None]:
    """The verdict's short form, notes, warnings and the alert as signed (None when unsigned);
    refuses what the source does not accept."""
    verdict = verify_cap(received.data, pinned=source.pinned, at=now)
    label, name = received.label, source.name
    if not verdict.signed:
        if source.require_signature:
            raise InvalidInput(f"{label}: the alert is not signed, and source {name!r} "
                               "requires a signature (require_signature = true)",
                               "get the signed alert from the sender")
        return "unsigned", [], [], None
    if not verdict.intact:
        raise InvalidInput(f"{label}: the alert's XML signature does not hold: "
                           f"{verdict.problem}",
                           "the alert was changed after signing, or signed wrongly: get the "
                           "original from the sender")
    notes: list[str] = []
    if verdict.trusted is None:
        summary = "intact, signer not checked"
        notes.append(f"signed by {verdict.signer}; source {name!r} pins no certificates, so "
                     "the signer was not checked")
    elif verdict.trusted:
        summary = "intact, pinned signer"
    elif source.trust == "pinned":
        why = f": {verdict.distrust}" if verdict.distrust else ""
        raise InvalidInput(f"{label}: the alert is signed by {verdict.signer}, who is not among "
                           f"source {name!r}'s pinned certificates (trust = \"pinned\"){why}",
                           "add the signer's certificate or its CA to certificates if you "
                           "trust it")
    else:
        summary = "intact, signer not pinned"
        notes.append(f"signed by {verdict.signer}, who is not among source {name!r}'s pinned "
                     "certificates; accepted because trust = \"any\"")
    if verdict.expired:
        summary += ", certificate expired"
    if verdict.verified is None:
        raise InvalidInput(f"{label}: the signature holds but did not say what it covers",
                           "report this: tocsin imports a signed alert only as signed")
    return summary, notes, list(verdict.warnings), verdict.verified


def _as_signed(received: Received, signed: bytes) -> Received:
    """`received` with its alert read from the bytes its signature covers, by the same
    hardened reader; refuses a document that reads otherwise as received, since its source
    was chosen, and its report begun, by that reading."""
    label = f"{received.label} (as signed)"
    alert = read_alert(capxml.parse(signed, label), label)
    changed = [f.name for f in fields(alert)
               if getattr(alert, f.name) != getattr(received.alert, f.name)]
    if changed:
        raise InvalidInput(f"{received.label}: the alert reads otherwise than what its "
                           f"signature covers ({', '.join(changed)}): something outside the "
                           "signed content changes it",
                           "get the original alert from the sender")
    return replace(received, alert=alert)


def _declare(unit: Change, received: Received, source: Source, scheme: Scheme, tree: Any,
             base: ImportReport) -> ImportReport:
    alert = received.alert
    mapping = map_alert(alert, source.rule, tree, scheme, unit.now)
    notes = [*base.notes, *mapping.notes]
    if mapping.request is None:
        _record_message(unit, received, base, Outcome.STORED_EXPIRED, None, notes)
        return replace(base, outcome=Outcome.STORED_EXPIRED, notes=tuple(notes))
    replaces: list[str] = []
    if alert.msg_type is MsgType.UPDATE:
        targets, _ = _referenced(unit, alert, source, notes, "replaced")
        for ref, declaration_id in targets:
            try:
                check_replaceable(declaration_id, scheme=scheme,
                                  known=known_declarations(unit, [declaration_id]),
                                  now=unit.now)
            except TocsinError as error:
                notes.append(f"message {ref.label}: {error.problem}; not replaced")
                continue
            replaces.append(declaration_id)
    request = replace(mapping.request, replaces=tuple(replaces))
    new_id = new_declaration_id(unit.now)
    while records.declaration_exists(unit.conn, new_id):
        new_id = new_declaration_id(unit.now)
    declaration = stamped(publish_as(request, id=new_id, scheme=scheme, tree=tree,
                                     known=known_declarations(unit, request.replaces),
                                     now=unit.now, actor=unit.actor, publish=True))
    records.insert_declaration(unit.conn, declaration)
    record_declaration(unit, declaration, tree)
    report = replace(base, declared=(declaration,), replaced=tuple(replaces), notes=tuple(notes))
    _record_message(unit, received, report, Outcome.IMPORTED, declaration.id, notes)
    return report


def _cancel(unit: Change, received: Received, source: Source,
            base: ImportReport) -> ImportReport:
    alert = received.alert
    notes = list(base.notes)
    reason = cancel_reason(alert)
    ended: list[str] = []
    targets, missing = _referenced(unit, alert, source, notes, "cancelled")
    if len(missing) == len(alert.references):
        raise Unmapped(f"the Cancel references only messages tocsin has not imported: "
                       f"{_labels(alert.references)}",
                       "nothing here to cancel; import the messages it cancels first")
    for ref, declaration_id in targets:
        found = records.load_declarations(unit.conn, ids=[declaration_id])[declaration_id]
        try:
            result = record_cancellation(unit, found, reason)
        except TocsinError as error:
            notes.append(f"message {ref.label}: {error.problem}; not cancelled")
            continue
        ended.append(result.id)
    if not ended:
        notes.append("nothing in force was cancelled")
    report = replace(base, cancelled=tuple(ended), notes=tuple(notes))
    _record_message(unit, received, report, Outcome.IMPORTED, None, notes)
    return report


def _referenced(unit: Change, alert: IncomingAlert, source: Source, notes: list[str],
                verb: str) -> tuple[list[tuple[MessageRef, str]], list[MessageRef]]:
    """The declarations made by the messages `alert` references, once each, and the
    references tocsin does not know; what cannot be acted on is noted."""
    out: list[tuple[MessageRef, str]] = []
    missing: list[MessageRef] = []
    for ref in alert.references:
        row = _stored_message(unit.conn, ref.sender, ref.identifier)
        if row is None:
            missing.append(ref)
        elif row.source != source.name:
            notes.append(f"message {ref.label} came from source {row.source!r}, not "
                         f"{source.name!r}: its declaration is not {verb}")
        elif row.declaration_id is None:
            notes.append(f"message {ref.label} declared no level: nothing to be {verb}")
        elif all(row.declaration_id != d for _, d in out):
            out.append((ref, row.declaration_id))
    if missing:
        notes.append(f"references {len(missing)} message(s) tocsin has not imported: "
                     f"{_labels(missing)}")
    return out, missing


def _labels(refs: Sequence[MessageRef]) -> str:
    shown = ", ".join(ref.label for ref in refs[:SHOWN])
    return shown + (f" and {len(refs) - SHOWN} more" if len(refs) > SHOWN else "")


# --- the message records -----------------------------------------------------------------

def _stored_message(conn: Connection, sender: str, identifier: str) -> Any:
    """The cap_messages row of (sender, identifier), or None."""
    return conn.execute(select(t.cap_messages.c.source, t.cap_messages.c.declaration_id,
                               t.cap_messages.c.received_at, t.cap_messages.c.sha256,
                               t.cap_messages.c.signature)
                        .where(t.cap_messages.c.sender == sender,
                               t.cap_messages.c.identifier == identifier)).first()


def _record_message(unit: Change, received: Received, report: ImportReport, outcome: Outcome,
                    declaration_id: str | None, notes: Sequence[str]) -> None:
    """Store the message and audit its import (after any declaration it refers to)."""
    alert = received.alert
    digest = hashlib.sha256(received.data).hexdigest()
    unit.conn.execute(insert(t.cap_messages).values(
        sender=alert.sender, identifier=alert.identifier, sent=alert.sent,
        msg_type=str(alert.msg_type), declaration_id=declaration_id, received_at=unit.now,
        source=report.source, sha256=digest, signature=report.signature,
        document=_document_text(received)))
    unit.audit("cap.imported", alert.label, {
        "source": report.source, "sender": alert.sender, "identifier": alert.identifier,
        "sent": iso(alert.sent), "msg_type": str(alert.msg_type), "sha256": digest,
        "signature": report.signature, "outcome": str(outcome), "from": received.label,
        "declaration": declaration_id, "replaced": list(report.replaced),
        "cancelled": list(report.cancelled), "notes": list(notes)})


def _document_text(received: Received) -> str:
    """The XML as text in its declared encoding, so that encoding it again gives the bytes."""
    encoding = received.tree.docinfo.encoding or "utf-8"
    try:
        return received.data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return received.data.decode("utf-8", errors="replace")
