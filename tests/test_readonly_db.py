"""A database that cannot be written, through the real command line: read-only (an SQLite
backup opened mode=ro or immutable=1, a file and folder without write permission, a
PostgreSQL database whose transactions are read-only, a role that may only SELECT) or on a
full disk. Reading commands answer as on the original, so that a backup can be verified;
writing commands exit 2 naming the problem and the fix, and write nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from tests.conftest import Databases, postgres_url
from tests.helpers import AUTHORITY_PASSWORD, assert_error, dump
from tests.web_server import free_port
from typer.testing import CliRunner

from tocsin.cli import context
from tocsin.cli.main import app
from tocsin.domain.access import ROLE_SCOPES, Role
from tocsin.service import people
from tocsin.store.database import connect, store_refusal
from tocsin.web.app import create_app

runner = CliRunner()
TOCSIN = Path(sys.executable).parent / "tocsin"
AT = "2030-01-01T00:00:00Z"
READS = [
    ("status", "--at", AT),
    ("explain", "KZ-75", "--at", AT),
    ("history", "KZ-75"),
    ("audit", "verify"),
    ("audit", "show"),
    ("areas", "list"),
    ("schemes", "list"),
    ("users", "list"),
    ("tokens", "list"),
    ("subscriptions", "list"),
    ("deliveries", "list"),
]
"""Reading commands, each run with --json."""
DECLARE = ("declare", "--scheme", "kz-terror", "--level", "critical", "--area", "KZ-19",
           "--headline", "Refused")
ISSUER = "issuer-kz"


def writes(declared: str) -> list[tuple[str, ...]]:
    return [DECLARE, (*DECLARE, "--draft"), ("cancel", declared, "--reason", "over"),
            ("prune",)]


def cli(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200"})


def tocsin(url: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The installed `tocsin` program in a process of its own."""
    env = {**os.environ, "TOCSIN_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run([*prefix, str(TOCSIN), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def reads_of(url: str) -> dict[str, Any]:
    """What every reading command prints, as JSON, on the database at `url`."""
    out = {}
    for args in READS:
        result = cli(url, *args, "--json")
        assert result.exit_code == 0, (args, result.output)
        out[" ".join(args)] = json.loads(result.stdout)
    return out


def assert_refused(exit_code: int, output: str, *phrases: str) -> None:
    """Exit 2 and one message naming the problem and the fix; no traceback."""
    assert exit_code == 2, output
    assert "Traceback" not in output, output
    for phrase in ("error: ", "nothing was written", *phrases):
        assert phrase in output, output


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = connect(url)
    try:
        return dump(engine)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Original:
    url: str
    declared: str
    """The id of a published declaration in it."""
    token: str
    """An API token of an issuer for all KZ."""


def original(databases: Databases, backend: str) -> Original:
    """A writable database with a published declaration and an issuer with a token."""
    url = databases.ready(backend)
    made = cli(url, *DECLARE[:-1], "Critical in Almaty", "--area", "KZ-75", "--json")
    assert made.exit_code == 0, made.output
    engine = connect(url)
    at = datetime.now(UTC)
    people.add_user(engine, ISSUER, AUTHORITY_PASSWORD, (Role.ISSUER,), ("KZ",),
                    break_glass=False, now=at,
                    by=None, actor="test-setup")
    token = people.create_token(engine, ISSUER, sorted(ROLE_SCOPES[Role.ISSUER]), label="t",
                                now=at, by=None, actor="test-setup")
    engine.dispose()
    return Original(url, json.loads(made.stdout)[0]["id"], token.secret)


# --- read-only doors -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOnly:
    original: Original
    url: str
    """The same database through a door that cannot write."""
    refusal: str
    """What the refusal of a write says."""


DOORS = ["sqlite mode=ro", "sqlite immutable=1", "postgresql read-only transactions",
         "postgresql SELECT-only role"]


def _admin(url: str) -> Any:
    return create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=DOORS)
