"""Benchmark: tocsin's own HTTP server against nginx serving the static mirror, and how long a
declaration takes to become visible in the API.

One run, on loopback only (127.0.0.1), bounded in time; everything it starts it stops again and
its temporary folder is removed (unless --keep):

1. checks that Debian's `nginx` and `wrk` are installed (prints the apt-get command and exits 2
   when they are not; it never installs anything);
2. replays the demo into a fresh SQLite database in a temporary folder (`tocsin demo --dir D
   --no-serve`) and writes the static mirror of it (`tocsin publish --to MIRROR`);
3. starts `tocsin serve --workers 1 --no-worker` and nginx (`worker_processes 1`, generated
   config, root MIRROR), both pinned to core 1 with taskset, and checks that both send the
   same body for every measured path (nginx has no notification worker, so tocsin runs
   without its own: each server is one process serving, on the same core);
4. loads each server in turn with wrk pinned to core 0 (same -t/-c/-d; this script, the CLI
   and the in-process writes run on core 0 too) on each path, (a) plain GET -> 200 and
   (b) GET with `If-None-Match: <that server's own ETag>` -> 304, twice, alternating which
   server goes first; prints requests/s of both and the median ratio tocsin/nginx against the
   target (>= 0.5x);
5. with tocsin's server running (nginx stopped), declares `high` on KZ-71 and cancels it again,
   alternately, through the CLI (`tocsin declare/cancel` in a subprocess) and through the
   service layer in-process, and measures from the moment the write has committed (the CLI
   process has exited / the call has returned) until `/api/v1/areas/KZ-71` shows the new level,
   polling every 2 ms on a keep-alive connection (target p50 < 50 ms), and until the live event
   (`/events`, what open pages listen to) announces it; each change waits for the previous
   one's live event, so every change is measured on a server that has finished rebuilding;
6. prints the machine and how it was run (the pinning), and a summary block of key=value
   lines. On a machine without taskset or with one core nothing is pinned, and it says so.

Exit code 0 when the run completed (the targets are reported, not enforced), 1 when a check
failed (different bodies, no 304, wrong answers under load, a level that never showed), 2 when
nginx or wrk are missing or the arguments are bad.

Run it from the project root:

    .venv/bin/python bench/serve.py [--seconds 10] [--connections 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from machine import cpu_model, load_average, print_summary

HOST = "127.0.0.1"
PATHS = ("/api/v1/levels", "/", "/en/areas/KZ-75")
AREA = "KZ-71"
SCHEME = "kz-terror"
DECLARED_LEVEL = "high"
LEVEL_URL = f"/api/v1/areas/{AREA}"
EVENTS_PATH = "/events"
POLL_SECONDS = 0.002
VISIBLE_TIMEOUT = 10.0
RATIO_TARGET = 0.5
LATENCY_TARGET_MS = 50.0
APT_COMMAND = "apt-get install -y nginx wrk"
LOAD_WARNING = 0.5
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
SERVER_CORE, LOAD_CORE = 1, 0


class BenchFailure(Exception):
    """A check failed: the run cannot be trusted."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each (path, kind) per server, alternating which goes first")
    parser.add_argument("--changes", type=int, default=30,
                        help="measured level changes per method (CLI, in-process); half are "
                             "declarations, half cancellations")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (database, mirror, configs, logs)")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.connections < 1 or args.threads < 1 or args.rounds < 1:
        parser.error("--seconds, --connections, --threads and --rounds must be at least 1")
    if args.threads > args.connections:
        parser.error("--threads cannot exceed --connections (wrk needs a connection per thread)")
    if args.changes < 2:
        parser.error("--changes must be at least 2")
    args.changes += args.changes % 2  # end where it started: as many cancels as declarations
    return args


# --- tools and machine ------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    return shutil.which(name, path=path)


