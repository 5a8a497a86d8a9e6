"""The e-mail channel through a real SMTP server on 127.0.0.1: the messages (headers, words in
each language, escaping), what the server's answers become, and reading TOCSIN_SMTP_URL."""

from __future__ import annotations

import asyncio
import re
import string
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from tests.smtp_server import PERMANENT, TEMPORARY, SmtpServer, running_smtp
from tests.web_server import free_port

from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import (
    CONFIRM,
    LEVELS_CHANGED,
    TERM_ENDING,
    Channel,
    Job,
    Links,
    Outcome,
    Subscription,
    SubscriptionStatus,
)
from tocsin.notify.mail import MailSender, SmtpConfig, parse_smtp_url
from tocsin.render.mail import TEXTS

pytest_plugins = ("tests.smtp_server",)

NOW = datetime(2024, 3, 5, 6, 7, 8, tzinfo=UTC)
SENDER = "Threat levels <alerts@levels.example.kz>"
SITE = "https://levels.example.kz"
UNSUBSCRIBE = f"{SITE}/subscriptions/sub1/unsubscribe?sig=abc"
ENGLISH = TEXTS["en"]

# What the worker hands over: level and area names already in the subscriber's language.
NAMES = {
    "en": {"scheme": "kz terrorism threat level", "area": "Almaty region",
           "from": "Low (blue)", "to": "High (orange)"},
    "ru": {"scheme": "Уровень террористической угрозы", "area": "Алматинская область",
           "from": "Умеренный (синий)", "to": "Высокий (оранжевый)"},
    "kk": {"scheme": "Террористік қауіп деңгейі", "area": "Алматы облысы",
           "from": "Орташа (көк)", "to": "Жоғары (сарғылт)"},
}
WORDS_IN = {
    LEVELS_CHANGED: ("levels_heading", "levels_intro", "why_subscribed", "unsubscribe",
                     "automatic"),
    CONFIRM: ("confirm_heading", "confirm_intro", "confirm_action", "confirm_ignore",
              "automatic"),
    TERM_ENDING: ("reminder_heading", "reminder_extend", "reminder_nothing", "declaration",
                  "level", "areas", "automatic"),
}


def subscription(lang: str = "en", target: str = "reader@example.kz") -> Subscription:
    return Subscription(id="sub1", channel=Channel.EMAIL, target=target, areas=("KZ-ALA",),
                        schemes=(), language=lang, status=SubscriptionStatus.ACTIVE,
                        owner="public", created_at=NOW, details={})


def change(lang: str = "en", **names: Any) -> dict[str, Any]:
    words = {**NAMES[lang], **names}
    return {"scheme": "kz-terror", "scheme_name": words["scheme"], "area": "KZ-ALA",
            "area_name": words["area"], "from": "moderate", "from_name": words["from"],
            "to": "high", "to_name": words["to"], "colour": "#FF8C00", "declaration": 12,
            "url": f"{SITE}/areas/KZ-ALA"}


def level_job(lang: str = "en", target: str = "reader@example.kz", **names: Any) -> Job:
    return Job(delivery_id=1, event_id=7, topic=LEVELS_CHANGED, payload={},
               channel=Channel.EMAIL, target=target, subscription=subscription(lang, target),
               attempt=1, key="msg_7_sub1", changes=[change(lang, **names)],
               links=Links(site=SITE, unsubscribe=UNSUBSCRIBE))


def confirm_job(lang: str = "en") -> Job:
    return Job(delivery_id=2, event_id=8, topic=CONFIRM,
               payload={"subscription": "sub1", "area_names": [NAMES[lang]["area"]]},
               channel=Channel.EMAIL, target="reader@example.kz",
               subscription=replace(subscription(lang), status=SubscriptionStatus.PENDING),
               attempt=1, key="msg_8_sub1", changes=[],
               links=Links(site=SITE, confirm=f"{SITE}/subscriptions/sub1/confirm?sig=xyz",
                           unsubscribe=UNSUBSCRIBE))


def reminder_job(lang: str | None = None) -> Job:
    payload: dict[str, Any] = {"declaration": 12, "scheme": "kz-terror", "level": "high",
                               "areas": ["KZ-ALA", "KZ-AST"], "expires_at": "2024-03-06T00:00:00Z",
                               "issuer": "aigerim", "email": "aigerim@example.kz"}
    if lang is not None:
        payload["language"] = lang
    return Job(delivery_id=3, event_id=9, topic=TERM_ENDING, payload=payload,
               channel=Channel.EMAIL, target="aigerim@example.kz", subscription=None,
               attempt=1, key="reminder_9_12", changes=[],
               links=Links(site=SITE, console=f"{SITE}/console/declarations/12"))


