"""Browser push through a real push service on loopback: what the browser decrypts, the
VAPID signature, how the service's answers become outcomes, and the VAPID key on disk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.push_service import Browser, PushService, VapidRefused, running_push_service
from tests.web_server import free_port

from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import (
    CONFIRM,
    LEVELS_CHANGED,
    Channel,
    Job,
    Links,
    Outcome,
    Subscription,
)
from tocsin.domain.notify import SubscriptionStatus as Status
from tocsin.notify.push import WORDS, PushSender
from tocsin.service.keys import KeyUnusable, VapidKey, vapid_key

SITE = "https://tocsin.example.kz"
CONTACT = "mailto:alerts@example.kz"
NAMES = {
    "kk": ("Алматы облысы", "Террористік қауіп деңгейі", "Орташа", "Жоғары"),
    "ru": ("Алматинская область", "Уровень террористической опасности", "Умеренный",
           "Высокий"),
    "en": ("Almaty Region", "Terrorism threat level", "Moderate", "High"),
}


def change(language: str, area: str = "KZ-19", *, before: str | None = "moderate",
           after: str | None = "high", **more: Any) -> dict[str, Any]:
    """A level change as the worker describes it to a subscriber in `language`."""
    area_name, scheme_name, moderate, high = NAMES[language]
    names = {"moderate": moderate, "high": high, None: None}
    return {"scheme": "kz-terror", "scheme_name": scheme_name, "area": area,
            "area_name": area_name if area == "KZ-19" else area, "from": before,
            "from_name": names[before], "to": after, "to_name": names[after],
            "colour": "#FF8C00" if after == "high" else None, "declaration": 7,
            "url": f"{SITE}/areas/{area}", **more}


def job(browser: Browser, changes: list[dict[str, Any]], *, language: str = "en",
        topic: str = LEVELS_CHANGED) -> Job:
    info = browser.subscription_info()
    subscription = Subscription(
        id="sub_1", channel=Channel.PUSH, target=info["endpoint"], areas=("KZ-19",),
        schemes=(), language=language, status=Status.ACTIVE, owner="public",
        created_at=datetime(2025, 1, 1, tzinfo=UTC), details=info["keys"])
    return Job(delivery_id=1, event_id=7, topic=topic, payload={"changes": []},
               channel=Channel.PUSH, target=info["endpoint"], subscription=subscription,
               attempt=1, key="msg_7_sub_1", changes=changes,
               links=Links(site=SITE, unsubscribe=f"{SITE}/unsubscribe/sub_1"))


def deliver(vapid: VapidKey, the_job: Job, **options: Any) -> Outcome:
    async def go() -> Outcome:
        sender = PushSender(vapid, contact=CONTACT, **{"allow_private": True, **options})
        try:
            return await sender.send(the_job)
        finally:
            await sender.close()
    return asyncio.run(go())


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def vapid(keys_dir: Path) -> VapidKey:
    key = vapid_key(keys_dir, create=True)
    assert key is not None
    return key


@pytest.fixture
def service() -> Iterator[PushService]:
    with running_push_service() as running:
        yield running


@pytest.mark.parametrize(("language", "title", "body"), [
    ("kk", "Алматы облысы: Жоғары", "Террористік қауіп деңгейі: Орташа → Жоғары"),
    ("ru", "Алматинская область: Высокий",
     "Уровень террористической опасности: Умеренный → Высокий"),
    ("en", "Almaty Region: High", "Terrorism threat level: Moderate → High"),
])
def test_a_push_decrypts_to_the_message_in_the_subscribers_language(
        vapid: VapidKey, service: PushService, language: str, title: str, body: str) -> None:
    browser = service.browser()
    changes = [change(language)]
    outcome = deliver(vapid, job(browser, changes, language=language))
    assert outcome == Outcome(True, "201 Created", 201)
    [request] = service.received
    assert request.path == browser.endpoint.removeprefix(service.url)
    assert browser.decrypt(request.body) == {
        "title": title, "body": body, "url": f"{SITE}/areas/KZ-19", "tag": "msg_7_sub_1",
        "changes": changes}
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "86400"


def test_every_language_has_every_word() -> None:
    assert set(WORDS) == {"kk", "ru", "en"}
    assert all(words.keys() == WORDS["en"].keys() for words in WORDS.values())


def test_several_changes_name_the_subscribers_own_area_and_count_the_rest(
        vapid: VapidKey, service: PushService) -> None:
    browser = service.browser()
    inner = change("ru", "KZ-19-01")
    own = change("ru", before="high", after=None)
    deliver(vapid, job(browser, [inner, own], language="ru"))
    message = browser.decrypt(service.received[0].body)
    assert message["title"] == "Алматинская область: уровня нет"
    assert message["body"] == "Уровень террористической опасности: Высокий → уровня нет\nи ещё 1"
    assert message["changes"] == [own, inner]


def test_a_message_too_long_for_a_push_leaves_out_the_last_changes(
        vapid: VapidKey, service: PushService) -> None:
    browser = service.browser()
    changes = [change("kk", f"KZ-19-{n:02}") for n in range(40)]
    outcome = deliver(vapid, job(browser, changes, language="kk"))
    assert outcome.delivered
    body = service.received[0].body
    assert len(body) <= 4096
    message = browser.decrypt(body)
    assert message["body"].endswith("тағы 39")
    assert 0 < len(message["changes"]) < 40
    assert message["changes"] == changes[:len(message["changes"])]


def test_urgency_is_high_when_a_level_is_raised(vapid: VapidKey, service: PushService) -> None:
    browser = service.browser()
    deliver(vapid, job(browser, [change("en", before=None, after="moderate")]))
    deliver(vapid, job(browser, [change("en", before="high", after="moderate")]))
    deliver(vapid, job(browser, [change("en", raised=True)]))
    assert [r.headers["urgency"] for r in service.received] == ["high", "normal", "high"]


def test_the_vapid_signature_verifies_with_the_key_from_the_store(
        vapid: VapidKey, keys_dir: Path, service: PushService) -> None:
    deliver(vapid, job(service.browser(), [change("en")]))
    headers = service.received[0].headers
    stored = vapid_key(keys_dir, create=False)
    assert stored is not None
    claims = service.verify_vapid(headers, stored.public_key_b64url)
    assert claims["sub"] == CONTACT
    assert claims["aud"] == service.url
    other = vapid_key(keys_dir.parent / "other", create=True)
    assert other is not None
    with pytest.raises(VapidRefused, match="not the expected key"):
        service.verify_vapid(headers, other.public_key_b64url)
    forged = headers["authorization"].replace(f"k={vapid.public_key_b64url}",
                                              f"k={other.public_key_b64url}")
    with pytest.raises(VapidRefused, match="signature does not hold"):
        service.verify_vapid({"authorization": forged}, other.public_key_b64url)


@pytest.mark.parametrize("status", [410, 404])
def test_an_endpoint_that_is_gone_ends_the_subscription(
        vapid: VapidKey, service: PushService, status: int) -> None:
    service.answer(status)
    outcome = deliver(vapid, job(service.browser(), [change("en")]))
    assert (outcome.delivered, outcome.gone, outcome.permanent, outcome.status) == (
        False, True, False, status)


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_service_is_tried_again_after_the_wait_it_asks_for(
        vapid: VapidKey, service: PushService, status: int) -> None:
    service.answer(status, {"Retry-After": "30"})
    outcome = deliver(vapid, job(service.browser(), [change("en")]))
    assert (outcome.delivered, outcome.gone, outcome.permanent) == (False, False, False)
    assert (outcome.status, outcome.retry_after) == (status, 30)


@pytest.mark.parametrize("status", [400, 413])
def test_a_message_the_service_refuses_is_not_sent_again(
        vapid: VapidKey, service: PushService, status: int) -> None:
    service.answer(status)
    outcome = deliver(vapid, job(service.browser(), [change("en")]))
    assert (outcome.delivered, outcome.gone, outcome.permanent) == (False, False, True)


def test_nothing_listening_is_tried_again(vapid: VapidKey) -> None:
    browser = Browser(f"http://127.0.0.1:{free_port()}/push/nobody")
    outcome = deliver(vapid, job(browser, [change("en")]))
    assert (outcome.delivered, outcome.gone, outcome.permanent, outcome.status) == (
        False, False, False, None)
    assert "cannot reach" in outcome.detail


def test_a_service_that_does_not_answer_is_tried_again(
        vapid: VapidKey, service: PushService) -> None:
    service.hold = True
    outcome = deliver(vapid, job(service.browser(), [change("en")]), timeout=0.2)
    assert (outcome.delivered, outcome.permanent, outcome.detail) == (
        False, False, "timed out after 0.2 s")


def test_unusable_browser_keys_are_permanent(vapid: VapidKey, service: PushService) -> None:
    the_job = job(service.browser(), [change("en")])
    assert the_job.subscription is not None
    broken = replace(the_job.subscription,
                     details={"p256dh": "bm90IGEga2V5", "auth": "c2VjcmV0"})
    outcome = deliver(vapid, replace(the_job, subscription=broken))
    assert (outcome.delivered, outcome.permanent) == (False, True)
    assert service.received == []


def test_push_carries_level_changes_only(vapid: VapidKey, service: PushService) -> None:
    outcome = deliver(vapid, job(service.browser(), [], topic=CONFIRM))
    assert (outcome.delivered, outcome.permanent) == (False, True)
    assert service.received == []


@pytest.mark.parametrize("contact", ["alerts@example.kz", "http://example.kz", ""])
def test_the_contact_must_be_mailto_or_https(vapid: VapidKey, contact: str) -> None:
    with pytest.raises(InvalidInput, match="push contact"):
        PushSender(vapid, contact=contact, allow_private=False)


def test_the_vapid_key_is_made_once_and_kept(keys_dir: Path) -> None:
    assert vapid_key(keys_dir, create=False) is None
    made = vapid_key(keys_dir, create=True)
    again = vapid_key(keys_dir, create=True)
    assert made is not None
    assert again is not None
    assert made.public_key_b64url == again.public_key_b64url
    assert len(made.public_key_b64url) == 87  # 65 octets, base64url without padding
    assert "=" not in made.public_key_b64url
    assert (keys_dir.stat().st_mode & 0o777, (keys_dir / "vapid.key.pem").stat().st_mode
            & 0o777) == (0o700, 0o600)


def test_a_vapid_key_open_to_others_is_refused(keys_dir: Path) -> None:
    vapid_key(keys_dir, create=True)
    (keys_dir / "vapid.key.pem").chmod(0o644)
    with pytest.raises(KeyUnusable, match="open to group or others") as refused:
        vapid_key(keys_dir, create=True)
    assert refused.value.fix == f"chmod 600 {keys_dir / 'vapid.key.pem'}"


def test_a_vapid_file_that_is_not_a_p256_key_is_refused(keys_dir: Path) -> None:
    vapid_key(keys_dir, create=True)
    (keys_dir / "vapid.key.pem").write_text(json.dumps({"not": "a key"}))
    with pytest.raises(KeyUnusable, match="not a readable PEM private key"):
        vapid_key(keys_dir, create=False)
