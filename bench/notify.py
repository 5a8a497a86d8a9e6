"""Benchmark: webhook fan-out to 10,000 and 100,000 subscribers, beside wrk against the same
receiver (the loopback limit), in deliveries per second, and the time from a declaration to
its first and last delivery.

One run, on loopback only (127.0.0.1), bounded in time; everything it starts it stops again,
and its temporary folder is removed at the end (unless --keep):

1. starts `bench/receiver.py` (one process: HTTP/1.1 keep-alive, 204 to every POST, counts
   them and notes the wall-clock time of the first and last);
2. for each size N: a template database (PostgreSQL by default, SQLite with --sqlite) with
   the shipped schemes, Kazakhstan's areas and N active webhook subscriptions inserted in
   bulk, spread over the country's regions and cities, each with its own `whsec_` secret,
   all pointing at the receiver; a document key in TOCSIN_KEYS_DIR so that every delivery
   also carries tocsin's Ed25519 `v1a` signature (--unsigned: HMAC `v1` only);
3. each run (`--repeat` per size) gets a fresh copy of that template, starts `--workers`
   notification workers (`tocsin worker`, or `run_forever` through `python -c` when the
   command is missing or lacks a tuning flag given here), waits until they listen and have
   made one warm-up delivery, then declares `critical` for the whole country through
   `service.commands.declare` at t0 (`time.time()`, the receiver's clock too) and waits
   until the receiver has every delivery and the database says all are delivered;
4. wrk (`-t1 -c64 -d10s`) POSTs one of the requests tocsin sent (same path, headers, body)
   to the same receiver: the requests/s the receiver takes on this machine;
5. prints per size the medians: first delivery after t0 (target < 200 ms), last delivery,
   deliveries/s and its ratio to wrk (target >= 0.3x), where the time went (from the
   database's timestamps, and the CPU seconds of the workers, the receiver and PostgreSQL),
   the machine, and a summary block of key=value lines.

With --phases the worker runs inside this process instead (one), with timers around its
phases (fan-out, claim, building jobs, sending, recording) and the CPU time each takes per
delivery; --profile adds cProfile on its threads (CPU time, so the profile says where the
processor goes; the profiler slows the worker down several times).

Exit code 0 when the run completed (targets are reported, not enforced), 1 when a check
failed (a delivery missing or duplicated, a bad signature, the database disagreeing), 2 for
bad arguments or a missing tool.

Run it from the project root (without --sqlite and without TOCSIN_TEST_POSTGRES_URL it runs
itself again under `scripts/with-postgres`, on a free port):

    .venv/bin/python bench/notify.py [--sizes 10000,100000] [--repeat N] [--workers 1]
                                     [--sqlite] [--phases | --profile] [--batch N] ...
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import functools
import http.client
import io
import json
import os
import platform
import pstats
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from machine import cpu_model, load_average, print_summary
from serve import BenchFailure, Processes, free_port, tail, terminated_as_exit, tool_version

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
SCHEME = "kz-terror"
LEVEL = "critical"
COUNTRY = "KZ"
LANGUAGES = ("kk", "ru", "en")
FIRST_TARGET_MS = 200.0
RATIO_TARGET = 0.3
LOAD_WARNING = 0.5
STALL_SECONDS = 60.0
"""A run fails when the receiver has heard nothing new for this long."""
READY_TIMEOUT = 60.0
POLL = 0.01
CHUNK = 5000
WARMUP_ID = "sub_bench_warmup"
TUNING = ("batch", "lanes", "concurrency", "per_endpoint")
WORKER_CODE = """\
import json, logging, sys
from tocsin import settings
from tocsin.notify.worker import Tuning, run_forever
from tocsin.store.database import connect
logging.basicConfig(level=logging.WARNING)
config = settings.read()
run_forever(connect(config.database_url), config, Tuning(**json.loads(sys.argv[1])))
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000",
                        help="subscriber counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per size (default: 3 up to 10,000 subscribers, 1 above)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--sqlite", action="store_true",
                        help="SQLite instead of PostgreSQL (one writer at a time)")
    parser.add_argument("--unsigned", action="store_true",
                        help="no document key: HMAC v1 signatures only, no Ed25519 v1a")
    parser.add_argument("--endpoints", type=int, default=1,
                        help="distinct receiver addresses (127.0.0.1, .2, …) the subscribers "
                             "are spread over; the worker limits connections per endpoint")
    parser.add_argument("--phases", action="store_true",
                        help="run one worker in this process, with timers around its phases")
    parser.add_argument("--profile", action="store_true",
                        help="--phases, and cProfile (CPU time) on the worker's threads")
    parser.add_argument("--worker-command", choices=("auto", "cli", "python"), default="auto",
                        help="'tocsin worker', or run_forever through 'python -c'")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="wrk -d")
    parser.add_argument("--wrk-connections", type=int, default=64, help="wrk -c")
    for name in TUNING:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"the worker's Tuning.{name} (default: the worker's own)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (SQLite databases, keys, logs)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r} is not a list of numbers, e.g. 10000,100000")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes needs at least one count, each >= 1")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.workers < 1 or args.endpoints < 1 or args.wrk_seconds < 1:
        parser.error("--workers, --endpoints and --wrk-seconds must be at least 1")
    if not 1 <= args.endpoints <= 250:
        parser.error("--endpoints must be between 1 and 250 (addresses 127.0.0.1-250)")
    if args.wrk_connections < 1:
        parser.error("--wrk-connections must be at least 1")
    args.phases = args.phases or args.profile
    if args.phases and args.workers != 1:
        parser.error("--phases and --profile run one worker, in this process: leave out "
                     "--workers")
    for name in TUNING:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def repeats(args: argparse.Namespace, size: int) -> int:
    return int(args.repeat) if args.repeat is not None else (3 if size <= 10_000 else 1)


