"""Migrations with data: for every Alembic revision (found in the migrations folder, so a new
one is picked up), a database at that revision is filled with the rows its schema can hold,
upgraded to head, and must keep every row and value, verify its audit chain, and read the
same levels as the database the rows came from; the upgraded database then takes new writes.

The rows come from a database written at head by the real code (the January 2022 replay, a
cancellation and a draft, users, tokens, a password reset, a session, subscriptions, and
delivered, failed and pending deliveries), cut down to the tables and columns that exist at
the revision, and written with SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, MetaData, Table, delete, insert, select, text
from tests.conftest import SET_UP_AT, Databases

from tocsin import demo
from tocsin.domain.access import Role, Scope
from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.domain.notify import Channel, Outcome
from tocsin.domain.resolve import effective_levels
from tocsin.ingest.areas import read_areas_csv
from tocsin.service import commands, deliveries, levels, people, queries, subscriptions
from tocsin.service.deliveries import Result
from tocsin.store import tables as t
from tocsin.store.database import connect, reading

ACTOR = "migration-test"
PASSWORD = "correct horse battery staple"
LATER = demo.t("2022-01-21T12:00+06:00")
"""After the replay: the cancellation, the draft, and the deliveries."""

NOT_BACKFILLED = {
    "areas.grid_row": "0002: tile-grid positions come from area files imported later",
    "areas.grid_col": "0002: as grid_row",
    "declarations.submitted_at": "0003: before approval existed nothing was submitted",
    "declarations.cap_sender": "0004: NULL means the configured sender, as it was",
    "state.public_changed_at": "0004: set to the last change of any kind",
    "outbox.fanned_out_at": "0005: events from before notifications count as sent",
    "outbox.fanned_out_to": "0005: as fanned_out_at",
    "users.email": "0005: users had no e-mail address",
    "subscriptions.confirm_sent_at": "0006: when a confirmation was sent was not kept",
}
"""Columns added to tables that already held rows, whose value after the upgrade cannot be
what the code writes today, and why. Every other column added later must be filled by its
migration exactly as the code fills it (e.g. a backfill)."""


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
    return ScriptDirectory.from_config(config)


REVISIONS = [r.revision for r in reversed(list(_script().walk_revisions()))]
"""Every revision in the migrations folder, oldest first."""


def upgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


# --- the rows, written at head by the real code ----------------------------------------------


@dataclass(frozen=True)
class Source:
    engine: Engine
    rows: dict[str, list[dict[str, Any]]]


def write_story(engine: Engine) -> None:
    """Everything a year-old tocsin holds, through the service layer."""
    commands.initialise(engine, now=SET_UP_AT, actor=ACTOR)
    commands.import_areas(engine, read_areas_csv(demo.kazakhstan_areas_file()), now=SET_UP_AT,
                          actor=ACTOR)
    day = timedelta(days=1)
    people.add_user(engine, "admin", PASSWORD, [Role.ADMIN], [], break_glass=False,
                    now=SET_UP_AT + day, by=None, actor=ACTOR)
    people.add_user(engine, "issuer-kz", PASSWORD, [Role.ISSUER, Role.APPROVER], ["KZ"],
                    break_glass=True, now=SET_UP_AT + day, by=None, actor=ACTOR,
                    email="issuer@example.kz")
    people.create_token(engine, "issuer-kz", [Scope.DECLARE], label="newsroom desk",
                        now=SET_UP_AT + day, by=None, actor=ACTOR)
    people.issue_password_reset(engine, "admin", now=SET_UP_AT + day, by=None, actor=ACTOR)
    people.login(engine, "issuer-kz", PASSWORD, now=SET_UP_AT + day)
    subscriptions.add(engine, channel=Channel.WEBHOOK, target="http://127.0.0.1:9/almaty",
                      areas=["KZ-75"], owner="user:issuer-kz", now=SET_UP_AT + 2 * day,
                      allow_private=True, actor=ACTOR)
    subscriptions.add(engine, channel=Channel.WEBHOOK, target="http://127.0.0.1:9/down",
                      areas=["KZ"], schemes=["kz-terror"], owner="t", now=SET_UP_AT + 2 * day,
                      allow_private=True, actor=ACTOR)
    subscriptions.add(engine, channel=Channel.EMAIL, target="reader@example.kz",
                      areas=["KZ-71"], owner="public", language="ru",
                      now=SET_UP_AT + 2 * day, actor=ACTOR)
    [first] = commands.declare(engine, [demo.countrywide()], now=demo.COUNTRYWIDE_AT,
                               actor=ACTOR)
    regional = commands.declare(engine, demo.step_down(first.id),
                                now=demo.STEP_DOWN_PUBLISHED_AT, actor=ACTOR)
    levels.run_due(engine, demo.t("2022-01-25T12:00+06:00"))  # the 10-day terms end
    commands.cancel(engine, regional[-1].id, reason="threat assessed as lower",
                    now=LATER, actor=ACTOR)
    commands.declare(engine, [DeclarationRequest(
        scheme="meteoalarm", level="orange", areas=("KZ-75",),
        texts={"en": Statement("Heavy snow", "Drafted, not published")},
        sender="Kazhydromet", effective=LATER + day, expires=LATER + 3 * day)],
        now=LATER, actor=ACTOR, publish=False)
    deliveries.fan_out(engine, LATER)
    claimed = deliveries.claim(engine, LATER, worker="w1", limit=1000)
    deliveries.record(engine, [
        Result(c.id, Outcome(True, "204 No Content", 204) if c.target.endswith("almaty")
               else Outcome(False, "503 Service Unavailable", 503), LATER, 12)
        for c in claimed[:-1]], worker="w1")  # the last one stays leased


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    folder = tmp_path_factory.mktemp("migration-source")
    engine = connect(f"sqlite:///{folder / 'head.sqlite3'}")
    write_story(engine)
    with reading(engine) as conn:
        rows = {table.name: [dict(row._mapping) for row in conn.execute(select(table))]
                for table in t.metadata.sorted_tables}
    yield Source(engine, rows)
    engine.dispose()


def test_the_story_fills_every_table_it_should(source: Source) -> None:
    """The rows exercise the schema: only tables of features the story does not use are
    empty (imported CAP, WebSub, reminders)."""
    empty = sorted(name for name, rows in source.rows.items() if not rows)
    unused = {"cap_messages", "websub_subscriptions", "reminders", "cancel_requests",
              "cap_documents"}
    assert set(empty) <= unused, (f"{sorted(set(empty) - unused)} hold no rows: extend "
                                  "write_story so that the upgrade is tried with some")
    statuses = {r["status"] for r in source.rows["deliveries"]}
    assert {"delivered", "pending", "leased"} <= statuses, statuses
    assert {r["status"] for r in source.rows["declarations"]} >= {"published", "draft"}


# --- a database at one revision, filled, upgraded ---------------------------------------------


def _parents_first(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a table that refers to itself (areas.parent), each after the one it names."""
    own = [(fk.parent.name, fk.column.name) for fk in table.foreign_keys
           if fk.column.table.name == table.name]
    if not own:
        return rows
    ordered: list[dict[str, Any]] = []
    placed: set[Any] = set()
    waiting = list(rows)
    while waiting:
        ready = [r for r in waiting
                 if all(r[col] is None or r[col] in placed for col, _ in own)]
        assert ready, f"{table.name} refers to itself in a cycle"
        for r in ready:
            placed.update(r[target] for _, target in own)
        ordered.extend(ready)
        waiting = [r for r in waiting if r not in ready]
    return ordered


