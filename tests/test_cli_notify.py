"""`tocsin subscriptions …`, `tocsin deliveries …` and `tocsin worker` through the CLI runner
(and `tocsin worker` / `tocsin serve` as real processes): the secret shown once, --json shapes,
webhooks delivered to a real receiver, retries, replays, and refusals that write nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from tests.conftest import Databases
from tests.helpers import dump
from tests.receiver import Behaviour, Receiver, receiving
from tests.web_server import free_port
from typer.testing import CliRunner

from tocsin import settings
from tocsin.cli.main import app
from tocsin.domain.notify import DeliveryStatus
from tocsin.notify.worker import Worker
from tocsin.store import tables

runner = CliRunner()
TOCSIN = Path(sys.executable).with_name("tocsin")
SUBSCRIPTION_KEYS = {"id", "channel", "target", "areas", "schemes", "language", "status",
                     "owner", "created_at", "confirmed_at", "disabled_at", "disabled_reason"}


def cli(url: str, *args: str, private: bool = False) -> Any:
    return runner.invoke(app, list(args), env={
        "TOCSIN_DATABASE_URL": url, "COLUMNS": "200", "TOCSIN_SMTP_URL": "",
        "TOCSIN_ALLOW_PRIVATE_TARGETS": "1" if private else "0"})


def ok_json(url: str, *args: str, private: bool = False) -> Any:
    result = cli(url, *args, "--json", private=private)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def flat(text: str) -> str:
    return " ".join(text.split())


def run_worker_round(url: str, engine: Engine, keys: Path) -> None:
    config = settings.Settings(database_url=url, sender="t", allow_private_targets=True,
                               keys_dir=str(keys))
    asyncio.run(Worker(engine, config).once())


def declare(url: str, area: str = "KZ-75", level: str = "critical") -> dict[str, Any]:
    [made] = ok_json(url, "declare", "--scheme", "kz-terror", "--level", level, "--area", area,
                     "--headline", "Level changes")
    return dict(made)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def test_webhook_secret_is_printed_once_and_never_listed(db_url: str) -> None:
    added = cli(db_url, "subscriptions", "add", "--webhook", "http://127.0.0.1:9/hook",
                "--area", "KZ-75", "--scheme", "kz-terror", private=True)
    assert added.exit_code == 0, added.output
    assert added.stdout.count("whsec_") == 1
    assert "will not be shown again" in flat(added.stdout)
    made = ok_json(db_url, "subscriptions", "add", "--webhook", "http://127.0.0.1:9/other",
                   "--area", "KZ", "--language", "kk", private=True)
    assert set(made) == SUBSCRIPTION_KEYS | {"secret"} and made["secret"].startswith("whsec_")
    assert made["channel"] == "webhook" and made["status"] == "active"
    assert made["areas"] == ["KZ"] and made["schemes"] == [] and made["language"] == "kk"
    assert made["owner"].startswith("local-operator:")

    listed = ok_json(db_url, "subscriptions", "list")
    assert [s["target"] for s in listed] == ["http://127.0.0.1:9/hook",
                                              "http://127.0.0.1:9/other"]
    assert all(set(s) == SUBSCRIPTION_KEYS for s in listed)
    table = cli(db_url, "subscriptions", "list")
    assert table.exit_code == 0 and "2 subscriptions" in table.stdout
    for column in ("id", "channel", "target", "areas", "schemes", "status", "created"):
        assert column in table.stdout
    assert "whsec_" not in table.output and "whsec_" not in json.dumps(listed)
    assert "whsec_" not in cli(db_url, "subscriptions", "list", "--all").output


def test_email_stays_pending_and_remove_disables(db_url: str) -> None:
    added = cli(db_url, "subscriptions", "add", "--email", "Aigerim@Example.KZ", "--area",
                "KZ-19", "--language", "ru")
    assert added.exit_code == 0, added.output
    text = flat(added.stdout)
    assert "confirmation message is queued" in text and "stays pending" in text
    assert "TOCSIN_SMTP_URL" in text and "whsec_" not in text
    [sub] = ok_json(db_url, "subscriptions", "list", "--channel", "email")
    assert sub["target"] == "Aigerim@example.kz" and sub["status"] == "pending"
    assert sub["language"] == "ru" and sub["confirmed_at"] is None
    assert ok_json(db_url, "subscriptions", "list", "--channel", "webhook") == []
    again = ok_json(db_url, "subscriptions", "add", "--email", "Aigerim@example.kz",
                    "--area", "KZ-19")
    assert again["id"] == sub["id"] and "secret" not in again

    stats = ok_json(db_url, "deliveries", "stats")
    assert set(stats["deliveries"]) == {s.value for s in DeliveryStatus}
    assert stats["unfanned_events"] >= 1 and set(stats) == {"deliveries", "unfanned_events",
                                                            "last_event"}
    removed = ok_json(db_url, "subscriptions", "remove", sub["id"])
    assert removed["status"] == "disabled" and removed["disabled_reason"] == "removed"
    assert ok_json(db_url, "subscriptions", "list") == []
    assert [s["id"] for s in ok_json(db_url, "subscriptions", "list", "--all")] == [sub["id"]]
    human = cli(db_url, "subscriptions", "remove", sub["id"])
    assert human.exit_code == 0 and f"removed subscription {sub['id']}" in human.stdout


def test_webhook_gets_its_delivery_end_to_end(db_url: str, engine: Engine, tmp_path: Path,
                                              receiver: Receiver) -> None:
    hook = receiver.behave("/hook", Behaviour(status=204))
    sub = ok_json(db_url, "subscriptions", "add", "--webhook", hook, "--area", "KZ-75",
                  private=True)
    declare(db_url)
    run_worker_round(db_url, engine, tmp_path / "keys")

    [got] = receiver.delivered("/hook")
    assert got.json["type"] == "levels.changed"
    assert got.json["data"]["subscription"] == sub["id"]
    assert [c["to"] for c in got.json["data"]["changes"]] == ["critical"]
    [d] = ok_json(db_url, "deliveries", "list")
    assert d["status"] == "delivered" and d["attempts"] == 1 and d["subscription"] == sub["id"]
    assert d["topic"] == "levels.changed" and d["target"] == hook and d["last_status"] == 204
    assert d["key"] == f"msg_{d['event']}_{sub['id']}"
    assert got.headers["webhook-id"] == d["key"]
    assert ok_json(db_url, "deliveries", "list", "--subscription", sub["id"]) == [d]
    assert ok_json(db_url, "deliveries", "list", "--event", str(d["event"])) == [d]
    assert ok_json(db_url, "deliveries", "list", "--status", "delivered", "--limit", "1") == [d]
    assert ok_json(db_url, "deliveries", "list", "--status", "dead") == []
    table = cli(db_url, "deliveries", "list")
    assert table.exit_code == 0 and "1 delivery" in table.stdout and "204" in table.stdout

    shown = ok_json(db_url, "deliveries", "show", str(d["id"]))
    [attempt] = shown.pop("attempt_log")
    assert shown == d
    assert attempt["delivered"] and attempt["status"] == 204 and attempt["worker"]
    assert attempt["duration_ms"] >= 0 and attempt["detail"].startswith("204")
    human = cli(db_url, "deliveries", "show", str(d["id"]))
    assert human.exit_code == 0, human.output
    for part in (f"delivery {d['id']}", "delivered after 1 attempt", "status code", "204",
                 attempt["worker"], f"{attempt['duration_ms']} ms", "levels.changed"):
        assert part in human.stdout

    watched = cli(db_url, "deliveries", "watch")
    assert watched.exit_code == 0, watched.output
    assert (f"event {d['event']}: 1 delivery, 1 delivered, 0 dead, 0 dropped, 0 remaining; "
            "settled in") in flat(watched.stdout)
    stats = ok_json(db_url, "deliveries", "stats")
    assert stats["deliveries"]["delivered"] == 1 and stats["last_event"] == d["event"]
    assert "delivered" in cli(db_url, "deliveries", "stats").stdout

    # A delivered one may be sent again; while it waits, it cannot be replayed twice.
    assert ok_json(db_url, "deliveries", "replay", str(d["id"])) == {"replayed": 1}
    busy = cli(db_url, "deliveries", "replay", str(d["id"]))
    assert busy.exit_code == 2 and "still queued or in flight" in flat(busy.stderr)


def test_failing_receiver_retries_then_dead_is_replayed(db_url: str, engine: Engine,
                                                        tmp_path: Path,
                                                        receiver: Receiver) -> None:
    hook = receiver.behave("/hook", Behaviour(status=500))
    ok_json(db_url, "subscriptions", "add", "--webhook", hook, "--area", "KZ", private=True)
    declare(db_url, area="KZ-75")
    run_worker_round(db_url, engine, tmp_path / "keys")
    assert len(receiver.at("/hook")) == 1 and receiver.delivered("/hook") == []
    [d] = ok_json(db_url, "deliveries", "list")
    assert d["status"] == "pending" and d["attempts"] == 1 and d["last_status"] == 500
    assert d["next_attempt_at"] is not None
    [attempt] = ok_json(db_url, "deliveries", "show", str(d["id"]))["attempt_log"]
    assert not attempt["delivered"] and attempt["status"] == 500

    with engine.begin() as conn:  # as if three days of attempts had failed
        conn.execute(update(tables.deliveries).where(tables.deliveries.c.id == d["id"])
                     .values(status=DeliveryStatus.DEAD.value))
    [dead] = ok_json(db_url, "deliveries", "list", "--status", "dead")
    assert dead["id"] == d["id"] and dead["next_attempt_at"] is None
    replayed = cli(db_url, "deliveries", "replay", "--dead")
    assert replayed.exit_code == 0 and "queued 1 delivery again" in replayed.stdout
    [again] = ok_json(db_url, "deliveries", "list")
    assert again["status"] == "pending" and again["next_attempt_at"] is not None

    receiver.behave("/hook", Behaviour(status=200))
    worker = threading.Thread(target=run_worker_round, args=(db_url, engine, tmp_path / "k"))
    worker.start()
    watched = cli(db_url, "deliveries", "watch", "--event", str(d["event"]))
    worker.join()
    assert watched.exit_code == 0, watched.output
    assert "1 delivered, 0 dead, 0 dropped, 0 remaining" in flat(watched.stdout)
    shown = ok_json(db_url, "deliveries", "show", str(d["id"]))
    assert shown["status"] == "delivered" and shown["attempts"] == 2
    assert [a["status"] for a in shown["attempt_log"]] == [500, 200]
    assert ok_json(db_url, "deliveries", "replay", "--dead") == {"replayed": 0}


def test_watch_without_deliveries_says_so(db_url: str) -> None:
    result = cli(db_url, "deliveries", "watch")
    assert result.exit_code == 0 and "nothing to watch" in result.stdout


BAD = [
    pytest.param(["subscriptions", "add", "--webhook", "http://127.0.0.1:9/h", "--email",
                  "a@example.kz", "--area", "KZ"], True, "exactly one of --webhook",
                 id="webhook-and-email"),
    pytest.param(["subscriptions", "add", "--area", "KZ"], True, "exactly one of --webhook",
                 id="neither"),
    pytest.param(["subscriptions", "add", "--webhook", "http://127.0.0.1:9/h", "--area",
                  "KZ-99"], True, "area 'KZ-99' is not known", id="unknown-area"),
    pytest.param(["subscriptions", "add", "--webhook", "http://127.0.0.1:9/h"], True,
                 "needs at least one area", id="no-area"),
    pytest.param(["subscriptions", "add", "--webhook", "http://127.0.0.1:9/h", "--area", "KZ",
                  "--scheme", "kz-terorr"], True, "scheme 'kz-terorr' is not known",
                 id="unknown-scheme"),
    pytest.param(["subscriptions", "add", "--webhook", "ftp://example.org/h", "--area", "KZ"],
                 True, "is not an absolute http(s) URL", id="bad-url"),
    pytest.param(["subscriptions", "add", "--webhook", "http://127.0.0.1:9/h", "--area", "KZ"],
                 False, "TOCSIN_ALLOW_PRIVATE_TARGETS=1", id="private-url"),
    pytest.param(["subscriptions", "add", "--email", "a@example.kz", "--area", "KZ",
                  "--language", "de"], True, "language 'de' is not one tocsin writes",
                 id="bad-language"),
    pytest.param(["subscriptions", "add", "--email", "not an address", "--area", "KZ"], True,
                 "is not an e-mail address", id="bad-email"),
    pytest.param(["subscriptions", "list", "--channel", "fax"], True, "channel 'fax'",
                 id="unknown-channel"),
    pytest.param(["subscriptions", "remove", "sub_0000"], True, "no subscription 'sub_0000'",
                 id="remove-unknown"),
    pytest.param(["deliveries", "list", "--status", "lost"], True,
                 "delivery status 'lost' is not known", id="unknown-status"),
    pytest.param(["deliveries", "show", "999"], True, "no delivery 999", id="show-unknown"),
    pytest.param(["deliveries", "replay"], True, "nothing to replay was named",
                 id="replay-nothing"),
    pytest.param(["deliveries", "replay", "999"], True, "no delivery 999",
                 id="replay-unknown"),
    pytest.param(["deliveries", "replay", "999", "--dead"], True, "not both",
                 id="replay-ids-and-dead"),
    pytest.param(["deliveries", "show", "9" * 30], True, f"no delivery {'9' * 30}",
                 id="show-id-past-64-bits"),
    pytest.param(["deliveries", "replay", "9" * 30], True, f"no delivery {'9' * 30}",
                 id="replay-id-past-64-bits"),
    pytest.param(["deliveries", "watch", "--event", "9" * 30], True, f"no event {'9' * 30}",
                 id="watch-unknown-event"),
    pytest.param(["worker", "--batch", "0"], True, "--batch", id="worker-batch-0"),
    pytest.param(["worker", "--per-endpoint", "0"], True, "--per-endpoint",
                 id="worker-per-endpoint-0"),
]


@pytest.mark.parametrize(("args", "private", "message"), BAD)
def test_bad_input_exits_2_and_writes_nothing(db_url: str, engine: Engine, args: list[str],
                                              private: bool, message: str) -> None:
    before = dump(engine)
    result = cli(db_url, *args, private=private)
    assert result.exit_code == 2, result.output
    assert message in flat(result.stderr)
    assert dump(engine) == before


def test_worker_process_delivers_and_stops_on_sigterm(databases: Databases, tmp_path: Path,
                                                      receiver: Receiver) -> None:
    url = databases.ready("sqlite")
    hook = receiver.behave("/hook", Behaviour(status=204))
    ok_json(url, "subscriptions", "add", "--webhook", hook, "--area", "KZ-75", private=True)
    env = {**os.environ, "TOCSIN_DATABASE_URL": url, "TOCSIN_ALLOW_PRIVATE_TARGETS": "1",
           "TOCSIN_KEYS_DIR": str(tmp_path / "keys"), "TOCSIN_SMTP_URL": ""}
    process = subprocess.Popen([str(TOCSIN), "worker", "--batch", "10", "--concurrency", "4"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        declare(url)
        receiver.wait_for(lambda: receiver.delivered("/hook"))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"tocsin worker is delivering notifications from {url}" in flat(out)
    assert "tocsin worker stopped" in out
    [d] = ok_json(url, "deliveries", "list")
    assert d["status"] == "delivered"


def test_serve_runs_a_worker_unless_told_not_to(databases: Databases, tmp_path: Path,
                                                receiver: Receiver) -> None:
    url = databases.ready("sqlite")
    hook = receiver.behave("/hook", Behaviour(status=204))
    ok_json(url, "subscriptions", "add", "--webhook", hook, "--area", "KZ", private=True)
    env = {**os.environ, "TOCSIN_DATABASE_URL": url, "TOCSIN_ALLOW_PRIVATE_TARGETS": "1",
           "TOCSIN_KEYS_DIR": str(tmp_path / "keys"), "TOCSIN_SMTP_URL": ""}
    for flags, expect_delivery in (["--no-worker"], False), ([], True):
        port = free_port()
        process = subprocess.Popen([str(TOCSIN), "serve", "--port", str(port), *flags],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            _wait_until_serving(process, f"http://127.0.0.1:{port}")
            if not expect_delivery:
                declare(url, area="KZ-75", level="high")
            else:
                receiver.wait_for(lambda: receiver.delivered("/hook"))
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, out
        assert ("with a notification worker" in out) is expect_delivery
        if not expect_delivery:
            # Nobody sent it: the delivery is still waiting for the worker of the next run.
            assert receiver.at("/hook") == []
            assert ok_json(url, "deliveries", "list") == []
            assert ok_json(url, "deliveries", "stats")["unfanned_events"] >= 1
    [d] = ok_json(url, "deliveries", "list")
    assert d["status"] == "delivered"


def _wait_until_serving(process: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/api/v1/schemes", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0]
            raise AssertionError(f"tocsin serve did not start:\n{output}")
        time.sleep(0.1)