def tuning_of(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in TUNING if getattr(args, name) is not None}


# --- machine and processes --------------------------------------------------------------------


def machine_lines(wrk: str, database: str) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    from importlib.metadata import version
    return [f"cpu: {cpu_model()}",
            f"cores: {os.cpu_count()} (usable by this process: {usable})",
            f"python: {platform.python_version()} ({platform.python_implementation()})",
            f"kernel: {platform.system()} {platform.release()} {platform.machine()}",
            f"wrk: {tool_version([wrk, '-v']).split(' Copyright')[0]}",
            f"aiohttp: {version('aiohttp')}, SQLAlchemy: {version('sqlalchemy')}",
            f"database: {database}"]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(entry))
    return out


# --- the receiver -----------------------------------------------------------------------------


class Receiver:
    """bench/receiver.py in a child process, and a keep-alive connection to ask it."""

    def __init__(self, processes: Processes, folder: Path, hosts: list[str]) -> None:
        self.log = folder / "receiver.log"
        port = free_port()
        command = [sys.executable, str(ROOT / "bench" / "receiver.py"), "--port", str(port)]
        for host in hosts:
            command += ["--host", host]
        self.child = processes.start("receiver", command, log=self.log, env=dict(os.environ))
        self.port = port
        self.hosts = hosts
        self._conn: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + 30
        while "listening" not in self.log.read_text(encoding="utf-8", errors="replace"):
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise BenchFailure(f"the receiver did not start; its log:\n{tail(self.log)}")
            time.sleep(0.05)

    def url(self, index: int = 0) -> str:
        return f"http://{self.hosts[index % len(self.hosts)]}:{self.port}"

    def get(self, path: str) -> Any:
        for _ in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                self._conn.request("GET", path)
                answer = self._conn.getresponse()
                return json.loads(answer.read())
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
        raise BenchFailure(f"the receiver does not answer GET {path}; log:\n{tail(self.log)}")

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/stats"))

    def reset(self) -> None:
        self.get("/reset")

    def cpu(self) -> float:
        return cpu_seconds(self.child.pid)


# --- databases --------------------------------------------------------------------------------


class Databases:
    """A template per size, and a fresh copy of it per run (PostgreSQL or SQLite)."""

    def __init__(self, folder: Path, postgres: str | None) -> None:
        self.folder = folder
        self.postgres = postgres
        self.created: list[str] = []

    @property
    def kind(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    def _admin(self) -> Engine:
        return create_engine(self.postgres or "", isolation_level="AUTOCOMMIT")

    def _pg_url(self, name: str) -> str:
        return make_url(self.postgres or "").set(database=name).render_as_string(
            hide_password=False)

    def empty(self, name: str) -> str:
        if not self.postgres:
            return f"sqlite:///{self.folder / (name + '.sqlite3')}"
        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.created.append(name)
        return self._pg_url(name)

    def copy(self, template: str, name: str) -> str:
        if not self.postgres:
            source = make_url(template).database or ""
            target = self.folder / (name + ".sqlite3")
            shutil.copy(source, target)
            return f"sqlite:///{target}"
        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE '
                              f'"{make_url(template).database}"'))
        admin.dispose()
        self.created.append(name)
        return self._pg_url(name)

    def drop(self, url: str) -> None:
        if not self.postgres:
            with contextlib.suppress(OSError):
                for suffix in ("", "-wal", "-shm"):
                    Path((make_url(url).database or "") + suffix).unlink(missing_ok=True)
            return
        name = make_url(url).database or ""
        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in reversed(list(self.created)):
            with contextlib.suppress(Exception):
                self.drop(self._pg_url(name))

    def listeners(self, url: str) -> int:
        """Sessions LISTENing in this database (a worker's wake-up connection)."""
        admin = self._admin()
        with admin.connect() as conn:
            n = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND query ILIKE 'LISTEN%'"), {"db": make_url(url).database}).scalar_one()
        admin.dispose()
        return int(n)

    def server_pids(self) -> list[int]:
        """The PostgreSQL server's processes (the postmaster and its children), if readable."""
        if not self.postgres:
            return []
        try:
            admin = self._admin()
            with admin.connect() as conn:
                folder = conn.execute(text("SHOW data_directory")).scalar_one()
            admin.dispose()
            master = int((Path(folder) / "postmaster.pid").read_text().split()[0])
        except Exception:  # not a superuser, or another machine: no CPU figure then
            return []
        return [master, *children_of(master)]


