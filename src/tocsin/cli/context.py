"""What every command needs: settings, an engine, the clock, the actor, and error mapping."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy import Engine

from tocsin import settings
from tocsin.domain.errors import InvalidInput, TocsinError
from tocsin.domain.times import parse_instant
from tocsin.store.database import connect

EXIT_BAD_INPUT = 2
EXIT_FINDING = 1

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def now() -> datetime:
    """The only clock the CLI reads."""
    return datetime.now(UTC)


def actor() -> str:
    """Who a local command runs as: the operator at this machine, by login name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"local-operator:{user}"


def current_settings() -> settings.Settings:
    return settings.read()


def engine() -> Engine:
    """The engine for the configured database (one per URL for the life of the process)."""
    return _engine(current_settings().database_url)


@cache
def _engine(url: str) -> Engine:
    return connect(url)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


@contextmanager
def refusals() -> Iterator[None]:
    """Turn the domain's refusals into a message on stderr and exit code 2."""
    try:
        yield
    except TocsinError as error:
        fail(_escape(error.message))


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def instant(value: str | None, what: str) -> datetime | None:
    """Parse a time flag; None stays None."""
    return None if value is None else parse_instant(value, what)


def at_or_now(value: str | None) -> datetime:
    parsed = instant(value, "--at")
    return parsed if parsed is not None else now()


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def languages(lang: str) -> list[str]:
    if not lang.strip():
        raise InvalidInput("--lang is empty", "give a language such as en, ru or kk")
    return [part.strip() for part in lang.split(",") if part.strip()] + ["en"]

