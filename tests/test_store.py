"""The store on both databases: migrations match the tables, times stay UTC, SQLite settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from tocsin.store import tables
from tocsin.store.database import code_head, connect, current_revision, migrate


def test_migrations_build_exactly_the_declared_tables(empty_db_url: str) -> None:
    engine = connect(empty_db_url)
    before, after = migrate(engine)
    assert before is None and after == "0008"
    assert migrate(engine) == ("0008", "0008")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diff == []
    engine.dispose()


def test_the_code_head_and_revision_read_without_alembic_are_alembics(
        empty_db_url: str) -> None:
    from importlib.resources import files

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(files("tocsin.store") / "migrations"))
    assert code_head() == ScriptDirectory.from_config(config).get_current_head()
    engine = connect(empty_db_url)
    with engine.connect() as conn:
        assert current_revision(conn) is None
    migrate(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == MigrationContext.configure(conn).get_current_revision()
    engine.dispose()


def test_times_come_back_as_the_same_instant_in_utc(empty_db_url: str) -> None:
    engine = connect(empty_db_url)
    migrate(engine)
    almaty = timezone(timedelta(hours=6))
    instant = datetime(2022, 1, 7, 9, 0, 0, 123456, tzinfo=almaty)
    with engine.begin() as conn:
        conn.execute(tables.state.update().values(changed_at=instant))
    with engine.connect() as conn:
        stored = conn.execute(select(tables.state.c.changed_at)).scalar_one()
    assert stored == instant and stored.utcoffset() == timedelta(0)
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    engine = connect(f"sqlite:///{tmp_path}/x/db.sqlite3")  # the folder is created
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
