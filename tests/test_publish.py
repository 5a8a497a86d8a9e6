"""The static mirror is incremental: only changed files are written, each atomically, only
the mirror's own vanished files are deleted, and nothing outside its manifest is touched.

The first half drives `publish_site` with a small stand-in site whose groups and signatures
the test controls; the second half publishes real snapshots (SQLite and PostgreSQL) and goes
through the CLI's runner."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.helpers import request
from typer.testing import CliRunner

from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput
from tocsin.service import commands
from tocsin.web import publish as mirror
from tocsin.web.documents import Document, document
from tocsin.web.publish import MARKER, STATE, publish, publish_site
from tocsin.web.snapshot import build

MODIFIED = datetime(2022, 1, 7, tzinfo=UTC)
Groups = dict[str, tuple[str | None, dict[str, bytes]]]
"""group key → (signature, path → bytes)"""


class StandIn:
    """A site of plain-text documents in groups; records what it was asked to render."""

    def __init__(self, groups: Groups, *, fail_at: str | None = None) -> None:
        self.groups_ = groups
        self.rendered: list[str] = []
        self.fail_at = fail_at

    def paths(self) -> Iterator[str]:
        for _, files in self.groups_.values():
            yield from files

    def render(self, path: str) -> Document:
        if path == self.fail_at:
            raise RuntimeError("the process dies here")
        self.rendered.append(path)
        body = next(files[path] for _, files in self.groups_.values() if path in files)
        return document(body, "text/plain", MODIFIED)

    def groups(self) -> Iterator[tuple[str, str | None, list[str]]]:
        for key, (signature, files) in self.groups_.items():
            yield key, signature, list(files)


class Ungrouped(StandIn):
    """A site from before `Site.groups()`: one group, rendered every time."""

    groups = None  # type: ignore[assignment]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file in the mirror but its manifest, by name."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(MARKER)}


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every file: a rewritten file gets a new inode (os.replace)."""
    return {name: ((folder / name).stat().st_ino, (folder / name).stat().st_mtime_ns)
            for name in files_of(folder)}


def two_regions() -> Groups:
    return {"global": ("g1", {"/index.txt": b"overview 1", "/levels.txt": b"levels 1"}),
            "area:A": ("a1", {"/areas/A.txt": b"A calm", "/badge/A.txt": b"A grey"}),
            "area:B": ("b1", {"/areas/B.txt": b"B calm", "/badge/B.txt": b"B grey"})}


# -- the stand-in site ----------------------------------------------------------------------

def test_first_publish_writes_all_then_only_groups_whose_signature_moved(tmp_path: Path
                                                                         ) -> None:
    folder = tmp_path / "mirror"
    groups = two_regions()
    first = publish_site(StandIn(groups), 1, folder)
    assert (first.written, first.unchanged, first.deleted, first.files) == (6, 0, 0, 6)
    assert files_of(folder) == {"index.txt": b"overview 1", "levels.txt": b"levels 1",
                                "areas/A.txt": b"A calm", "badge/A.txt": b"A grey",
                                "areas/B.txt": b"B calm", "badge/B.txt": b"B grey"}
    before = stamps(folder)
    site = StandIn(groups)
    again = publish_site(site, 1, folder)
    assert (again.written, again.unchanged, again.rendered, site.rendered) == (0, 6, 0, [])
    # Region A changes: its group and the global one move; only differing bytes are written.
    groups["area:A"] = ("a2", {"/areas/A.txt": b"A red", "/badge/A.txt": b"A grey"})
    groups["global"] = ("g2", {"/index.txt": b"overview 2", "/levels.txt": b"levels 1"})
    site = StandIn(groups)
    result = publish_site(site, 2, folder)
    assert sorted(site.rendered) == ["/areas/A.txt", "/badge/A.txt", "/index.txt",
                                     "/levels.txt"]
    assert (result.written, result.unchanged, result.deleted) == (2, 4, 0)
    assert result.bytes_written == len(b"A red") + len(b"overview 2")
    after = stamps(folder)
    assert {n for n in after if after[n] != before[n]} == {"areas/A.txt", "index.txt"}
    manifest = json.loads((folder / MARKER).read_text())
    assert manifest["version"] == 2 and manifest["groups"]["area:A"][0] == mirror._digest("a2")