def prepare_template(dbs: Databases, size: int, receiver: Receiver, now: datetime) -> str:
    """The schemes, Kazakhstan's areas, the levels baseline and `size` webhook subscriptions,
    all active, spread over the regions and cities (one area each)."""
    from tocsin.demo import kazakhstan_areas_file
    from tocsin.domain.notify import Channel, SubscriptionStatus
    from tocsin.ingest.areas import read_areas_csv
    from tocsin.service import commands, levels, queries
    from tocsin.store import tables as t
    from tocsin.store.database import connect

    url = dbs.empty(f"tocsin_bench_{size}_template")
    engine = connect(url)
    try:
        commands.initialise(engine, now=now, actor="bench-setup")
        commands.import_areas(engine, read_areas_csv(kazakhstan_areas_file()), now=now,
                              actor="bench-setup")
        levels.run_due(engine, now)  # the baseline: later changes are announced
        tree = queries.load_world(engine).tree
        regions = sorted(a.code for a in tree if a.parent == COUNTRY)
        started = time.perf_counter()
        # Straight into the tables, in bulk: service.subscriptions.add takes a transaction, an
        # audit entry and its hash-chain step per subscription (~8 ms each on SQLite), which
        # at 100,000 would be a quarter of an hour of setting up.
        for first in range(0, size, CHUNK):
            rows, areas = [], []
            for i in range(first, min(first + CHUNK, size)):
                sub_id = f"sub_{i:08d}{secrets.token_hex(4)}"
                rows.append({
                    "id": sub_id, "channel": Channel.WEBHOOK.value,
                    "target": f"{receiver.url(i)}/hook/{i}",
                    "secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                    "details": {}, "language": LANGUAGES[i % len(LANGUAGES)],
                    "status": SubscriptionStatus.ACTIVE.value, "owner": "user:bench",
                    "created_at": now, "confirmed_at": now})
                areas.append({"subscription_id": sub_id, "area_code": regions[i % len(regions)]})
            with engine.begin() as conn:
                conn.execute(insert(t.subscriptions), rows)
                conn.execute(insert(t.subscription_areas), areas)
        with engine.begin() as conn:
            # A pending subscription hears no level change; its confirmation is the warm-up.
            conn.execute(insert(t.subscriptions).values(
                id=WARMUP_ID, channel=Channel.WEBHOOK.value, target=f"{receiver.url()}/warmup",
                secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                details={}, language="en", status=SubscriptionStatus.PENDING.value,
                owner="user:bench", created_at=now))
            conn.execute(insert(t.subscription_areas).values(subscription_id=WARMUP_ID,
                                                             area_code=regions[0]))
        if dbs.postgres:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        else:
            with engine.connect() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        print(f"  template: {size:,} subscriptions over {len(regions)} regions and cities "
              f"inserted in {time.perf_counter() - started:.1f} s")
    finally:
        engine.dispose()
    return url


# --- workers ----------------------------------------------------------------------------------


def tocsin_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "tocsin"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tocsin")
    return [found] if found else None


def worker_command(choice: str, tuning: dict[str, int]) -> tuple[list[str], str]:
    """`tocsin worker` (with the tuning flags given), or run_forever through `python -c`."""
    tocsin = tocsin_command()
    if choice != "python" and tocsin is not None:
        probe = subprocess.run([*tocsin, "worker", "--help"], capture_output=True, text=True,
                               check=False, env={**os.environ, "COLUMNS": "200"})
        if probe.returncode == 0:
            flags: list[str] = []
            for name, value in tuning.items():
                flag = "--" + name.replace("_", "-")
                if flag not in probe.stdout:
                    break
                flags += [flag, str(value)]
            else:
                return [*tocsin, "worker", *flags], " ".join(["tocsin worker", *flags])
        if choice == "cli":
            raise BenchFailure("'tocsin worker' is missing or lacks a tuning flag given: "
                               f"{(probe.stdout + probe.stderr).strip()[-500:]}")
    command = [sys.executable, "-c", WORKER_CODE, json.dumps(tuning)]
    return command, f"python -c run_forever(Tuning(**{json.dumps(tuning)}))"


@dataclass
class PhaseClock:
    """Wall and CPU time of the in-process worker's phases, and (with cProfile) profiles."""

    walls: dict[str, list[float]] = field(default_factory=dict)
    cpus: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    profiles: list[cProfile.Profile] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    profiling: bool = False
    loop_cpu: float = 0.0
    """CPU of the event loop's thread during the run: building bodies, signing, HTTP."""

    def add(self, name: str, seconds: float, cpu: float = 0.0, items: int = 0) -> None:
        with self.lock:
            self.walls.setdefault(name, []).append(seconds)
            self.cpus[name] = self.cpus.get(name, 0.0) + cpu
            self.items[name] = self.items.get(name, 0) + items

    def clear(self) -> None:
        with self.lock:
            self.walls.clear()
            self.cpus.clear()
            self.items.clear()
            self.profiles.clear()
            self.loop_cpu = 0.0

    def new_profile(self) -> cProfile.Profile | None:
        if not self.profiling:
            return None
        profile = cProfile.Profile(time.thread_time)
        with self.lock:
            self.profiles.append(profile)
        return profile


