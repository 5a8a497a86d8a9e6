"""Subscribing on the public pages, over a real socket with a real SMTP server: the area
page's form, the confirmation e-mail and its double opt-in link, a level e-mail, its one-click
unsubscribe, and every refusal (nothing written), in Kazakh, Russian and English."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine, update
from tests.helpers import dump, request
from tests.smtp_server import SmtpServer
from tests.web_server import running

from tocsin import settings
from tocsin.domain.notify import Channel, Subscription, SubscriptionStatus
from tocsin.notify.worker import Worker
from tocsin.render import i18n, urls
from tocsin.service import commands, keys, subscriptions
from tocsin.store import tables
from tocsin.store.database import reading
from tocsin.web.app import create_app
from tocsin.web.snapshot import build

pytest_plugins = ("tests.smtp_server",)

AREA = "KZ-75"
NAMES = {"kk": "Алматы", "ru": "Алматы", "en": "Almaty"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
READER = "reader@example.kz"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def keys_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "keys"
    monkeypatch.setenv("TOCSIN_KEYS_DIR", str(folder))
    return folder


@pytest.fixture
def base(engine: Engine, keys_dir: Path) -> Iterator[str]:
    with running(create_app(engine)) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as c:
        yield c


def worker_round(engine: Engine, db_url: str, keys_dir: Path, smtp: SmtpServer,
                 base: str) -> None:
    config = settings.Settings(database_url=db_url, sender="t", allow_private_targets=True,
                               keys_dir=str(keys_dir), smtp_url=smtp.url, public_url=base,
                               mail_from="alerts@example.kz")
    asyncio.run(Worker(engine, config).once())


def public(engine: Engine) -> list[Subscription]:
    return subscriptions.list_subscriptions(engine, owner="public", include_disabled=True)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def text(response: httpx.Response) -> str:
    """The page's words, tags dropped."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def form_action(response: httpx.Response) -> str:
    [action] = re.findall(r'<form class="notice" method="post" action="([^"]+)">',
                          response.text)
    return unescape(action)


def signed(engine: Engine, sub_id: str, purpose: str) -> str:
    with reading(engine) as conn:
        return subscriptions.signed_path(conn, sub_id, purpose)


def add(engine: Engine, lang: str = "en", channel: Channel = Channel.EMAIL) -> Subscription:
    details = {"p256dh": "BPubKey", "auth": "AuthKey"} if channel is Channel.PUSH else None
    target = "http://127.0.0.1:9/push/1" if channel is Channel.PUSH else READER
    sub, _ = subscriptions.add(engine, channel=channel, target=target, areas=[AREA],
                               owner="public", language=lang, now=now(), details=details,
                               allow_private=True)
    return sub


