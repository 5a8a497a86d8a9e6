"""Webhook delivery under faults, through real doors: receivers on 127.0.0.1 that fail, stall,
throttle or are gone; a `tocsin worker` process killed with SIGKILL in the middle of a fan-out;
PostgreSQL restarted under a running worker.

In-process rounds run on a test clock that jumps past every waiting delivery's next attempt,
so days of back-off take a few rounds. The process tests use the wall clock and wait on what the
receiver and the database show, with generous deadlines that only stop a hung test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from standardwebhooks import Webhook
from tests.conftest import SET_UP_AT, Databases
from tests.helpers import request
from tests.pg_server import PgServer, find_bindir, postgres_server
from tests.receiver import Behaviour, Received, Receiver, receiving

from tocsin import settings
from tocsin.demo import kazakhstan_areas_file
from tocsin.domain.notify import (
    Channel,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    idempotency_key,
    retry_wait,
)
from tocsin.ingest.areas import read_areas_csv
from tocsin.notify.worker import Tuning, Worker
from tocsin.service import commands, deliveries, subscriptions
from tocsin.store import tables as t
from tocsin.store.database import connect

T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
ACTOR = "local-operator:faults"
OWNER = "user:faults"
AREAS = ("KZ", "KZ-75", "KZ-71", "KZ-19", "KZ-63", "KZ-79")
"""Each hears a countrywide change: the country itself, or a region inside it."""
LANGUAGES = ("kk", "ru", "en")
MANY = 2000
OUTAGE = 5.0
"""Seconds PostgreSQL stays down in the restart test."""
TOCSIN = Path(sys.executable).with_name("tocsin")


class Clock:
    """The worker's clock in in-process tests: still until the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def move_to(self, when: datetime) -> None:
        self.at = max(self.at, when)


@dataclass(frozen=True)
class Subscriber:
    sub: Subscription
    secret: str
    path: str


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> settings.Settings:
    return settings.Settings(database_url=db_url, sender="t", allow_private_targets=True,
                             keys_dir=str(tmp_path / "keys"))


def subscribe(engine: Engine, receiver: Receiver, behaviours: Sequence[Behaviour], *,
              now: datetime) -> list[Subscriber]:
    """One webhook subscription for each behaviour, each at its own path of `receiver`."""
    out = []
    for i, behaviour in enumerate(behaviours):
        path = f"/hook/{i}"
        sub, secret = subscriptions.add(
            engine, channel=Channel.WEBHOOK, target=receiver.behave(path, behaviour),
            areas=[AREAS[i % len(AREAS)]], owner=OWNER, language=LANGUAGES[i % 3], now=now,
            allow_private=True)
        out.append(Subscriber(sub, secret, path))
    return out


def one_round(engine: Engine, config: settings.Settings, clock: Clock,
              tuning: Tuning | None = None) -> int:
    """One round of a fresh worker at the clock's time."""
    return asyncio.run(Worker(engine, config, tuning=tuning, clock=clock).once())


def last_due(engine: Engine) -> datetime | None:
    """When the last of the waiting deliveries falls due."""
    d = t.deliveries
    with engine.connect() as conn:
        found: datetime | None = conn.execute(
            select(func.max(d.c.next_attempt_at))
            .where(d.c.status == DeliveryStatus.PENDING.value)).scalar()
    return found


def rounds_until(done: Callable[[], bool], engine: Engine, config: settings.Settings,
                 clock: Clock, *, limit: int = 40) -> int:
    """Run rounds, moving the clock past every waiting delivery's next attempt after each,
    until `done()`; returns how many rounds it took."""
    for n in range(1, limit + 1):
        one_round(engine, config, clock)
        if done():
            return n
        due = last_due(engine)
        assert due is not None, f"nothing is waiting, yet not done: {deliveries.counts(engine)}"
        clock.move_to(due + timedelta(milliseconds=1))
    raise AssertionError(f"not done after {limit} rounds: {deliveries.counts(engine)}")


def settled(engine: Engine) -> bool:
    counts = deliveries.counts(engine)
    return counts["pending"] == 0 and counts["leased"] == 0


def by_path(receiver: Receiver) -> dict[str, list[Received]]:
    with receiver.lock:
        everything = list(receiver.received)
    out: dict[str, list[Received]] = defaultdict(list)
    for r in everything:
        out[r.path].append(r)
    return out