def timed_sync(clock: PhaseClock, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        profile = clock.new_profile()
        started, cpu = time.perf_counter(), time.thread_time()
        if profile is not None:
            profile.enable()
        try:
            out = fn(*args, **kwargs)
        finally:
            if profile is not None:
                profile.disable()
            took, cpu = time.perf_counter() - started, time.thread_time() - cpu
        n = len(out[0]) if isinstance(out, tuple) and out and isinstance(out[0], list) else (
            len(out) if isinstance(out, list) else 0)
        clock.add(name, took, cpu, n)
        return out

    return wrapper


def timed_async(clock: PhaseClock, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            clock.add(name, time.perf_counter() - started)

    return wrapper


class InProcessWorker:
    """One Worker in a thread of this process, its phases timed (and profiled)."""

    def __init__(self, url: str, env: dict[str, str], tuning: dict[str, int],
                 clock: PhaseClock) -> None:
        import asyncio

        from tocsin import settings
        from tocsin.notify import worker as worker_module
        from tocsin.store.database import connect

        self.clock = clock
        self.engine = connect(url)
        config = settings.read({**env, "TOCSIN_DATABASE_URL": url})
        self.worker = worker_module.Worker(self.engine, config,
                                           tuning=worker_module.Tuning(**cast(Any, tuning)))
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.loop_profile: cProfile.Profile | None = None
        self._cpu_start = 0.0
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bench-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio
        asyncio.set_event_loop(self.loop)
        self.loop_profile = self.clock.new_profile()
        if self.loop_profile is not None:
            self.loop_profile.enable()
        try:
            self.loop.run_until_complete(self.worker.run(self.stop_event))
        except BaseException as error:  # reported by the bench, not lost in a thread
            self.failure = error
        finally:
            if self.loop_profile is not None:
                self.loop_profile.disable()
            self.loop.close()

    def restart(self) -> None:
        """Measure the event loop's thread from now on: its CPU, and a fresh profile."""
        done = threading.Event()

        def swap() -> None:
            if self.loop_profile is not None:
                self.loop_profile.disable()
            self.loop_profile = self.clock.new_profile()
            if self.loop_profile is not None:
                self.loop_profile.enable()
            self._cpu_start = time.thread_time()
            done.set()

        self.loop.call_soon_threadsafe(swap)
        done.wait(5)

    def take_loop_cpu(self) -> None:
        """The event loop thread's CPU since restart(), into the clock."""
        done = threading.Event()

        def read() -> None:
            self.clock.loop_cpu = time.thread_time() - self._cpu_start
            done.set()

        self.loop.call_soon_threadsafe(read)
        done.wait(5)

    def stop(self) -> None:
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        self.engine.dispose()


@contextlib.contextmanager
def phase_timers(clock: PhaseClock) -> Iterator[None]:
    """Wrap the worker's phases where it looks them up (module attributes, methods)."""
    from tocsin.notify import worker as worker_module
    from tocsin.service import deliveries, levels

    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    for name in ("fan_out", "claim", "drop", "record", "next_due"):
        patch(deliveries, name, timed_sync(clock, name, getattr(deliveries, name)))
    patch(levels, "run_due", timed_sync(clock, "run_due", levels.run_due))
    patch(worker_module.Worker, "_jobs",
          timed_sync(clock, "build jobs", worker_module.Worker._jobs))
    patch(worker_module.Worker, "_lane", timed_async(clock, "lane", worker_module.Worker._lane))
    try:
        yield
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


# --- one run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    size: int
    first_s: float
    """Receiver's first POST - t0 (the call to declare)."""
    last_s: float
    commit_s: float
    """The declare call's return - t0."""
    recorded_s: float
    """When the database first showed every delivery delivered - t0 (polled)."""
    woke_s: float | None
    """The worker's round that fanned the event out began (outbox.fanned_out_at) - t0."""
    first_claim_s: float | None
    """The first lease (deliveries.first_attempt_at, the claim's clock) - t0."""
    last_claim_s: float | None
    attempt_ms: float
    """Mean duration of one attempt as the worker logged it (waiting for a slot included)."""
    cpu: dict[str, float]
    sample: list[dict[str, Any]]

    @property
    def rate(self) -> float:
        span = self.last_s - self.first_s
        return self.size / span if span > 0 else float("inf")

    @property
    def rate_from_declare(self) -> float:
        return self.size / self.last_s if self.last_s > 0 else float("inf")


def declaration_request(n: int) -> Any:
    from tocsin.ingest.declarations import parse_declaration
    from tocsin.ingest.document import Document

    return parse_declaration(Document({
        "scheme": SCHEME, "level": LEVEL, "areas": [COUNTRY],
        "texts": {"kk": {"headline": f"Бенчмарк {n}"}, "ru": {"headline": f"Бенчмарк {n}"},
                  "en": {"headline": f"Benchmark {n}"}},
    }, "bench"), default_sender="bench")


def queue_warmup(engine: Engine, pg: bool) -> None:
    """A confirmation for the pending warm-up subscription: one delivery to /warmup."""
    from tocsin.domain.notify import CONFIRM
    from tocsin.store import tables as t
    from tocsin.store.listen import NOTIFY_CHANNEL

    with engine.begin() as conn:
        conn.execute(insert(t.outbox).values(created_at=datetime.now(UTC), topic=CONFIRM,
                                             payload={"subscription": WARMUP_ID}, audit_seq=0))
        if pg:
            conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


def wait_until(what: str, predicate: Callable[[], bool], timeout: float,
               alive: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        problem = alive()
        if problem:
            raise BenchFailure(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise BenchFailure(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class Context:
    args: argparse.Namespace
    folder: Path
    processes: Processes
    receiver: Receiver
    dbs: Databases
    env: dict[str, str]
    command: list[str]
    clock: PhaseClock


def one_run(ctx: Context, template: str, size: int, n: int) -> RunResult:
    from tocsin.domain.notify import LEVELS_CHANGED
    from tocsin.service import commands, deliveries
    from tocsin.store import tables as t
    from tocsin.store.database import connect

    url = ctx.dbs.copy(template, f"tocsin_bench_{size}_run{n}")
    engine = connect(url)
    pg = ctx.dbs.kind == "postgresql"
    env = {**ctx.env, "TOCSIN_DATABASE_URL": url}
    workers: list[subprocess.Popen[bytes]] = []
    inproc: InProcessWorker | None = None
    logs: list[Path] = []
    try:
        if ctx.args.phases:
            inproc = InProcessWorker(url, env, tuning_of(ctx.args), ctx.clock)
        else:
            for k in range(ctx.args.workers):
                log = ctx.folder / f"worker-{size}-{n}-{k}.log"
                logs.append(log)
                workers.append(ctx.processes.start(f"worker {k}", ctx.command, log=log,
                                                   env=env))

        def alive() -> str | None:
            for child, log in zip(workers, logs, strict=True):
                if child.poll() is not None:
                    return (f"a worker exited with code {child.returncode}; its log:\n"
                            f"{tail(log)}")
            if inproc is not None and inproc.failure is not None:
                return f"the worker failed: {inproc.failure!r}"
            return None

        if pg:
            wait_until("the workers' LISTEN connections",
                       lambda: ctx.dbs.listeners(url) >= len(workers) + (inproc is not None),
                       READY_TIMEOUT, alive)
        ctx.receiver.reset()
        queue_warmup(engine, pg)
        wait_until("the warm-up delivery", lambda: ctx.receiver.stats()["posts"] >= 1,
                   READY_TIMEOUT, alive)
        time.sleep(0.5)  # every worker through its first round, idle again
        ctx.receiver.reset()
        ctx.clock.clear()
        if inproc is not None:
            inproc.restart()
        pids = [w.pid for w in workers] or [os.getpid()]
        server = ctx.dbs.server_pids()
        cpu_before = {"workers": sum(map(cpu_seconds, pids)), "receiver": ctx.receiver.cpu(),
                      "postgres": sum(map(cpu_seconds, server))}
        request = declaration_request(n)

        t0 = time.time()
        commands.declare(engine, [request], now=datetime.now(UTC), actor="bench")
        committed = time.time()

        seen, heard = 0, time.monotonic()
        while True:
            stats = ctx.receiver.stats()
            if stats["distinct_ids"] >= size:
                break
            if stats["posts"] != seen:
                seen, heard = stats["posts"], time.monotonic()
            elif time.monotonic() - heard > STALL_SECONDS:
                raise BenchFailure(f"{size:,} subscribers: the receiver has {seen:,} deliveries "
                                   f"and heard nothing new for {STALL_SECONDS:g} s")
            problem = alive()
            if problem:
                raise BenchFailure(problem)
            time.sleep(POLL)
        with engine.connect() as conn:
            event = conn.execute(select(func.max(t.outbox.c.id))
                                 .where(t.outbox.c.topic == LEVELS_CHANGED)).scalar_one()
        wait_until("the database recording every delivery",
                   lambda: deliveries.counts(engine, event=event)["delivered"] >= size,
                   STALL_SECONDS, alive)
        recorded = time.time()
        if inproc is not None:
            inproc.take_loop_cpu()
        cpu = {"workers": sum(map(cpu_seconds, pids)) - cpu_before["workers"],
               "receiver": ctx.receiver.cpu() - cpu_before["receiver"],
               "postgres": sum(map(cpu_seconds, server)) - cpu_before["postgres"]}
        stats = ctx.receiver.stats()
        sample = ctx.receiver.get("/sample")
        counts = deliveries.counts(engine, event=event)
        if counts["delivered"] != size or sum(counts.values()) != size:
            raise BenchFailure(f"{size:,} subscribers but the database counts {counts}")
        if stats["posts"] != size or stats["distinct_ids"] != size:
            raise BenchFailure(f"{size:,} deliveries expected; the receiver got {stats['posts']:,}"
                               f" requests with {stats['distinct_ids']:,} distinct webhook-ids")
        check_samples(engine, sample, ctx.folder / "keys", signed=not ctx.args.unsigned)
        d, a = t.deliveries, t.delivery_attempts
        with engine.connect() as conn:
            woke = conn.execute(select(t.outbox.c.fanned_out_at)
                                .where(t.outbox.c.id == event)).scalar_one()
            first_claim, last_claim = conn.execute(
                select(func.min(d.c.first_attempt_at), func.max(d.c.first_attempt_at))
                .where(d.c.event_id == event)).one()
            attempt_ms = conn.execute(
                select(func.avg(a.c.duration_ms)).join(d, d.c.id == a.c.delivery_id)
                .where(d.c.event_id == event)).scalar_one()

        def since(at: datetime | None) -> float | None:
            return at.timestamp() - t0 if at is not None else None

        return RunResult(size, stats["first"] - t0, stats["last"] - t0, committed - t0,
                         recorded - t0, since(woke), since(first_claim), since(last_claim),
                         float(attempt_ms or 0), cpu, sample)
    finally:
        if inproc is not None:
            inproc.stop()
        for child in workers:
            ctx.processes.stop(child)
        engine.dispose()
        if not ctx.args.keep:
            ctx.dbs.drop(url)


def check_samples(engine: Engine, sample: list[dict[str, Any]], keys_dir: Path,
                  signed: bool) -> None:
    """The first requests the receiver kept: Standard Webhooks signatures that verify (v1
    with the subscriber's secret; v1a with tocsin's document key), one change each: the
    subscriber's area, now critical."""
    from cryptography.exceptions import InvalidSignature
    from standardwebhooks.webhooks import Webhook

    from tocsin.notify import signing
    from tocsin.service import keys
    from tocsin.store import tables as t

    if not sample:
        raise BenchFailure("the receiver kept no request to check")
    signer = keys.document_signer(keys_dir)
    for request in sample:
        headers = dict(h.split(": ", 1) for h in request["headers"])
        lower = {k.lower(): v for k, v in headers.items()}
        with engine.connect() as conn:
            row = conn.execute(select(t.subscriptions.c.secret, t.subscriptions.c.target,
                                      t.subscription_areas.c.area_code)
                               .join(t.subscription_areas, t.subscription_areas.c.subscription_id
                                     == t.subscriptions.c.id)
                               .where(t.subscriptions.c.target.endswith(request["path"]))).first()
        if row is None:
            raise BenchFailure(f"a request to {request['path']}, which no subscription names")
        try:
            Webhook(row.secret).verify(request["body"].encode(), lower)
        except Exception as error:
            raise BenchFailure(f"the v1 signature of a request to {request['path']} does not "
                               f"verify: {error}") from None
        v1a = [s.split(",", 1)[1] for s in lower.get("webhook-signature", "").split()
               if s.startswith("v1a,")]
        if signed:
            if signer is None or not v1a:
                raise BenchFailure("no v1a signature although a document key exists")
            content = signing.signed_content(lower["webhook-id"],
                                             int(lower["webhook-timestamp"]),
                                             request["body"].encode())
            try:
                signer.private_key.public_key().verify(base64.b64decode(v1a[0]), content)
            except InvalidSignature:
                raise BenchFailure(f"the v1a signature of {request['path']} does not "
                                   "verify") from None
        body = json.loads(request["body"])
        changes = body["data"]["changes"]
        if [(c["area"], c["to"]) for c in changes] != [(row.area_code, LEVEL)]:
            raise BenchFailure(f"a subscriber to {row.area_code} was sent {changes}")


# --- wrk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: str
    counted: int
    body_bytes: int


def lua_string(value: str) -> str:
    out = []
    for byte in value.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(folder: Path, request: dict[str, Any]) -> Path:
    """A Lua script that POSTs this request (its headers, less those wrk sets itself)."""
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(request['body'])}"]
    for header in request["headers"]:
        name, value = header.split(": ", 1)
        if name.lower() not in ("host", "content-length", "connection"):
            lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    script = folder / "post.lua"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return script


def milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, args: argparse.Namespace, receiver: Receiver, folder: Path,
            request: dict[str, Any]) -> WrkResult:
    script = wrk_script(folder, request)
    receiver.reset()
    command = [wrk, "-t1", f"-c{args.wrk_connections}", f"-d{args.wrk_seconds}s", "--latency",
               "-s", str(script), receiver.url() + request["path"]]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=args.wrk_seconds + 60)
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or found is None or total is None:
        raise BenchFailure(f"wrk failed ({done.returncode}): {out}{done.stderr}")
    percentiles = {m[1]: milliseconds(m[2], m[3])
                   for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    problems = (errors[1] if errors else "") + (f"; non-2xx {non2xx[1]}" if non2xx else "")
    stats = receiver.stats()
    return WrkResult(float(found[1]), int(total[1]), percentiles.get("50", 0.0),
                     percentiles.get("99", 0.0), problems or "none", int(stats["posts"]),
                     int(stats["body_bytes"]))


# --- reporting --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def runs_text(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def report_size(size: int, runs: list[RunResult], wrk: WrkResult, workers: int
                ) -> dict[str, str]:
    first = [r.first_s * 1000 for r in runs]
    after_commit = [(r.first_s - r.commit_s) * 1000 for r in runs]
    last = [r.last_s for r in runs]
    rates = [r.rate for r in runs]
    whole = [r.rate_from_declare for r in runs]
    ratio = median(rates) / wrk.rps
    ratio_whole = median(whole) / wrk.rps
    first_ok = median(first) < FIRST_TARGET_MS
    ratio_ok = ratio >= RATIO_TARGET
    print(f"\n{size:,} subscribers, {len(runs)} run(s), {workers} worker(s)"
          "                    median   (each run)")
    rows = [
        ("first delivery after declare", f"{median(first):9.0f} ms", runs_text(first, ".0f"),
         f"target < {FIRST_TARGET_MS:g} ms: {'PASS' if first_ok else 'FAIL'}"),
        ("first delivery after the commit", f"{median(after_commit):9.0f} ms",
         runs_text(after_commit, ".0f"), ""),
        ("last delivery after declare", f"{median(last):9.2f} s ", runs_text(last, ".2f"), ""),
        ("deliveries/s, first -> last", f"{median(rates):9,.0f}   ", runs_text(rates, ",.0f"),
         ""),
        ("deliveries/s, declare -> last", f"{median(whole):9,.0f}   ",
         runs_text(whole, ",.0f"), ""),
        ("wrk, same receiver, req/s", f"{wrk.rps:9,.0f}   ",
         f"p50 {wrk.p50_ms:.2f} ms, p99 {wrk.p99_ms:.2f} ms, errors {wrk.errors}", ""),
        ("ratio tocsin/wrk (first->last)", f"{ratio:9.3f}x  ", "",
         f"target >= {RATIO_TARGET:g}x: {'PASS' if ratio_ok else 'FAIL'}"),
        ("ratio tocsin/wrk (declare->last)", f"{ratio_whole:9.3f}x  ", "", ""),
    ]
    for label, value, each, verdict in rows:
        print(f"  {label:33} {value}  {each:28} {verdict}")

    def steps(r: RunResult) -> list[tuple[str, float | None]]:
        return [("declare committed", r.commit_s),
                ("worker's round began (fanned_out_at)", r.woke_s),
                ("first claim (after the fan-out)", r.first_claim_s),
                ("first POST at the receiver", r.first_s),
                ("last claim", r.last_claim_s),
                ("last POST at the receiver", r.last_s),
                ("all recorded delivered (polled)", r.recorded_s)]

    print("  where the time went, seconds after t0 (medians):")
    labels = [label for label, _ in steps(runs[0])]
    for i, label in enumerate(labels):
        values = [v for s in map(steps, runs) if (v := s[i][1]) is not None]
        shown = f"{median(values):8.3f}" if values else "     n/a"
        print(f"    {label:38} {shown}")
    cpu = {k: median([r.cpu[k] for r in runs]) for k in runs[0].cpu}
    span = median([r.recorded_s for r in runs])
    print(f"  CPU seconds while delivering (t0 -> recorded, {span:.2f} s wall): " + ", ".join(
        f"{k} {v:.2f} ({v / span:.0%})" for k, v in cpu.items() if v or k != "postgres"))
    print(f"  mean attempt as the worker logged it: "
          f"{median([r.attempt_ms for r in runs]):.1f} ms (waiting for a slot included)")
    key = f"n{size}"
    return {
        f"{key}_runs": str(len(runs)),
        f"{key}_first_delivery_ms": f"{median(first):.0f}",
        f"{key}_last_delivery_s": f"{median(last):.2f}",
        f"{key}_deliveries_per_s": f"{median(rates):.0f}",
        f"{key}_deliveries_per_s_from_declare": f"{median(whole):.0f}",
        f"{key}_wrk_rps": f"{wrk.rps:.0f}",
        f"{key}_ratio": f"{ratio:.3f}",
        f"{key}_ratio_from_declare": f"{ratio_whole:.3f}",
        f"{key}_first_target": f"<{FIRST_TARGET_MS:g}ms " + ("PASS" if first_ok else "FAIL"),
        f"{key}_ratio_target": f">={RATIO_TARGET:g}x " + ("PASS" if ratio_ok else "FAIL"),
        f"{key}_cpu_workers_s": f"{cpu['workers']:.2f}",
        f"{key}_cpu_receiver_s": f"{cpu['receiver']:.2f}",
        f"{key}_cpu_postgres_s": f"{cpu['postgres']:.2f}",
    }


def report_phases(clock: PhaseClock, size: int, wall: float) -> None:
    """The in-process worker's phases (wall, and CPU of the thread that ran them)."""
    print(f"  phases of the in-process worker ({wall:.2f} s from t0 to recorded; two lanes "
          "overlap, so wall sums may exceed it; CPU per delivery is the figure that scales):")
    walls = dict(clock.walls)
    lanes = sum(walls.get("lane", []))
    inner = sum(sum(walls.get(n, [])) for n in ("claim", "build jobs", "drop", "record"))
    for name in ("run_due", "fan_out", "claim", "build jobs", "drop", "record", "next_due"):
        values = walls.get(name, [])
        if values:
            cpu = clock.cpus.get(name, 0.0)
            print(f"    {name:12} {len(values):5} calls  wall {sum(values):6.2f} s, mean "
                  f"{statistics.mean(values) * 1000:6.1f} ms, max {max(values) * 1000:6.1f} ms;"
                  f"  CPU {cpu:6.2f} s = {cpu / size * 1e6:5.0f} us/delivery")
    if lanes:
        print(f"    {'sending':12} {'':11} wall {lanes - inner:6.2f} s (lanes less the phases "
              "above)")
    if clock.loop_cpu:
        print(f"    {'event loop':12} {'':11} CPU {clock.loop_cpu:6.2f} s = "
              f"{clock.loop_cpu / size * 1e6:5.0f} us/delivery (bodies, signatures, HTTP)")
    total = clock.loop_cpu + sum(clock.cpus.values())
    print(f"    {'in all':12} {'':11} CPU {total:6.2f} s = {total / size * 1e6:5.0f} "
          f"us/delivery: at most {size / total if total else 0:,.0f} deliveries/s per core")
    if not clock.profiles:
        return
    stats = pstats.Stats(clock.profiles[0])
    for profile in clock.profiles[1:]:
        stats.add(profile)
    groups: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, _) in raw.items():
        groups[package_of(filename, name)] = groups.get(package_of(filename, name), 0.0) + tottime
    total = sum(groups.values()) or 1.0
    print(f"  CPU by package (cProfile, thread CPU time, {total:.2f} s in all threads; "
          "profiling inflates it):")
    for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])[:14]:
        print(f"    {name:34} {seconds:7.2f} s  {seconds / total:6.1%}")
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(22)
    print("  top functions by own CPU time:")
    for line in buffer.getvalue().splitlines():
        if re.match(r"\s+\d", line) or "ncalls" in line:
            print("    " + line.rstrip()[:150])