def read_only(request: pytest.FixtureRequest, databases: Databases) -> Iterator[ReadOnly]:
    door = str(request.param)
    backend = door.split()[0]
    if backend == "postgresql" and postgres_url() is None:
        pytest.skip("PostgreSQL not available (run the suite with 'make test')")
    made = original(databases, backend)
    parsed = make_url(made.url)
    if backend == "sqlite":
        query = door.split()[1]
        # At rest, as a backup is: immutable=1 would not see changes still in the WAL.
        context._engine(made.url).dispose()
        yield ReadOnly(made, f"sqlite:///file:{parsed.database}?{query}&uri=true",
                       "is read-only")
        return
    # A URL of its own, so that the CLI's engine for the original (opened read-write
    # before the change) is not the one the door uses.
    door_url = parsed.update_query_dict({"application_name": "read-only-door"})
    if door.endswith("transactions"):
        admin = _admin(postgres_url() or "")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{parsed.database}" '
                              "SET default_transaction_read_only = on"))
        admin.dispose()
        yield ReadOnly(made, door_url.render_as_string(hide_password=False), "is read-only")
        return
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin, owner = _admin(postgres_url() or ""), _admin(made.url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    with owner.connect() as conn:
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    url = door_url.set(username=role, password=None).render_as_string(hide_password=False)
    yield ReadOnly(made, url, "lacks a privilege")
    context._engine(url).dispose()  # the CLI's engine, so that the role has no session
    with owner.connect() as conn:
        conn.execute(text(f'DROP OWNED BY "{role}"'))
    with admin.connect() as conn:
        conn.execute(text(f'DROP ROLE "{role}"'))
    admin.dispose()
    owner.dispose()


def test_reading_commands_answer_as_on_the_original(read_only: ReadOnly) -> None:
    assert reads_of(read_only.url) == reads_of(read_only.original.url)


def test_writing_commands_are_refused_with_the_fix_and_write_nothing(
        read_only: ReadOnly) -> None:
    before = contents(read_only.original.url)
    for args in writes(read_only.original.declared):
        result = cli(read_only.url, *args)
        assert_refused(result.exit_code, result.output, read_only.refusal)
    assert contents(read_only.original.url) == before


def test_the_server_refuses_to_start_its_worker_and_serves_without_it(
        read_only: ReadOnly) -> None:
    """`tocsin serve` exits before listening, naming --no-worker; the app without a worker
    answers reads and refuses a change with 503 in the one error shape."""
    served = tocsin(read_only.url, "serve", "--port", str(free_port()))
    assert_refused(served.returncode, served.stderr, read_only.refusal, "--no-worker")
    worker = tocsin(read_only.url, "worker")
    assert_refused(worker.returncode, worker.stderr, read_only.refusal)

    engine = connect(read_only.url)
    before = contents(read_only.original.url)

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=create_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, path, **kwargs)
        return asyncio.run(go())

    try:
        assert call("GET", "/api/v1/levels").status_code == 200
        assert call("GET", "/").status_code == 200
        refused = call("POST", "/api/v1/authority/declarations",
                       headers={"authorization": f"Bearer {read_only.original.token}"},
                       json={"scheme": "kz-terror", "level": "critical", "areas": ["KZ-19"],
                             "texts": {"en": {"headline": "Refused"}}})
        assert_error(refused, 503, read_only.refusal)
    finally:
        engine.dispose()
    assert contents(read_only.original.url) == before