def test_without_a_signature_a_group_is_rendered_and_compared(tmp_path: Path) -> None:
    groups = two_regions()
    groups["global"] = (None, groups["global"][1])
    publish_site(StandIn(groups), 1, tmp_path)
    site = StandIn(groups)
    result = publish_site(site, 1, tmp_path)
    assert sorted(site.rendered) == ["/index.txt", "/levels.txt"] and result.written == 0
    site = Ungrouped(groups)  # no groups(): everything rendered, nothing rewritten
    result = publish_site(site, 1, tmp_path)
    assert len(site.rendered) == 6 and (result.written, result.unchanged) == (0, 6)


def test_only_the_mirrors_own_vanished_files_are_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    groups = two_regions()
    publish_site(StandIn(groups), 1, folder)
    (folder / "areas" / "notes.txt").write_text("the operator's own file")
    (folder / "robots.txt").write_text("User-agent: *\n")
    old = tmp_path / "site.old"  # unrelated, beside the mirror (issue 15 item 13)
    old.mkdir()
    (old / "keep.txt").write_text("not the mirror's")
    del groups["area:B"]  # a whole group goes, and one file of another
    groups["area:A"] = ("a2", {"/areas/A.txt": b"A calm"})
    result = publish_site(StandIn(groups), 2, folder)
    assert (result.written, result.deleted, result.files) == (0, 3, 3)
    assert set(files_of(folder)) == {"index.txt", "levels.txt", "areas/A.txt",
                                     "areas/notes.txt", "robots.txt"}
    assert (old / "keep.txt").read_text() == "not the mirror's"
    publish_site(StandIn(groups), 3, folder)
    assert (old / "keep.txt").is_file() and (folder / "robots.txt").is_file()


def test_a_document_moving_to_another_group_is_not_deleted(tmp_path: Path) -> None:
    groups = two_regions()
    publish_site(StandIn(groups), 1, tmp_path)
    badge = groups["area:B"][1].pop("/badge/B.txt")
    groups["area:B"] = ("b2", groups["area:B"][1])
    groups["global"] = ("g2", {**groups["global"][1], "/badge/B.txt": badge})
    result = publish_site(StandIn(groups), 2, tmp_path)
    assert (tmp_path / "badge/B.txt").read_bytes() == b"B grey"
    assert (result.deleted, result.files) == (0, 6)
    result = publish_site(StandIn(groups), 3, tmp_path)
    assert (result.written, result.deleted) == (0, 0)