def sender_for(url: str, *, timeout: float = 10.0) -> MailSender:
    return MailSender(parse_smtp_url(url, SENDER), timeout=timeout, now=lambda: NOW)


def send(url: str, job: Job) -> Outcome:
    async def go() -> Outcome:
        mail = sender_for(url)
        try:
            return await mail.send(job)
        finally:
            await mail.close()
    return asyncio.run(go())


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


def only(server: SmtpServer) -> EmailMessage:
    received = server.messages()
    assert len(received) == 1
    return received[0].message


# --- a level mail through the server ---------------------------------------------------------


def test_level_mail_arrives_with_its_headers(smtp_server: SmtpServer) -> None:
    outcome = send(smtp_server.url, level_job())
    assert outcome.delivered
    assert outcome.status == 250
    assert outcome.detail.startswith("250")
    [received] = smtp_server.messages()
    assert received.rcpt_tos == ("reader@example.kz",)
    assert received.mail_from == "alerts@levels.example.kz"
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == "reader@example.kz"
    assert message["Subject"] == "High (orange): Almaty region — kz terrorism threat level"
    assert message["Date"] == "Tue, 05 Mar 2024 06:07:08 +0000"
    assert message["Message-ID"] == "<msg_7_sub1@levels.example.kz>"
    assert message["List-Unsubscribe"].strip() == f"<{UNSUBSCRIBE}>"  # folded: it is long
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = bodies(message)
    assert "Almaty region — kz terrorism threat level: Low (blue) → High (orange)" in text
    assert f"{SITE}/areas/KZ-ALA" in text
    assert UNSUBSCRIBE in text
    assert f'href="{SITE}/areas/KZ-ALA"' in html
    assert f'href="{UNSUBSCRIBE}"' in html
    assert "background:#FF8C00" in html


def test_message_id_is_the_same_on_every_attempt(smtp_server: SmtpServer) -> None:
    job = level_job()
    assert send(smtp_server.url, job).delivered
    assert send(smtp_server.url, replace(job, attempt=2, delivery_id=99)).delivered
    first, second = (r.message for r in smtp_server.messages())
    assert first["Message-ID"] == second["Message-ID"] == "<msg_7_sub1@levels.example.kz>"


def test_several_changes_are_all_listed_and_counted_in_the_subject(
        smtp_server: SmtpServer) -> None:
    second = {**change(), "area": "KZ-AST", "area_name": "Astana",
              "url": f"{SITE}/areas/KZ-AST", "to": None, "to_name": None, "colour": None}
    assert send(smtp_server.url, replace(level_job(), changes=[change(), second])).delivered
    message = only(smtp_server)
    assert message["Subject"] == ("High (orange): Almaty region and 1 more — kz terrorism "
                                  "threat level")
    text, _ = bodies(message)
    assert "Astana — kz terrorism threat level: Low (blue) → no level" in text
    assert f"{SITE}/areas/KZ-AST" in text