def present_columns(conn: Connection) -> dict[str, dict[str, Any]]:
    """The tables at the database's revision, with their reflected columns."""
    found = MetaData()
    found.reflect(bind=conn)
    return {name: {c.name: c for c in table.columns} for name, table in found.tables.items()}


def fill(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Write `rows`, cut to the tables and columns that exist, replacing what the migrations
    wrote (the state row, the schedule); returns the columns written per table."""
    written: dict[str, list[str]] = {}
    with engine.begin() as conn:
        present = present_columns(conn)
        tables = [table for table in t.metadata.sorted_tables if table.name in present]
        for table in reversed(tables):
            conn.execute(delete(table))
        for table in tables:
            columns = present[table.name]
            missing = [name for name, c in columns.items()
                       if name not in table.c and not c.nullable and c.server_default is None]
            assert not missing, (f"{table.name}.{missing} exist at this revision but no longer "
                                 "at head: give them values here")
            names = [c.name for c in table.columns if c.name in columns]
            written[table.name] = names
            cut = Table(table.name, MetaData(), *(Column(n, table.c[n].type) for n in names))
            values = [{n: r[n] for n in names} for r in rows[table.name]]
            if values:
                conn.execute(insert(cut), _parents_first(table, values))
        if conn.dialect.name == "postgresql":  # ids written by hand: sequences follow, as
            for table in tables:              # after a restore
                for key in table.primary_key.columns:
                    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                            {"t": table.name, "c": key.name}).scalar()
                    if sequence and rows[table.name]:
                        conn.execute(text(f"SELECT setval('{sequence}', "
                                          f"(SELECT max({key.name}) FROM {table.name}))"))
    return written


def _key(table: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c.name] for c in table.primary_key.columns)


def levels_seen(engine: Engine) -> dict[tuple[str, str, str], tuple[str | None, list[str]]]:
    """Every area's level under every scheme at the replay's instants and later, as the
    public side reads them: (instant, scheme, area) → (level, declarations behind it)."""
    out = {}
    instants = [at for _, at in demo.INSTANTS] + [LATER + timedelta(days=2)]
    with reading(engine) as conn:
        for at in instants:
            for world in (queries.world_of(conn, published_only=True),
                          queries.world_of(conn, published_only=True, holding_from=at)):
                for key in sorted(world.schemes):
                    for code, e in effective_levels(world.tree, world.history(key), at).items():
                        seen = (e.level.key if e.level else None,
                                sorted(s.declaration.id for s in e.sources))
                        previous = out.setdefault((at.isoformat(), key, code), seen)
                        assert previous == seen, (at, key, code, "holding_from reads otherwise")
    return out


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_database_at_each_revision_upgrades_with_its_data(
        revision: str, source: Source, databases: Databases, backend: str) -> None:
    engine = connect(databases.empty(backend))
    try:
        upgrade(engine, revision)
        written = fill(engine, source.rows)
        upgrade(engine, "head")

        with reading(engine) as conn:
            after = {name: [dict(row._mapping)
                            for row in conn.execute(select(t.metadata.tables[name]))]
                     for name in written}
        lost, changed = [], []
        for name, columns in written.items():
            table = t.metadata.tables[name]
            before = {_key(table, r): r for r in source.rows[name]}
            now = {_key(table, r): r for r in after[name]}
            if set(before) != set(now):
                lost.append(f"{name}: {len(before)} rows before, {len(now)} after "
                            f"(missing {sorted(set(before) - set(now))[:3]})")
                continue
            added = [c.name for c in table.columns if c.name not in columns
                     and f"{name}.{c.name}" not in NOT_BACKFILLED]
            for key, row in before.items():
                for column in [*columns, *added]:
                    if now[key][column] != row[column]:
                        changed.append(f"{name}{list(key)}.{column}: {row[column]!r} became "
                                       f"{now[key][column]!r}"
                                       + (" (added after this revision: backfill it, or "
                                          "name it in NOT_BACKFILLED)"
                                          if column in added else ""))
        assert not lost, lost
        assert not changed, changed[:10]

        verdict = queries.verify_audit(engine)
        assert verdict.ok, verdict.problem
        assert verdict.checked == len(source.rows["audit_log"])
        assert levels_seen(engine) == levels_seen(source.engine)

        # The upgraded database takes new changes: ids continue, the chain grows.
        newest = max(r["id"] for r in source.rows["outbox"])
        commands.declare(engine, [DeclarationRequest(
            scheme="kz-terror", level="high", areas=("KZ-75",),
            texts={"en": Statement("After the upgrade")}, sender="test")],
            now=LATER + timedelta(days=30), actor=ACTOR)
        deliveries.fan_out(engine, LATER + timedelta(days=30))
        with reading(engine) as conn:
            assert conn.execute(select(t.outbox.c.id).order_by(t.outbox.c.id.desc())
                                .limit(1)).scalar_one() > newest
        verdict = queries.verify_audit(engine)
        assert verdict.ok and verdict.checked == len(source.rows["audit_log"]) + 1
    finally:
        engine.dispose()


def test_revisions_are_found_in_the_migrations_folder() -> None:
    folder = Path(str(files("tocsin.store") / "migrations" / "versions"))
    files_found = sorted(p.name for p in folder.glob("[0-9]*.py"))
    assert len(REVISIONS) == len(files_found) >= 6
    assert REVISIONS[0] == "0001" and REVISIONS[-1] == _script().get_current_head()