def package_of(filename: str, name: str) -> str:
    if filename == "~":
        match = re.search(r"of '([\w.]+)", name) or re.search(r"<built-in method ([\w.]+)", name)
        return f"C: {match[1].split('.')[0] if match else name[:30]}"
    match = re.search(r"site-packages/([\w]+)", filename)
    if match:
        return match[1]
    match = re.search(r"/(tocsin/[\w/]+)\.py", filename)
    if match:
        return match[1].replace("/", ".")
    match = re.search(r"/python3\.\d+/([\w]+)", filename)
    return f"stdlib {match[1]}" if match else filename[-40:]


# --- the run ----------------------------------------------------------------------------------


def under_postgres(argv: Sequence[str]) -> int:
    """Run this script again under scripts/with-postgres, on a free port of its own (so it
    never stops a test suite's server on the default one)."""
    script = ROOT / "scripts" / "with-postgres"
    port = free_port()
    print(f"no TOCSIN_TEST_POSTGRES_URL: starting a throwaway PostgreSQL on port {port} "
          f"({script})", flush=True)
    env = {**os.environ, "TOCSIN_TEST_PG_PORT": str(port)}
    try:
        done = subprocess.run([str(script), sys.executable, str(Path(__file__).resolve()),
                               *argv], env=env, check=False)
    finally:
        # with-postgres stops its server but leaves the data folder: remove ours.
        data = Path(os.environ.get("TMPDIR") or "/tmp") / f"tocsin-test-pg-{port}"
        shutil.rmtree(data, ignore_errors=True)
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    postgres = None if args.sqlite else os.environ.get("TOCSIN_TEST_POSTGRES_URL")
    if not args.sqlite and not postgres:
        return under_postgres(raw)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("not installed: wrk. Install Debian's package, as root:\n\n"
              "    apt-get install -y wrk\n", file=sys.stderr)
        return 2
    began = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="tocsin-bench-notify-"))
    dbs = Databases(folder, postgres)
    database = "SQLite (WAL)" if args.sqlite else postgres_version(dbs)
    info = machine_lines(wrk, database)
    for line in info:
        print(line)
    load_start = load_average()
    print(f"load average at start: {load_start}")
    if os.getloadavg()[0] > LOAD_WARNING:
        print("WARNING: this machine is busy with other work; the numbers will be noisy")
    processes = Processes()
    summary: dict[str, object] = {}
    try:
        with terminated_as_exit():
            summary = run(args, folder, dbs, processes, wrk, info)
    except BenchFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        processes.stop_all()
        if args.keep:
            print(f"kept {folder}")
        else:
            dbs.drop_all()
            shutil.rmtree(folder, ignore_errors=True)
    print_summary(summary, load_start, began)
    return 0


