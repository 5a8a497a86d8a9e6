"""A real SMTP server (aiosmtpd) on a loopback socket, in a thread, for tests.

Use the context manager `running_smtp()`, or the `smtp_server` fixture by naming this module
in a test module's `pytest_plugins = ("tests.smtp_server",)`. The server keeps every message
it accepts, and answers a chosen SMTP reply (e.g. 451 or 550) to chosen recipients.

PYTEST_DONT_REWRITE: test modules both import this module and name it as a plugin, and it has
no asserts to rewrite; the marker spares them pytest's "already imported" warning.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from tests.web_server import free_port

TEMPORARY = "451 4.3.0 Mailbox busy, try again later"
PERMANENT = "550 5.1.1 No such mailbox"


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None
    """The user name the client logged in with, if it did."""


class SmtpServer:
    """What a test sees of the running server."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.received: list[Received] = []
        self.refusals: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """A TOCSIN_SMTP_URL for this server (without credentials)."""
        return f"smtp://{self.host}:{self.port}"

    def refuse(self, recipient: str, reply: str) -> None:
        """Answer `reply` (e.g. TEMPORARY or PERMANENT) when `recipient` is named in RCPT TO."""
        with self._lock:
            self.refusals[recipient.lower()] = reply

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    # aiosmtpd handler hooks, run in the server's thread.

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            reply = self.refusals.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            return "554 5.6.0 The test server expected bytes"
        message = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        with self._lock:
            self.received.append(Received(
                message=message, mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                login=login.decode() if login is not None else None))
        return "250 2.0.0 Message accepted for delivery"


def _authenticator(user: str, password: str) -> Any:
    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        good = (isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user and auth_data.password.decode() == password)
        return AuthResult(success=good, handled=False, auth_data=auth_data if good else None)
    return authenticate


@contextmanager
def running_smtp(*, credentials: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """Serve SMTP on 127.0.0.1 (a free port) until the block ends. With `credentials`
    (user, password), AUTH is offered over plain SMTP (loopback only) and checked; each
    Received says who logged in."""
    server = SmtpServer("127.0.0.1", free_port())
    options: dict[str, Any] = {}
    if credentials is not None:
        options = {"authenticator": _authenticator(*credentials), "auth_require_tls": False}
    controller = Controller(server, hostname=server.host, port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A fresh SMTP server on 127.0.0.1 for one test."""
    with running_smtp() as server:
        yield server
