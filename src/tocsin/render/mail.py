"""E-mails as pure functions of a delivery job: a level change, a double opt-in request and an
issuer's reminder. Each is multipart/alternative (text and HTML, UTF-8) with stable headers;
nothing here reads the clock or sends (tocsin.notify.mail sends)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tocsin.domain.notify import Job
from tocsin.render import i18n
from tocsin.render.colour import text_colour_on

_ENV = Environment(
    loader=PackageLoader("tocsin", "templates/mail"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "levels_subject": "{level}: {area} — {scheme}",
        "levels_subject_more": "{level}: {area} and {more} more — {scheme}",
        "levels_heading": "Threat levels changed",
        "levels_intro": "The threat level changed in areas you follow:",
        "no_level": "no level",
        "area_page": "Area page",
        "why_subscribed": ("You receive this because this address subscribed to threat level "
                           "changes in these areas."),
        "unsubscribe": "Unsubscribe with one click",
        "confirm_subject": "Confirm your threat level e-mails",
        "confirm_heading": "Please confirm your subscription",
        "confirm_intro": ("Someone, probably you, asked for an e-mail whenever the threat level "
                          "changes in these areas:"),
        "confirm_action": "Confirm that you want these e-mails",
        "confirm_ignore": ("If you did not ask for this, ignore this e-mail: nothing happens, "
                           "and no more e-mails are sent to this address."),
        "reminder_subject": "Declaration {id} ends on {time}",
        "reminder_heading": "A declaration you issued ends soon",
        "reminder_intro": ("Declaration {id} ends on {time}. After that, its level is no longer "
                           "in force."),
        "declaration": "Declaration",
        "scheme": "Scale",
        "level": "Level",
        "areas": "Areas",
        "ends": "Ends",
        "reminder_extend": "To keep the level in force, extend the declaration in the console:",
        "open_console": "Open the declaration in the console",
        "reminder_nothing": "If the level should end, do nothing.",
        "automatic": "This e-mail was sent automatically by tocsin; replies are not read.",
    },
    "ru": {
        "levels_subject": "{level}: {area} — {scheme}",
        "levels_subject_more": "{level}: {area} и ещё {more} — {scheme}",
        "levels_heading": "Уровни угрозы изменились",
        "levels_intro": "Уровень угрозы изменился на территориях, за которыми вы следите:",
        "no_level": "уровень не объявлен",
        "area_page": "Страница территории",
        "why_subscribed": ("Вы получили это письмо, потому что этот адрес подписан на изменения "
                           "уровня угрозы на этих территориях."),
        "unsubscribe": "Отписаться одним нажатием",
        "confirm_subject": "Подтвердите подписку на письма об уровне угрозы",
        "confirm_heading": "Подтвердите подписку",
        "confirm_intro": ("Кто-то, вероятно вы, попросил присылать письмо при каждом изменении "
                          "уровня угрозы на этих территориях:"),
        "confirm_action": "Подтвердить, что вы хотите получать эти письма",
        "confirm_ignore": ("Если вы об этом не просили, не обращайте внимания на это письмо: "
                           "ничего не произойдёт, и больше писем на этот адрес не придёт."),
        "reminder_subject": "Срок объявления {id} истекает {time}",
        "reminder_heading": "Срок вашего объявления скоро истекает",
        "reminder_intro": ("Срок объявления {id} истекает {time}. После этого его уровень "
                           "перестанет действовать."),
        "declaration": "Объявление",
        "scheme": "Шкала",
        "level": "Уровень",
        "areas": "Территории",
        "ends": "Истекает",
        "reminder_extend": "Чтобы уровень продолжал действовать, продлите объявление в консоли:",
        "open_console": "Открыть объявление в консоли",
        "reminder_nothing": "Если уровень должен закончиться, ничего делать не нужно.",
        "automatic": "Письмо отправлено автоматически системой tocsin; ответы не читаются.",
    },
    "kk": {
        "levels_subject": "{level}: {area} — {scheme}",
        "levels_subject_more": "{level}: {area} және тағы {more} — {scheme}",
        "levels_heading": "Қауіп деңгейлері өзгерді",
        "levels_intro": "Сіз бақылайтын аумақтарда қауіп деңгейі өзгерді:",
        "no_level": "деңгей жарияланбаған",
        "area_page": "Аумақ беті",
        "why_subscribed": ("Бұл хат сізге осы мекенжай аталған аумақтардағы қауіп деңгейінің "
                           "өзгерістеріне жазылғандықтан келді."),
        "unsubscribe": "Бір басумен жазылымнан бас тарту",
        "confirm_subject": "Қауіп деңгейі туралы хаттарға жазылуды растаңыз",
        "confirm_heading": "Жазылуыңызды растаңыз",
        "confirm_intro": ("Біреу, бәлкім сіз, мына аумақтарда қауіп деңгейі өзгерген сайын хат "
                          "жіберуді сұрады:"),
        "confirm_action": "Бұл хаттарды алғыңыз келетінін растау",
        "confirm_ignore": ("Егер сіз мұны сұрамаған болсаңыз, бұл хатқа мән бермеңіз: ештеңе "
                           "болмайды және бұл мекенжайға басқа хат жіберілмейді."),
        "reminder_subject": "{id} мәлімдемесінің мерзімі аяқталады: {time}",
        "reminder_heading": "Сіз жариялаған мәлімдеменің мерзімі жақында аяқталады",
        "reminder_intro": ("{id} мәлімдемесінің мерзімі аяқталады: {time}. Одан кейін оның "
                           "деңгейі күшін жояды."),
        "declaration": "Мәлімдеме",
        "scheme": "Шкала",
        "level": "Деңгей",
        "areas": "Аумақтар",
        "ends": "Мерзімінің аяқталуы",
        "reminder_extend": "Деңгей күшінде қалуы үшін мәлімдемені консольде ұзартыңыз:",
        "open_console": "Мәлімдемені консольде ашу",
        "reminder_nothing": "Егер деңгей аяқталуы тиіс болса, ештеңе істеудің қажеті жоқ.",
        "automatic": "Бұл хатты tocsin жүйесі автоматты түрде жіберді; жауаптар оқылмайды.",
    },
}
"""The e-mails' words. Every language has every English key with the same `{fields}`
(tests/test_mail.py checks)."""

_HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


def texts(lang: str) -> Mapping[str, str]:
    """The words of `lang` (English for a language without a table)."""
    return TEXTS.get(lang, TEXTS["en"])


def language_of(job: Job) -> str:
    """The subscriber's language; for a reminder, the payload's 'language' or English."""
    if job.subscription is not None:
        lang = job.subscription.language
    else:
        lang = str(job.payload.get("language") or "en")
    return lang if lang in TEXTS else "en"


@dataclass(frozen=True)
class _Change:
    """One level change, as the templates show it."""

    area: str
    scheme: str
    before: str
    after: str
    url: str
    colour: str | None
    """'#RRGGBB' of the new level, or None (then the HTML shows no swatch)."""
    text_colour: str | None


def _change(change: Mapping[str, Any], t: Mapping[str, str]) -> _Change:
    colour = change.get("colour")
    swatch = colour if isinstance(colour, str) and _HEX_COLOUR.fullmatch(colour) else None
    return _Change(
        area=str(change.get("area_name") or change["area"]),
        scheme=str(change.get("scheme_name") or change["scheme"]),
        before=str(change.get("from_name") or change.get("from") or t["no_level"]),
        after=str(change.get("to_name") or change.get("to") or t["no_level"]),
        url=str(change["url"]),
        colour=swatch,
        text_colour=text_colour_on(swatch) if swatch else None,
    )


def level_mail(job: Job, *, sender: str, now: datetime) -> EmailMessage:
    """The e-mail telling a subscriber that levels changed in areas it follows: one line per
    change with a link to the area page, and a one-click unsubscribe link. Refuses (ValueError)
    a job without changes."""
    if not job.changes:
        raise ValueError(f"job {job.key} has no level changes to tell")
    lang = language_of(job)
    t = texts(lang)
    changes = [_change(change, t) for change in job.changes]
    first = changes[0]
    if len(changes) == 1:
        subject = t["levels_subject"].format(level=first.after, area=first.area,
                                             scheme=first.scheme)
    else:
        subject = t["levels_subject_more"].format(level=first.after, area=first.area,
                                                  more=len(changes) - 1, scheme=first.scheme)
    context = {"t": t, "lang": lang, "subject": subject, "changes": changes,
               "unsubscribe": job.links.unsubscribe, "site": job.links.site}
    return _message(job, sender=sender, now=now, subject=subject, template="level",
                    context=context, list_unsubscribe=True)


def confirm_mail(job: Job, *, sender: str, areas: Sequence[str], now: datetime) -> EmailMessage:
    """The double opt-in e-mail: which areas (by name) the address asked to follow, the link
    that confirms it, and that ignoring it changes nothing. Refuses (ValueError) a job without
    a confirmation link."""
    if not job.links.confirm:
        raise ValueError(f"job {job.key} has no confirmation link")
    lang = language_of(job)
    t = texts(lang)
    subject = t["confirm_subject"]
    context = {"t": t, "lang": lang, "subject": subject, "areas": list(areas),
               "confirm": job.links.confirm, "site": job.links.site}
    return _message(job, sender=sender, now=now, subject=subject, template="confirm",
                    context=context, list_unsubscribe=True)


def reminder_mail(job: Job, *, sender: str, now: datetime) -> EmailMessage:
    """The e-mail reminding an issuer that a declaration's term ends at the payload's
    `expires_at`, with the console link to extend it. Refuses (KeyError, ValueError) a payload
    without the declaration or a readable `expires_at`."""
    lang = language_of(job)
    t = texts(lang)
    payload = job.payload
    expires = datetime.fromisoformat(str(payload["expires_at"]))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    timezone = payload.get("timezone")
    when = i18n.format_time(expires, str(timezone) if timezone else None, lang)
    declaration = str(payload["declaration"])
    subject = t["reminder_subject"].format(id=declaration, time=when)
    areas = payload.get("areas") or []
    context = {"t": t, "lang": lang, "subject": subject, "declaration": declaration,
               "scheme": str(payload.get("scheme") or ""), "level": str(payload.get("level") or ""),
               "areas": ", ".join(str(a) for a in areas), "when": when,
               "console": job.links.console, "site": job.links.site}
    return _message(job, sender=sender, now=now, subject=subject, template="reminder",
                    context=context, list_unsubscribe=False)


def message_id(job: Job) -> str:
    """`<KEY@HOST>`: the same on every attempt at the job, so that a receiver can drop a
    duplicate; HOST is the public site's."""
    host = urlsplit(job.links.site).hostname or "tocsin.invalid"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address is a domain literal
    return f"<{_MESSAGE_ID_UNSAFE.sub('-', job.key)}@{host}>"


def _message(job: Job, *, sender: str, now: datetime, subject: str, template: str,
             context: Mapping[str, Any], list_unsubscribe: bool) -> EmailMessage:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = job.target
    message["Subject"] = subject
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id(job)
    message["Auto-Submitted"] = "auto-generated"
    if list_unsubscribe and job.links.unsubscribe:
        # RFC 8058: a receiver may unsubscribe with one POST, without the reader's browser.
        message["List-Unsubscribe"] = f"<{job.links.unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(_ENV.get_template(f"{template}.txt").render(context), charset="utf-8")
    message.add_alternative(_ENV.get_template(f"{template}.html").render(context),
                            subtype="html", charset="utf-8")
    # After the parts are made: add_alternative moves Content-* headers into the first part.
    message["Content-Language"] = str(context["lang"])
    return message
