"""Retention: `tocsin prune` and the worker's hourly prune delete old delivery attempts,
deliveries and outbox events, and never what a queued or replayable delivery, the workers'
cursor or the read model still needs; ids never go backwards; the audit log is untouched."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update
from tests.conftest import SET_UP_AT
from tests.helpers import dump, request, utc
from typer.testing import CliRunner

from tocsin import settings
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import Channel, Outcome
from tocsin.notify.worker import Tuning, Worker
from tocsin.service import commands, deliveries, queries, retention, subscriptions
from tocsin.service.deliveries import Result
from tocsin.settings import Retention
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import reading, writing

T0 = utc(2022, 1, 5, 9)
NOW = T0 + timedelta(days=400)
"""Long after T0: everything of T0 is past every default retention."""
KEEP = Retention(delivery_attempts=timedelta(days=90), deliveries=timedelta(days=365),
                 events=timedelta(days=365))
runner = CliRunner()


def attempt(engine: Engine, at: datetime, outcome: Outcome) -> list[int]:
    """Claim every due delivery at `at` and record `outcome` for each; their ids."""
    claimed = deliveries.claim(engine, at, worker="w", limit=1000)
    deliveries.record(engine, [Result(c.id, outcome, at, 5) for c in claimed], worker="w")
    return [c.id for c in claimed]


DELIVERED = Outcome(True, "204 No Content", 204)
FAILED = Outcome(False, "503 Service Unavailable", 503)
REFUSED = Outcome(False, "refused", permanent=True)


def history(engine: Engine) -> dict[str, Any]:
    """A year of notifications: old delivered, old dead and old still-pending deliveries,
    and recent ones; returns what the test needs to find them."""
    subscriptions.add(engine, channel=Channel.WEBHOOK, target="http://127.0.0.1:9/hook",
                      areas=["KZ"], owner="t", now=T0 - timedelta(days=1), allow_private=True)
    commands.declare(engine, [request("moderate")], now=T0, actor="t")
    deliveries.fan_out(engine, T0)  # the set-up's scheme and area events too
    [delivered] = attempt(engine, T0, DELIVERED)
    commands.declare(engine, [request("high")], now=T0 + timedelta(hours=1), actor="t")
    deliveries.fan_out(engine, T0 + timedelta(hours=1))
    [dead] = attempt(engine, T0 + timedelta(hours=1), REFUSED)
    commands.declare(engine, [request("critical")], now=T0 + timedelta(hours=2), actor="t")
    deliveries.fan_out(engine, T0 + timedelta(hours=2))
    [waiting] = attempt(engine, T0 + timedelta(hours=2), FAILED)
    with writing(engine) as conn:  # e.g. an e-mail waiting for TOCSIN_SMTP_URL all along
        conn.execute(update(t.deliveries).where(t.deliveries.c.id == waiting)
                     .values(next_attempt_at=NOW + timedelta(hours=1)))
    # Recent: a declaration 10 days ago, delivered after a failure.
    recent_at = NOW - timedelta(days=10)
    commands.declare(engine, [request("red", scheme="meteoalarm")], now=recent_at, actor="t")
    deliveries.fan_out(engine, recent_at)
    [recent] = attempt(engine, recent_at, FAILED)
    with writing(engine) as conn:
        conn.execute(update(t.deliveries).where(t.deliveries.c.id == recent)
                     .values(next_attempt_at=recent_at))
    attempt(engine, recent_at + timedelta(seconds=30), DELIVERED)
    with reading(engine) as conn:
        event_of = dict(conn.execute(select(t.deliveries.c.id, t.deliveries.c.event_id)).all())
    return {"delivered": delivered, "dead": dead, "waiting": waiting, "recent": recent,
            "event_of": event_of}


def ids(engine: Engine, table: Any) -> list[int]:
    with reading(engine) as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


def topics(engine: Engine) -> list[tuple[int, str]]:
    with reading(engine) as conn:
        return sorted(conn.execute(select(t.outbox.c.id, t.outbox.c.topic)).all())


def read_model(engine: Engine) -> tuple[int, datetime | None, set[str] | None]:
    """What servers read from the outbox: the newest id, the structure's date, and the
    changes after the first event."""
    with reading(engine) as conn:
        return (records.newest_outbox_id(conn), records.structure_changed_at(conn),
                records.public_changes_after(conn, 10**12))


def test_prune_deletes_the_old_and_keeps_what_is_needed(engine: Engine) -> None:
    h = history(engine)
    events_before = topics(engine)
    model_before = read_model(engine)
    audit_before = queries.verify_audit(engine)

    pruned = retention.prune(engine, now=NOW, keep=KEEP)

    kept_deliveries = ids(engine, t.deliveries)
    # Old settled deliveries go (with their attempts); the waiting one and recent ones stay.
    assert h["delivered"] not in kept_deliveries and h["dead"] not in kept_deliveries
    assert h["waiting"] in kept_deliveries and h["recent"] in kept_deliveries
    with reading(engine) as conn:
        attempts = {d: n for d, n in conn.execute(
            select(t.delivery_attempts.c.delivery_id, func.count())
            .group_by(t.delivery_attempts.c.delivery_id))}
    assert attempts == {h["waiting"]: 1, h["recent"]: 2}  # a queued delivery keeps its log
    assert pruned == retention.Pruned(delivery_attempts=2, deliveries=2,
                                      outbox=pruned.outbox)
    kept_events = dict(topics(engine))
    # The events kept deliveries point at, the newest event, the newest of each structure
    # topic; the rest (older structure events, old events nobody needs) go.
    assert h["event_of"][h["waiting"]] in kept_events
    assert h["event_of"][h["recent"]] in kept_events
    assert max(kept_events) == max(dict(events_before))
    for topic in records.STRUCTURE_TOPICS:
        newest = max(i for i, tp in events_before if tp == topic)
        assert kept_events.get(newest) == topic
        assert [i for i, tp in kept_events.items() if tp == topic] == [newest]
    assert h["event_of"][h["delivered"]] not in kept_events
    assert pruned.outbox == len(events_before) - len(kept_events) > 0
    # Servers see the same: no newest id going back, the same structure date.
    assert read_model(engine) == model_before
    # The audit log is never pruned.
    audit_after = queries.verify_audit(engine)
    assert audit_after.ok and audit_after.checked == audit_before.checked
    # A second prune finds nothing more.
    assert retention.prune(engine, now=NOW, keep=KEEP) == retention.Pruned()


def test_an_event_not_yet_fanned_out_is_kept(engine: Engine) -> None:
    commands.declare(engine, [request("moderate")], now=T0, actor="t")
    commands.declare(engine, [request("high")], now=T0 + timedelta(hours=1), actor="t")
    deliveries.fan_out(engine, T0)
    first = min(ids(engine, t.outbox))
    with writing(engine) as conn:  # the workers' cursor: still at the first event
        conn.execute(update(t.outbox).where(t.outbox.c.id == first).values(fanned_out_at=None))
    retention.prune(engine, now=NOW, keep=KEEP)
    assert first in ids(engine, t.outbox)


def test_the_structure_keeps_its_date_when_ids_and_times_disagree(engine: Engine) -> None:
    """An areas change written later but dated earlier (an import given an earlier time):
    the newest by id and the newest by time both stay."""
    history(engine)
    with writing(engine) as conn:
        conn.execute(insert(t.outbox).values(
            created_at=SET_UP_AT - timedelta(days=30), topic="areas.changed",
            payload={"created": [], "updated": ["KZ-75"]}, audit_seq=1,
            fanned_out_at=SET_UP_AT))
        conn.execute(insert(t.outbox).values(
            created_at=NOW, topic="declaration.published", payload={"id": "x"}, audit_seq=1,
            fanned_out_at=NOW))
    before = read_model(engine)
    retention.prune(engine, now=NOW, keep=KEEP)
    assert read_model(engine) == before
    kept = [i for i, topic in topics(engine) if topic == "areas.changed"]
    assert len(kept) == 2


def test_ids_never_go_backwards_after_a_prune(engine: Engine) -> None:
    """SQLite hands out max(id) + 1 (no AUTOINCREMENT): the newest rows stay."""
    h = history(engine)
    newest = {name: max(ids(engine, table)) for name, table in
              (("outbox", t.outbox), ("deliveries", t.deliveries),
               ("delivery_attempts", t.delivery_attempts))}
    everything = Retention(timedelta(days=1), timedelta(days=1), timedelta(days=1))
    retention.prune(engine, now=NOW + timedelta(days=30), keep=everything)
    assert max(ids(engine, t.outbox)) == newest["outbox"]
    assert max(ids(engine, t.deliveries)) == newest["deliveries"]
    assert max(ids(engine, t.delivery_attempts)) == newest["delivery_attempts"]
    assert h["waiting"] in ids(engine, t.deliveries)
    later = NOW + timedelta(days=31)
    commands.declare(engine, [request("severe", scheme="uk-terror")], now=later, actor="t")
    deliveries.fan_out(engine, later)
    attempt(engine, later, DELIVERED)
    assert min(set(ids(engine, t.outbox)) - {*range(newest["outbox"] + 1)}) > newest["outbox"]
    assert max(ids(engine, t.deliveries)) > newest["deliveries"]
    assert max(ids(engine, t.delivery_attempts)) > newest["delivery_attempts"]


def test_a_kept_dead_delivery_can_still_be_replayed(engine: Engine) -> None:
    h = history(engine)
    # Deliveries kept for two years, events for a day: the dead one keeps its event.
    keep = Retention(timedelta(days=1), timedelta(days=730), timedelta(days=1))
    retention.prune(engine, now=NOW, keep=keep)
    assert h["event_of"][h["dead"]] in ids(engine, t.outbox)
    assert deliveries.replay(engine, now=NOW, actor="t", ids=[h["dead"]]) == 1
    [claimed] = [c for c in deliveries.claim(engine, NOW, worker="w", limit=10)
                 if c.id == h["dead"]]
    assert claimed.topic == "levels.changed" and claimed.payload["changes"]
    # Replayed, it is recent again: a prune that would have taken it leaves it.
    deliveries.record(engine, [Result(claimed.id, DELIVERED, NOW, 5)], worker="w")
    retention.prune(engine, now=NOW, keep=KEEP)
    assert h["dead"] in ids(engine, t.deliveries)


def test_a_dry_run_counts_exactly_and_deletes_nothing(engine: Engine) -> None:
    history(engine)
    before = dump(engine)
    counted = retention.prune(engine, now=NOW, keep=KEEP, dry_run=True)
    assert dump(engine) == before
    assert counted == retention.prune(engine, now=NOW, keep=KEEP)
    assert counted.outbox and counted.deliveries and counted.delivery_attempts


def test_small_batches_prune_the_same(engine: Engine) -> None:
    history(engine)
    counted = retention.prune(engine, now=NOW, keep=KEEP, dry_run=True)
    assert retention.prune(engine, now=NOW, keep=KEEP, batch=1) == counted


def test_never_keeps_everything(engine: Engine) -> None:
    history(engine)
    before = dump(engine)
    forever = Retention(None, None, None)
    assert retention.prune(engine, now=NOW, keep=forever) == retention.Pruned()
    assert dump(engine) == before


@contextmanager
def running(worker: Worker) -> Iterator[None]:
    """The worker's loop (`tocsin worker`) in a thread until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),),
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def worker_of(engine: Engine, tmp_path: Path, tuning: Tuning) -> Worker:
    config = settings.Settings(database_url=str(engine.url), sender="t",
                               keys_dir=str(tmp_path / "keys"), retention=KEEP)
    return Worker(engine, config, senders={}, clock=lambda: NOW, tuning=tuning)


