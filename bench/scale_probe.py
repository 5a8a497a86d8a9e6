"""Looking at a running server for bench/scale.py: its processes' memory and CPU time from
/proc, keep-alive HTTP/1.1 clients (one connection for polling, many for crawling), waiting
until documents show a change, and wrk."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serve import WrkResult, parse_wrk

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (a server's workers, its notification worker)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, ()))
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(root: int) -> tuple[int, int, int]:
    """Resident memory of the tree now, and the sum of each process's peak (VmHWM), in KiB,
    and how many processes."""
    pids = process_tree(root)
    return (sum(_status_kib(p, "VmRSS") for p in pids),
            sum(_status_kib(p, "VmHWM") for p in pids), len(pids))


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still running (its own, not its reaped
    children's)."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return found


QUIET = 0.3
"""A server using less of a core than this has finished its start-up work (an idle one
should use next to nothing; pre-rendering uses a whole core)."""


def settle(root: int, *, timeout: float, window: float = 2.0) -> float | None:
    """Wait until the tree uses under QUIET of a core over `window` seconds; returns the
    seconds waited, None on timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pids = process_tree(root)
        before = cpu_seconds(pids)
        time.sleep(window)
        after = cpu_seconds(pids)
        used = sum(after[p] - before.get(p, 0.0) for p in after)
        if used / window < QUIET:
            return time.monotonic() - began
    return None


# --- polling: one keep-alive connection -------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    etag: str | None
    body: bytes


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects when the server drops it."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers={"Accept-Encoding": "identity",
                                                        **(headers or {})})
                response = self.conn.getresponse()
                body = response.read()
                return Answer(response.status, response.getheader("etag"), body)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


Check = Callable[[Answer], bool]


def contains(token: str) -> Check:
    wanted = token.encode()
    return lambda a: a.status == 200 and wanted in a.body


def etag_differs(old: str | None) -> Check:
    return lambda a: a.status == 200 and a.etag is not None and a.etag != old


def found() -> Check:
    return lambda a: a.status == 200


def area_level_is(code: str, level: str | None) -> Check:
    """In /api/v1/levels: the first entry of `code` carries `level` (found without parsing
    the whole document, which has every area)."""
    key = f'"area":"{code}"'.encode()
    want = b'"level":' + (f'"{level}"'.encode() if level else b"null")

    def check(a: Answer) -> bool:
        if a.status != 200:
            return False
        start = a.body.find(key)
        if start < 0:
            return False
        at = a.body.find(b'"level":', start)
        return at >= 0 and a.body.startswith(want, at)
    return check


@dataclass
class Waited:
    """When each document first passed its check, in seconds after t0 (None: never)."""

    seen: dict[str, float | None]
    timed_out: bool

    @property
    def last(self) -> float | None:
        if self.timed_out or not self.seen:
            return None
        return max(v for v in self.seen.values() if v is not None)

    def slowest(self, n: int = 3) -> list[tuple[str, float | None]]:
        return sorted(self.seen.items(), key=lambda kv: -1 if kv[1] is None else -kv[1])[:n]


def wait_until(client: Client, checks: dict[str, Check], t0: float, *, timeout: float,
               interval: float = 0.002) -> Waited:
    """Poll every document not yet passing its check until all pass or `timeout` runs out."""
    seen: dict[str, float | None] = dict.fromkeys(checks)
    pending = list(checks)
    while pending:
        for path in list(pending):
            if time.monotonic() - t0 > timeout:
                return Waited(seen, True)
            try:
                answer = client.get(path)
            except (OSError, http.client.HTTPException):
                answer = Answer(0, None, b"")
            if checks[path](answer):
                seen[path] = time.monotonic() - t0
                pending.remove(path)
        if pending:
            if time.monotonic() - t0 > timeout:
                return Waited(seen, True)
            time.sleep(interval)
    return Waited(seen, False)


# --- crawling: many keep-alive connections ----------------------------------------------------


@dataclass
class Crawled:
    fetched: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    """Paths whose answer did not pass the check."""
    errors: int = 0
    timed_out: bool = False
    body_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.fetched / self.seconds if self.seconds else 0.0


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    etag = headers.get(b"etag")
    return Answer(status, etag.decode("latin-1") if etag else None, body)


async def _crawl(port: int, paths: Sequence[str], check: Check | None, connections: int,
                 deadline: float, out: Crawled) -> None:
    queue = iter(paths)

    async def worker() -> None:
        reader = writer = None
        try:
            for path in queue:
                if time.monotonic() > deadline:
                    out.timed_out = True
                    return
                for attempt in (1, 2):
                    try:
                        if writer is None:
                            reader, writer = await asyncio.open_connection(HOST, port,
                                                                           limit=1 << 20)
                        assert reader is not None
                        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n"
                                     "Accept-Encoding: identity\r\n\r\n".encode("latin-1"))
                        answer = await asyncio.wait_for(
                            _read_answer(reader), max(0.1, deadline - time.monotonic()))
                        break
                    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                            ValueError, IndexError):
                        if writer is not None:
                            writer.close()
                        reader = writer = None
                        if attempt == 2:
                            out.errors += 1
                            answer = Answer(0, None, b"")
                    except TimeoutError:
                        out.timed_out = True
                        return
                out.fetched += 1
                out.statuses[answer.status] += 1
                out.body_bytes += len(answer.body)
                if check is not None and not check(answer):
                    out.failed.append(path)
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


def crawl(port: int, paths: Sequence[str], *, timeout: float, check: Check | None = None,
          connections: int = 16) -> Crawled:
    """GET every path once over `connections` keep-alive connections, within `timeout`."""
    out = Crawled()
    began = time.monotonic()
    asyncio.run(_crawl(port, paths, check, connections, began + timeout, out))
    out.seconds = time.monotonic() - began
    return out


# --- wrk --------------------------------------------------------------------------------------


class Wrk:
    """One wrk run in the background: for a fixed time, or until stopped (SIGINT makes wrk
    stop and print its report)."""

    def __init__(self, wrk: str, url: str, *, seconds: float, connections: int,
                 threads: int = 1) -> None:
        self.child = subprocess.Popen(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--latency", "-H", "Accept-Encoding: identity", url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True)
        self.began = time.monotonic()

    def stop(self) -> None:
        if self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGINT)

    def result(self, timeout: float) -> WrkResult:
        try:
            output, _ = self.child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.child.kill()
            output, _ = self.child.communicate()
        return parse_wrk(output)