def of(engine: Engine, subscriber: Subscriber) -> dict[str, Any]:
    """The one delivery of this subscriber."""
    [found] = deliveries.listing(engine, subscription=subscriber.sub.id)
    return found


def check_requests(subscriber: Subscriber, got: Sequence[Received], event: int) -> None:
    """Every request carries the event, signed with the subscriber's secret, under one
    webhook-id (the idempotency key), with the same body each time."""
    key = idempotency_key(event, subscriber.sub.id)
    where = f"{subscriber.path} ({subscriber.sub.id})"
    assert got, f"{where} heard nothing"
    assert any(200 <= r.status < 300 for r in got), f"{where}: no request was answered 2xx"
    assert {r.headers.get("webhook-id") for r in got} == {key}, where
    assert len({r.body for r in got}) == 1, f"{where}: a retry or duplicate changed the body"
    verifier = Webhook(subscriber.secret)
    for r in got:
        document = verifier.verify(r.body, r.headers)  # raises on a bad signature
        assert document["type"] == "levels.changed"
        assert document["data"]["event"] == event
        assert document["data"]["subscription"] == subscriber.sub.id
        assert document["data"]["changes"], where


def latest_event(engine: Engine) -> int:
    event = deliveries.last_event(engine)
    assert event is not None
    return event


# --- a flaky receiver --------------------------------------------------------------------------


@pytest.mark.slow
def test_flaky_receivers_hear_every_event_signed_under_one_id(
        engine: Engine, config: settings.Settings) -> None:
    clock = Clock(T0)
    with receiving() as receiver:
        subscribers = subscribe(engine, receiver,
                                [Behaviour(fail_ratio=0.3, seed=i) for i in range(200)], now=T0)
        commands.declare(engine, [request()], now=T0, actor=ACTOR)
        rounds = rounds_until(lambda: settled(engine), engine, config, clock)
        heard = by_path(receiver)

    event = latest_event(engine)
    assert deliveries.counts(engine)[DeliveryStatus.DELIVERED.value] == 200
    assert sum(deliveries.counts(engine).values()) == 200
    made = {d["subscription"]: d for d in deliveries.listing(engine, limit=1000)}
    retried = 0
    for subscriber in subscribers:
        got = heard[subscriber.path]
        check_requests(subscriber, got, event)
        delivery = made[subscriber.sub.id]
        assert delivery["status"] == DeliveryStatus.DELIVERED.value
        assert delivery["attempts"] == len(got), subscriber.path
        assert [r.status for r in got] == [503] * (len(got) - 1) + [204], subscriber.path
        if len(got) > 1:
            retried += 1
            # Each retry waited its back-off (10 s, 30 s, … less at most 20 % jitter).
            log = deliveries.show(engine, delivery["id"])["attempt_log"]
            times = [datetime.fromisoformat(a["at"]) for a in log]
            for n, (before, after) in enumerate(pairwise(times), start=1):
                assert after - before >= retry_wait(n, 0.0), (subscriber.path, times)
    assert retried > 20, "a 30 % failure rate should have made many deliveries retry"
    assert rounds > 2


# --- slow, throttled, gone, and dead receivers -------------------------------------------------


def test_a_slow_receiver_is_delivered_and_one_past_the_timeout_waits_for_a_retry(
        engine: Engine, config: settings.Settings) -> None:
    clock = Clock(T0)
    tuning = Tuning(timeout=0.5)
    with receiving() as receiver:
        slow, stalled = subscribe(engine, receiver, [Behaviour(delay=0.1),
                                                     Behaviour(delay=1.5)], now=T0)
        commands.declare(engine, [request()], now=T0, actor=ACTOR)
        one_round(engine, config, clock, tuning)

        assert of(engine, slow)["status"] == DeliveryStatus.DELIVERED.value
        waiting = of(engine, stalled)
        assert waiting["status"] == DeliveryStatus.PENDING.value
        assert waiting["last_detail"] == "timed out"
        assert datetime.fromisoformat(waiting["next_attempt_at"]) >= T0 + retry_wait(1, 0.0)
        log = deliveries.show(engine, waiting["id"])["attempt_log"]
        assert [(a["delivered"], a["detail"]) for a in log] == [(False, "timed out")]

        # The receiver catches up; the retry, when due, gets through.
        receiver.behave(stalled.path, Behaviour())
        rounds_until(lambda: settled(engine), engine, config, clock)
        receiver.wait_for(lambda: len(receiver.at(stalled.path)) == 2)
        heard = by_path(receiver)

    event = latest_event(engine)
    check_requests(slow, heard[slow.path], event)
    check_requests(stalled, heard[stalled.path], event)
    assert of(engine, stalled)["status"] == DeliveryStatus.DELIVERED.value
    assert of(engine, stalled)["attempts"] == 2