def test_html_escapes_what_it_is_given(smtp_server: SmtpServer) -> None:
    hostile = "<script>alert(1)</script> & co"
    job = level_job(area=hostile)
    job = replace(job, changes=[{**job.changes[0], "colour": "red;background:url(x)"}])
    assert send(smtp_server.url, job).delivered
    message = only(smtp_server)
    text, html = bodies(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "url(x)" not in html
    assert hostile in text
    assert hostile in message["Subject"]


def test_without_an_unsubscribe_link_there_is_no_list_unsubscribe(
        smtp_server: SmtpServer) -> None:
    job = replace(level_job(), links=Links(site=SITE))
    assert send(smtp_server.url, job).delivered
    message = only(smtp_server)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


# --- confirmation and reminder ---------------------------------------------------------------


def test_confirmation_links_to_the_opt_in_page(smtp_server: SmtpServer) -> None:
    job = confirm_job()
    assert send(smtp_server.url, job).delivered
    message = only(smtp_server)
    assert message["Subject"] == ENGLISH["confirm_subject"]
    assert message["Message-ID"] == "<msg_8_sub1@levels.example.kz>"
    assert message["List-Unsubscribe"].strip() == f"<{UNSUBSCRIBE}>"  # folded: it is long
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = bodies(message)
    assert job.links.confirm is not None
    assert job.links.confirm in text
    assert f'href="{job.links.confirm}"' in html
    assert "* Almaty region" in text
    assert ENGLISH["confirm_ignore"] in text


def test_confirmation_without_names_falls_back_to_area_codes(smtp_server: SmtpServer) -> None:
    assert send(smtp_server.url, replace(confirm_job(), payload={"subscription": "sub1"})).delivered
    text, _ = bodies(only(smtp_server))
    assert "* KZ-ALA" in text


def test_reminder_tells_the_issuer_when_and_where_to_extend(smtp_server: SmtpServer) -> None:
    job = reminder_job()
    assert send(smtp_server.url, job).delivered
    message = only(smtp_server)
    assert message["To"] == "aigerim@example.kz"
    assert message["Subject"] == "Declaration 12 ends on 6 March 2024, 00:00 UTC"
    assert message["Message-ID"] == "<reminder_9_12@levels.example.kz>"
    assert message["List-Unsubscribe"] is None
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = bodies(message)
    assert "KZ-ALA, KZ-AST" in text
    assert f"{SITE}/console/declarations/12" in text
    assert f'href="{SITE}/console/declarations/12"' in html


# --- words in each language ------------------------------------------------------------------


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_every_language_has_every_key_with_the_same_fields(lang: str) -> None:
    table = TEXTS[lang]
    assert set(table) == set(ENGLISH)
    assert [key for key, value in table.items() if not value.strip()] == []
    assert {k: v for k, v in table.items() if _fields(v) != _fields(ENGLISH[k])} == {}


def _english_sentences() -> set[str]:
    """Pieces of English words between the `{fields}`, long enough to mean something."""
    pieces = set()
    for value in ENGLISH.values():
        for literal, _, _, _ in string.Formatter().parse(value):
            piece = literal.strip(" :—-.,;")
            if len(piece) >= 4 and re.search(r"[A-Za-z]", piece):
                pieces.add(piece)
    return pieces


@pytest.mark.parametrize("lang", ["kk", "ru"])
@pytest.mark.parametrize("topic", [LEVELS_CHANGED, CONFIRM, TERM_ENDING])
def test_each_language_is_written_in_its_own_words(lang: str, topic: str) -> None:
    job = {LEVELS_CHANGED: level_job(lang), CONFIRM: confirm_job(lang),
           TERM_ENDING: reminder_job(lang)}[topic]
    with running_smtp() as server:
        assert send(server.url, job).delivered
        message = only(server)
    text, html = bodies(message)
    words = TEXTS[lang]
    for key in WORDS_IN[topic]:
        assert words[key] in text, key
        assert words[key] in html, key
    for piece in _english_sentences():
        assert piece not in text
        assert piece not in html
        assert piece not in message["Subject"]
    assert message["Content-Language"] == lang
    assert f'<html lang="{lang}">' in html


def test_a_reminder_is_in_english_unless_the_payload_says(smtp_server: SmtpServer) -> None:
    assert send(smtp_server.url, reminder_job()).delivered
    assert send(smtp_server.url, reminder_job("ru")).delivered
    english, russian = (r.message for r in smtp_server.messages())
    assert english["Subject"].startswith("Declaration 12 ends")
    assert russian["Subject"] == "Срок объявления 12 истекает 6 марта 2024 г., 00:00 UTC"


def test_an_unknown_language_reads_english(smtp_server: SmtpServer) -> None:
    job = replace(level_job(), subscription=subscription("de"))
    assert send(smtp_server.url, job).delivered
    assert ENGLISH["levels_intro"] in bodies(only(smtp_server))[0]


# --- what the server's answers become --------------------------------------------------------


def test_a_temporary_refusal_is_tried_again(smtp_server: SmtpServer) -> None:
    smtp_server.refuse("reader@example.kz", TEMPORARY)
    outcome = send(smtp_server.url, level_job())
    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.status == 451
    assert outcome.detail.startswith("451")
    assert smtp_server.messages() == []


def test_a_permanent_refusal_is_final(smtp_server: SmtpServer) -> None:
    smtp_server.refuse("reader@example.kz", PERMANENT)
    outcome = send(smtp_server.url, level_job())
    assert not outcome.delivered
    assert outcome.permanent
    assert outcome.status == 550
    assert "No such mailbox" in outcome.detail
    assert smtp_server.messages() == []


def test_nothing_listening_is_tried_again() -> None:
    outcome = send(f"smtp://127.0.0.1:{free_port()}", level_job())
    assert not outcome.delivered
    assert not outcome.permanent
    assert outcome.status is None
    assert "127.0.0.1" in outcome.detail


def test_a_job_that_cannot_become_an_e_mail_is_final(smtp_server: SmtpServer) -> None:
    for job in (replace(level_job(), topic="something.else"),
                replace(level_job(), changes=[]),
                replace(reminder_job(), payload={"declaration": 12})):
        outcome = send(smtp_server.url, job)
        assert not outcome.delivered
        assert outcome.permanent
        assert outcome.detail.startswith("cannot build the e-mail")
    assert smtp_server.messages() == []


def test_credentials_from_the_url_are_used() -> None:
    with running_smtp(credentials=("alerts", "p@ss:w/rd")) as server:
        url = f"smtp://alerts:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}"
        assert send(url, level_job()).delivered
        assert [r.login for r in server.messages()] == ["alerts"]
        refused = send(f"smtp://alerts:wrong@127.0.0.1:{server.port}", level_job())
    assert not refused.delivered
    assert not refused.permanent
    assert refused.status == 535
    assert "TOCSIN_SMTP_URL" in refused.detail


# --- TOCSIN_SMTP_URL -------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.kz", ("mail.example.kz", 25, None, None, "none")),
    ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, None, None, "none")),
    ("smtp://u:p@localhost:2525", ("localhost", 2525, "u", "p", "none")),
    ("smtp+starttls://alerts:s%40cret%3A1@mail.example.kz",
     ("mail.example.kz", 587, "alerts", "s@cret:1", "starttls")),
    ("smtps://alerts%40example.kz:pw@mail.example.kz/",
     ("mail.example.kz", 465, "alerts@example.kz", "pw", "tls")),
    ("SMTPS://a:b@[2001:db8::1]:2465", ("2001:db8::1", 2465, "a", "b", "tls")),
])
def test_smtp_urls_that_are_understood(url: str, expected: tuple[Any, ...]) -> None:
    config = parse_smtp_url(url, SENDER)
    assert (config.host, config.port, config.username, config.password, config.tls) == expected
    assert config.sender == SENDER