def test_a_publish_that_dies_half_way_is_repaired_by_the_next(tmp_path: Path) -> None:
    before = two_regions()
    publish_site(StandIn(before), 1, tmp_path)
    changed = two_regions()
    changed["area:A"] = ("a2", {"/areas/A.txt": b"A red", "/badge/A.txt": b"A red badge"})
    changed["area:B"] = ("b2", {"/areas/B.txt": b"B red", "/badge/B.txt": b"B grey"})
    with pytest.raises(RuntimeError):
        publish_site(StandIn(changed, fail_at="/areas/B.txt"), 2, tmp_path)
    assert (tmp_path / "areas/A.txt").read_bytes() == b"A red"  # written before it died
    assert (tmp_path / STATE / "pending.json").is_file()
    # The change is withdrawn: A's signature is the manifest's again, yet its files are
    # brought back, because the dead publish had said which groups it was changing.
    result = publish_site(StandIn(before), 3, tmp_path)
    assert files_of(tmp_path) == {path.lstrip("/"): body for _, files in before.values()
                                  for path, body in files.items()}
    assert result.written == 2 and not (tmp_path / STATE / "pending.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_names_from_a_damaged_manifest_never_reach_outside(tmp_path: Path) -> None:
    folder, outside = tmp_path / "mirror", tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep")
    (tmp_path / "victim.txt").write_text("keep")
    groups = two_regions()
    publish_site(StandIn(groups), 1, folder)
    (folder / "link").symlink_to(outside)
    names = ["../victim.txt", str(tmp_path / "victim.txt"), "link/victim.txt", MARKER]
    hostile = {"files": {f"/{i}": [name, '"x"', 1] for i, name in enumerate(names)}}
    mirror._Mirror(folder).group_file("area:B").write_text(json.dumps(hostile))
    del groups["area:B"]
    publish_site(StandIn(groups), 2, folder)
    assert (outside / "victim.txt").is_file() and (tmp_path / "victim.txt").is_file()
    assert (folder / MARKER).is_file()
    escaping = {"global": ("g", {"/../escape.txt": b"x"})}
    with pytest.raises(InvalidInput, match="would lie outside"):
        publish_site(StandIn(escaping), 3, folder)
    assert not (tmp_path / "escape.txt").exists()


def test_refusals_name_the_fix(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="not empty and is not a tocsin mirror"):
        publish_site(StandIn(two_regions()), 1, tmp_path)
    with pytest.raises(InvalidInput, match="is a file, not a folder"):
        publish_site(StandIn(two_regions()), 1, tmp_path / "precious.txt")
    folder = tmp_path / "m"
    publish_site(StandIn(two_regions()), 1, folder)
    (folder / MARKER).write_text("{not json")
    with pytest.raises(InvalidInput, match="--full"):
        publish_site(StandIn(two_regions()), 2, folder)
    result = publish_site(StandIn(two_regions()), 2, folder, full=True)
    assert (result.written, result.unchanged) == (0, 6)  # compared with the disk
    (folder / MARKER).write_text(json.dumps({"format": 99, "version": 1, "groups": {}}))
    with pytest.raises(InvalidInput, match="newer tocsin"):
        publish_site(StandIn(two_regions()), 2, folder)


def test_a_second_publish_at_the_same_time_is_refused(tmp_path: Path) -> None:
    import fcntl

    publish_site(StandIn(two_regions()), 1, tmp_path)
    with open(tmp_path / STATE / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(InvalidInput, match="another 'tocsin publish'"):
            publish_site(StandIn(two_regions()), 2, tmp_path)


def test_a_mirror_from_before_the_manifest_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("version 7\n")
    (tmp_path / "areas").mkdir()
    (tmp_path / "areas/A.txt").write_bytes(b"A calm")
    (tmp_path / "areas/Z.txt").write_bytes(b"an old area")  # unknown: not deleted
    before = os.stat(tmp_path / "areas/A.txt").st_ino
    result = publish_site(StandIn(two_regions()), 8, tmp_path)
    assert (result.written, result.unchanged, result.deleted) == (5, 1, 0)
    assert os.stat(tmp_path / "areas/A.txt").st_ino == before
    assert (tmp_path / "areas/Z.txt").is_file()


def test_a_reader_never_sees_part_of_a_file(tmp_path: Path) -> None:
    """Big files flip between two contents while a reader reads them all in a loop."""
    size = 2 << 20
    versions = [{f"/big/{i}.txt": bytes([65 + i + n]) * size for i in range(6)} for n in (0, 10)]
    publish_site(StandIn({"big": (None, versions[0])}), 0, tmp_path)
    wholes = {name.lstrip("/"): {v[name] for v in versions} for name in versions[0]}
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for name, allowed in wholes.items():
                body = (tmp_path / name).read_bytes()
                seen.append("whole" if body in allowed else f"partial {name}: {len(body)}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(1, 13):
            publish_site(StandIn({"big": (None, versions[n % 2])}), n, tmp_path)
    finally:
        stop.set()
        reader.join()
    assert len(seen) > len(wholes) and set(seen) == {"whole"}


# -- real snapshots -------------------------------------------------------------------------

def now() -> datetime:
    return datetime.now(UTC)


def test_a_regional_declaration_rewrites_only_the_files_it_changes(engine: Engine,
                                                                    tmp_path: Path) -> None:
    folder = tmp_path / "mirror"
    commands.declare(engine, [request("moderate", ("KZ",))], now=now(), actor="test")
    first = publish(build(engine), folder)
    assert first.written == first.files == len(files_of(folder)) > 100
    again = publish(build(engine), folder)
    assert (again.written, again.deleted, again.unchanged) == (0, 0, first.files)
    old_bytes, old_stamps = files_of(folder), stamps(folder)
    commands.declare(engine, [request("high", ("KZ-75",))], now=now(), actor="test")
    snapshot = build(engine)
    new_bytes = {}
    for path in snapshot.site.paths():
        doc = snapshot.site.render(path)
        new_bytes[mirror.file_name(path, doc.media_type)] = doc.body
    # A reader reading every file during the publish sees each one old or new, whole.
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for name in old_bytes:
                body = (folder / name).read_bytes()
                if body not in (old_bytes[name], new_bytes.get(name)):
                    problems.append(name)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = publish(snapshot, folder)
    finally:
        stop.set()
        reader.join()
    assert problems == []
    changed = {name for name, body in new_bytes.items() if old_bytes.get(name) != body}
    assert files_of(folder) == new_bytes
    assert 0 < result.written == len(changed) < result.files
    # Site.groups(): only the region's groups and the global documents were rendered.
    assert result.rendered < result.files // 4
    assert result.unchanged == result.files - result.written and result.deleted == 0
    after = stamps(folder)
    kept = set(new_bytes) - changed
    assert kept and all(after[name] == old_stamps[name] for name in kept)
    assert all(after[name] != old_stamps[name] for name in changed & set(old_stamps))


def test_documents_that_leave_the_snapshot_are_deleted_and_nothing_else(
        engine: Engine, tmp_path: Path) -> None:
    """With no declaration every scheme has its map and badges; the first declaration
    narrows them to its own scheme, so the other schemes' files leave the mirror."""
    folder = tmp_path / "www"
    publish(build(engine), folder)
    before = set(files_of(folder))
    assert {"badge/uk-terror/KZ-75.svg", "en/map/meteoalarm.svg"} <= before
    (folder / "badge" / "mine.svg").write_text("<svg/>")  # the operator's own
    old = tmp_path / "www.old"  # unrelated, beside the mirror
    (old / "badge").mkdir(parents=True)
    (old / "badge" / "keep.svg").write_text("<svg/>")
    commands.declare(engine, [request("high", ("KZ-75",))], now=now(), actor="test")
    snapshot = build(engine)
    result = publish(snapshot, folder)
    left = set(files_of(folder))
    gone = before - left
    assert gone and all(("uk-terror" in n or "meteoalarm" in n or "us-ntas" in n)
                        for n in gone)
    assert result.deleted == len(gone) and result.files == len(left) - 1
    assert "badge/mine.svg" in left and (old / "badge" / "keep.svg").is_file()
    assert {name.split("/")[-2] for name in left if "/badge/" in "/" + name} == {"kz-terror",
                                                                                  "badge"}


# -- the command line -----------------------------------------------------------------------

runner = CliRunner()


def cli(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200"})


def test_publish_to_through_the_cli(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "www"
    first = cli(db_url, "publish", "--to", str(folder), "--json")
    assert first.exit_code == 0, first.output
    shown = json.loads(first.stdout)
    assert shown["written"] == shown["files"] > 100 and shown["deleted"] == 0
    assert shown["bytes_written"] == shown["bytes"] and shown["seconds"] >= 0
    assert cli(db_url, "declare", "--scheme", "kz-terror", "--level", "high", "--area",
               "KZ-75", "--headline", "High level in Almaty").exit_code == 0
    second = cli(db_url, "publish", "--to", str(folder))
    assert second.exit_code == 0, second.output
    assert "unchanged" in second.stdout and "deleted" in second.stdout
    assert f"{folder} holds" in second.stdout
    third = json.loads(cli(db_url, "publish", "--to", str(folder), "--json").stdout)
    assert (third["written"], third["deleted"], third["unchanged"]) == (0, 0, third["files"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    refused = cli(db_url, "publish", "--to", str(tmp_path / "other"))
    assert refused.exit_code == 2
    assert "not a tocsin mirror" in refused.stderr and "give a new or empty folder" \
        in refused.stderr
    assert cli(db_url, "publish", "--full").exit_code == 2