def tocsin_command() -> list[str]:
    """The console script next to this interpreter (the .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "tocsin"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tocsin")
    if found is None:
        raise BenchFailure("the tocsin command is not installed; run 'make demo' once, then "
                           "run this script with .venv/bin/python")
    return [found]


def tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError as error:
        return f"unknown ({error})"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


@dataclass(frozen=True)
class Pinning:
    """taskset prefixes: the servers on one core, the load (wrk) on the other."""

    server: list[str]
    load: list[str]
    how: str


def pinning() -> Pinning:
    """Servers on core 1, wrk on core 0 (this process moves there too when the run begins,
    so the CLI writes and the polling it starts stay off the servers' core)."""
    taskset = find_tool("taskset")
    cores = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    if taskset is None or not {SERVER_CORE, LOAD_CORE} <= cores:
        return Pinning([], [], "not pinned (needs taskset and cores 0 and 1): servers, wrk "
                               "and this script share every core")
    return Pinning([taskset, "-c", str(SERVER_CORE)], [taskset, "-c", str(LOAD_CORE)],
                   f"tocsin serve (--no-worker) and nginx pinned to core {SERVER_CORE}, "
                   f"wrk, the CLI and this script to core {LOAD_CORE} (taskset)")


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    usable: int
    python: str
    kernel: str
    nginx: str
    wrk: str
    server: str
    how: str

    def lines(self) -> list[str]:
        return [
            f"cpu: {self.cpu}",
            f"cores: {self.cores} (usable by this process at start: {self.usable})",
            f"python: {self.python}",
            f"kernel: {self.kernel}",
            f"nginx: {self.nginx}",
            f"wrk: {self.wrk}",
            f"tocsin serve: {self.server}",
            f"how: {self.how}",
        ]


def machine(nginx: str, wrk: str, how: str) -> Machine:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    nginx_v = tool_version([nginx, "-v"]).removeprefix("nginx version: ")
    wrk_v = tool_version([wrk, "-v"]).split(" Copyright")[0]
    uv = f"granian {package_version('granian')}, --workers 1 --no-worker"
    return Machine(cpu_model(), os.cpu_count() or 0, usable,
                   f"{platform.python_version()} ({platform.python_implementation()})",
                   f"{platform.system()} {platform.release()} {platform.machine()}",
                   nginx_v, wrk_v, uv, how)


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Processes:
    """Every child started here, stopped again (by its own pid) when the run ends."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes], int]] = []

    def start(self, name: str, command: list[str], *, log: Path, env: dict[str, str],
              stop_signal: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        self.children.append((name, child, stop_signal))
        return child

    def stop(self, child: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
        for name, known, stop_signal in list(self.children):
            if known is not child:
                continue
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(stop_signal)
                try:
                    child.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(f"{name} (pid {child.pid}) did not stop in {timeout:g} s; killing it")
                    child.kill()
                    child.wait(5)
            self.children.remove((name, known, stop_signal))
        return child.returncode

    def stop_all(self) -> None:
        for _, child, _ in reversed(list(self.children)):
            self.stop(child)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(client: httpx.Client, url: str, child: subprocess.Popen[bytes], log: Path,
               what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchFailure(f"{what} exited with code {child.returncode} before answering; "
                               f"its log ({log}):\n{tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if client.get(url).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchFailure(f"{what} did not answer {url} within {timeout:g} s; log:\n{tail(log)}")


def run_checked(command: list[str], *, env: dict[str, str], what: str,
                timeout: float = 180.0) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"{what} took more than {timeout:g} s") from None
    if done.returncode != 0:
        raise BenchFailure(f"{what} failed with code {done.returncode}:\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


# --- preparing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    folder: Path
    database_url: str
    mirror: Path
    env: dict[str, str]


def prepare(folder: Path, tocsin: list[str]) -> Prepared:
    database = folder / "db"
    mirror = folder / "mirror"
    url = f"sqlite:///{database / 'tocsin.sqlite3'}"
    env = {**os.environ, "TOCSIN_DATABASE_URL": url, "NO_COLOR": "1", "COLUMNS": "120"}
    start = time.perf_counter()
    run_checked([*tocsin, "demo", "--dir", str(database), "--no-serve"], env=env,
                what="tocsin demo")
    demo_s = time.perf_counter() - start
    start = time.perf_counter()
    out = run_checked([*tocsin, "publish", "--to", str(mirror), "--json"], env=env,
                      what="tocsin publish --to")
    published = json.loads(out)
    print(f"demo database: {url} ({demo_s:.1f} s)")
    print(f"static mirror: {mirror}: {published['files']} documents, {published['bytes']:,} "
          f"bytes ({time.perf_counter() - start:.1f} s)")
    return Prepared(folder, url, mirror, env)


NGINX_CONF = """\
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    include /etc/nginx/mime.types;
    types {{ application/json json; }}
    default_type application/octet-stream;
    charset utf-8;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path {folder}/nginx-tmp/body;
    proxy_temp_path {folder}/nginx-tmp/proxy;
    fastcgi_temp_path {folder}/nginx-tmp/fastcgi;
    uwsgi_temp_path {folder}/nginx-tmp/uwsgi;
    scgi_temp_path {folder}/nginx-tmp/scgi;
    server {{
        listen {host}:{port};
        server_name localhost;
        root {mirror};
        index index.html;
        etag on;
        location / {{
            try_files $uri $uri.json $uri.html $uri/index.html =404;
        }}
    }}
}}
"""


def nginx_config(folder: Path, mirror: Path, port: int) -> Path:
    (folder / "nginx-tmp").mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, host=HOST, port=port, mirror=mirror),
                    encoding="utf-8")
    return conf


# --- checking both servers --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    base: str
    etags: dict[str, str]


def check_same_bodies(client: httpx.Client, tocsin: str, nginx: str) -> dict[str, int]:
    """Both servers send the same bytes for every path (the mirror promise); returns sizes."""
    bodies: dict[str, dict[str, bytes]] = {}
    for name, base in (("tocsin", tocsin), ("nginx", nginx)):
        for path in PATHS:
            response = client.get(base + path)
            if response.status_code != 200:
                raise BenchFailure(f"{name} answered {path} with {response.status_code}")
            bodies.setdefault(path, {})[name] = response.content
    for path, b in bodies.items():
        if b["tocsin"] != b["nginx"]:
            for name, body in b.items():
                (Path(tempfile.gettempdir()) / f"tocsin-bench-{name}{path.replace('/', '_')}"
                 ).write_bytes(body)
            raise BenchFailure(f"tocsin and nginx send different bodies for {path}; both "
                               f"saved as {tempfile.gettempdir()}/tocsin-bench-*")
    return {path: len(b["tocsin"]) for path, b in bodies.items()}


def check_not_modified(client: httpx.Client, target: Target) -> None:
    for path in PATHS:
        first = client.get(target.base + path)
        etag = first.headers.get("etag")
        if first.status_code != 200 or not etag:
            raise BenchFailure(f"{target.name} {path}: {first.status_code}, ETag {etag!r}")
        again = client.get(target.base + path, headers={"If-None-Match": etag})
        if again.status_code != 304 or again.content:
            raise BenchFailure(f"{target.name} {path} with If-None-Match {etag}: "
                               f"{again.status_code} and {len(again.content)} body bytes, "
                               "not 304 without a body")
        target.etags[path] = etag


# --- wrk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    bytes_read: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx_3xx: int

    @property
    def bytes_per_response(self) -> float:
        return self.bytes_read / self.requests if self.requests else 0.0


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(text)
    return float(match[1]) * UNITS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchFailure(f"cannot read wrk's output (no {pattern!r}):\n{output}")
        return match

    rps = float(find(r"^Requests/sec:\s+([\d.]+)")[1])
    done = find(r"^\s*(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read")
    latency = find(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)")
    p50 = find(r"^\s+50%\s+(\S+)")
    p99 = find(r"^\s+99%\s+(\S+)")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        rps=rps, requests=int(done[1]), bytes_read=float(done[2]) * SIZES[done[3]],
        latency_avg_ms=_ms(latency[1]), latency_max_ms=_ms(latency[3]),
        p50_ms=_ms(p50[1]), p99_ms=_ms(p99[1]),
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx_3xx=int(non[1]) if non else 0)


def run_wrk(wrk: str, args: argparse.Namespace, url: str, etag: str | None,
            pin: list[str]) -> WrkResult:
    command = [*pin, wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
               "--latency"]
    if etag is not None:
        command += ["-H", f"If-None-Match: {etag}"]
    command.append(url)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=args.seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"wrk did not finish: {' '.join(command)}") from None
    if done.returncode != 0:
        raise BenchFailure(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def check_run(name: str, path: str, kind: int, result: WrkResult, size: int) -> None:
    """wrk counts only >= 400 as errors: the bytes read per response tell 200 from 304."""
    problems = []
    if result.errors or result.non_2xx_3xx:
        problems.append(f"{result.errors} socket errors, {result.non_2xx_3xx} non-2xx/3xx")
    per = result.bytes_per_response
    if kind == 200 and per < size:
        problems.append(f"{per:.0f} bytes per response, less than the {size}-byte body")
    if kind == 304 and per > min(size, 1024):
        problems.append(f"{per:.0f} bytes per response: bodies were sent, not 304s")
    if problems:
        raise BenchFailure(f"{name} {path} ({kind}) under load: {'; '.join(problems)}")


@dataclass
class Row:
    path: str
    kind: int
    runs: dict[str, list[WrkResult]]
    ratios: list[float]

    def median_rps(self, name: str) -> float:
        return statistics.median(r.rps for r in self.runs[name])

    def median_of(self, name: str, value: Callable[[WrkResult], float]) -> float:
        return statistics.median(value(r) for r in self.runs[name])

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool:
        return self.ratio >= RATIO_TARGET


def load(wrk: str, args: argparse.Namespace, targets: list[Target],
         sizes: dict[str, int], pin: list[str]) -> list[Row]:
    rows = [Row(path, kind, {t.name: [] for t in targets}, [])
            for path in PATHS for kind in (200, 304)]
    total = len(rows) * len(targets) * args.rounds
    done = 0
    for round_no in range(args.rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for row in rows:
            this: dict[str, WrkResult] = {}
            for target in order:
                done += 1
                etag = target.etags[row.path] if row.kind == 304 else None
                result = run_wrk(wrk, args, target.base + row.path, etag, pin)
                check_run(target.name, row.path, row.kind, result, sizes[row.path])
                this[target.name] = result
                row.runs[target.name].append(result)
                print(f"  [{done:2}/{total}] round {round_no + 1} {target.name:6} "
                      f"{row.path:16} {row.kind}: {result.rps:10,.0f} req/s, p50 "
                      f"{result.p50_ms:6.2f} ms, p99 {result.p99_ms:6.2f} ms, "
                      f"{result.bytes_per_response:,.0f} B/response", flush=True)
            row.ratios.append(this["tocsin"].rps / this["nginx"].rps)
    return rows


def print_table(rows: list[Row]) -> None:
    header = (f"{'path':16} {'kind':>4} {'tocsin req/s':>13} {'nginx req/s':>12} "
              f"{'ratio':>6} {'(runs)':>13} {'tocsin p50/p99 ms':>18} "
              f"{'nginx p50/p99 ms':>17}  target >= {RATIO_TARGET:g}x")
    print(header)
    print("-" * len(header))
    for row in rows:
        runs = "/".join(f"{r:.2f}" for r in row.ratios)
        lat = {name: f"{row.median_of(name, lambda r: r.p50_ms):.2f}/"
                     f"{row.median_of(name, lambda r: r.p99_ms):.2f}" for name in row.runs}
        print(f"{row.path:16} {row.kind:>4} {row.median_rps('tocsin'):>13,.0f} "
              f"{row.median_rps('nginx'):>12,.0f} {row.ratio:>6.2f} {runs:>13} "
              f"{lat['tocsin']:>18} {lat['nginx']:>17}  "
              f"{'PASS' if row.passed else 'FAIL'}")
    print("(req/s and latencies: medians over the rounds; ratio: median of each round's "
          "tocsin/nginx)")


# --- declare -> visible -----------------------------------------------------------------------


def area_level(client: httpx.Client, url: str) -> tuple[str | None, str]:
    """The area's level, and the instant of the snapshot that answered."""
    response = client.get(url)
    if response.status_code != 200:
        raise BenchFailure(f"{url} answered {response.status_code}")
    document = response.json()
    for entry in document["levels"]:
        if entry["scheme"] == SCHEME:
            level = entry["level"]
            return (str(level) if level is not None else None), str(document["at"])
    raise BenchFailure(f"{url} has no {SCHEME} level")