def test_the_worker_prunes_by_itself(engine: Engine, tmp_path: Path) -> None:
    history(engine)
    expected = retention.prune(engine, now=NOW, keep=KEEP, dry_run=True)
    outbox_before = len(ids(engine, t.outbox))
    with running(worker_of(engine, tmp_path, Tuning(prune_first=0.0))):
        deadline = time.monotonic() + 10
        while (len(ids(engine, t.outbox)) > outbox_before - expected.outbox
               and time.monotonic() < deadline):
            time.sleep(0.05)
    assert len(ids(engine, t.outbox)) == outbox_before - expected.outbox
    assert retention.prune(engine, now=NOW, keep=KEEP, dry_run=True) == retention.Pruned()


PRUNED = ("outbox", "deliveries", "delivery_attempts")


def test_a_worker_just_started_has_not_pruned(engine: Engine, tmp_path: Path) -> None:
    """The first prune waits a few minutes: a worker that lives a moment never prunes."""
    history(engine)
    before = dump(engine)
    with running(worker_of(engine, tmp_path, Tuning())):
        time.sleep(0.5)
    assert {k: v for k, v in dump(engine).items() if k in PRUNED} == {
        k: v for k, v in before.items() if k in PRUNED}
    assert Tuning().prune_first >= 60 and Tuning().prune_every == 3600