def postgres_version(dbs: Databases) -> str:
    admin = dbs._admin()
    with admin.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one())
        fsync = conn.execute(text("SHOW fsync")).scalar_one()
        sync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
    admin.dispose()
    return f"PostgreSQL {version.split()[0]} (fsync={fsync}, synchronous_commit={sync})"


def run(args: argparse.Namespace, folder: Path, dbs: Databases, processes: Processes, wrk: str,
        info: list[str]) -> dict[str, object]:
    from tocsin.service import keys

    hosts = [f"127.0.0.{i + 1}" for i in range(args.endpoints)]
    receiver = Receiver(processes, folder, hosts)
    keys_dir = folder / "keys"
    keys_dir.mkdir(mode=0o700)
    if not args.unsigned:
        keys.create_document_key(keys_dir, now=datetime.now(UTC) - timedelta(minutes=5))
    env = {**os.environ, "TOCSIN_ALLOW_PRIVATE_TARGETS": "1", "TOCSIN_KEYS_DIR": str(keys_dir),
           "TOCSIN_PUBLIC_URL": "http://127.0.0.1:8000", "TOCSIN_SMTP_URL": "",
           "TOCSIN_SENDER": "bench", "NO_COLOR": "1"}
    tuning = tuning_of(args)
    if args.phases:
        command: list[str] = []
        described = f"in-process Worker, Tuning(**{json.dumps(tuning)})"
    else:
        command, described = worker_command(args.worker_command, tuning)
    from tocsin.notify.worker import Tuning
    effective = {**{k: getattr(Tuning(), k) for k in TUNING}, **tuning}
    print(f"receiver: {receiver.url()} (pid {receiver.child.pid}"
          + (f", {len(hosts)} addresses" if len(hosts) > 1 else "") + ")")
    print(f"workers: {1 if args.phases else args.workers} x {described}"
          + (" (profiled: slower)" if args.profile else ""))
    print(f"tuning: {', '.join(f'{k}={v}' for k, v in effective.items())}")
    print("signatures: v1 (HMAC-SHA256)"
          + ("" if args.unsigned else " and v1a (Ed25519, a document key exists)"))
    print(f"declaration: {LEVEL} for {COUNTRY} ({SCHEME}) through service.commands.declare")
    clock = PhaseClock(profiling=args.profile)
    ctx = Context(args, folder, processes, receiver, dbs, env, command, clock)
    summary: dict[str, object] = {
        "cpu": cpu_model(), "cores": str(os.cpu_count()), "database": info[-1].split(": ", 1)[1],
        "workers": ("1 in-process" + (" (profiled)" if args.profile else "")
                    if args.phases else str(args.workers)),
        "worker_command": described, "signed_v1a": "no" if args.unsigned else "yes",
        "endpoints": str(args.endpoints),
        **{f"tuning_{k}": str(v) for k, v in effective.items()},
    }
    patches = phase_timers(clock) if args.phases else contextlib.nullcontext()
    with patches:
        for size in args.sizes:
            print(f"\n{size:,} subscribers:")
            template = prepare_template(dbs, size, receiver, datetime.now(UTC))
            runs = []
            for n in range(repeats(args, size)):
                result = one_run(ctx, template, size, n + 1)
                runs.append(result)
                print(f"  run {n + 1}: first delivery {result.first_s * 1000:.0f} ms, last "
                      f"{result.last_s:.2f} s after declare; {result.rate:,.0f} deliveries/s",
                      flush=True)
                if args.phases:
                    report_phases(clock, size, result.recorded_s)
            request = runs[-1].sample[0]
            result_wrk = run_wrk(wrk, args, receiver, folder, request)
            print(f"  wrk -t1 -c{args.wrk_connections} -d{args.wrk_seconds}s, the same "
                  f"request ({len(request['body'].encode())} bytes of body): "
                  f"{result_wrk.rps:,.0f} req/s (the receiver counted {result_wrk.counted:,})",
                  flush=True)
            if not args.keep:
                dbs.drop(template)
            summary.update(report_size(size, runs, result_wrk,
                                       1 if args.phases else args.workers))
            summary[f"n{size}_body_bytes"] = str(len(request["body"].encode()))
    print()
    for line in info:
        print(line)
    return summary


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