def private_answer(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert "content-security-policy" in response.headers
    assert response.headers["x-robots-tag"] == "noindex"


# ---------------------------------------------------------------------------- the whole way


def test_subscribe_confirm_hear_a_change_and_unsubscribe_in_one_click(
        engine: Engine, db_url: str, keys_dir: Path, base: str, client: httpx.Client,
        smtp_server: SmtpServer) -> None:
    page = client.get(f"/ru/areas/{AREA}")
    assert '<form class="subscribe" method="post" action="/subscriptions/email">' in page.text
    key = keys.vapid_key(keys_dir, create=False)
    assert key is not None and f'data-push-key="{key.public_key_b64url}"' in page.text

    sent = client.post("/subscriptions/email", headers={**FORM, "origin": base},
                       data={"email": READER, "area": AREA, "language": "ru"})
    assert sent.status_code == 303
    private_answer(sent)
    inbox = client.get(sent.headers["location"])
    assert inbox.status_code == 200
    assert "Проверьте почту" in text(inbox) and f"«{NAMES['ru']}»" in text(inbox)
    [sub] = public(engine)
    assert (sub.status, sub.language, sub.areas, sub.target) == (
        SubscriptionStatus.PENDING, "ru", (AREA,), READER)

    worker_round(engine, db_url, keys_dir, smtp_server, base)
    [received] = smtp_server.messages()
    assert received.rcpt_tos == (READER,)
    [link] = re.findall(rf"{re.escape(base)}(/subscriptions/\S+/confirm\?sig=\S+)",
                        text_of(received.message))
    shown = client.get(link)  # what a mail scanner's fetch does: nothing
    assert shown.status_code == 200 and form_action(shown) == link
    assert "Подтвердите подписку" in text(shown) and NAMES["ru"] in text(shown)
    assert public(engine)[0].status is SubscriptionStatus.PENDING

    done = client.post(link, headers={**FORM, "origin": base})
    assert done.status_code == 200
    private_answer(done)
    assert "Подписка подтверждена" in text(done) and NAMES["ru"] in text(done)
    assert f'href="{signed(engine, sub.id, "unsubscribe")}"' in done.text
    assert public(engine)[0].status is SubscriptionStatus.ACTIVE

    commands.declare(engine, [request("critical", ("KZ",))], now=now(), actor="test")
    worker_round(engine, db_url, keys_dir, smtp_server, base)
    level = smtp_server.messages()[-1].message
    assert len(smtp_server.messages()) == 2 and level["To"] == READER
    assert level["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = level["List-Unsubscribe"].strip().removeprefix("<").removesuffix(">")
    assert unsubscribe.startswith(f"{base}/subscriptions/{sub.id}/unsubscribe?sig=")

    parts = urlsplit(unsubscribe)  # RFC 8058: a provider's POST, without Origin
    one_click = client.post(f"{parts.path}?{parts.query}", headers=FORM,
                            content=b"List-Unsubscribe=One-Click")
    assert one_click.status_code == 200
    assert "Подписка отменена" in text(one_click)
    assert public(engine)[0].status is SubscriptionStatus.DISABLED


# ---------------------------------------------------------------------------- refusals


def test_a_tampered_or_foreign_signature_is_refused_and_changes_nothing(
        engine: Engine, client: httpx.Client) -> None:
    sub = add(engine)
    confirm, unsubscribe = signed(engine, sub.id, "confirm"), signed(engine, sub.id,
                                                                     "unsubscribe")
    before = dump(engine)
    tampered = confirm[:-1] + ("A" if confirm[-1] != "A" else "B")
    foreign = f"/subscriptions/{sub.id}/confirm?sig={unsubscribe.partition('sig=')[2]}"
    for path in (tampered, foreign, f"/subscriptions/{sub.id}/confirm",
                 unsubscribe[:-2] + "xx"):
        for method in ("GET", "POST"):
            answer = client.request(method, path, headers=FORM)
            assert answer.status_code == 403, (method, path)
            assert "This link is not valid" in text(answer)
            private_answer(answer)
    unknown = client.post("/subscriptions/sub_0000/unsubscribe?sig=x", headers=FORM)
    assert unknown.status_code == 404 and "There is no such subscription" in text(unknown)
    assert client.get("/subscriptions/sub_0000/confirm?sig=x").status_code == 404
    assert dump(engine) == before


@pytest.mark.parametrize(("fields", "headers", "status", "lang", "words"), [
    ({"email": "not-an-address", "area": AREA, "language": "kk"}, {}, 400, "kk",
     "«not-an-address» электрондық пошта мекенжайы емес"),
    ({"email": "", "area": AREA, "language": "en"}, {}, 400, "en",
     "No e-mail address was given"),
    ({"email": READER, "area": "KZ-99", "language": "ru"}, {}, 400, "ru",
     "Территория «KZ-99» неизвестна"),
    ({"email": READER, "area": "", "language": "en"}, {}, 400, "en", "Area — is not known"),
    ({"email": READER, "area": AREA, "language": "de"}, {"accept-language": "ru"}, 400, "ru",
     "Язык «de» не поддерживается"),
    ({"email": READER, "area": AREA, "language": "en"},
     {"origin": "https://elsewhere.example", "accept-language": "kk"}, 403, "kk",
     "Форма басқа сайттан жіберілген"),
])
def test_bad_input_is_refused_by_name_in_the_readers_language_and_writes_nothing(
        engine: Engine, client: httpx.Client, fields: dict[str, str], headers: dict[str, str],
        status: int, lang: str, words: str) -> None:
    before = dump(engine)
    answer = client.post("/subscriptions/email", headers={**FORM, **headers}, data=fields)
    assert answer.status_code == status
    assert f'<html lang="{lang}">' in answer.text
    assert words in text(answer)
    private_answer(answer)
    assert dump(engine) == before


def test_only_the_form_encoding_is_taken_and_a_busy_client_slows_down(
        engine: Engine, keys_dir: Path) -> None:
    before = dump(engine)
    with running(create_app(engine, rate_limit=1)) as base, httpx.Client(base_url=base) as c:
        json = c.post("/subscriptions/email", json={"email": READER, "area": AREA})
        assert json.status_code == 415 and "takes the subscription form only" in text(json)
        answers = [c.post("/subscriptions/email", headers=FORM,
                          data={"email": "x", "area": AREA, "language": "en"})
                   for _ in range(12)]  # a burst of 10 is allowed, then one a minute
        assert answers[-1].status_code == 429
        assert int(answers[-1].headers["retry-after"]) > 0
        assert "Too many requests from your address" in text(answers[-1])
    assert dump(engine) == before


def test_the_same_answer_whether_or_not_the_address_was_subscribed(
        engine: Engine, client: httpx.Client) -> None:
    data = {"email": READER, "area": AREA, "language": "en"}
    first = client.post("/subscriptions/email", headers=FORM, data=data)
    [sub] = public(engine)
    client.post(signed(engine, sub.id, "confirm"), headers=FORM)
    again = client.post("/subscriptions/email", headers=FORM, data=data)
    assert (first.status_code, first.headers["location"]) == (
        again.status_code, again.headers["location"])
    assert [s.status for s in public(engine)] == [SubscriptionStatus.ACTIVE]


def test_posting_the_form_again_and_again_mails_the_address_once_an_hour(
        engine: Engine, db_url: str, keys_dir: Path, base: str, client: httpx.Client,
        smtp_server: SmtpServer) -> None:
    """Issue 15, item 12: 20 posts naming one victim's address (for one area, or several)
    send her one confirmation, and every post answers the same."""
    answers = {(area, sent.status_code, sent.headers["location"]) for area, sent in (
        (area, client.post("/subscriptions/email", headers={**FORM, "origin": base}, data={
            "email": READER, "area": area, "language": "en"}))
        for area in [AREA] * 17 + ["KZ-19", "KZ", AREA])}
    assert answers == {(area, 303, f"/subscriptions/email/sent?lang=en&area={area}")
                       for area in (AREA, "KZ-19", "KZ")}
    worker_round(engine, db_url, keys_dir, smtp_server, base)
    assert [m.rcpt_tos for m in smtp_server.messages()] == [(READER,)]
    assert {s.status for s in public(engine)} == {SubscriptionStatus.PENDING}

    with engine.begin() as conn:  # an hour passes
        conn.execute(update(tables.subscriptions).where(
            tables.subscriptions.c.confirm_sent_at.is_not(None)).values(
            confirm_sent_at=now() - timedelta(hours=1)))
    for _ in range(3):
        client.post("/subscriptions/email", headers={**FORM, "origin": base},
                    data={"email": READER, "area": AREA, "language": "en"})
    worker_round(engine, db_url, keys_dir, smtp_server, base)
    assert [m.rcpt_tos for m in smtp_server.messages()] == [(READER,), (READER,)]


def test_a_push_subscription_ends_by_its_link_too(engine: Engine, client: httpx.Client,
                                                  base: str) -> None:
    sub = add(engine, "kk", Channel.PUSH)
    link = signed(engine, sub.id, "unsubscribe")
    shown = client.get(link)
    assert form_action(shown) == link
    assert public(engine)[0].status is SubscriptionStatus.ACTIVE
    ended = client.post(link, headers={**FORM, "origin": base})
    assert ended.status_code == 200 and i18n.UI["kk"]["unsubscribed_title"] in text(ended)
    assert public(engine)[0].status is SubscriptionStatus.DISABLED
    again = client.get(link)  # the link still answers, and says so
    assert again.status_code == 200 and i18n.UI["kk"]["unsubscribed_title"] in text(again)


# ---------------------------------------------------------------------------- every language


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_every_page_of_the_flow_has_its_words(engine: Engine, client: httpx.Client,
                                              lang: str) -> None:
    t = i18n.UI[lang]
    area = client.get(f"/{lang}/areas/{AREA}")
    for key in ("subscribe_title", "subscribe_email", "subscribe_button", "subscribe_note",
                "push_button"):
        assert t[key] in text(area), key
    sent = client.get(f"/subscriptions/email/sent?lang={lang}&area={AREA}")
    assert t["sent_title"] in text(sent) and t["sent_text"] in text(sent)
    assert f'<a href="{urls.area(lang, AREA)}">' in sent.text

    sub = add(engine, lang)
    confirm = client.get(signed(engine, sub.id, "confirm"))
    assert f'<html lang="{lang}">' in confirm.text
    for words in (t["confirm_title"], t["confirm_button"],
                  t["confirm_text"].format(areas=NAMES[lang])):
        assert words in text(confirm)
    confirmed = client.post(signed(engine, sub.id, "confirm"), headers=FORM)
    assert t["confirmed_text"].format(areas=NAMES[lang]) in text(confirmed)
    assert t["unsubscribe_link"] in text(confirmed)
    leave = client.get(signed(engine, sub.id, "unsubscribe"))
    for words in (t["unsubscribe_title"], t["unsubscribe_button"],
                  t["unsubscribe_text"].format(areas=NAMES[lang])):
        assert words in text(leave)
    left = client.post(signed(engine, sub.id, "unsubscribe"), headers=FORM)
    assert t["unsubscribed_title"] in text(left) and t["unsubscribed_text"] in text(left)
    refused = client.get(f"/subscriptions/{sub.id}/confirm?sig=x",
                         headers={"accept-language": lang})
    assert t["error_403"] in text(refused) and t["sub_bad_link"] in text(refused)
    # The language switch keeps the signed address.
    switched = client.get(signed(engine, sub.id, "unsubscribe") + "&lang=en")
    assert "Unsubscribed" in text(switched)


# ---------------------------------------------------------------------------- the pages


def test_the_service_worker_and_push_script_are_served_as_javascript(
        client: httpx.Client) -> None:
    for path, name in (("/sw.js", "sw.js"), ("/static/push.js", "push.js")):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
        assert answer.content == (files("tocsin") / "static" / name).read_bytes()


def test_area_pages_are_the_same_bytes_for_the_same_state_and_lose_push_without_a_key(
        engine: Engine, tmp_path: Path) -> None:
    def area_page(folder: Path, at: datetime) -> str:
        config = settings.Settings(database_url="unused", sender="t", keys_dir=str(folder))
        return build(engine, at, config=config).site.render(f"/en/areas/{AREA}").body.decode()

    at = now()
    folder = tmp_path / "keys"
    first = area_page(folder, at)
    assert area_page(folder, at) == first
    assert 'data-push-key="' in first and '<script src="/static/push.js" defer>' in first
    assert re.findall(r"<script[^>]*>", first) == [  # no inline code: the CSP allows none
        '<script src="/static/live.js" defer>', '<script src="/static/push.js" defer>']
    assert not re.search(r"<[^>]+\s(on\w+|style)=", first)
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)  # others may read it: no key is made there
    unusable = area_page(open_folder, at)
    assert "data-push-key" not in unusable and "/static/push.js" not in unusable
    assert 'action="/subscriptions/email"' in unusable
    assert not (open_folder / keys.VAPID_FILE).exists()
