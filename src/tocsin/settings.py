"""Settings, declared once: name, default and help feed validation, the CLI and the README."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tocsin.domain.errors import InvalidInput


def _default_database_url() -> str:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{data_home / 'tocsin' / 'tocsin.sqlite3'}"


def _default_keys_dir() -> str:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(data_home / "tocsin" / "keys")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Callable[[], str]
    help: str


DATABASE_URL = Setting(
    "TOCSIN_DATABASE_URL",
    _default_database_url,
    "Where tocsin keeps its data: sqlite:///PATH (default: a file under $XDG_DATA_HOME/tocsin) "
    "or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB.",
)
SENDER = Setting(
    "TOCSIN_SENDER",
    lambda: "tocsin",
    "The declaring authority named on declarations when --sender is not given.",
)
CAP_SENDER = Setting(
    "TOCSIN_CAP_SENDER",
    lambda: "tocsin",
    "The CAP <sender> of exported alerts: a stable address of the authority without spaces "
    "or commas, e.g. an e-mail address or a WMO-register OID as urn:oid:….",
)
PUBLIC_URL = Setting(
    "TOCSIN_PUBLIC_URL",
    lambda: "http://127.0.0.1:8000",
    "The public address of the site, for absolute links in feeds, CAP alerts and WebSub "
    "(topics are these URLs), e.g. https://levels.example.kz.",
)
ALLOW_PRIVATE_TARGETS = Setting(
    "TOCSIN_ALLOW_PRIVATE_TARGETS",
    lambda: "0",
    "1 lets WebSub callbacks (and webhooks) point at private or loopback addresses; keep 0 "
    "on a public server so that tocsin cannot be used to reach inside your network.",
)
RATE_LIMIT = Setting(
    "TOCSIN_RATE_LIMIT",
    lambda: "300",
    "Requests a minute one client may make to the authority API and console (bursts of a "
    "fifth of that are allowed); past it the answer is 429 with Retry-After.",
)
KEYS_DIR = Setting(
    "TOCSIN_KEYS_DIR",
    _default_keys_dir,
    "The folder (mode 0700) of the signing keys: Ed25519 keys for public documents and the "
    "CAP key with its certificate (default: $XDG_DATA_HOME/tocsin/keys, beside the database); "
    "manage it with 'tocsin keys'.",
)
SOURCES = Setting(
    "TOCSIN_SOURCES",
    lambda: "",
    "A TOML file of the CAP sources 'tocsin ingest' accepts: for each, its senders, the scheme "
    "its alerts feed, how their levels and areas map, and the signatures it requires "
    "(see the README). Empty (the default): no sources, so every alert is refused until one "
    "is configured here or given with --sources FILE.",
)
SMTP_URL = Setting(
    "TOCSIN_SMTP_URL",
    lambda: "",
    "The SMTP server that sends e-mail (subscribers' level changes, confirmations, term "
    "reminders): smtp://[USER:PASSWORD@]HOST[:PORT] (plain, port 25), "
    "smtp+starttls://… (STARTTLS, port 587) or smtps://… (TLS, port 465). Empty (the "
    "default): no e-mail; e-mail deliveries wait, and retry, until one is set.",
)
MAIL_FROM = Setting(
    "TOCSIN_MAIL_FROM",
    lambda: "tocsin@localhost",
    "The From address of tocsin's e-mail, and the contact browser push services are given "
    "(VAPID), e.g. alerts@example.kz.",
)
KEEP_DELIVERY_ATTEMPTS = Setting(
    "TOCSIN_KEEP_DELIVERY_ATTEMPTS",
    lambda: "90",
    "Days the log of each delivery attempt (when, by which worker, the answer) is kept; "
    "'never' (or 0) keeps it forever. Attempts of deliveries still queued are always kept.",
)
KEEP_DELIVERIES = Setting(
    "TOCSIN_KEEP_DELIVERIES",
    lambda: "365",
    "Days a settled delivery (delivered, dead or dropped) is kept after its last attempt, "
    "and can be shown or replayed; 'never' (or 0) keeps them forever.",
)
KEEP_EVENTS = Setting(
    "TOCSIN_KEEP_EVENTS",
    lambda: "365",
    "Days an outbox event is kept once it is fanned out and no kept delivery needs it; "
    "'never' (or 0) keeps them forever. The newest event, and the newest change of areas "
    "and of schemes, are always kept. The audit log is never pruned.",
)
TRUSTED_PROXIES = Setting(
    "TOCSIN_TRUSTED_PROXIES",
    lambda: "",
    "The reverse proxies in front of tocsin, as addresses or CIDR networks separated by "
    "commas, e.g. 127.0.0.1, ::1, 10.0.0.0/8. Only a request from one of them is believed "
    "about the client's address and scheme (Forwarded, X-Forwarded-For, X-Forwarded-Proto); "
    "from anyone else these headers are ignored. Empty (the default): no proxy is trusted, "
    "and rate limits count the address that connected.",
)
ALL = (DATABASE_URL, SENDER, CAP_SENDER, PUBLIC_URL, ALLOW_PRIVATE_TARGETS, RATE_LIMIT,
       KEYS_DIR, SOURCES, SMTP_URL, MAIL_FROM, KEEP_DELIVERY_ATTEMPTS, KEEP_DELIVERIES,
       KEEP_EVENTS, TRUSTED_PROXIES)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _default_keep(setting: Setting) -> Callable[[], timedelta | None]:
    return lambda: keep_days(setting.name, setting.default(), setting.default())


@dataclass(frozen=True)
class Retention:
    """How long the notification bookkeeping is kept; None: forever. See tocsin prune."""

    delivery_attempts: timedelta | None = field(
        default_factory=_default_keep(KEEP_DELIVERY_ATTEMPTS))
    deliveries: timedelta | None = field(default_factory=_default_keep(KEEP_DELIVERIES))
    events: timedelta | None = field(default_factory=_default_keep(KEEP_EVENTS))


@dataclass(frozen=True)
class Settings:
    database_url: str
    sender: str
    cap_sender: str = "tocsin"
    public_url: str = "http://127.0.0.1:8000"
    allow_private_targets: bool = False
    rate_limit: int = 300
    keys_dir: str = field(default_factory=_default_keys_dir)
    sources: str = ""
    """The sources file for 'tocsin ingest'; empty: none."""
    smtp_url: str = ""
    mail_from: str = "tocsin@localhost"
    trusted_proxies: tuple[Network, ...] = ()
    """The reverse proxies whose forwarding headers are believed; empty: none."""
    retention: Retention = field(default_factory=Retention)

    @property
    def push_contact(self) -> str:
        """The VAPID contact: the bare address of TOCSIN_MAIL_FROM."""
        from email.utils import parseaddr
        return f"mailto:{parseaddr(self.mail_from)[1] or self.mail_from}"


def read(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; InvalidInput names the variable and the bad value."""
    source = os.environ if env is None else env

    def get(setting: Setting) -> str:
        value = source.get(setting.name, "").strip()
        return value or setting.default()

    url = normalise_database_url(get(DATABASE_URL))
    rate = get(RATE_LIMIT)
    if not rate.isdigit() or int(rate) < 1:
        raise InvalidInput(f"{RATE_LIMIT.name}={rate!r} is not a positive whole number",
                           "give requests per minute, e.g. 300")
    cap_sender = get(CAP_SENDER)
    if any(c in cap_sender for c in " ,<&"):
        raise InvalidInput(f"{CAP_SENDER.name}={cap_sender!r} has a space, comma, '<' or '&'",
                           "CAP forbids them in <sender>; e.g. alerts@example.gov")
    public_url = get(PUBLIC_URL).rstrip("/")
    if not public_url.startswith(("http://", "https://")) or " " in public_url:
        raise InvalidInput(f"{PUBLIC_URL.name}={public_url!r} is not an http(s) address",
                           "give the site's address, e.g. https://levels.example.kz")
    private = get(ALLOW_PRIVATE_TARGETS)
    if private not in ("0", "1"):
        raise InvalidInput(f"{ALLOW_PRIVATE_TARGETS.name}={private!r} is not 0 or 1",
                           "write 1 to allow private targets, 0 (the default) to refuse them")
    mail_from = get(MAIL_FROM)
    if "@" not in mail_from or any(c in mail_from for c in "\r\n,;"):
        raise InvalidInput(f"{MAIL_FROM.name}={mail_from!r} is not an e-mail address",
                           "give the address tocsin's e-mail comes from, e.g. alerts@example.kz")
    smtp_url = get(SMTP_URL)
    if smtp_url and not smtp_url.startswith(("smtp://", "smtp+starttls://", "smtps://")):
        raise InvalidInput(f"{SMTP_URL.name} does not start with smtp://, smtp+starttls:// "
                           "or smtps://",
                           "use smtp://HOST:PORT, smtp+starttls://USER:PASSWORD@HOST:587 "
                           "or smtps://USER:PASSWORD@HOST:465")
    retention = Retention(*(keep_days(s.name, get(s), s.default())
                            for s in (KEEP_DELIVERY_ATTEMPTS, KEEP_DELIVERIES, KEEP_EVENTS)))
    return Settings(database_url=url, smtp_url=smtp_url, mail_from=mail_from,
                    trusted_proxies=parse_networks(source.get(TRUSTED_PROXIES.name, "")),
                    retention=retention,
                    sender=get(SENDER), cap_sender=cap_sender,
                    public_url=public_url, allow_private_targets=private == "1",
                    rate_limit=int(rate), keys_dir=str(Path(get(KEYS_DIR)).expanduser()),
                    sources=str(Path(get(SOURCES)).expanduser()) if get(SOURCES) else "")


