"""Engines, migrations and transactions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import URL, ExceptionContext, make_url

from tocsin.domain.errors import Conflict, Unavailable
from tocsin.store import tables

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (and Mako, Pygments behind it) is imported only to migrate: every command and
# server checks the schema's revision, which needs neither, and importing it took longer
# than the rest of a server's start-up on a small database.

WRITE = "tocsin_write"


def connect(url: str) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys, a busy timeout, and writes that
    take the write lock at BEGIN so that two writers never dead-lock on an upgrade.

    Opening writes nothing to a database that cannot be written (a file:…?mode=ro URL, a
    read-only file or folder, a read-only PostgreSQL), so that reading commands work on a
    backup; a write to it, or to a full disk, raises `Unavailable` naming the fix."""
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        shown = str(_sqlite_path(parsed) or shown)
        _make_folder(parsed)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "do_connect", _open_sqlite)
        event.listen(engine, "connect", _set_up_sqlite)

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            immediate = connection.get_execution_options().get(WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    else:
        engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        refusal = store_refusal(context.original_exception, shown)
        if refusal is not None:
            raise refusal from context.original_exception

    return engine


def _sqlite_path(parsed: URL) -> Path | None:
    """The file of an SQLite URL, plain or file: URI; None in memory."""
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = unquote(urlsplit(database).path)
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def _make_folder(parsed: URL) -> None:
    """Create the database's folder, unless the URL only reads (mode=ro, immutable=1)."""
    path = _sqlite_path(parsed)
    if path is None or parsed.query.get("mode") == "ro" or parsed.query.get("immutable") == "1":
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Unavailable(f"cannot create the folder {path.parent} of the database "
                          f"({error.strerror})",
                          "create it, or point TOCSIN_DATABASE_URL elsewhere") from error


def _open_sqlite(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
                 ) -> sqlite3.Connection:
    """Open the file; a WAL database in a folder we may not write (a read-only backup)
    cannot get its -shm index, so it is opened immutable, which is exact while no -wal
    file holds changes: none can, as no writer could make its index there either."""
    connection: sqlite3.Connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError as error:
        connection.close()
        if getattr(error, "sqlite_errorname", "") != "SQLITE_READONLY_DIRECTORY":
            raise
        filename = str(cargs[0])
        if cparams.get("uri"):
            path = unquote(urlsplit(filename).path)
            target = f"{filename}{'&' if '?' in filename else '?'}immutable=1"
        else:
            path = filename
            target = f"file:{quote(str(Path(filename).absolute()))}?immutable=1"
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise Unavailable(
                f"the SQLite database {path} has changes in {wal} that cannot be read "
                "without writing an index beside them, and its folder is read-only",
                "copy the database with its -wal file to a writable folder and read "
                "the copy") from error
        connection = dialect.loaded_dbapi.connect(target, **{**cparams, "uri": True})
    return connection


def _set_up_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            # A read-only database is read in the journal mode it has.
            if not getattr(error, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
                raise
    cursor.close()


def store_refusal(error: BaseException, url: str) -> Unavailable | None:
    """The refusal for a database that cannot be written (read-only, full, denied), or
    None for any other error. The transaction it broke is rolled back by its caller."""
    name = getattr(error, "sqlite_errorname", None)
    if name is not None:
        detail = str(error)
        if name.startswith("SQLITE_READONLY"):
            return Unavailable(
                f"the database at {url} is read-only ({detail}), so nothing was written",
                "reading commands such as 'tocsin status' and 'tocsin audit verify' work "
                "on it; to change it, let this user write the file and its folder, and "
                "leave mode=ro or immutable=1 out of TOCSIN_DATABASE_URL")
        if name == "SQLITE_FULL":
            return Unavailable(f"the disk of the database at {url} is full ({detail}), so "
                               "nothing was written", "free space on it and run it again")
        if name == "SQLITE_CANTOPEN":
            return Unavailable(f"the database at {url} cannot be opened ({detail})",
                               "check that the file exists and that this user may read "
                               "it and write its folder")
        return None
    state = getattr(error, "sqlstate", None)
    diag = getattr(error, "diag", None)
    detail = (getattr(diag, "message_primary", None) or str(error)).strip()
    if state == "25006":
        return Unavailable(
            f"the database at {url} is read-only ({detail}), so nothing was written",
            "reading commands such as 'tocsin status' and 'tocsin audit verify' work on "
            "it; to change it, connect to the primary server, or turn off "
            "default_transaction_read_only for the database or its role")
    if state == "53100":
        return Unavailable(f"the disk of the database at {url} is full ({detail}), so "
                           "nothing was written", "free space on the database server's "
                           "disk and run it again")
    if state == "42501":
        return Unavailable(f"the database role of {url} lacks a privilege ({detail}), so "
                           "nothing was written", "grant it to the role, or connect as "
                           "the role that ran 'tocsin init'")
    return None


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest migration; returns (before, after)."""
    from alembic import command

    with engine.begin() as connection:
        config = _alembic_config(connection)
        before = current_revision(connection)
        command.upgrade(config, "head")
        after = current_revision(connection)
    assert after is not None
    return before, after


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at (Alembic's version table); None when it has none."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_current(engine: Engine) -> None:
    """Refuse to work on a database that is missing or behind the code's migrations."""
    with engine.connect() as connection:
        current = current_revision(connection)
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


def check_writable(engine: Engine, why: str) -> None:
    """Refuse, before a long-running writer starts, a database it cannot write: tries an
    update of the state row and rolls it back, so nothing is written either way."""
    try:
        with (engine.connect().execution_options(**{WRITE: True}) as connection,
              connection.begin() as transaction):
            connection.execute(update(tables.state).where(tables.state.c.id == 1)
                               .values(version=tables.state.c.version))
            transaction.rollback()
    except Unavailable as error:
        raise Unavailable(f"{why}, but {error.problem}", error.fix) from error


@cache
def code_head() -> str | None:
    """The newest migration this code knows: the one revision no other revises, read from
    the headers of the migration files once per process (as Alembic reads them)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for entry in (files("tocsin.store") / "migrations" / "versions").iterdir():
        if not entry.name.endswith(".py"):
            continue
        header = entry.read_text(encoding="utf-8")
        found = _REVISION.search(header)
        if found is not None:
            revisions.add(found.group(1))
            below = _DOWN_REVISION.search(header)
            if below is not None:
                revised.add(below.group(1))
    heads = revisions - revised
    if len(heads) > 1:
        raise AssertionError(f"the migrations have several heads: {sorted(heads)}")
    return heads.pop() if heads else None


_REVISION = re.compile(r"""^revision\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_DOWN_REVISION = re.compile(r"""^down_revision\s*=\s*["']([^"']+)["']""", re.MULTILINE)


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
