"""The e-mail channel: builds each job's message (tocsin.render.mail) and hands it to an SMTP
server, one connection per message; the server's answer becomes an Outcome."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import CONFIRM, LEVELS_CHANGED, TERM_ENDING, Job, Outcome
from tocsin.render.mail import confirm_mail, level_mail, reminder_mail

Tls = Literal["none", "starttls", "tls"]

SMTP_URL = "TOCSIN_SMTP_URL"
MAIL_FROM = "TOCSIN_MAIL_FROM"
_SCHEMES: dict[str, tuple[Tls, int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_URL_FORMS = ("write smtp://HOST[:PORT] (plain, port 25), "
              "smtp+starttls://USER:PASSWORD@HOST[:PORT] (STARTTLS, port 587) or "
              "smtps://USER:PASSWORD@HOST[:PORT] (TLS, port 465), "
              "percent-encoding ':', '@' and '/' in USER and PASSWORD")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to hand e-mails over."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: Tls
    """'none': plain SMTP; 'starttls': upgrade after connecting; 'tls': TLS from the start."""
    sender: str
    """The From header, e.g. 'Threat levels <alerts@example.kz>'."""


def _shown(url: str) -> str:
    """The URL as an error message may show it: without the password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str, sender: str) -> SmtpConfig:
    """Read TOCSIN_SMTP_URL (`smtp://`, `smtp+starttls://` or `smtps://`, with an optional
    percent-encoded `USER:PASSWORD@` and port) and TOCSIN_MAIL_FROM. Refuses (InvalidInput)
    another scheme, a missing host, a bad port, a path, query or fragment, a user name without
    a password (or the reverse), a password sent unencrypted to another machine, and a sender
    that is not an e-mail address."""
    text = url.strip()
    if not text:
        raise InvalidInput(f"{SMTP_URL} is empty", _URL_FORMS)
    shown = _shown(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{SMTP_URL} {shown!r} cannot be read: {exc}", _URL_FORMS) from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidInput(f"{SMTP_URL} {shown!r} has the scheme {parts.scheme!r}, not one "
                           f"of smtp, smtp+starttls, smtps", _URL_FORMS)
    tls, default_port = _SCHEMES[scheme]
    host = parts.hostname or ""
    if not host:
        raise InvalidInput(f"{SMTP_URL} {shown!r} names no host", _URL_FORMS)
    if ":" not in host and not _HOST_NAME.fullmatch(host):
        raise InvalidInput(f"{SMTP_URL} {shown!r} names the host {host!r}, which is not a host "
                           f"name or IP address", _URL_FORMS)
    if port == 0:
        raise InvalidInput(f"{SMTP_URL} {shown!r} has the port 0", "give a port from 1 to 65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput(f"{SMTP_URL} {shown!r} has a path, query or fragment",
                           "an SMTP URL ends after HOST[:PORT]; " + _URL_FORMS)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if (username is None) != (password is None):
        missing = "password" if password is None else "user name"
        raise InvalidInput(f"{SMTP_URL} {shown!r} has no {missing}",
                           "give both as USER:PASSWORD@HOST, or neither")
    if password is not None and tls == "none" and not _is_loopback(host):
        raise InvalidInput(f"{SMTP_URL} {shown!r} would send the password unencrypted to {host}",
                           "use smtp+starttls:// or smtps://")
    _, address = parseaddr(sender.strip())
    if not sender.strip() or "@" not in address or "\n" in sender or "\r" in sender:
        raise InvalidInput(f"{MAIL_FROM} {sender!r} is not an e-mail address",
                           f"set {MAIL_FROM} to e.g. 'Threat levels <alerts@example.kz>'")
    return SmtpConfig(host=host, port=port or default_port, username=username,
                      password=password, tls=tls, sender=sender.strip())


def _answer(code: int, message: str) -> str:
    return f"{code} {message}".strip()


class MailSender:
    """Sends each job as one e-mail through the configured SMTP server. An accepted message is
    delivered; a 4xx answer, a refused connection or a timeout is tried again later; a 5xx
    refusal of the recipient or of the message is permanent. A 5xx refusal of the connection,
    our login or our sender is a configuration problem, so it is not permanent: retries go on
    while the operator fixes TOCSIN_SMTP_URL or TOCSIN_MAIL_FROM."""

    def __init__(self, config: SmtpConfig, *, timeout: float = 30.0,
                 now: Callable[[], datetime]) -> None:
        self._config = config
        self._timeout = timeout
        self._now = now

    def message(self, job: Job) -> EmailMessage:
        """The e-mail for `job`. Refuses (ValueError) a topic the channel does not send."""
        sender, now = self._config.sender, self._now()
        if job.topic == LEVELS_CHANGED:
            return level_mail(job, sender=sender, now=now)
        if job.topic == CONFIRM:
            return confirm_mail(job, sender=sender, areas=_area_names(job), now=now)
        if job.topic == TERM_ENDING:
            return reminder_mail(job, sender=sender, now=now)
        raise ValueError(f"the e-mail channel does not send {job.topic!r} events")

    async def send(self, job: Job) -> Outcome:
        try:
            message = self.message(job)
        except (KeyError, ValueError) as exc:
            # A malformed event or address: sending it again cannot help.
            return Outcome(delivered=False, detail=f"cannot build the e-mail: {exc}",
                           permanent=True)
        config = self._config
        try:
            _, response = await aiosmtplib.send(
                message, recipients=[job.target], hostname=config.host, port=config.port,
                username=config.username, password=config.password,
                use_tls=config.tls == "tls", start_tls=config.tls == "starttls",
                timeout=self._timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return Outcome(delivered=False, detail=_answer(refused.code, refused.message),
                           status=refused.code, permanent=refused.code >= 500)
        except aiosmtplib.SMTPDataError as exc:
            return Outcome(delivered=False, detail=_answer(exc.code, exc.message),
                           status=exc.code, permanent=exc.code >= 500)
        except aiosmtplib.SMTPResponseException as exc:
            # The server refused us (greeting, login, sender), not this recipient or message.
            hint = f" (check {SMTP_URL} and {MAIL_FROM})" if exc.code >= 500 else ""
            return Outcome(delivered=False, detail=_answer(exc.code, exc.message) + hint,
                           status=exc.code)
        except aiosmtplib.SMTPTimeoutError:
            return Outcome(delivered=False,
                           detail=f"timed out talking to {config.host}:{config.port}")
        except aiosmtplib.SMTPNotSupported as exc:
            return Outcome(delivered=False, detail=f"{exc} (check {SMTP_URL})")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome(delivered=False,
                           detail=f"cannot reach {config.host}:{config.port}: {exc}")
        return Outcome(delivered=True, detail=_answer(250, response), status=250)

    async def close(self) -> None:
        """Nothing to release: each message has its own connection."""


def _area_names(job: Job) -> list[str]:
    """The names of the areas a confirmation names: the payload's 'area_names' when the worker
    gives them, else the subscription's area codes."""
    names = job.payload.get("area_names")
    if names:
        return [str(name) for name in names]
    return list(job.subscription.areas) if job.subscription is not None else []
