"""Benchmark (issue 16): the server's read model at 1,000, 10,000 and 100,000 areas.

For each size, a Kazakhstan-shaped tree (KZ, its 20 regions and cities, districts,
localities; names in kk, ru and en) with ten closed historical declarations per area
(1,000,000 at 100,000 areas) is generated once and cached under bench/.cache/ (see
bench/scale_data.py). A copy of it is served by the real `tocsin serve` on SQLite, on a free
port on 127.0.0.1, pinned to core 1; this script, its HTTP clients, wrk and the CLI run on
core 0. It measures, with a timeout on every step:

1. `tocsin serve --no-worker` start to the first 200 (of the changed area's page);
2. the server's RSS (every process of it) after one crawl of every area page in kk, ru, en;
3. a regional change (`tocsin declare` on KZ-75, through the CLI) until the area's page and
   /api/v1/levels show it: p50/p99 of 30, from the CLI's answer (the commit);
4. a regional change until every affected document shows it: the area's pages and API
   document, the overview in every language, the feeds, the map, the badge, the new
   declaration's pages and CAP file, and a sample of pages below KZ-75;
5. read throughput (wrk) on the area page during a burst of 100 regional changes, against
   the same server idle;
6. a countrywide change until every area page shows it (a sample polled, then a crawl of
   every English area page checking each);
7. idle CPU of `tocsin serve` with its notification worker over 60 s;
8. `tocsin publish --to` from empty, then after one regional change (time, files written).

Prints a table (sizes as columns, each measure against its target), the machine and how it
was run, and writes the figures as JSON to bench/.cache/ (with --json, also to stdout).
Exit code 0 when the run completed (targets are reported, not enforced), 1 when it could
not run, 2 for bad arguments.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--quick] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import scale_data
import scale_reads
import tocsin as tocsin_package
from machine import cpu_model, load_average, print_summary
from scale_changes import Changer
from scale_probe import QUIET, Client, cpu_seconds, process_tree, rss_kib, settle
from scale_reads import QUICK, REGION, Budget, Served
from scale_report import ROWS, Figure, error_line, print_table
from serve import (
    BenchFailure,
    Processes,
    find_tool,
    free_port,
    package_version,
    run_checked,
    tail,
    terminated_as_exit,
    tocsin_command,
    tool_version,
)

HOST = "127.0.0.1"
SIZES = (1_000, 10_000, 100_000)
HISTORY_PER_AREA = 10
SERVER_CORE, CLIENT_CORE = 1, 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES),
                        help="comma-separated numbers of areas (about), e.g. 1000,10000; "
                             "default: %(default)s")
    parser.add_argument("--history-per-area", type=int, default=HISTORY_PER_AREA,
                        help="historical declarations per area; default: %(default)s")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.samples} latency samples instead of 30, "
                             f"{QUICK.rounds} consistency round instead of 3, a burst of "
                             f"{QUICK.burst} changes instead of 100, {QUICK.wrk_seconds} s wrk "
                             f"runs, {QUICK.idle_seconds} s of idle CPU, shorter timeouts")
    parser.add_argument("--start-timeout", type=float, default=None,
                        help="give up on a server that has not answered after this many "
                             "seconds (default 900, 600 with --quick)")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON on stdout (the rest goes to stderr)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each size's temporary folder (database copy, logs, mirror)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give numbers such as 1000,10000")
    if not args.sizes or min(args.sizes) < 100:
        parser.error("--sizes: each size must be at least 100 areas")
    if args.history_per_area < 0:
        parser.error("--history-per-area must be 0 or more")
    budget = QUICK if args.quick else Budget()
    if args.start_timeout is not None:
        if args.start_timeout <= 0:
            parser.error("--start-timeout must be positive")
        budget = Budget(**{**budget.__dict__, "start": args.start_timeout})
    args.budget = budget
    return args


# --- the machine and how it runs ----------------------------------------------------------------


def pinning() -> tuple[list[str], str]:
    """The taskset prefix for the server (this process moves to the other core, and what it
    starts stays there), and a sentence saying how."""
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if taskset is None or len(cores) < 2 or not {SERVER_CORE, CLIENT_CORE} <= set(cores):
        return [], ("not pinned (needs taskset and cores 0 and 1): server and load share "
                        "every core")
    os.sched_setaffinity(0, {CLIENT_CORE})  # this script and everything it starts
    return ([taskset, "-c", str(SERVER_CORE)],
            f"server pinned to core {SERVER_CORE} (taskset -c {SERVER_CORE}); this script, its "
            f"HTTP clients, wrk, the CLI and the burst writer on core {CLIENT_CORE}")


def code_line() -> str:
    """Which tocsin is measured: where it is imported from and, in a git checkout, its
    commit and whether its sources have uncommitted changes."""
    source = Path(tocsin_package.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "."],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return f"code: tocsin from {source}"
    changed = len(dirty.stdout.splitlines())
    return (f"code: tocsin from {source}, commit {commit.stdout.strip()}"
            + (f" with {changed} uncommitted file(s)" if changed else ""))


def machine_lines(wrk: str | None) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    return [
        code_line(),
        f"cpu: {cpu_model()}, {os.cpu_count()} cores (usable: {usable})",
        f"python: {platform.python_version()} ({platform.python_implementation()}); "
        f"kernel: {platform.system()} {platform.release()} {platform.machine()}",
        f"tocsin serve: granian {package_version('granian')}, SQLite (embedded), "
        f"1 server process; wrk: "
        + (tool_version([wrk, "-v"]).split(" Copyright")[0] if wrk else "not installed"),
    ]


# --- one size ---------------------------------------------------------------------------------


class SizeRun:
    """Every measure at one size, on a copy of its cached database."""

    def __init__(self, args: argparse.Namespace, size: int, tocsin: list[str],
                 wrk: str | None, on_server: list[str], processes: Processes,
                 say: Callable[[str], None]) -> None:
        self.args, self.budget, self.size = args, args.budget, size
        self.tocsin, self.wrk = tocsin, wrk
        self.on_server = on_server
        self.processes, self.say = processes, say
        self.figures: dict[str, Figure] = {}
        self.details: dict[str, Any] = {}
        self.rng = random.Random(size)
        self.server: Any = None
        self.port = 0
        self.levels_path = "/api/v1/levels"

    # -- set-up --------------------------------------------------------------------------------

    def prepare(self) -> None:
        history = self.size * self.args.history_per_area
        self.say(f"\n=== {self.size:,} areas, {history:,} historical declarations ===")
        began = time.perf_counter()
        generated = scale_data.database(self.size, history, run=self.run_tocsin, log=self.say)
        took = time.perf_counter() - began
        self.details["database"] = {
            "areas": generated.areas, "history": generated.history,
            "cached": generated.cached, "generate_s": round(generated.seconds, 1),
            "generate_steps_s": generated.steps, "path": str(generated.path)}
        self.say(f"database: {generated.path.name}: {generated.areas:,} areas, "
                 f"{generated.history:,} declarations; " +
                 (f"cached (generated in {generated.seconds:.0f} s)" if generated.cached
                  else f"generated in {took:.0f} s"))
        self.folder = Path(tempfile.mkdtemp(prefix=f"tocsin-bench-scale-{self.size}-"))
        db = self.folder / "tocsin.sqlite3"
        began = time.perf_counter()
        shutil.copyfile(generated.path, db)
        self.url = f"sqlite:///{db}"
        self.env = {**os.environ, "TOCSIN_DATABASE_URL": self.url, "NO_COLOR": "1",
                    "COLUMNS": "120", "TOCSIN_KEYS_DIR": str(self.folder / "keys")}
        self.run_tocsin(["init"], self.url, "tocsin init (on the copy)", 900)
        self.say(f"copy: {self.folder} ({time.perf_counter() - began:.1f} s, with tocsin init)")
        with sqlite3.connect(db) as conn:
            self.codes = [row[0] for row in conn.execute("SELECT code FROM areas ORDER BY code")]
            [names] = conn.execute("SELECT names FROM areas WHERE code = ?", (REGION,)).fetchone()
        self.names = json.loads(names)
        self.changes = Changer(self.tocsin, self.env, self.folder, self.budget.command_timeout)
        self.details["areas"] = len(self.codes)

    def run_tocsin(self, arguments: list[str], url: str, what: str, timeout: float) -> None:
        env = {**os.environ, "TOCSIN_DATABASE_URL": url, "NO_COLOR": "1", "COLUMNS": "120"}
        if hasattr(self, "folder"):
            env["TOCSIN_KEYS_DIR"] = str(self.folder / "keys")
        else:  # generating: keep the generator's keys (none are made) away from the user's
            env["TOCSIN_KEYS_DIR"] = str(Path(url.removeprefix("sqlite:///")).parent / "keys")
        run_checked([*self.tocsin, *arguments], env=env, what=what, timeout=timeout)

    # -- steps ---------------------------------------------------------------------------------

    def step(self, name: str, action: Callable[[], None], rows: Sequence[str] = ()) -> None:
        """Run one measure; a failure is recorded as the figure of its rows (default: the
        row called `name`), and the run goes on."""
        began = time.perf_counter()
        try:
            action()
        except Exception as failure:  # one broken measure must not lose the others
            text = str(failure).strip() or type(failure).__name__
            for row in rows or [name]:
                self.figures.setdefault(row, Figure.failed(text))
            self.say(f"  {name}: FAILED: {type(failure).__name__}: {text}")
        self.details.setdefault("step_seconds", {})[name] = round(
            time.perf_counter() - began, 1)

    def record(self, name: str, measure: Callable[[Served], tuple[Figure, dict[str, Any]]],
               served: Served) -> None:
        self.figures[name], self.details[name] = measure(served)
        if self.figures[name].ok is False:
            self.say(f"  {name}: {self.figures[name].cell()}")

    def skip(self, names: Sequence[str], why: str) -> None:
        for name in names:
            self.figures.setdefault(name, Figure.skipped(why))

    def measure(self) -> None:
        reads = (("rss", scale_reads.memory), ("latency", scale_reads.latency),
                 ("consistent", scale_reads.consistency),
                 ("throughput", scale_reads.throughput),
                 ("countrywide", scale_reads.countrywide))
        started = self.start_server(worker=False)
        if started is None:
            self.skip([name for name, _ in reads], "server did not start")
            self.skip(["idle_cpu"], "server did not start")
        else:
            served = Served(self.port, self.server.pid, self.codes, self.names,
                            self.levels_path, self.changes, self.budget, self.say, self.rng,
                            self.wrk, self.url)
            for name, measure in reads:
                if self.server.poll() is not None:
                    self.skip([name], f"server exited ({self.server.returncode})")
                    continue
                self.step(name, functools.partial(self.record, name, measure, served))
        self.stop_server()
        if started is not None:
            self.step("idle_cpu", self.idle)
            self.stop_server()
        self.step("publish", self.publish, ["publish_full", "publish_one"])

    def start_server(self, *, worker: bool) -> float | None:
        """Start `tocsin serve` on core 1; seconds to the first 200, None if it never came."""
        self.port = free_port()
        log = self.folder / ("serve-worker.log" if worker else "serve.log")
        command = [*self.on_server, *self.tocsin, "serve", "--host", HOST, "--port",
                   str(self.port), "--workers", "1", *([] if worker else ["--no-worker"])]
        began = time.monotonic()
        self.server = self.processes.start("tocsin serve", command, log=log, env=self.env,
                                           stop_signal=signal.SIGINT)
        client = Client(self.port, timeout=5)
        path = f"/en/areas/{REGION}"
        first: float | None = None
        while time.monotonic() - began < self.budget.start:
            if self.server.poll() is not None:
                self.say(f"  tocsin serve exited with code {self.server.returncode}: "
                         f"{tail(log, 8)}")
                if not worker:
                    self.figures["start"] = Figure.failed(
                        f"server exited ({self.server.returncode}): {error_line(tail(log))}")
                return None
            try:
                if client.get(path).status == 200:
                    first = time.monotonic() - began
                    break
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        client.close()
        key = "start_worker_s" if worker else "start_s"
        if first is None:
            self.details[key] = None
            rss, _, count = rss_kib(self.server.pid)
            self.details["rss_at_start_timeout_mib"] = round(rss / 1024)
            if not worker:
                self.figures["start"] = Figure.timeout(
                    self.budget.start, f"RSS {rss / 2**20:.1f} GiB by then")
            self.say(f"  tocsin serve{' (with worker)' if worker else ''}: no 200 within "
                     f"{self.budget.start:g} s; RSS {rss / 1024:,.0f} MiB in {count} processes")
            return None
        self.details[key] = round(first, 2)
        if not worker:
            self.figures["start"] = Figure.seconds(first, first < 2.0)
        rss, _, count = rss_kib(self.server.pid)
        self.say(f"  tocsin serve{' (with worker)' if worker else ' --no-worker'} (pid "
                 f"{self.server.pid}, {count} processes): first 200 of {path} after "
                 f"{first:.2f} s, RSS {rss / 1024:.0f} MiB")
        settled = settle(self.server.pid, timeout=self.budget.settle)
        self.details["settled_s" + ("_worker" if worker else "")] = (
            None if settled is None else round(settled, 1))
        self.say(f"  settled (under {QUIET:.0%} of a core for 2 s) after " +
                 (f"{settled:.1f} s" if settled is not None
                  else f"— still busy after {self.budget.settle:g} s; measuring anyway"))
        if not worker:
            self.probe_levels_filter()
        return first

    def probe_levels_filter(self) -> None:
        """Poll /api/v1/levels for KZ-75's subtree when the server takes `area` (and `level=any`,
        so that KZ-75 is listed whatever its level), else the whole document."""
        client = Client(self.port)
        try:
            for query in (f"?area={REGION}&level=any", f"?area={REGION}"):
                if client.get("/api/v1/levels" + query).status == 200:
                    self.levels_path = "/api/v1/levels" + query
                    break
            whole = client.get("/api/v1/levels")
            self.details["levels_bytes"] = len(whole.body)
        finally:
            client.close()
        self.details["levels_path"] = self.levels_path
        self.say(f"  levels document polled: {self.levels_path} (the whole one is "
                 f"{self.details['levels_bytes']:,} bytes)")

    def stop_server(self) -> None:
        """Stop the server (SIGINT, as Ctrl-C) and anything of it left behind."""
        if self.server is None:
            return
        pids = process_tree(self.server.pid)
        began = time.monotonic()
        self.processes.stop(self.server, timeout=30)
        self.details.setdefault("stop_s", []).append(round(time.monotonic() - began, 1))
        deadline = time.monotonic() + 5
        left = [p for p in pids[1:] if alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [p for p in left if alive(p)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.say(f"  pid {pid} of tocsin serve was still running 5 s after it exited: "
                     "killed")
            self.details.setdefault("left_behind", []).append(pid)
        self.server = None

    # -- idle CPU ------------------------------------------------------------------------------

    def idle(self) -> None:
        if self.start_server(worker=True) is None:
            self.figures["idle_cpu"] = Figure.skipped(
                f"server with worker did not answer within {self.budget.start:g} s")
            return
        before = cpu_seconds(process_tree(self.server.pid))
        time.sleep(self.budget.idle_seconds)
        after = cpu_seconds(process_tree(self.server.pid))
        pids = after.keys() | before.keys()
        used = sum(after[p] - before.get(p, 0.0) for p in after)
        share = used / self.budget.idle_seconds * 100
        self.details["idle_cpu"] = {"cpu_s": round(used, 2), "seconds": self.budget.idle_seconds,
                                    "percent_of_core": round(share, 2), "processes": len(pids)}
        self.say(f"  idle: {used:.2f} s of CPU in {self.budget.idle_seconds} s over {len(pids)} "
                 f"processes (server and worker): {share:.2f}% of a core")
        self.figures["idle_cpu"] = Figure(f"{share:.1f}%", share < 1.0, "", share)

    # -- the static mirror ---------------------------------------------------------------------

    def publish(self) -> None:
        if self.changes.countrywide_id:  # end it, so the regional change below changes a level
            self.changes.cancel(self.changes.countrywide_id)
        mirror = self.folder / "mirror"
        full = self.changes.publish(mirror, self.on_server, self.budget.publish_timeout)
        self.details["publish_full"] = full.details
        if full.error:
            self.figures["publish_full"] = Figure.failed(full.error) if not full.timed_out \
                else Figure.timeout(self.budget.publish_timeout)
            self.figures["publish_one"] = Figure.skipped("the full publish did not finish")
            self.say(f"  publish --to (from empty): {error_line(full.error)}")
            return
        self.figures["publish_full"] = Figure(
            f"{full.seconds:.1f} s, {full.files:,} files", None, f"{full.bytes / 2**20:,.0f} MiB",
            full.seconds)
        self.say(f"  publish --to (from empty): {full.seconds:.1f} s, {full.files:,} files, "
                 f"{full.bytes / 2**20:,.0f} MiB")
        self.changes.regional(REGION, "publish")
        again = self.changes.publish(mirror, self.on_server, self.budget.publish_timeout,
                                     compare=True)
        self.details["publish_one"] = again.details
        if again.error:
            self.figures["publish_one"] = Figure.failed(again.error) if not again.timed_out \
                else Figure.timeout(self.budget.publish_timeout)
            return
        share = again.written / again.files * 100 if again.files else 100.0
        self.say(f"  publish --to after one regional change: {again.seconds:.1f} s, wrote "
                 f"{again.written:,} of {again.files:,} files ({share:.1f}%; {again.how})")
        self.figures["publish_one"] = Figure(
            f"{again.seconds:.1f} s, {share:.1f}% written", again.seconds < 1 and share < 1,
            again.how, again.seconds)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Output:
    stream: TextIO

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Output(sys.stderr if args.json else sys.stdout)
    wrk = find_tool("wrk")
    machine = machine_lines(wrk)  # before pinning: the cores this machine gives
    on_server, how = pinning()
    began = time.perf_counter()
    for line in machine:
        out.say(line)
    out.say(f"how: {how}")
    load_start = load_average()
    out.say(f"load average at start: {load_start}")
    if os.getloadavg()[0] > 0.5:
        out.say("WARNING: this machine is busy with other work; the numbers will be noisy")
    if wrk is None:
        out.say("wrk is not installed: the throughput row is skipped (as root: apt-get install "
                "-y wrk)")
    results: dict[int, SizeRun] = {}
    processes = Processes()
    try:
        with terminated_as_exit():
            tocsin = tocsin_command()
            for size in args.sizes:
                run = SizeRun(args, size, tocsin, wrk, on_server, processes, out.say)
                results[size] = run
                size_began = time.perf_counter()
                try:
                    run.prepare()
                except (BenchFailure, OSError, subprocess.SubprocessError) as failure:
                    out.say(f"FAILED to prepare {size:,} areas: {failure}")
                    run.skip([key for key, _, _ in ROWS], f"no database: {failure}"[:160])
                    continue
                prepared = time.perf_counter()
                try:
                    run.measure()
                finally:
                    run.stop_server()
                    processes.stop_all()
                    if hasattr(run, "folder"):
                        if args.keep:
                            out.say(f"kept {run.folder}")
                        else:
                            shutil.rmtree(run.folder, ignore_errors=True)
                run.details["measure_s"] = round(time.perf_counter() - prepared, 1)
                run.details["size_s"] = round(time.perf_counter() - size_began, 1)
                out.say(f"=== {size:,} areas: measured in {run.details['measure_s']:.0f} s")
    except BenchFailure as failure:
        out.say(f"\nFAILED: {failure}")
        return 1
    finally:
        processes.stop_all()
    out.say("")
    print_table(out.say, ROWS, {size: run.figures for size, run in results.items()},
                {size: run.details for size, run in results.items()})
    out.say("")
    for line in machine:
        out.say(line)
    out.say(f"how: {how}; SQLite; latency from the commit of a writer that stays up; load "
            f"average at end: {load_average()}; {time.perf_counter() - began:.0f} s in all")
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine, "how": how, "quick": args.quick,
        "budget": args.budget.__dict__, "elapsed_s": round(time.perf_counter() - began),
        "sizes": {str(size): {"figures": {k: f.as_json() for k, f in run.figures.items()},
                              "details": run.details} for size, run in results.items()},
    }
    scale_data.CACHE.mkdir(parents=True, exist_ok=True)
    saved = scale_data.CACHE / f"scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    saved.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.say(f"figures: {saved}")
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    summary: dict[str, object] = {"how": how, "quick": args.quick}
    for size, run in results.items():
        for key, _, _ in ROWS:
            figure = run.figures.get(key)
            if figure is not None:
                verdict = {True: " PASS", False: " FAIL", None: ""}[figure.ok]
                summary[f"a{size}_{key}"] = figure.text + verdict
    print_summary(summary, load_start, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