@pytest.mark.parametrize(("url", "problem"), [
    ("", "TOCSIN_SMTP_URL is empty"),
    ("http://mail.example.kz", "has the scheme 'http'"),
    ("mail.example.kz:25", "has the scheme"),
    ("smtp://", "names no host"),
    ("smtp://:25", "names no host"),
    ("smtp://mail.example.kz:notaport", "cannot be read"),
    ("smtp://mail.example.kz:70000", "cannot be read"),
    ("smtp://mail.example.kz:0", "has the port 0"),
    ("smtp://mail.example.kz/inbox", "has a path, query or fragment"),
    ("smtp://mail.example.kz?tls=1", "has a path, query or fragment"),
    ("smtp+starttls://alerts@mail.example.kz", "has no password"),
    ("smtp+starttls://:secret@mail.example.kz", "has no user name"),
    ("smtp://alerts:secret@mail.example.kz", "would send the password unencrypted"),
    ("smtp://mail example.kz", "which is not a host name"),
])
def test_smtp_urls_that_are_refused_name_the_problem_and_the_fix(url: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_smtp_url(url, SENDER)
    assert "TOCSIN_SMTP_URL" in caught.value.message
    assert problem in caught.value.problem
    assert caught.value.fix
    assert "secret" not in caught.value.message


@pytest.mark.parametrize("sender", ["", "alerts", "Alerts <>", "a@b.kz\nBcc: x@y.kz"])
def test_a_sender_that_is_not_an_address_is_refused(sender: str) -> None:
    with pytest.raises(InvalidInput, match="TOCSIN_MAIL_FROM") as caught:
        parse_smtp_url("smtp://mail.example.kz", sender)
    assert caught.value.fix


def test_the_password_stays_out_of_the_config_repr() -> None:
    config = parse_smtp_url("smtps://alerts:hunter2@mail.example.kz", SENDER)
    assert isinstance(config, SmtpConfig)
    assert "hunter2" not in repr(config)
