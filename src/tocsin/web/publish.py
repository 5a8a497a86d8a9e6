"""The static mirror: every query-free public document written to a folder, byte for byte
what the live server sends, for any static web server or CDN to carry.

Publishing is incremental. The mirror keeps a manifest of what it wrote; a publish renders
only the groups of documents whose signature moved (`Site.groups`), writes only the files
whose bytes differ from the manifest, each atomically, and deletes only files the manifest
lists that the snapshot no longer has. Inside the mirror:

    .tocsin-mirror      the marker and index, replaced last: {"format": 1, "version": N,
                        "groups": {KEY: [DIGEST OF SIGNATURE or null, FILES, BYTES]}}
    .tocsin-mirror.d/groups/AB/CDEF….json   one per group, named by a hash of its key:
                        {"group": KEY, "files": {PATH: [FILE, ETAG, SIZE]}}
    .tocsin-mirror.d/pending.json   the groups a running (or dead) publish is changing; the
                        next publish compares their documents with the bytes on disk
    .tocsin-mirror.d/lock           held while a publish runs

The index is split from the per-group file lists because at 100,000 areas the mirror holds
over a million documents: one JSON manifest of them takes seconds to read and to write,
the index of groups (a 64-bit digest per signature) a fraction of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tocsin.domain.errors import InvalidInput
from tocsin.web.documents import Document, file_name
from tocsin.web.snapshot import Snapshot

MARKER = ".tocsin-mirror"
STATE = MARKER + ".d"
FORMAT = 1
FileEntry = tuple[str, str, int]
"""Where a document is kept, its ETag and its size in bytes."""
GroupEntry = list[Any]
"""[digest of the group's signature or None, how many files it has, their bytes], as the
index holds it: kept as read, so an unchanged group costs no conversion."""
Group = tuple[str, str | None, Sequence[str]]
WRITERS = 8
"""Threads that write files: an fsync waits on the disk, and concurrent ones share journal
commits (2,000 files: 3 ms each on one thread, 0.35 ms on four)."""
IN_FLIGHT = 256
"""Files handed to the writers and not yet written, at most: bounds the bytes held."""


class MirrorSite(Protocol):
    """What the mirror needs of a `Site`; `groups()` (key, signature, paths) is optional."""

    def paths(self) -> Iterable[str]: ...

    def render(self, path: str) -> Document: ...


@dataclass(frozen=True)
class Published:
    folder: Path
    version: int
    files: int
    """Documents the mirror holds now."""
    bytes: int
    written: int
    unchanged: int
    """Documents left as they were: in a group whose signature held, or with the same bytes."""
    deleted: int
    bytes_written: int
    rendered: int
    seconds: float


def publish(snapshot: Snapshot, folder: Path, *, full: bool = False) -> Published:
    """Bring the mirror in `folder` up to `snapshot` (see the module notes); `full` renders
    every document and compares it with the file on disk, repairing a mirror edited by hand.

    Refuses a folder that is not empty and carries no marker, so nothing else is touched.
    """
    return publish_site(snapshot.site, snapshot.version, folder, full=full)


def publish_site(site: MirrorSite, version: int, folder: Path, *,
                 full: bool = False) -> Published:
    """`publish` for any source of documents; InvalidInput names the fix when it refuses."""
    target = folder.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target} is a file, not a folder", "give a folder for the mirror")
    started = time.perf_counter()
    try:
        with _Mirror.open(target) as mirror:
            mirror.update(site, version, full=full)
    except OSError as error:
        raise InvalidInput(f"cannot write the mirror to {target}: {error.strerror or error}",
                           "check the folder's permissions and free space") from None
    c = mirror.counts
    return Published(target, version, mirror.total_files, mirror.total_bytes, c.written,
                     c.unchanged, c.deleted, c.bytes_written, c.rendered,
                     time.perf_counter() - started)


def site_groups(site: MirrorSite) -> Iterator[Group]:
    """The site's groups; a site without `groups()` is one group rendered every time."""
    groups = getattr(site, "groups", None)
    if groups is None:
        yield "all", None, list(site.paths())
        return
    for key, signature, paths in groups():
        yield key, signature, paths if isinstance(paths, list) else list(paths)


@dataclass
class _Counts:
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes_written: int = 0
    rendered: int = 0


class _Writers:
    """Atomic file writes on a few threads; `drain` waits for all and raises the first
    error."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="tocsin-mirror")
        self._waiting: deque[Future[None]] = deque()

    def write(self, path: Path, body: bytes) -> None:
        if len(self._waiting) >= IN_FLIGHT:
            self._waiting.popleft().result()
        self._waiting.append(self._pool.submit(_write_atomic, path, body, 0o644))

    def drain(self) -> None:
        while self._waiting:
            self._waiting.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Index:
    groups: dict[str, GroupEntry]
    version: int | None = None
    trusted: bool = True
    """False for a mirror written before the manifest existed: compare with the disk."""


@dataclass
class _Mirror:
    target: Path
    counts: _Counts = field(default_factory=_Counts)
    total_files: int = 0
    total_bytes: int = 0
    _safe: set[Path] = field(default_factory=set)
    """Folders known to lie inside the mirror."""
    _made: set[Path] = field(default_factory=set)
    _touched: set[Path] = field(default_factory=set)
    """Folders whose entries changed: each gets an fsync before the index is replaced."""
    _writers: _Writers = field(default_factory=_Writers)

    @classmethod
    @contextlib.contextmanager
    def open(cls, target: Path) -> Iterator[_Mirror]:
        marker = target / MARKER
        if (target.exists() and not marker.is_file()
                and any(entry.name != STATE for entry in target.iterdir())):
            raise InvalidInput(f"folder {target} is not empty and is not a tocsin mirror",
                               "give a new or empty folder, or one written by 'tocsin publish'")
        (target / STATE).mkdir(parents=True, exist_ok=True)
        with open(target / STATE / "lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InvalidInput(f"another 'tocsin publish' is writing to {target}",
                                   "wait for it to finish, then publish again") from None
            mirror = cls(target)
            try:
                if not marker.exists():
                    # The marker comes first, so a publish that dies leaves a folder it knows.
                    mirror.write_index(_Index({}))
                yield mirror
            finally:
                mirror._writers.close()

    # -- the publish ------------------------------------------------------------------------

    def update(self, site: MirrorSite, version: int, *, full: bool) -> None:
        index = self.read_index(full)
        pending = self.read_pending()
        kept: dict[str, GroupEntry] = {}
        to_render: list[Group] = []
        for key, signature, paths in site_groups(site):
            old = index.groups.get(key)
            if (index.trusted and signature is not None and old is not None
                    and old[1] == len(paths) and old[0] == _digest(signature)
                    and key not in pending):
                kept[key] = old
                self.counts.unchanged += old[1]
            else:
                to_render.append((key, signature, paths))
        current = kept.keys() | {key for key, _, _ in to_render}
        vanished = (index.groups.keys() | pending) - current
        if to_render or vanished:
            self.write_pending(pending | {key for key, _, _ in to_render} | vanished)
        # A path that moved to another group must not be deleted with its old group.
        claimed = {path for _, _, paths in to_render for path in paths}
        changed = False
        for key, signature, paths in to_render:
            # A group the manifest does not know (new, or from a publish that died) is
            # compared with the disk, so a file that is already right is not rewritten.
            on_disk = not index.trusted or key in pending or key not in index.groups
            entry = self.render_group(site, key, signature, paths, claimed, on_disk)
            changed = changed or entry != index.groups.get(key)
            kept[key] = entry
        for key in vanished:
            self.drop_group(key, claimed)
        self._writers.drain()
        if to_render or vanished:
            self.sync_dirs()
        if changed or vanished or version != index.version or not index.trusted:
            self.write_index(_Index(kept, version))
        if pending or to_render or vanished:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.target / STATE / "pending.json")
        self.total_files = sum(entry[1] for entry in kept.values())
        self.total_bytes = sum(entry[2] for entry in kept.values())

    def render_group(self, site: MirrorSite, key: str, signature: str | None,
                     paths: Sequence[str], claimed: set[str], on_disk: bool) -> GroupEntry:
        """Write the group's changed files and delete its dropped ones; its new entry.

        `on_disk`: compare with the bytes in the folder, not with the manifest."""
        old = self.read_group(key)
        files: dict[str, FileEntry] = {}
        for path in paths:
            doc = site.render(path)
            self.counts.rendered += 1
            name = file_name(path, doc.media_type)
            out = self.inside(name)
            if out is None:
                raise InvalidInput(f"the document {path} would lie outside {self.target}",
                                   "give areas and declarations plain codes")
            entry = (name, doc.etag, len(doc.body))
            if _holds(out, doc.body) if on_disk else old.get(path) == entry:
                self.counts.unchanged += 1
            else:
                self.write_file(out, doc.body)
            files[path] = entry
        names = {entry[0] for entry in files.values()}
        for path, (name, _, _) in old.items():
            # A path now in another rendered group is that group's to write, not to delete.
            if name not in names and (path in files or path not in claimed):
                self.delete_file(name)
        if files != old:
            self.write_json(self.group_file(key), {"group": key, "files": files})
        return [None if signature is None else _digest(signature), len(files),
                sum(entry[2] for entry in files.values())]

    def drop_group(self, key: str, claimed: set[str]) -> None:
        for path, (name, _, _) in self.read_group(key).items():
            if path not in claimed:
                self.delete_file(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.group_file(key))
            self._touched.add(self.group_file(key).parent)

    # -- files ------------------------------------------------------------------------------

    def write_file(self, out: Path, body: bytes) -> None:
        if out.parent not in self._made:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(out.parent)
        # A group's list may be written before its files are: until the index is replaced,
        # pending.json makes a dead publish's successor compare them with the disk.
        self._writers.write(out, body)
        self._touched.add(out.parent)
        self.counts.written += 1
        self.counts.bytes_written += len(body)

    def delete_file(self, name: str) -> None:
        """Delete a file the manifest lists; a name that would reach outside is ignored."""
        out = self.inside(name)
        if out is None:
            return
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
            self.counts.deleted += 1
            self._touched.add(out.parent)

    def inside(self, name: str) -> Path | None:
        """Where a mirror file lives; None when that would be outside the mirror (a hostile
        or damaged name, or a folder on the way that links elsewhere)."""
        parts = name.split("/")
        if (not name or name.startswith("/") or "\\" in name or "\0" in name
                or parts[0].startswith(MARKER) or any(p in ("", ".", "..") for p in parts)):
            return None
        out = self.target / name
        if out.parent not in self._safe:
            if not out.parent.resolve().is_relative_to(self.target):
                return None
            self._safe.add(out.parent)
        return out

    def sync_dirs(self) -> None:
        """Make the renames durable before the index says they happened."""
        for folder in self._touched:
            _fsync_dir(folder)

    # -- the manifest -----------------------------------------------------------------------

    def read_index(self, full: bool) -> _Index:
        marker = self.target / MARKER
        text = marker.read_text(encoding="utf-8")
        if text.startswith("version "):  # written by tocsin before the manifest existed
            return _Index({}, trusted=False)
        try:
            value = json.loads(text)
            if value["format"] > FORMAT:
                raise InvalidInput(f"the mirror {self.target} was written by a newer tocsin",
                                   "publish with that version, or into a new folder")
            groups = value["groups"]
            if not (isinstance(groups, dict) and all(
                    type(v) is list and len(v) == 3 and type(v[1]) is int and type(v[2]) is int
                    for v in groups.values())):
                raise ValueError("groups")
            return _Index(groups, value["version"], trusted=not full)
        except (ValueError, KeyError, TypeError, AttributeError):
            if full:
                return _Index({}, trusted=False)
            raise InvalidInput(f"the manifest {marker} is damaged",
                               "publish again with --full to rebuild it from the files "
                               "in the folder") from None

    def write_index(self, index: _Index) -> None:
        value = {"format": FORMAT, "version": index.version,
                 "groups": index.groups}
        self.write_json(self.target / MARKER, value)
        _fsync_dir(self.target)

    def read_group(self, key: str) -> dict[str, FileEntry]:
        """The group's files as last written; empty when unknown or unreadable (then
        nothing of it is deleted and all of it is written)."""
        try:
            value = json.loads(self.group_file(key).read_bytes())
            return {str(p): (str(e[0]), str(e[1]), int(e[2]))
                    for p, e in value["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return {}

    def group_file(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return self.target / STATE / "groups" / digest[:2] / (digest[2:] + ".json")

    def read_pending(self) -> set[str]:
        try:
            value = json.loads((self.target / STATE / "pending.json").read_bytes())
            return {str(key) for key in value["groups"]}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError):
            raise InvalidInput(f"{self.target / STATE / 'pending.json'} is damaged",
                               "delete it and publish again with --full") from None

    def write_pending(self, keys: set[str]) -> None:
        self.write_json(self.target / STATE / "pending.json", {"groups": sorted(keys)})
        _fsync_dir(self.target / STATE)

    def write_json(self, path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._touched.add(path.parent)
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        _write_atomic(path, body, 0o644)


def _write_atomic(path: Path, body: bytes, mode: int) -> None:
    """Replace `path` with `body` so that a reader sees the old bytes or the new, never
    part of them, and a crash leaves one or the other."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # mkstemp makes 0600; the web server must read it
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _digest(signature: str) -> str:
    """Signatures may be long (dates, declaration ids); the index keeps 64 bits of each."""
    return hashlib.blake2b(signature.encode("utf-8"), digest_size=8).hexdigest()


def _holds(path: Path, body: bytes) -> bool:
    try:
        return path.stat().st_size == len(body) and path.read_bytes() == body
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
