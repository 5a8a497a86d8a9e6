"""Promises about the project itself: layering, documentation, settings, entry point."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin import settings
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tocsin"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    for path in (SRC / "domain").glob("*.py"):
        for module in imports_of(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or module.startswith("tocsin.domain"), (
                f"{path.name} imports {module}")


def test_lower_layers_never_import_the_adapters() -> None:
    adapters = ("tocsin.cli", "tocsin.web")
    for folder in ("domain", "store", "service", "ingest", "render", "cap"):
        for path in (SRC / folder).rglob("*.py"):
            for module in imports_of(path):
                assert not module.startswith(adapters), f"{path} imports {module}"


def test_no_clock_reads_in_the_domain() -> None:
    for path in (SRC / "domain").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"\b(now|utcnow|today)\(", source), path.name
        assert "time.time" not in source, path.name


def command_names() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names.extend(f"{name} {s}" for s in sub) if sub else names.append(name)
    return names


def test_every_command_and_setting_is_in_the_readme() -> None:
    for name in command_names():
        assert f"tocsin {name}" in README, f"README does not mention 'tocsin {name}'"
    for setting in settings.ALL:
        assert setting.name in README, f"README does not document {setting.name}"


def test_readme_two_commands_are_the_makefile_targets() -> None:
    assert "make demo" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_urls(url: str, expected: str) -> None:
    assert settings.read({"TOCSIN_DATABASE_URL": url}).database_url == expected


def test_a_bad_database_url_names_the_variable() -> None:
    with pytest.raises(InvalidInput, match="TOCSIN_DATABASE_URL='mysql://x' is not a database"):
        settings.read({"TOCSIN_DATABASE_URL": "mysql://x"})


def test_default_database_is_a_sqlite_file_under_the_data_home(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert settings.read({}).database_url == f"sqlite:///{tmp_path}/tocsin/tocsin.sqlite3"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def test_the_installed_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tocsin")
    env = {**os.environ, "TOCSIN_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    init = subprocess.run([script, "init"], env=env, capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stderr
    bad = subprocess.run([script, "status", "--at", "yesterday"], env=env, capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "is not an ISO 8601 time" in bad.stderr
    assert "Traceback" not in bad.stderr