def test_a_halted_prune_begins_no_further_batch(engine: Engine) -> None:
    """A stopping worker's prune stops after the batch in hand; what it did is kept."""
    history(engine)
    asked = []

    def halt() -> bool:
        asked.append(1)
        return len(asked) > 1  # one batch, then stop

    pruned = retention.prune(engine, now=NOW, keep=KEEP, batch=1, halt=halt)
    assert pruned == retention.Pruned(delivery_attempts=1)
    assert retention.prune(engine, now=NOW, keep=KEEP, batch=1, dry_run=True).outbox > 0


# --- settings and the command line -------------------------------------------------------------


@pytest.mark.parametrize(("value", "days"), [
    ("90", 90), (" 7 ", 7), ("never", None), ("Never", None), ("0", None)])
def test_retention_settings(value: str, days: int | None) -> None:
    for setting in (settings.KEEP_DELIVERY_ATTEMPTS, settings.KEEP_DELIVERIES,
                    settings.KEEP_EVENTS):
        keep = settings.read({setting.name: value}).retention
        got = {settings.KEEP_DELIVERY_ATTEMPTS: keep.delivery_attempts,
               settings.KEEP_DELIVERIES: keep.deliveries,
               settings.KEEP_EVENTS: keep.events}[setting]
        assert got == (timedelta(days=days) if days is not None else None)


