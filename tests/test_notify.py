"""Notifications: who hears what, when failed deliveries are tried again, level changes
announced with each change and at term boundaries, reminders, and signed webhooks."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import standardwebhooks
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from tests.helpers import request, utc
from tests.receiver import Behaviour, receiving

from tocsin import settings
from tocsin.demo import kazakhstan_areas_file
from tocsin.domain import notify
from tocsin.domain.access import Role
from tocsin.domain.area import AreaTree
from tocsin.domain.notify import Channel, DeliveryStatus, Outcome
from tocsin.ingest.areas import read_areas_csv
from tocsin.notify import signing
from tocsin.notify.worker import Worker
from tocsin.service import commands, deliveries, keys, levels, people, subscriptions
from tocsin.store import tables as t
from tocsin.store.database import writing

T0 = utc(2022, 1, 5, 9)


def tree() -> AreaTree:
    return AreaTree.build(read_areas_csv(kazakhstan_areas_file()))


# --- pure rules --------------------------------------------------------------------------


def test_back_off_grows_caps_and_stays_within_jitter() -> None:
    waits = [notify.retry_wait(n, 0.5).total_seconds() for n in range(1, 12)]
    assert waits[:4] == [10.0, 30.0, 90.0, 270.0]
    assert max(waits) == notify.LONGEST_WAIT.total_seconds()
    assert notify.retry_wait(3, 0.0).total_seconds() == pytest.approx(90 * 0.8)
    assert notify.retry_wait(3, 0.999999).total_seconds() == pytest.approx(90 * 1.2, rel=1e-5)
    with pytest.raises(ValueError, match="counts from 1"):
        notify.retry_wait(0, 0.5)


@given(st.lists(st.floats(min_value=0, max_value=0.999), min_size=1, max_size=40))
def test_attempts_stop_after_about_three_days(jitters: list[float]) -> None:
    first = now = T0
    failed = 0
    for jitter in jitters:
        failed += 1
        when = notify.next_attempt(failed_attempts=failed, first_attempt=first, now=now,
                                   jitter=jitter, outcome=Outcome(False, "503"))
        if when is None:
            assert now - first > notify.GIVE_UP_AFTER - notify.LONGEST_WAIT * 1.2
            return
        assert when > now and when - first <= notify.GIVE_UP_AFTER
        now = when
    assert failed == len(jitters)


def test_retry_after_is_honoured_and_gone_or_permanent_end_at_once() -> None:
    later = notify.next_attempt(failed_attempts=1, first_attempt=T0, now=T0, jitter=0.5,
                                outcome=Outcome(False, "429", 429, retry_after=600))
    assert later == T0 + timedelta(seconds=600)
    capped = notify.next_attempt(failed_attempts=1, first_attempt=T0, now=T0, jitter=0.5,
                                 outcome=Outcome(False, "503", 503, retry_after=10**9))
    assert capped == T0 + notify.LONGEST_RETRY_AFTER
    for outcome in (Outcome(False, "410", 410, gone=True), Outcome(False, "x", permanent=True)):
        assert notify.next_attempt(failed_attempts=1, first_attempt=T0, now=T0, jitter=0.1,
                                   outcome=outcome) is None


def test_a_region_hears_the_country_and_a_country_hears_its_regions() -> None:
    areas = tree()
    country = [{"scheme": "kz-terror", "area": "KZ-75", "from": None, "to": "critical"}]
    assert "KZ" in notify.audience(areas, ["KZ-75"])
    assert notify.relevant(areas, country, ["KZ-75"], []) == country
    assert notify.relevant(areas, country, ["KZ"], []) == country
    assert notify.relevant(areas, country, ["KZ-19"], []) == []
    assert notify.relevant(areas, country, ["KZ-75"], ["uk-terror"]) == []
    assert notify.relevant(areas, country, ["KZ-75"], ["kz-terror"]) == country


def test_idempotency_key_is_stable() -> None:
    assert notify.idempotency_key(7, "sub_1") == notify.idempotency_key(7, "sub_1")
    assert notify.idempotency_key(7, "sub_1") != notify.idempotency_key(8, "sub_1")


def test_standard_webhooks_signatures_verify_with_the_reference_library() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    key = ed25519.Ed25519PrivateKey.generate()
    body = b'{"type":"levels.changed"}'
    stamp = int(datetime.now(UTC).timestamp())  # the library checks it against its clock
    headers = signing.headers(msg_id="msg_1_sub_x", timestamp=stamp, body=body,
                              secret=secret, key=key)
    v1, v1a = headers["webhook-signature"].split(" ")
    assert v1.startswith("v1,") and v1a.startswith("v1a,")
    wh = standardwebhooks.Webhook(secret)
    assert wh.verify(body, headers) == {"type": "levels.changed"}
    signed = signing.signed_content("msg_1_sub_x", stamp, body)
    key.public_key().verify(base64.b64decode(v1a[4:]), signed)
    tampered = dict(headers, **{"webhook-signature": v1})
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        wh.verify(body + b" ", tampered)


# --- announcing levels -------------------------------------------------------------------


def events(engine: Engine, topic: str = notify.LEVELS_CHANGED) -> list[dict]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [r.payload for r in conn.execute(select(t.outbox.c.payload)
                                                .where(t.outbox.c.topic == topic)
                                                .order_by(t.outbox.c.id))]


def test_a_publication_announces_each_changed_area_once(engine: Engine) -> None:
    assert events(engine) == []  # installing schemes and areas is silent
    commands.declare(engine, [request("critical", ("KZ",))], now=T0, actor="t")
    [event] = events(engine)
    changed = {(c["area"], c["from"], c["to"]) for c in event["changes"]}
    assert ("KZ", None, "critical") in changed and ("KZ-75", None, "critical") in changed
    assert len(changed) == len(tree())
    with writing(engine) as conn:
        assert levels.check(conn, T0 + timedelta(minutes=1)) == []
    assert len(events(engine)) == 1


def test_terms_starting_and_ending_are_announced_by_the_schedule(engine: Engine) -> None:
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    commands.declare(engine, [request("high", ("KZ-75",), effective=start, expires=end)],
                     now=T0, actor="t")
    assert events(engine) == []
    assert levels.next_check(engine) == start
    assert levels.run_due(engine, start - timedelta(seconds=1)) is None
    assert levels.run_due(engine, start) == [
        {"scheme": "kz-terror", "area": "KZ-75", "from": None, "to": "high"}]
    assert levels.next_check(engine) == end
    assert levels.run_due(engine, end + timedelta(seconds=3)) == [
        {"scheme": "kz-terror", "area": "KZ-75", "from": "high", "to": None}]
    assert levels.next_check(engine) is None
    assert [e["changes"][0]["to"] for e in events(engine)] == ["high", None]


def test_a_cancellation_is_announced(engine: Engine) -> None:
    [d] = commands.declare(engine, [request("moderate", ("KZ-19",))], now=T0, actor="t")
    commands.cancel(engine, d.id, reason="over", now=T0 + timedelta(hours=1), actor="t")
    assert [e["changes"][0]["to"] for e in events(engine)] == ["moderate", None]


def test_the_issuer_is_reminded_once_before_the_term_ends(engine: Engine) -> None:
    people.add_user(engine, "aigul", "correct horse battery staple", [Role.ISSUER], ["KZ"],
                    break_glass=False, now=T0, by=None, actor="t", email="aigul@example.kz")
    ends = T0 + timedelta(days=3)
    [d] = commands.declare(engine, [request("high", ("KZ-75",), expires=ends)], now=T0,
                           actor="user:aigul")
    assert events(engine, notify.TERM_ENDING) == []
    assert levels.next_check(engine) == ends - levels.REMIND_BEFORE
    levels.run_due(engine, ends - timedelta(hours=23))
    levels.run_due(engine, ends - timedelta(hours=22))
    [reminder] = events(engine, notify.TERM_ENDING)
    assert reminder["declaration"] == d.id and reminder["email"] == "aigul@example.kz"
    fanned = deliveries.fan_out(engine, ends - timedelta(hours=22))
    assert sum(n for _, n in fanned) == 1
    [row] = deliveries.listing(engine)
    assert (row["channel"], row["target"], row["subscription"]) == (
        "email", "aigul@example.kz", None)


# --- webhooks end to end -----------------------------------------------------------------


def config(engine: Engine, tmp_path: Path, *, allow_private: bool = True) -> settings.Settings:
    return settings.Settings(database_url=engine.url.render_as_string(hide_password=False),
                             sender="t", allow_private_targets=allow_private,
                             keys_dir=str(tmp_path / "keys"), public_url="https://levels.test")


def test_a_countrywide_level_reaches_a_regional_webhook_signed(engine: Engine,
                                                               tmp_path: Path) -> None:
    keys.create_document_key(tmp_path / "keys", now=T0)
    signer = keys.document_signer(tmp_path / "keys")
    assert signer is not None
    with receiving() as receiver:
        url = receiver.behave("/almaty", Behaviour())
        other = receiver.behave("/atyrau", Behaviour())
        sub, secret = subscriptions.add(engine, channel=Channel.WEBHOOK, target=url,
                                        areas=["KZ-75"], owner="t", now=T0, allow_private=True)
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=other, areas=["KZ-23"],
                          schemes=["uk-terror"], owner="t", now=T0, allow_private=True)
        now = datetime.now(UTC)
        [d] = commands.declare(engine, [request("critical", ("KZ",))], now=now, actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        [got] = receiver.at("/almaty")
        assert receiver.at("/atyrau") == []  # another scheme: nothing
    headers = {k.lower(): v for k, v in got.headers.items()}
    body = standardwebhooks.Webhook(secret).verify(got.body, headers)
    assert body["type"] == "levels.changed"
    [change] = body["data"]["changes"]
    assert change["area"] == "KZ-75" and change["to"] == "critical"
    assert change["declaration"] == d.id and change["raised"] is True
    assert change["url"] == "https://levels.test/en/areas/KZ-75"
    v1a = headers["webhook-signature"].split(" ")[1][4:]
    signer.private_key.public_key().verify(base64.b64decode(v1a), signing.signed_content(
        headers["webhook-id"], int(headers["webhook-timestamp"]), got.body))
    assert headers["webhook-id"] == notify.idempotency_key(
        body["data"]["event"], sub.id)
    [row] = deliveries.listing(engine)
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["last_status"] == 204


def test_a_private_address_is_refused_at_delivery_when_not_allowed(engine: Engine,
                                                                  tmp_path: Path) -> None:
    """A name registered while allowed (or one that re-resolves later) is checked again."""
    with receiving() as receiver:
        url = receiver.behave("/hook", Behaviour()).replace("127.0.0.1", "localhost")
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                          owner="t", now=T0, allow_private=True)
        commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC),
                         actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path, allow_private=False)).once())
        assert receiver.received == []
    [row] = deliveries.listing(engine)
    assert row["status"] == DeliveryStatus.DEAD.value
    assert "private address" in row["last_detail"]


def test_a_webhook_answering_410_is_disabled(engine: Engine, tmp_path: Path) -> None:
    with receiving() as receiver:
        url = receiver.behave("/gone", Behaviour(status=410))
        sub, _ = subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                                   owner="t", now=T0, allow_private=True)
        commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC), actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        commands.declare(engine, [request("critical", ("KZ",))], now=datetime.now(UTC),
                         actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        assert len(receiver.at("/gone")) == 1
    assert subscriptions.get(engine, sub.id).status is notify.SubscriptionStatus.DISABLED
    assert [r["status"] for r in deliveries.listing(engine)] == ["dropped"]


def test_subscriptions_refuse_bad_input_and_write_nothing(engine: Engine) -> None:
    from tests.helpers import dump

    from tocsin.domain.errors import InvalidInput, NotFound
    before = dump(engine)
    bad = [
        dict(channel=Channel.WEBHOOK, target="ftp://x.example/", areas=["KZ"]),
        dict(channel=Channel.WEBHOOK, target="http://127.0.0.1:9/", areas=["KZ"]),
        dict(channel=Channel.WEBHOOK, target="http://[::127.0.0.1]:9/", areas=["KZ"]),
        dict(channel=Channel.WEBHOOK, target="http://[64:ff9b::127.0.0.1]/", areas=["KZ"]),
        dict(channel=Channel.WEBHOOK, target="http://[2002:7f00:1::]/", areas=["KZ"]),
        dict(channel=Channel.WEBHOOK, target="https://u:p@example.org/", areas=["KZ"]),
        dict(channel=Channel.EMAIL, target="not an address", areas=["KZ"]),
        dict(channel=Channel.EMAIL, target="a@example.kz", areas=[]),
        dict(channel=Channel.PUSH, target="https://push.example/x", areas=["KZ"],
             details={"p256dh": "!!", "auth": "x"}),
    ]
    for kwargs in bad:
        with pytest.raises(InvalidInput):
            subscriptions.add(engine, owner="t", now=T0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        subscriptions.add(engine, channel=Channel.EMAIL, target="a@example.kz",
                          areas=["KZ-99"], owner="t", now=T0)
    with pytest.raises(NotFound):
        subscriptions.add(engine, channel=Channel.EMAIL, target="a@example.kz",
                          areas=["KZ"], schemes=["nope"], owner="t", now=T0)
    assert dump(engine) == before


def test_email_needs_confirmation_by_a_signed_link(engine: Engine) -> None:
    from tocsin.domain.errors import Forbidden
    sub, secret = subscriptions.add(engine, channel=Channel.EMAIL, target="Reader@Example.KZ",
                                    areas=["KZ-75"], owner="public", now=T0)
    assert secret == "" and sub.target == "Reader@example.kz"
    assert sub.status is notify.SubscriptionStatus.PENDING
    again, _ = subscriptions.add(engine, channel=Channel.EMAIL, target="Reader@example.kz",
                                 areas=["KZ-75"], owner="public", now=T0)
    assert again.id == sub.id
    # at most one confirmation an hour to an address still pending (issue 15, item 12)
    assert len(events(engine, notify.CONFIRM)) == 1
    subscriptions.add(engine, channel=Channel.EMAIL, target="Reader@example.kz",
                      areas=["KZ-75"], owner="public", now=T0 + timedelta(hours=1, seconds=1))
    assert len(events(engine, notify.CONFIRM)) == 2
    with engine.connect() as conn:
        key = subscriptions.secret_of(conn, sub.id)
    with pytest.raises(Forbidden):
        subscriptions.confirm(engine, sub.id, subscriptions.link_signature(
            key, sub.id, "unsubscribe"), now=T0)
    done = subscriptions.confirm(engine, sub.id, subscriptions.link_signature(
        key, sub.id, "confirm"), now=T0)
    assert done.status is notify.SubscriptionStatus.ACTIVE
    gone = subscriptions.unsubscribe(engine, sub.id, subscriptions.link_signature(
        key, sub.id, "unsubscribe"), now=T0)
    assert gone.status is notify.SubscriptionStatus.DISABLED


def test_replay_requeues_dead_deliveries(engine: Engine, tmp_path: Path) -> None:
    with receiving() as receiver:
        url = receiver.behave("/down", Behaviour(status=500))
        subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                          owner="t", now=T0, allow_private=True)
        commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC), actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        [row] = deliveries.listing(engine)
        assert row["status"] == "pending" and row["attempts"] == 1
        with writing(engine) as conn:
            conn.execute(t.deliveries.update().values(status="dead"))
        receiver.behave("/down", Behaviour(status=204))
        assert deliveries.replay(engine, now=datetime.now(UTC), actor="t",
                                 status=DeliveryStatus.DEAD) == 1
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
    shown = deliveries.show(engine, row["id"])
    assert shown["status"] == "delivered"
    assert [a["status"] for a in shown["attempt_log"]] == [500, 204]


def test_an_upgraded_database_records_levels_in_force_silently(engine: Engine) -> None:
    commands.declare(engine, [request("critical", ("KZ",))], now=T0, actor="t")
    with writing(engine) as conn:
        conn.execute(t.announced_levels.delete())
        conn.execute(t.schedule.update().values(baselined=False))
    assert levels.run_due(engine, T0 + timedelta(minutes=1)) == []
    assert len(events(engine)) == 1


def test_the_console_desk_lists_terms_ending_within_a_day(engine: Engine) -> None:
    from tocsin.service import authority
    user = people.add_user(engine, "aigul", "correct horse battery staple", [Role.ISSUER],
                           ["KZ-75"], break_glass=False, now=T0, by=None, actor="t")
    ends = T0 + timedelta(days=2)
    [near] = commands.declare(engine, [request("high", ("KZ-75",), expires=ends)], now=T0,
                              actor="t")
    commands.declare(engine, [request("moderate", ("KZ-19",), expires=ends)], now=T0, actor="t")
    principal = user.principal()
    assert authority.desk(engine, principal, now=T0).ending == []
    soon = authority.desk(engine, principal, now=ends - timedelta(hours=3)).ending
    assert [d.id for d in soon] == [near.id]  # the other is outside her jurisdiction


def test_the_publics_subscriptions_do_not_make_the_servers_rebuild(engine: Engine) -> None:
    """A busy subscribe form must not move the version every server rebuilds on."""
    def version() -> tuple[int, int]:
        with engine.connect() as conn:
            state = conn.execute(select(t.state.c.version, t.state.c.audit_seq)).one()
        return int(state.version), int(state.audit_seq)

    before = version()
    sub, _ = subscriptions.add(engine, channel=Channel.EMAIL, target="reader@example.kz",
                               areas=["KZ-75"], owner=subscriptions.PUBLIC, now=T0)
    with engine.connect() as conn:
        key = subscriptions.secret_of(conn, sub.id)
    subscriptions.confirm(engine, sub.id, subscriptions.link_signature(key, sub.id, "confirm"),
                          now=T0)
    assert version() == before and len(events(engine, notify.CONFIRM)) == 1
    subscriptions.add(engine, channel=Channel.WEBHOOK, target="http://127.0.0.1:9/h",
                      areas=["KZ"], owner="user:newsroom", now=T0, allow_private=True)
    assert version()[1] == before[1] + 1  # a token holder's webhook is audited


def test_websub_subscribers_whose_lease_ran_out_are_dropped_at_the_next_event(
        engine: Engine) -> None:
    from tocsin.service import websub
    topic = "https://levels.test/feeds/alerts.atom"
    websub.activate(engine, topic, "https://a.example/cb", None, timedelta(minutes=5),
                    now=T0, etag=None)
    websub.activate(engine, topic, "https://b.example/cb", None, timedelta(days=1),
                    now=T0, etag=None)
    commands.declare(engine, [request("high", ("KZ",))], now=T0 + timedelta(hours=1),
                     actor="t")
    deliveries.fan_out(engine, T0 + timedelta(hours=1))
    assert {r["target"] for r in deliveries.listing(engine)} == {"https://b.example/cb"}
    with engine.connect() as conn:
        left = conn.execute(select(t.websub_subscriptions.c.callback)).scalars().all()
    assert left == ["https://b.example/cb"]


def test_a_replayed_delivery_of_a_removed_subscription_is_not_sent(engine: Engine,
                                                                    tmp_path: Path) -> None:
    with receiving() as receiver:
        url = receiver.behave("/hook", Behaviour(status=500))
        sub, _ = subscriptions.add(engine, channel=Channel.WEBHOOK, target=url, areas=["KZ"],
                                   owner="t", now=T0, allow_private=True)
        commands.declare(engine, [request("high", ("KZ",))], now=datetime.now(UTC), actor="t")
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        subscriptions.remove(engine, sub.id, now=datetime.now(UTC), actor="t")
        [row] = deliveries.listing(engine)
        assert row["status"] == "dropped"
        assert deliveries.replay(engine, now=datetime.now(UTC), actor="t",
                                 ids=[row["id"]]) == 1
        asyncio.run(Worker(engine, config(engine, tmp_path)).once())
        assert len(receiver.at("/hook")) == 1  # only the attempt before the removal
    [row] = deliveries.listing(engine)
    assert row["status"] == "dropped" and "has ended (removed)" in row["last_detail"]
