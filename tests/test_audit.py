"""The audit chain on both databases: every kind of tampering is found and named."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update
from tests.helpers import request, utc

from tocsin.service import commands, queries
from tocsin.store import tables

NOW = utc(2022, 1, 7, 3)


@pytest.fixture
def chained(engine: Engine) -> Engine:
    """A database whose chain holds set-up entries plus three declarations and a cancel."""
    [a] = commands.declare(engine, [request("critical", ("KZ",))], now=NOW, actor="a")
    commands.declare(engine, [request("high", ("KZ-75",))], now=NOW, actor="b")
    commands.declare(engine, [request("moderate", ("KZ-71",))], now=NOW, actor="c")
    commands.cancel(engine, a.id, reason="over", now=utc(2022, 1, 8), actor="a")
    return engine


def entries(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(tables.audit_log).order_by(tables.audit_log.c.seq)))


def test_an_untouched_chain_verifies(chained: Engine) -> None:
    verdict = queries.verify_audit(chained)
    rows = entries(chained)
    assert verdict.ok and verdict.checked == len(rows) >= 8
    assert (verdict.head_seq, verdict.head_hash) == (rows[-1].seq, rows[-1].hash)


def test_altered_content_is_found(chained: Engine) -> None:
    target = entries(chained)[-3]
    with chained.begin() as conn:
        conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == target.seq)
                     .values(actor="someone else"))
    verdict = queries.verify_audit(chained)
    assert not verdict.ok and verdict.broken_seq == target.seq
    assert "was altered" in (verdict.problem or "")


def test_altered_content_with_recomputed_hash_is_found_at_the_next_link(chained: Engine) -> None:
    from tocsin.domain import audit

    rows = entries(chained)
    target, before = rows[-3], rows[-4]
    forged = audit.chain(audit.AuditEntry(before.seq, before.at, before.actor, before.action,
                                          before.subject, before.details, before.prev_hash,
                                          before.hash),
                         target.at, "forger", target.action, target.subject, target.details)
    with chained.begin() as conn:
        conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == target.seq)
                     .values(actor="forger", hash=forged.hash))
    verdict = queries.verify_audit(chained)
    assert not verdict.ok and verdict.broken_seq == target.seq + 1
    assert "does not chain" in (verdict.problem or "")


def test_deleted_entry_is_found(chained: Engine) -> None:
    target = entries(chained)[3]
    with chained.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq == target.seq))
    verdict = queries.verify_audit(chained)
    assert not verdict.ok and verdict.broken_seq == target.seq
    assert "missing" in (verdict.problem or "")


def test_entries_cut_from_the_end_are_found(chained: Engine) -> None:
    last = entries(chained)[-1]
    with chained.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq == last.seq))
    verdict = queries.verify_audit(chained)
    assert not verdict.ok and "removed from the end" in (verdict.problem or "")


def test_reordered_entries_are_found(chained: Engine) -> None:
    rows = entries(chained)
    a, b = rows[2], rows[3]
    with chained.begin() as conn:
        # Swap the contents of two entries, keeping their sequence numbers.
        for row, other in ((a, b), (b, a)):
            conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == row.seq)
                         .values(at=other.at, actor=other.actor, action=other.action,
                                 subject=other.subject, details=other.details,
                                 prev_hash=other.prev_hash, hash=other.hash))
    verdict = queries.verify_audit(chained)
    assert not verdict.ok and verdict.broken_seq == a.seq


def test_a_published_head_catches_a_rewritten_history(chained: Engine) -> None:
    rows = entries(chained)
    published = (rows[-1].seq, rows[-1].hash)
    assert queries.verify_audit(chained, published_head=published).ok
    # Rewrite the whole tail consistently (including the state row): only the published
    # head can tell.
    from tocsin.domain import audit

    with chained.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq >= rows[-2].seq))
        prev = audit.AuditEntry(rows[-3].seq, rows[-3].at, rows[-3].actor, rows[-3].action,
                                rows[-3].subject, rows[-3].details, rows[-3].prev_hash,
                                rows[-3].hash)
        for row in rows[-2:]:
            prev = audit.chain(prev, row.at, "rewriter", row.action, row.subject, row.details)
            conn.execute(tables.audit_log.insert().values(
                seq=prev.seq, at=prev.at, actor=prev.actor, action=prev.action,
                subject=prev.subject, details=dict(prev.details), prev_hash=prev.prev_hash,
                hash=prev.hash))
        conn.execute(update(tables.state).values(audit_seq=prev.seq, audit_hash=prev.hash))
    assert queries.verify_audit(chained).ok
    verdict = queries.verify_audit(chained, published_head=published)
    assert not verdict.ok and "history was rewritten" in (verdict.problem or "")


def test_concurrent_writers_keep_one_unbroken_chain(db_url: str) -> None:
    from tocsin.store.database import connect

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        engine = connect(db_url)
        try:
            for i in range(5):
                commands.declare(engine, [request("moderate", ("KZ-75",),
                                                  headline=f"w{n} #{i}")],
                                 now=NOW, actor=f"worker-{n}")
        except BaseException as error:
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = connect(db_url)
    verdict = queries.verify_audit(engine)
    assert verdict.ok
    assert len(queries.load_world(engine).declarations) == 20
    engine.dispose()