def test_retention_defaults() -> None:
    assert settings.read({}).retention == Retention(
        timedelta(days=90), timedelta(days=365), timedelta(days=365))


@pytest.mark.parametrize("value", ["90d", "-1", "1.5", "forever", "36501", "٣"])
def test_a_bad_retention_names_the_setting_and_the_fix(value: str) -> None:
    with pytest.raises(InvalidInput) as error:
        settings.read({"TOCSIN_KEEP_EVENTS": value})
    assert error.value.problem == f"TOCSIN_KEEP_EVENTS={value!r} is not a number of days"
    assert "'never'" in (error.value.fix or "")


def cli(url: str, *args: str, **env: str) -> Any:
    return runner.invoke(app, ["prune", *args], env={"TOCSIN_DATABASE_URL": url,
                                                      "COLUMNS": "200", **env})


def test_tocsin_prune_counts_each_table(db_url: str, engine: Engine) -> None:
    history(engine)  # dated 2022-2023: old by any retention today
    expected = retention.prune(engine, now=datetime.now(UTC), keep=KEEP, dry_run=True)
    dry = cli(db_url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    for table, n in expected.as_json().items():
        assert f"{table}: would delete {n} rows" in dry.stdout or (
            n == 1 and f"{table}: would delete 1 row" in dry.stdout)
    done = cli(db_url, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {**expected.as_json(), "dry_run": False}
    again = cli(db_url)
    assert again.exit_code == 0 and "outbox: deleted 0 rows" in again.stdout


def test_tocsin_prune_never_keeps_everything(db_url: str, engine: Engine) -> None:
    history(engine)
    before = dump(engine)
    result = cli(db_url, "--keep-events", "never", "--keep-deliveries", "0",
                 "--keep-delivery-attempts", "never")
    assert result.exit_code == 0, result.output
    assert dump(engine) == before


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--keep-events", "a year"], {}, "--keep-events='a year' is not a number of days"),
    (["--keep-deliveries", "-5"], {}, "--keep-deliveries='-5' is not a number of days"),
    (["--batch", "0"], {}, "--batch"),
    (["--frobnicate"], {}, "No such option"),
    ([], {"TOCSIN_KEEP_DELIVERY_ATTEMPTS": "3 months"},
     "TOCSIN_KEEP_DELIVERY_ATTEMPTS='3 months' is not a number of days"),
])
def test_tocsin_prune_refuses_bad_flags_and_deletes_nothing(
        db_url: str, engine: Engine, args: list[str], env: dict[str, str],
        message: str) -> None:
    history(engine)
    before = dump(engine)
    result = cli(db_url, *args, **env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert dump(engine) == before
