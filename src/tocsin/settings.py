"""Settings, declared once: name, default and help feed validation, the CLI and the README."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tocsin.domain.errors import InvalidInput


def _default_database_url() -> str:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{data_home / 'tocsin' / 'tocsin.sqlite3'}"


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
ALL = (DATABASE_URL, SENDER)


@dataclass(frozen=True)
class Settings:
    database_url: str
    sender: str


def read(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; InvalidInput names the variable and the bad value."""
    source = os.environ if env is None else env

    def get(setting: Setting) -> str:
        value = source.get(setting.name, "").strip()
        return value or setting.default()

    url = normalise_database_url(get(DATABASE_URL))
    return Settings(database_url=url, sender=get(SENDER))


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