def test_retry_after_on_429_and_503_is_honoured(engine: Engine,
                                                 config: settings.Settings) -> None:
    clock = Clock(T0)
    with receiving() as receiver:
        # Each fails once, then takes what it is sent.
        busy, unavailable, failing = subscribe(engine, receiver, [
            Behaviour(script=[429], retry_after="120"),
            Behaviour(script=[503], retry_after="120"), Behaviour(script=[503])], now=T0)
        commands.declare(engine, [request()], now=T0, actor=ACTOR)
        one_round(engine, config, clock)

        for subscriber, status in ((busy, 429), (unavailable, 503)):
            delivery = of(engine, subscriber)
            assert delivery["status"] == DeliveryStatus.PENDING.value
            assert delivery["last_status"] == status
            asked = datetime.fromisoformat(delivery["next_attempt_at"])
            assert asked >= T0 + timedelta(seconds=120), subscriber.path
        # Without Retry-After the back-off alone decides: about 10 s.
        plain = datetime.fromisoformat(of(engine, failing)["next_attempt_at"])
        assert T0 + retry_wait(1, 0.0) <= plain < T0 + timedelta(seconds=120)

        # A minute on, only the one that did not ask for time is tried again.
        clock.move_to(T0 + timedelta(seconds=60))
        one_round(engine, config, clock)
        assert len(receiver.at(busy.path)) == len(receiver.at(unavailable.path)) == 1
        assert of(engine, failing)["status"] == DeliveryStatus.DELIVERED.value

        clock.move_to(T0 + timedelta(seconds=121))
        rounds_until(lambda: settled(engine), engine, config, clock)
        heard = by_path(receiver)

    event = latest_event(engine)
    for subscriber in (busy, unavailable, failing):
        check_requests(subscriber, heard[subscriber.path], event)
        assert of(engine, subscriber)["status"] == DeliveryStatus.DELIVERED.value
        assert of(engine, subscriber)["attempts"] == len(heard[subscriber.path])
    assert [r.status for r in heard[busy.path]] == [429, 204]
    assert [r.status for r in heard[unavailable.path]] == [503, 204]
    assert [r.status for r in heard[failing.path]] == [503, 204]


def test_a_gone_endpoint_disables_its_subscription(engine: Engine,
                                                   config: settings.Settings) -> None:
    clock = Clock(T0)
    with receiving() as receiver:
        gone, kept = subscribe(engine, receiver, [Behaviour(status=410), Behaviour()], now=T0)
        [declared] = commands.declare(engine, [request()], now=T0, actor=ACTOR)
        one_round(engine, config, clock)

        first = latest_event(engine)
        assert of(engine, gone)["status"] == DeliveryStatus.DROPPED.value
        assert of(engine, kept)["status"] == DeliveryStatus.DELIVERED.value
        now_gone = subscriptions.get(engine, gone.sub.id)
        assert now_gone.status is SubscriptionStatus.DISABLED
        assert "410" in (now_gone.disabled_reason or "")

        # The next level change goes to the subscriber still there, and not to the gone one.
        clock.move_to(T0 + timedelta(minutes=5))
        commands.cancel(engine, declared.id, reason="test", now=clock(), actor=ACTOR)
        rounds_until(lambda: settled(engine), engine, config, clock)
        second = latest_event(engine)
        heard = by_path(receiver)

    assert second != first
    made = deliveries.listing(engine, event=second)
    assert [d["subscription"] for d in made] == [kept.sub.id]
    assert made[0]["status"] == DeliveryStatus.DELIVERED.value
    assert [r.status for r in heard[gone.path]] == [410]
    assert len(heard[kept.path]) == 2
    check_requests(kept, heard[kept.path][1:], second)


