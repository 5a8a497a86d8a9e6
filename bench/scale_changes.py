"""The writes of bench/scale.py: level changes through the CLI (`tocsin declare --from-file
… --json`, texts in kk, ru and en), the burst writer (bench/scale_writer.py), and the static
mirror (`tocsin publish --to`)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve import BenchFailure

SCHEME = "kz-terror"
WRITER = Path(__file__).resolve().parent / "scale_writer.py"


@dataclass(frozen=True)
class Declared:
    id: str
    level: str
    acked: float
    """time.monotonic() when the CLI answered: its transaction had committed."""
    seconds: float
    """From starting the CLI to its answer."""


def texts(level: str, areas: list[str], why: str) -> dict[str, dict[str, str]]:
    where = ", ".join(areas)
    return {
        "kk": {"headline": f"{where}: террористік қауіп деңгейі — {level} ({why})",
               "description": "Бенчмарк өзгерісі."},
        "ru": {"headline": f"{where}: уровень террористической опасности — {level} ({why})",
               "description": "Изменение для бенчмарка."},
        "en": {"headline": f"{where}: terrorism threat level {level} ({why})",
               "description": "A benchmark change."},
    }


class Changer:
    """Declarations through the CLI. Each area's changes form a chain: every one replaces
    the one before and alternates high and moderate, so each changes the area's level."""

    def __init__(self, tocsin: list[str], env: dict[str, str], folder: Path,
                 timeout: float) -> None:
        self.tocsin, self.env, self.folder, self.timeout = tocsin, env, folder, timeout
        self.chain: dict[str, str] = {}
        self.levels: dict[str, str] = {}
        self.countrywide_id: str | None = None
        self.count = 0

    def regional(self, area: str, why: str) -> Declared:
        level = "moderate" if self.levels.get(area) == "high" else "high"
        replaces = [self.chain[area]] if area in self.chain else []
        made = self.declare([area], level, replaces, why)
        self.chain[area], self.levels[area] = made.id, level
        return made

    def countrywide(self, country: str) -> Declared:
        made = self.declare([country], "critical", [], "countrywide")
        self.countrywide_id = made.id
        return made

    def declare(self, areas: list[str], level: str, replaces: list[str], why: str) -> Declared:
        self.count += 1
        change = self.folder / f"change-{self.count:03d}.json"
        item: dict[str, Any] = {"scheme": SCHEME, "level": level, "areas": areas,
                                "texts": texts(level, areas, f"bench {why}")}
        if replaces:
            item["replaces"] = replaces
        change.write_text(json.dumps({"declaration": [item]}, ensure_ascii=False),
                          encoding="utf-8")
        stdout = self._answer([*self.tocsin, "declare", "--from-file", str(change), "--json"],
                              f"tocsin declare ({why})")
        [made] = json.loads(stdout[0])
        return Declared(made["id"], level, stdout[1], stdout[2])

    def cancel(self, declaration_id: str) -> None:
        self._answer([*self.tocsin, "cancel", declaration_id, "--reason", "bench", "--json"],
                     "tocsin cancel")

    def _answer(self, command: list[str], what: str) -> tuple[str, float, float]:
        """Run a CLI command; its whole output, when its first byte came, and how long
        that took from the start."""
        errors = self.folder / "cli-errors.log"
        began = time.monotonic()
        with open(errors, "ab") as err:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err,
                                     stdin=subprocess.DEVNULL, env=self.env)
        assert child.stdout is not None
        fd = child.stdout.fileno()
        chunks: list[bytes] = []
        acked: float | None = None
        try:
            while True:
                left = self.timeout - (time.monotonic() - began)
                if left <= 0:
                    raise TimeoutError(f"{what} took more than {self.timeout:g} s")
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                if acked is None:
                    acked = time.monotonic()
                chunks.append(chunk)
            child.wait(max(1.0, self.timeout - (time.monotonic() - began)))
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        if child.returncode != 0 or acked is None:
            text = errors.read_text(encoding="utf-8", errors="replace")[-1500:]
            raise BenchFailure(f"{what} failed with code {child.returncode}: {text}")
        return b"".join(chunks).decode(), acked, acked - began

    # -- the burst -----------------------------------------------------------------------------

    def burst(self, database_url: str, count: int, areas: list[str], *,
              paced: bool = False) -> Burst:
        command = [sys.executable, str(WRITER), "--database-url", database_url, "--count",
                   str(count), "--areas", ",".join(areas), "--token", f"burst{self.count}"]
        self.count += 1
        for area, declaration_id in self.chain.items():
            if area in areas:
                command += ["--replace", f"{area}={declaration_id}:{self.levels[area]}"]
        # Not niced: on a shared machine a niced writer starves behind other people's work.
        # wrk, on the same core, needs only a part of it while the server is the bottleneck.
        return Burst(command + (["--paced"] if paced else []), self.env, self.folder)

    def paced(self, database_url: str, count: int, area: str) -> Paced:
        """A writer that stays up and makes one change on `area` when asked: a latency
        sample then times the commit, not the CLI's start-up and exit (the exit alone, a
        last WAL checkpoint and the interpreter's teardown, takes about 0.4 s of the core
        the reads are made from)."""
        return Paced(self, self.burst(database_url, count, [area], paced=True))

    # -- the mirror ----------------------------------------------------------------------------

    def publish(self, mirror: Path, prefix: list[str], timeout: float, *,
                compare: bool = False) -> Published:
        before = scan(mirror) if compare else {}
        began = time.monotonic()
        try:
            done = subprocess.run([*prefix, *self.tocsin, "publish", "--to", str(mirror),
                                   "--json"], capture_output=True, text=True, env=self.env,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Published(error=f"timeout after {timeout:g} s", timed_out=True)
        seconds = time.monotonic() - began
        if done.returncode != 0:
            return Published(seconds=seconds, error=f"exit {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()[-3000:]}")
        report = json.loads(done.stdout)
        out = Published(seconds=seconds, files=int(report.get("files", 0)),
                        bytes=int(report.get("bytes", 0)), details={
                            "seconds": round(seconds, 2), "report": report})
        counted = {k: report[k] for k in ("written", "changed", "skipped", "unchanged",
                                          "removed", "deleted") if isinstance(report.get(k), int)}
        if "written" in counted or "changed" in counted:
            out.written = counted.get("written", counted.get("changed", 0))
            out.how = "as its --json reports: " + ", ".join(f"{k} {v:,}"
                                                           for k, v in counted.items())
        elif compare:
            after = scan(mirror)
            out.written = sum(1 for path, stamp in after.items() if before.get(path) != stamp)
            removed = len(before.keys() - after.keys())
            out.files = len(after)
            out.how = (f"counted by inode and mtime: {out.written:,} new or rewritten, "
                       f"{removed:,} removed")
            out.details["scan"] = {"written": out.written, "removed": removed,
                                   "files": len(after)}
        return out


class Paced:
    """The paced writer: `next` makes one change and answers when it has committed."""

    def __init__(self, changer: Changer, writer: Burst) -> None:
        self.changer, self.writer = changer, writer

    def next(self, timeout: float) -> Declared:
        writer = self.writer
        assert writer.child.stdin is not None
        began = time.monotonic()
        writer.child.stdin.write(b"next\n")
        writer.child.stdin.flush()
        line = writer._line(timeout)
        acked = time.monotonic()
        if not line or not line.startswith("{"):
            raise BenchFailure(f"the paced writer gave {line!r}: "
                               f"{writer.failure() or 'see ' + str(writer.log)}")
        made = json.loads(line)
        self.changer.chain[made["area"]] = made["id"]
        self.changer.levels[made["area"]] = made["level"]
        return Declared(made["id"], made["level"], acked, acked - began)

    def close(self) -> None:
        if self.writer.child.stdin is not None:
            self.writer.child.stdin.close()  # end of input: the writer stops
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.writer.child.wait(10)
        self.writer.close()


@dataclass
class Published:
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    written: int = 0
    how: str = ""
    error: str | None = None
    timed_out: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def scan(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its inode and mtime (a rewritten file changes one)."""
    found: dict[str, tuple[int, int]] = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with_stat = os.lstat(path)
            found[os.path.relpath(path, folder)] = (with_stat.st_ino, with_stat.st_mtime_ns)
    return found


class Burst:
    """The burst writer, started and ready; `go` starts the changes."""

    def __init__(self, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.log = folder / "burst-errors.log"
        with open(self.log, "ab") as err:
            self.child = subprocess.Popen(command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, env=env)
        self.made: dict[str, tuple[str, str]] = {}
        """The last declaration the burst made on each area, and its level."""
        self.began = 0.0
        self._buffer = b""
        line = self._line(300)
        if line != "ready":
            self.close()
            raise BenchFailure(f"the burst writer did not start ({line!r}); see "
                               f"{folder / 'burst-errors.log'}")

    def _line(self, timeout: float) -> str | None:
        """The writer's next line; None when none came in time, "" at its end."""
        assert self.child.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.child.stdout], [], [], max(0.0, left))
            if not ready:
                return None
            chunk = os.read(self.child.stdout.fileno(), 1 << 16)
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()

    def go(self) -> None:
        assert self.child.stdin is not None
        self.began = time.monotonic()
        self.child.stdin.write(b"go\n")
        self.child.stdin.flush()

    def wait(self, timeout: float) -> tuple[int, float]:
        """Changes made and the seconds they took, when the writer is done or time is up."""
        count = 0
        while time.monotonic() - self.began < timeout:
            line = self._line(max(0.1, timeout - (time.monotonic() - self.began)))
            if line is None or line in ("", "done"):
                break
            if line.startswith("{"):
                made = json.loads(line)
                count += 1
                self.made[made["area"]] = (made["id"], made["level"])
        return count, time.monotonic() - self.began

    def failure(self) -> str | None:
        """What stopped the writer early, when it failed."""
        if self.child.poll() in (None, 0):
            return None
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:] or \
            f"exit {self.child.returncode}"

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
