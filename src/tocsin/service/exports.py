"""The CAP messages tocsin publishes, made, checked (the same checker as 'tocsin cap check'
and 'tocsin ingest') and signed, when a CAP key is active, in the transaction that publishes
or cancels a declaration: a failure stops the publication, and the bytes, identifier and sent
time are fixed for good."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sqlalchemy import Connection, insert, select

from tocsin import settings
from tocsin.cap import messages
from tocsin.cap.check import check
from tocsin.cap.sign import sign_cap
from tocsin.cap.xml import parse
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.errors import InvalidInput
from tocsin.service import keys
from tocsin.service.change import Change
from tocsin.service.queries import World
from tocsin.store import records
from tocsin.store import tables as t


def cancel_name(declaration_id: str) -> str:
    return f"{declaration_id}-cancel"


def record_cap(unit: Change, declaration: Declaration, *, cancel: bool = False) -> bytes:
    """Make, sign and store the Alert/Update (or, with `cancel`, the Cancel) of a declaration
    that this change publishes (or cancels)."""
    config = settings.read()
    folder = Path(config.keys_dir)
    keys.document_signer(folder)  # a broken document key stops publication here too
    signer = keys.cap_signer(folder)
    world = _chain(unit.conn, declaration)
    publication = messages.Publication(config.public_url, config.cap_sender)
    if cancel:
        body = messages.cap_cancel_message(world, declaration.id, publication)
    else:
        body = messages.cap_message(world, declaration.id, publication)
    errors = [f for f in check(parse(body, f"the CAP message of {declaration.id}"))
              if f.severity == "error"]
    if errors:  # never publish what a receiver would refuse
        raise InvalidInput(
            f"the CAP message of {declaration.id} breaks "
            + "; ".join(f"{f.path}: {f.rule}: {f.message}" for f in errors[:3]),
            "fix the declaration's texts or areas (see 'tocsin cap check')")
    if signer is not None:
        body = sign_cap(body, signer, at=unit.now)
    unit.conn.execute(insert(t.cap_documents).values(
        name=cancel_name(declaration.id) if cancel else declaration.id,
        declaration_id=declaration.id, document=body.decode("utf-8"), created_at=unit.now))
    return body


def _chain(conn: Connection, declaration: Declaration) -> World:
    """A world holding the declaration and every published declaration it replaces,
    transitively: all its CAP message needs."""
    found = {declaration.id: declaration}
    wanted = [i for i in declaration.replaces if i not in found]
    while wanted:
        loaded = records.load_declarations(conn, ids=wanted, statuses=[Status.PUBLISHED])
        found.update(loaded)
        wanted = sorted({i for d in loaded.values() for i in d.replaces} - set(found))
    return World(records.load_tree(conn), records.load_schemes(conn), found)


CapLoader = Callable[[Iterable[str]], dict[str, bytes]]
"""Reads stored CAP messages by name, for a read model that keeps none in memory."""


def load_documents(conn: Connection, names: Sequence[str] | None = None) -> dict[str, bytes]:
    """The stored CAP messages by name (`ID` or `ID-cancel`): these, or every one."""
    query = select(t.cap_documents.c.name, t.cap_documents.c.document)
    if names is not None:
        query = query.where(t.cap_documents.c.name.in_(list(names)))
    return {row.name: row.document.encode("utf-8") for row in conn.execute(query)}