def test_three_days_of_failures_end_dead_and_a_replay_delivers(
        engine: Engine, config: settings.Settings) -> None:
    clock = Clock(T0)
    with receiving() as receiver:
        [broken] = subscribe(engine, receiver, [Behaviour(status=500)], now=T0)
        commands.declare(engine, [request()], now=T0, actor=ACTOR)
        rounds_until(lambda: settled(engine), engine, config, clock)

        dead = of(engine, broken)
        assert dead["status"] == DeliveryStatus.DEAD.value
        attempts = len(receiver.at(broken.path))
        assert dead["attempts"] == attempts > 8
        log = deliveries.show(engine, dead["id"])["attempt_log"]
        first, last = (datetime.fromisoformat(log[i]["at"]) for i in (0, -1))
        assert timedelta(hours=48) < last - first <= timedelta(hours=72)
        assert deliveries.next_due(engine) is None

        receiver.behave(broken.path, Behaviour())
        clock.move_to(last + timedelta(hours=1))
        assert deliveries.replay(engine, now=clock(), actor=ACTOR,
                                 status=DeliveryStatus.DEAD) == 1
        one_round(engine, config, clock)
        heard = by_path(receiver)

    replayed = of(engine, broken)
    assert replayed["status"] == DeliveryStatus.DELIVERED.value
    assert replayed["attempts"] == len(heard[broken.path]) == attempts + 1
    assert [r.status for r in heard[broken.path]] == [500] * attempts + [204]
    check_requests(broken, heard[broken.path], latest_event(engine))


# --- worker processes ----------------------------------------------------------------------------


Rows = tuple[list[dict[str, Any]], list[dict[str, Any]]]
PLACEHOLDER = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def many(databases: Databases) -> Rows:
    """MANY webhook subscriptions made by subscriptions.add, as rows of `subscriptions` and
    `subscription_areas`. Adding them one by one takes ~10-30 s a database, so they are made
    once, and copied into each test's database (`copy_subscribers`)."""
    engine = connect(databases.ready("sqlite"))
    for i in range(MANY):
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=f"{PLACEHOLDER}/fan/{i}",
                          areas=[AREAS[i % len(AREAS)]], owner=OWNER,
                          language=LANGUAGES[i % 3], now=SET_UP_AT, allow_private=True)
    with engine.connect() as conn:
        rows = ([dict(r._mapping) for r in conn.execute(select(t.subscriptions))],
                [dict(r._mapping) for r in conn.execute(select(t.subscription_areas))])
    engine.dispose()
    return rows


def copy_subscribers(engine: Engine, rows: Rows, receiver: Receiver,
                     behaviour: Behaviour) -> list[Subscriber]:
    """The subscriptions of `rows` in `engine`'s database, their URLs at `receiver`."""
    subs, areas = rows
    paths = {row["id"]: row["target"].removeprefix(PLACEHOLDER) for row in subs}
    with engine.begin() as conn:
        conn.execute(insert(t.subscriptions), [
            {**row, "target": receiver.behave(paths[row["id"]], behaviour)} for row in subs])
        conn.execute(insert(t.subscription_areas), areas)
    secret_of = {row["id"]: row["secret"] for row in subs}
    return [Subscriber(sub, secret_of[sub.id], paths[sub.id])
            for sub in subscriptions.list_subscriptions(engine)]


