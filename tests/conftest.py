"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

PostgreSQL comes from TOCSIN_TEST_POSTGRES_URL (set by scripts/with-postgres, which
`make test` uses). Without it the PostgreSQL variants are skipped, unless
TOCSIN_REQUIRE_POSTGRES=1 (as in CI), which makes its absence an error.

The shared corpus (real CAP alerts, the OASIS schema, real boundaries) sits beside the
repository in ../shared/corpus. A test that reads it is marked `corpus` (or calls
`require_corpus()`); without the corpus it is skipped for one reason, unless
TOCSIN_REQUIRE_CORPUS=1 (as in CI), which makes its absence a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tocsin.demo import kazakhstan_areas_file
from tocsin.ingest.areas import read_areas_csv
from tocsin.service import commands
from tocsin.store.database import connect

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
SET_UP_AT = datetime(2021, 12, 1, tzinfo=UTC)
BACKENDS = ["sqlite", "postgresql"]


CORPUS_ABSENT = (f"the shared corpus is not at {CORPUS} (it sits beside the repository, "
                 "in ../shared/corpus)")


def require_corpus() -> Path:
    """The corpus folder; skips the calling test when it is absent, or fails it under
    TOCSIN_REQUIRE_CORPUS=1. Every corpus test comes here, so the summary shows one reason."""
    if not CORPUS.is_dir():
        if os.environ.get("TOCSIN_REQUIRE_CORPUS") == "1":
            pytest.fail(f"TOCSIN_REQUIRE_CORPUS=1 but {CORPUS_ABSENT}")
        pytest.skip(CORPUS_ABSENT)
    return CORPUS


def corpus_files(folder: str) -> list[Path]:
    """The corpus's XML files in `folder`, to parametrise over; without the corpus one
    stand-in, so that the test is collected and skipped (or failed) like the others."""
    if not CORPUS.is_dir():
        return [CORPUS / folder / "corpus-absent.xml"]
    return sorted((CORPUS / folder).glob("*.xml"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corpus: the test reads the shared corpus in "
                                       "../shared/corpus")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Pytest files a skip under the test that asked for it; corpus skips go under
    `require_corpus` instead, so that the summary gives their reason once."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and isinstance(report.longrepr, tuple)
            and str(report.longrepr[2]).endswith(CORPUS_ABSENT)):
        report.longrepr = (__file__, require_corpus.__code__.co_firstlineno, CORPUS_ABSENT)


@pytest.fixture(autouse=True)
def _corpus_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("corpus") is not None:
        require_corpus()


def postgres_url() -> str | None:
    url = os.environ.get("TOCSIN_TEST_POSTGRES_URL")
    if not url and os.environ.get("TOCSIN_REQUIRE_POSTGRES") == "1":
        pytest.fail("TOCSIN_REQUIRE_POSTGRES=1 but TOCSIN_TEST_POSTGRES_URL is not set; "
                    "run the suite with 'make test'")
    return url


class Databases:
    """Makes empty databases, and copies of a template already set up with the KZ areas."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []
        self._templates: dict[str, str] = {}

    def _admin(self) -> Engine:
        url = postgres_url()
        if url is None:
            pytest.skip("PostgreSQL not available (run the suite with 'make test')")
        return create_engine(url, isolation_level="AUTOCOMMIT")

    def empty(self, backend: str) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return f"sqlite:///{self.root / (name + '.sqlite3')}"
        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.created.append(name)
        return make_url(postgres_url() or "").set(database=name).render_as_string(
            hide_password=False)

    def ready(self, backend: str) -> str:
        """A database with the shipped schemes and Kazakhstan's areas."""
        if backend not in self._templates:
            url = self.empty(backend)
            engine = connect(url)
            commands.initialise(engine, now=SET_UP_AT, actor="test-setup")
            commands.import_areas(engine, read_areas_csv(kazakhstan_areas_file()),
                                  now=SET_UP_AT, actor="test-setup")
            engine.dispose()
            self._templates[backend] = url
        template = self._templates[backend]
        if backend == "sqlite":
            target = self.root / f"t_{uuid.uuid4().hex[:12]}.sqlite3"
            shutil.copy(make_url(template).database or "", target)
            return f"sqlite:///{target}"
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template).database}"'))
        admin.dispose()
        self.created.append(name)
        return make_url(template).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.created or not postgres_url():
            return
        admin = self._admin()
        with admin.connect() as conn:
            for name in reversed(self.created):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(autouse=True)
def _keys_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys made while a test runs (e.g. the VAPID key of browser push, made on first use)
    go to a temporary folder, never into the home folder. Tests may set their own."""
    if not os.environ.get("TOCSIN_KEYS_DIR"):
        monkeypatch.setenv("TOCSIN_KEYS_DIR", str(tmp_path_factory.getbasetemp() / "keys"))


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(databases: Databases, backend: str) -> str:
    """A fresh database with the shipped schemes and Kazakhstan's areas."""
    return databases.ready(backend)


@pytest.fixture
def empty_db_url(databases: Databases, backend: str) -> str:
    """A fresh database with nothing in it, not even tables."""
    return databases.empty(backend)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = connect(db_url)
    yield engine
    engine.dispose()