LONGEST_KEEP = 36_500
"""Days: a hundred years. Longer is 'never' in all but name, and would overflow dates."""


def keep_days(name: str, value: str, example: str) -> timedelta | None:
    """A retention in whole days; None (keep forever) for 'never' or 0. InvalidInput names
    `name` (a variable or a flag) and the bad value."""
    text = value.strip().lower()
    if text == "never":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > LONGEST_KEEP:
        raise InvalidInput(f"{name}={value!r} is not a number of days",
                           f"give whole days from 1 to {LONGEST_KEEP}, e.g. {example}, "
                           "or 'never' (or 0) to keep them forever")
    days = int(text)
    return timedelta(days=days) if days else None


def parse_networks(value: str) -> tuple[Network, ...]:
    """TOCSIN_TRUSTED_PROXIES as networks: addresses or CIDR networks, separated by commas
    or spaces; InvalidInput names the item that is neither."""
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as error:
            if "host bits set" in str(error):
                fixed = ipaddress.ip_network(item, strict=False)
                raise InvalidInput(f"{TRUSTED_PROXIES.name}: {item!r} has host bits set",
                                   f"write the network, {fixed}, or one address without "
                                   "a prefix length") from None
            raise InvalidInput(f"{TRUSTED_PROXIES.name}: {item!r} is not an IP address or "
                               "CIDR network",
                               "give the proxies' addresses or networks separated by "
                               "commas, e.g. 127.0.0.1, ::1, 10.0.0.0/8") from None
    return tuple(networks)


def normalise_database_url(url: str) -> str:
    """Accept sqlite and PostgreSQL URLs; PostgreSQL always through psycopg 3."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        return url
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise InvalidInput(
        f"{DATABASE_URL.name}={url!r} is not a database tocsin can use",
        "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
    )