def test_a_backup_whose_file_and_folder_may_not_be_written(databases: Databases,
                                                          tmp_path: Path) -> None:
    """A WAL database copied into a folder of mode 0555, the file 0444, through the real
    program: SQLite cannot make the index a WAL read needs beside it, so tocsin reads it
    immutable. As root, which ignores modes, the program runs without that power."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, which writes whatever the file modes say, and no "
                        "setpriv to drop that power (util-linux)")
        prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")
    made = original(databases, "sqlite")
    backup = tmp_path / "backup"
    backup.mkdir()
    copy = backup / "tocsin.sqlite3"
    with sqlite3.connect(make_url(made.url).database or "") as source, \
            sqlite3.connect(copy) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode=WAL")
    target.close()
    source.close()
    assert copy.read_bytes()[18] == 2  # WAL, the hard case
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    url = f"sqlite:///{copy}"
    expected = reads_of(made.url)
    copy.chmod(0o444)
    backup.chmod(0o555)
    try:
        for args in [("status", "--at", AT), ("audit", "verify"), ("history", "KZ-75")]:
            result = tocsin(url, *args, "--json", prefix=prefix)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == expected[" ".join(args)]
        for args in writes(made.declared):
            result = tocsin(url, *args, prefix=prefix)
            assert_refused(result.returncode, result.stderr, "is read-only", str(copy))
    finally:
        backup.chmod(0o755)
        copy.chmod(0o644)
    assert sorted(os.listdir(backup)) == ["tocsin.sqlite3"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest


# --- a full disk ---------------------------------------------------------------------------


def big_change(folder: Path) -> tuple[str, ...]:
    """A declaration whose text needs more room than the database has left."""
    path = folder / "big.toml"
    path.write_text('[[declaration]]\nscheme = "kz-terror"\nlevel = "critical"\n'
                    'areas = ["KZ-19"]\n[declaration.texts.en]\nheadline = "Refused"\n'
                    f'description = "{"x" * 100_000}"\n', encoding="utf-8")
    return ("declare", "--from-file", str(path))


def test_a_full_sqlite_database_refuses_a_change_and_keeps_none_of_it(
        databases: Databases, tmp_path: Path) -> None:
    """In process: the CLI's own engine is limited to the pages the file has (PRAGMA
    max_page_count, which SQLite answers with SQLITE_FULL as for a full disk)."""
    made = original(databases, "sqlite")
    big = big_change(tmp_path)
    engine = context._engine(made.url)  # the engine the CLI uses for this URL
    engine.dispose()

    def limit(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    event.listen(engine, "connect", limit)
    try:
        before = contents(made.url)
        result = cli(made.url, *big)
        assert_refused(result.exit_code, result.output, "is full", "free space")
        assert contents(made.url) == before
    finally:
        event.remove(engine, "connect", limit)
        engine.dispose()
    assert cli(made.url, *big).exit_code == 0  # with room, the same change goes in


def test_a_full_disk_refuses_a_change_and_keeps_none_of_it(databases: Databases,
                                                          tmp_path: Path) -> None:
    """A real full disk: the database on a tmpfs with a little room left, through the real
    program; after the disk grows, the same change goes in."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the max_page_count test covers a "
                    "full SQLite database without it")
    made = original(databases, "sqlite")
    big = big_change(tmp_path)
    context._engine(made.url).dispose()  # checkpointed: the file holds everything
    small = tmp_path / "small"
    small.mkdir()
    source = Path(make_url(made.url).database or "")
    room = source.stat().st_size + 32 * 1024 + 48 * 1024  # the file, its WAL index, a little
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs",
                              str(small)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        shutil.copy(source, small / "tocsin.sqlite3")
        url = f"sqlite:///{small / 'tocsin.sqlite3'}"
        before = contents(url)
        result = tocsin(url, *big)
        assert_refused(result.returncode, result.stderr, "is full", "free space")
        assert contents(url) == before
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        assert tocsin(url, *big).returncode == 0
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_full_postgresql_disk_is_named_with_its_fix() -> None:
    """The mapping only: filling a PostgreSQL server's disk is beyond a test's reach."""
    error = psycopg.errors.DiskFull("could not extend file \"base/1/2\": No space left on "
                                    "device")
    refusal = store_refusal(error, "postgresql+psycopg://tocsin@db/tocsin")
    assert refusal is not None
    assert refusal.problem.startswith("the disk of the database at "
                                      "postgresql+psycopg://tocsin@db/tocsin is full")
    assert "nothing was written" in refusal.problem and "free space" in (refusal.fix or "")
    assert store_refusal(psycopg.errors.UniqueViolation("duplicate"), "x") is None
