"""One change to the store: state, audit chain and outbox advance together or not at all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, text, update

from tocsin.domain import audit
from tocsin.domain.audit import AuditEntry
from tocsin.service import levels
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import writing
from tocsin.store.listen import NOTIFY_CHANNEL


class Change:
    """The open write transaction of one command, with the actor and instant it runs as."""

    def __init__(self, conn: Connection, now: datetime, actor: str) -> None:
        self.conn = conn
        self.now = now
        self.actor = actor
        self._last = records.last_audit_entry(conn)
        self.entries: list[AuditEntry] = []
        self.public = False

    def audit(self, action: str, subject: str, details: Mapping[str, Any]) -> AuditEntry:
        """Append an entry to the hash chain, in this transaction."""
        entry = audit.chain(self._last, self.now, self.actor, action, subject, details)
        records.insert_audit_entry(self.conn, entry)
        self._last = entry
        self.entries.append(entry)
        return entry

    def emit(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Queue an event in the outbox, tied to the latest audit entry of this change.

        Every event is about something the public sees, so the public change time moves.
        """
        assert self._last is not None, "audit the change before emitting its events"
        self.public = True
        self.conn.execute(insert(t.outbox).values(
            created_at=self.now, topic=topic, payload=dict(payload), audit_seq=self._last.seq))

    def finish(self) -> None:
        if not self.entries:
            return
        head = self.entries[-1]
        values: dict[str, Any] = {"version": t.state.c.version + 1, "audit_seq": head.seq,
                                  "audit_hash": head.hash, "changed_at": self.now}
        if self.public:
            values["public_changed_at"] = self.now
            levels.check(self.conn, self.now)
        self.conn.execute(update(t.state).where(t.state.c.id == 1).values(**values))
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


@contextmanager
def change(engine: Engine, *, now: datetime, actor: str) -> Iterator[Change]:
    """Run a command's writes; commits on success, rolls everything back on any error."""
    with writing(engine) as conn:
        unit = Change(conn, now, actor)
        yield unit
        unit.finish()