def seconds_until(client: httpx.Client, url: str, expected: str | None,
                  start: float) -> tuple[float, str]:
    """Poll until the API shows `expected`: seconds since `start` (a perf_counter reading),
    and the instant of the snapshot that showed it."""
    while True:
        level, at = area_level(client, url)
        if level == expected:
            return time.perf_counter() - start, at
        if time.perf_counter() - start > VISIBLE_TIMEOUT:
            raise BenchFailure(f"{url} did not show level {expected!r} within "
                               f"{VISIBLE_TIMEOUT:g} s")
        time.sleep(POLL_SECONDS)


class EventListener:
    """Reads the server's live event stream (SSE, what open pages listen to) on a socket of
    its own, in a thread, and notes when each level change arrives."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.events: list[tuple[float, list[dict[str, object]]]] = []
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.sock = socket.create_connection(self.address, timeout=10)
        self.sock.sendall(f"GET {EVENTS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._read, name="sse", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        frame = re.compile(rb"event: levels\r?\ndata: ([^\r\n]*)\r?\n")
        try:
            while not self.stopping.is_set():
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    if not self.stopping.is_set():
                        self.failure = "the server closed the event stream"
                    return
                arrived = time.perf_counter()
                buffer += chunk
                while (match := frame.search(buffer)) is not None:
                    payload = json.loads(match[1])
                    buffer = buffer[match.end():]
                    with self.changed:
                        self.events.append((arrived, list(payload.get("changes", []))))
                        self.changed.notify_all()
        except OSError as error:
            if not self.stopping.is_set():
                self.failure = f"event stream: {error}"

    def count(self) -> int:
        with self.changed:
            return len(self.events)

    def wait_for(self, after: int, area: str, level: str | None, start: float) -> float:
        """Seconds from `start` until an event after the first `after` says `area` is now at
        `level`."""
        deadline = time.monotonic() + VISIBLE_TIMEOUT
        with self.changed:
            while True:
                for arrived, changes in self.events[after:]:
                    if any(c.get("scheme") == SCHEME and c.get("area") == area
                           and c.get("to") == level for c in changes):
                        return arrived - start
                left = deadline - time.monotonic()
                if left <= 0 or self.failure:
                    raise BenchFailure(self.failure or f"no live event for {area} -> {level!r} "
                                       f"within {VISIBLE_TIMEOUT:g} s")
                self.changed.wait(min(left, 0.1))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Latencies:
    name: str
    api: list[float] = field(default_factory=list)
    declared: list[float] = field(default_factory=list)
    cancelled: list[float] = field(default_factory=list)
    event: list[float] = field(default_factory=list)
    command_s: list[float] = field(default_factory=list)
    until_snapshot: list[float] = field(default_factory=list)
    """From the commit (or the CLI's exit) to the instant the server began the snapshot that
    first showed the change."""


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


Write = Callable[[int], None]
"""Makes change number i (even: declare, odd: cancel); returns once it has committed."""


def measure_changes(name: str, write: Write, changes: int, client: httpx.Client, url: str,
                    events: EventListener, initial: str | None) -> Latencies:
    """Each change, then: until the API shows it, and until its live event arrives. The next
    change waits for that event, which the server sends once it has rendered every document
    of the new snapshot: each change is measured on a quiet server."""
    out = Latencies(name)
    for i in range(changes):
        declaring = i % 2 == 0
        expected = DECLARED_LEVEL if declaring else initial
        seen = events.count()
        started = time.perf_counter()
        write(i)
        committed = time.perf_counter()
        committed_at = datetime.now(UTC)
        visible, at = seconds_until(client, url, expected, committed)
        out.until_snapshot.append((datetime.fromisoformat(at) - committed_at).total_seconds())
        out.api.append(visible)
        (out.declared if declaring else out.cancelled).append(visible)
        out.event.append(events.wait_for(seen, AREA, expected, committed))
        out.command_s.append(committed - started)
    return out


def cli_writer(tocsin: list[str], env: dict[str, str]) -> Write:
    declared = [""]

    def write(i: int) -> None:
        if i % 2 == 0:
            command = [*tocsin, "declare", "--scheme", SCHEME, "--level", DECLARED_LEVEL,
                       "--area", AREA, "--headline", f"bench serve {i // 2 + 1}", "--json"]
        else:
            command = [*tocsin, "cancel", declared[0], "--reason", "bench", "--json"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env, stdin=subprocess.DEVNULL)
        stdout, stderr = child.communicate(timeout=120)
        # The process has exited: its transaction has committed.
        if child.returncode != 0:
            raise BenchFailure(f"tocsin {command[1]} failed ({child.returncode}): "
                               f"{stderr.decode(errors='replace')}")
        if i % 2 == 0:
            [made] = json.loads(stdout)
            declared[0] = made["id"]

    return write


@contextlib.contextmanager
def service_writer(database_url: str) -> Iterator[Write]:
    from tocsin.domain.errors import TocsinError
    from tocsin.ingest.declarations import parse_declaration
    from tocsin.ingest.document import Document
    from tocsin.service import commands
    from tocsin.store.database import connect

    engine = connect(database_url)
    declared = [""]

    def write(i: int) -> None:
        try:
            if i % 2 == 0:
                request = parse_declaration(Document({
                    "scheme": SCHEME, "level": DECLARED_LEVEL, "areas": [AREA],
                    "texts": {"en": {"headline": f"bench serve in-process {i // 2 + 1}"}},
                }, "bench"), default_sender="bench")
                [made] = commands.declare(engine, [request], now=datetime.now(UTC),
                                          actor="bench")
                declared[0] = made.id
            else:
                commands.cancel(engine, declared[0], reason="bench", now=datetime.now(UTC),
                                actor="bench")
        except TocsinError as error:
            raise BenchFailure(f"the service layer refused: {error.message}") from None

    try:
        yield write
    finally:
        engine.dispose()


def latency_line(lat: Latencies) -> str:
    def ms(values: list[float]) -> str:
        millis = [v * 1000 for v in values]
        return (f"p50 {percentile(millis, 0.5):6.1f}  p99 {percentile(millis, 0.99):6.1f}  "
                f"max {max(millis):6.1f} ms")

    p50 = percentile(lat.api, 0.5) * 1000
    verdict = "PASS" if p50 < LATENCY_TARGET_MS else "FAIL"
    whole = [c + v for c, v in zip(lat.command_s, lat.api, strict=True)]
    return (f"{lat.name:10} n={len(lat.api):2}  API         {ms(lat.api)}  (declare p50 "
            f"{statistics.median(lat.declared) * 1000:.1f}, cancel p50 "
            f"{statistics.median(lat.cancelled) * 1000:.1f})  target p50 < "
            f"{LATENCY_TARGET_MS:g} ms: {verdict}\n"
            f"{'':16}live event  {ms(lat.event)}\n"
            f"{'':16}snapshot    {ms(lat.until_snapshot)}  (until the server began the "
            "snapshot that showed it)\n"
            f"{'':16}the write   {ms(lat.command_s)}  (spawn to exit / the call)\n"
            f"{'':16}write+API   {ms(whole)}  (what the operator waits)")


# --- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through the same clean-up as Ctrl-C."""
    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if nginx is None or wrk is None:
        missing = " and ".join(n for n, p in (("nginx", nginx), ("wrk", wrk)) if p is None)
        print(f"not installed: {missing}. Install Debian's packages, as root:\n\n"
              f"    {APT_COMMAND}\n", file=sys.stderr)
        return 2
    began = time.perf_counter()
    pins = pinning()
    info = machine(nginx, wrk, pins.how)
    if pins.load:
        os.sched_setaffinity(0, {LOAD_CORE})
    for line in info.lines():
        print(line)
    load_start = load_average()
    print(f"load average at start: {load_start}")
    if os.getloadavg()[0] > LOAD_WARNING:
        print("WARNING: this machine is busy with other work; the numbers will be noisy")
    print(f"settings: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
          f"{args.rounds} rounds, {args.changes} level changes per method")
    folder = Path(tempfile.mkdtemp(prefix="tocsin-bench-serve-"))
    folder.chmod(0o755)  # nginx's worker (nobody, when started as root) reads the mirror
    processes = Processes()
    summary: dict[str, str] = {}
    try:
        with terminated_as_exit():
            tocsin = tocsin_command()
            prepared = prepare(folder, tocsin)
            summary = run(args, prepared, tocsin, nginx, wrk, processes, info, pins)
    except BenchFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        processes.stop_all()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_summary(summary, load_start, began)
    return 0


def run(args: argparse.Namespace, prepared: Prepared, tocsin: list[str], nginx: str, wrk: str,
        processes: Processes, info: Machine, pins: Pinning) -> dict[str, str]:
    folder = prepared.folder
    tocsin_port, nginx_port = free_port(), free_port()
    while nginx_port == tocsin_port:
        nginx_port = free_port()
    tocsin_log = folder / "tocsin-serve.log"
    server = processes.start(
        "tocsin serve",
        # No notification worker: nginx has none beside it either.
        [*pins.server, *tocsin, "serve", "--host", HOST, "--port", str(tocsin_port),
         "--workers", "1", "--no-worker"],
        log=tocsin_log, env=prepared.env, stop_signal=signal.SIGINT)
    conf = nginx_config(folder, prepared.mirror, nginx_port)
    nginx_log = folder / "nginx-error.log"
    nginx_base = [nginx, "-p", f"{folder}/", "-c", str(conf), "-e", str(nginx_log)]
    run_checked([*nginx_base, "-t", "-q"], env=prepared.env, what="nginx -t (the config)")
    web = processes.start("nginx", [*pins.server, *nginx_base, "-g", "daemon off;"],
                          log=folder / "nginx-stdout.log", env=prepared.env,
                          stop_signal=signal.SIGQUIT)
    targets = [Target("tocsin", f"http://{HOST}:{tocsin_port}", {}),
               Target("nginx", f"http://{HOST}:{nginx_port}", {})]
    headers = {"Accept-Encoding": "identity"}
    with httpx.Client(timeout=10, headers=headers) as client:
        wait_ready(client, targets[0].base + PATHS[0], server, tocsin_log, "tocsin serve")
        wait_ready(client, targets[1].base + PATHS[0], web, nginx_log, "nginx")
        print(f"tocsin serve on {targets[0].base} (pid {server.pid}), nginx on "
              f"{targets[1].base} (pid {web.pid})")
        sizes = check_same_bodies(client, targets[0].base, targets[1].base)
        print(f"bodies of {', '.join(PATHS)}: byte-identical")
        for target in targets:
            check_not_modified(client, target)
            print(f"{target.name} answers If-None-Match with 304: " + ", ".join(
                f"{p} {e}" for p, e in target.etags.items()))

    print(f"\nload: {len(PATHS) * 2 * 2 * args.rounds} wrk runs of {args.seconds} s")
    rows = load(wrk, args, targets, sizes, pins.load)
    with httpx.Client(timeout=10, headers=headers) as client:
        for target in targets:  # no snapshot was rebuilt during the load: same validators
            before = dict(target.etags)
            check_not_modified(client, target)
            if target.etags != before:
                raise BenchFailure(f"{target.name}'s ETags changed during the load")
    processes.stop(web)
    print()
    print_table(rows)

    url = targets[0].base + LEVEL_URL
    print(f"\ndeclare -> visible at {LEVEL_URL} ({args.changes} changes per method: declare "
          f"{DECLARED_LEVEL} on {AREA}, then cancel it; polling every "
          f"{POLL_SECONDS * 1000:g} ms; times from the CLI's exit / the call's return; "
          "negative: before that)")
    with httpx.Client(timeout=10, headers=headers) as client:
        initial, _ = area_level(client, url)
        if initial == DECLARED_LEVEL or initial == "critical":
            raise BenchFailure(f"{AREA} is already at {initial}: declaring {DECLARED_LEVEL} "
                               "would not change it")
        events = EventListener(HOST, tocsin_port)
        try:
            cli = measure_changes("cli", cli_writer(tocsin, prepared.env), args.changes,
                                  client, url, events, initial)
            print(latency_line(cli), flush=True)
            with service_writer(prepared.database_url) as write:
                inproc = measure_changes("in-process", write, args.changes, client, url,
                                         events, initial)
            print(latency_line(inproc))
        finally:
            events.close()
    processes.stop(server)

    print()
    for line in info.lines():
        print(line)
    summary = {
        "cpu": info.cpu, "cores": str(info.cores), "python": info.python,
        "nginx": info.nginx, "wrk": info.wrk, "server": info.server, "how": info.how,
        "wrk_threads": str(args.threads), "wrk_connections": str(args.connections),
        "wrk_seconds": str(args.seconds), "rounds": str(args.rounds),
        "bodies": "byte-identical",
    }
    for row in rows:
        key = f"{row.path.strip('/').replace('/', '_') or 'root'}_{row.kind}"
        summary[f"{key}_tocsin_rps"] = f"{row.median_rps('tocsin'):.0f}"
        summary[f"{key}_nginx_rps"] = f"{row.median_rps('nginx'):.0f}"
        summary[f"{key}_ratio"] = f"{row.ratio:.3f}"
    summary["ratio_min"] = f"{min(r.ratio for r in rows):.3f}"
    summary["serve_target"] = (f">={RATIO_TARGET:g}x " +
                               ("PASS" if all(r.passed for r in rows) else "FAIL"))
    for lat in (cli, inproc):
        ms = [s * 1000 for s in lat.api]
        key = "visible_" + lat.name.replace("-", "")
        summary[f"{key}_p50_ms"] = f"{percentile(ms, 0.5):.1f}"
        summary[f"{key}_p99_ms"] = f"{percentile(ms, 0.99):.1f}"
        summary[f"{key}_max_ms"] = f"{max(ms):.1f}"
        summary[f"{key}_target"] = (f"p50<{LATENCY_TARGET_MS:g}ms " +
                                    ("PASS" if percentile(ms, 0.5) < LATENCY_TARGET_MS
                                     else "FAIL"))
        summary[f"{key}_event_p50_ms"] = f"{percentile(lat.event, 0.5) * 1000:.1f}"
        summary[f"{key}_write_p50_ms"] = f"{percentile(lat.command_s, 0.5) * 1000:.0f}"
    return summary


if __name__ == "__main__":
    sys.exit(main())