class WorkerProcess:
    """`tocsin worker` as a real process, its output in a file."""

    def __init__(self, database_url: str, folder: Path, name: str, *options: str) -> None:
        assert TOCSIN.exists(), f"{TOCSIN} is missing; install the project into the venv"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(TOCSIN_DATABASE_URL=database_url, TOCSIN_ALLOW_PRIVATE_TARGETS="1",
                   TOCSIN_KEYS_DIR=str(folder / "keys"))
        self.output = folder / f"{name}.log"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen([str(TOCSIN), "worker", *options], env=env,
                                            stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns its exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the worker ignored SIGTERM:\n{self.log()[-3000:]}") from None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(database_url: str, name: str, *options: str) -> WorkerProcess:
        started.append(WorkerProcess(database_url, tmp_path, name, *options))
        return started[-1]

    yield start
    for process in started:
        if process.alive():
            process.kill()


def wait_until(predicate: Callable[[], bool], what: str, *, worker: WorkerProcess,
               timeout: float = 60.0) -> None:
    """Wait for `predicate` (a database that is down counts as not yet); fails at once if the
    worker exits, and after `timeout` seconds if it never happens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except DBAPIError:
            pass
        if not worker.alive():
            raise AssertionError(f"the worker exited ({worker.process.returncode}) while "
                                 f"waiting for {what}:\n{worker.log()[-6000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s:\n{worker.log()[-6000:]}")
        time.sleep(0.02)


def expire_leases(engine: Engine) -> None:
    """End every lease now, as a minute's wait would (`tocsin worker` has no --lease), so
    that the deliveries a worker took but never recorded are taken again at once."""
    with engine.begin() as conn:
        conn.execute(update(t.deliveries)
                     .where(t.deliveries.c.status == DeliveryStatus.LEASED.value)
                     .values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))


def delivered(engine: Engine) -> int:
    return deliveries.counts(engine)[DeliveryStatus.DELIVERED.value]


def check_everyone_heard(engine: Engine, receiver: Receiver,
                         subscribers: Sequence[Subscriber]) -> int:
    """Every subscriber heard the one event at least once, every duplicate under the first
    one's webhook-id, and every delivery ended delivered; returns how many duplicates."""
    event = latest_event(engine)
    heard = by_path(receiver)
    for subscriber in subscribers:
        check_requests(subscriber, heard[subscriber.path], event)
    counts = deliveries.counts(engine)
    assert counts[DeliveryStatus.DELIVERED.value] == len(subscribers), counts
    assert sum(counts.values()) == len(subscribers), counts
    return sum(len(heard[s.path]) for s in subscribers) - len(subscribers)


@pytest.mark.slow
def test_a_worker_killed_mid_fan_out_loses_nothing(
        engine: Engine, db_url: str, many: Rows, workers: Callable[..., WorkerProcess]) -> None:
    now = datetime.now(UTC)
    with receiving() as receiver:
        subscribers = copy_subscribers(engine, many, receiver, Behaviour(delay=0.005))
        # Small batches, so that some are recorded and others in flight when it is killed.
        first = workers(db_url, "worker-1", "--batch", "100")
        commands.declare(engine, [request()], now=now, actor=ACTOR)
        wait_until(lambda: delivered(engine) >= 300, "first deliveries", worker=first)
        first.kill()
        heard_by_first = receiver.count()
        assert heard_by_first < MANY, "the fan-out ended before the kill; slow the receiver"

        # The killed worker's leases would run out by themselves in a minute.
        expire_leases(engine)
        second = workers(db_url, "worker-2", "--batch", "100")
        wait_until(lambda: delivered(engine) == MANY, "complete fan-out", worker=second)
        assert second.stop() == 0, second.log()
        duplicates = check_everyone_heard(engine, receiver, subscribers)
    print(f"killed after {heard_by_first} requests; {duplicates} duplicates")


@pytest.fixture
def own_postgres() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("TOCSIN_REQUIRE_POSTGRES") == "1":
            pytest.fail("TOCSIN_REQUIRE_POSTGRES=1 but PostgreSQL is not installed "
                        "(sudo apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (sudo apt-get install postgresql)")
    with postgres_server(bindir) as server:
        yield server


@pytest.mark.slow
def test_postgresql_restarted_mid_fan_out(own_postgres: PgServer, many: Rows,
                                          workers: Callable[..., WorkerProcess]) -> None:
    url = own_postgres.create_database("tocsin")
    engine = connect(url)
    commands.initialise(engine, now=SET_UP_AT, actor="test-setup")
    commands.import_areas(engine, read_areas_csv(kazakhstan_areas_file()), now=SET_UP_AT,
                          actor="test-setup")
    now = datetime.now(UTC)
    try:
        with receiving() as receiver:
            subscribers = copy_subscribers(engine, many, receiver, Behaviour(delay=0.005))
            worker = workers(url, "worker", "--batch", "100")
            commands.declare(engine, [request()], now=now, actor=ACTOR)
            wait_until(lambda: delivered(engine) >= 200, "first deliveries", worker=worker)

            own_postgres.stop("fast")
            heard_before = receiver.count()
            assert heard_before < MANY, "the fan-out ended before the restart"
            # An outage of a few seconds, longer than the worker's pause after a failed round:
            # it must ride it out.
            time.sleep(OUTAGE)
            assert worker.alive(), ("the worker exited while PostgreSQL was down:\n"
                                    + worker.log()[-6000:])
            own_postgres.start()

            # Deliveries sent while their results could not be written go again when their
            # leases run out (the kill test covers that); the worker must carry on by itself.
            expire_leases(engine)
            wait_until(lambda: delivered(engine) == MANY, "complete fan-out after the restart",
                       worker=worker, timeout=120)
            assert worker.stop() == 0, worker.log()
            duplicates = check_everyone_heard(engine, receiver, subscribers)
    finally:
        engine.dispose()
    print(f"restarted after {heard_before} requests; {duplicates} duplicates")
