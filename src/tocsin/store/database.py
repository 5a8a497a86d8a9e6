"""Engines, migrations and transactions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url

from tocsin.domain.errors import Conflict
from tocsin.store import tables

WRITE = "tocsin_write"


def connect(url: str) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys, a busy timeout, and writes that
    take the write lock at BEGIN so that two writers never dead-lock on an upgrade."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            immediate = connection.get_execution_options().get(WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest migration; returns (before, after)."""
    with engine.begin() as connection:
        config = _alembic_config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
    assert after is not None
    return before, after


def check_current(engine: Engine) -> None:
    """Refuse to work on a database that is missing or behind the code's migrations."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = code_head()
    if current is None:
        raise Conflict(
            f"the database at {engine.url.render_as_string(hide_password=True)} is not set up",
            "run 'tocsin init' first",
        )
    if current != head:
        raise Conflict(
            f"the database is at migration {current}, this tocsin needs {head}",
            "run 'tocsin init' to upgrade it",
        )


@cache
def code_head() -> str | None:
    """The newest migration this code knows (read from the package once per process)."""
    config = Config()
    config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


@contextmanager
def queueing(engine: Engine) -> Iterator[Connection]:
    """A write transaction for the delivery queue's bookkeeping. Unlike `writing` it does not
    lock the state row: these writes are not audited changes, so workers claiming and
    recording deliveries never make a declaration wait, nor each other. (SQLite still takes
    its one write lock at BEGIN.)"""
    with engine.connect().execution_options(**{WRITE: True}) as connection, connection.begin():
        yield connection


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: one consistent view (REPEATABLE READ on PostgreSQL, so that
    every statement of a snapshot build sees the same committed state; SQLite's read
    transaction in WAL mode is a snapshot already)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """The one write transaction of a command. Writers queue on the state row, so the
    audit chain and the version counter advance one writer at a time on every database."""
    with engine.connect().execution_options(**{WRITE: True}) as connection, connection.begin():
        connection.execute(
            select(tables.state.c.id).where(tables.state.c.id == 1).with_for_update()
        )
        yield connection
