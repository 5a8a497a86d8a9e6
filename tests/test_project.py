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
    """Every module `path` imports, anywhere in it (also inside functions), by full name;
    `from tocsin import settings` counts as tocsin.settings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            if base == "tocsin":
                found.update(f"tocsin.{alias.name}" for alias in node.names)
    return found


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    for path in (SRC / "domain").glob("*.py"):
        for module in imports_of(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or module.startswith("tocsin.domain"), (
                f"{path.name} imports {module}")


LAYERS: list[set[str]] = [
    {"domain"},
    {"ingest", "cap", "settings"},
    {"store"},
    {"service"},
    {"render"},
    {"web", "notify"},
    {"cli", "demo"},
]
"""tocsin's packages from the bottom up (DESIGN.md section 4). The top-level modules sit
where their imports put them: `settings` reads the environment into a value and imports only
the domain, so it sits beside ingest and cap and any layer may be handed one; `demo` replays
a story through the service layer for `tocsin demo`, so it sits with the CLI."""
SIBLINGS = {"web": "notify", "notify": "web"}
"""Web and notify share a layer but never import each other: the CLI composes them."""


def layer_of(name: str) -> int:
    for number, members in enumerate(LAYERS):
        if name in members:
            return number
    raise AssertionError(f"tocsin.{name} is in no layer: add it to LAYERS in this test")


def test_every_package_imports_only_its_own_layer_and_below() -> None:
    """The whole order, not only the adapters: domain < ingest, cap (and settings) < store <
    service < render < web, notify < cli (and demo). A package may import packages of its own
    layer or below, never one above; web and notify, siblings, never import each other."""
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts == ("__init__",):
            continue
        home = parts[0]
        for module in imports_of(path):
            if not module.startswith("tocsin.") or module.split(".")[1] == home:
                continue
            target = module.split(".")[1]
            if layer_of(target) > layer_of(home) or SIBLINGS.get(home) == target:
                wrong.append(f"{path.relative_to(SRC)} ({home}) imports {module}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_command_line_starts_without_the_libraries_only_some_commands_need() -> None:
    """`tocsin serve` and every command import the CLI; these libraries take a large share
    of a server's start-up and are imported where they are used (migrating, sending,
    reading shapes)."""
    lazy = ["alembic", "aiohttp", "shapely", "numpy", "psycopg"]
    probe = ("import sys, tocsin.cli.main; "
             f"print(' '.join(m for m in {lazy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


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
