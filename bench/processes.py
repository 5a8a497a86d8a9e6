"""Benchmark (issue 16, item 6): what one level change costs each of several server processes
on PostgreSQL, and how soon every process shows it.

Each server process keeps its own snapshot and makes the next one from it when a change
lands (only the declarations written since are read; documents the change cannot touch are
carried over; the rest render when asked for). So N processes each pay a change's cost, and
the claim to check is that this cost is small: a small fraction of what a process pays to
build its first snapshot.

Run under a throwaway PostgreSQL (`make bench-processes` does this through
scripts/with-postgres, which gives the URL as TOCSIN_TEST_POSTGRES_URL):

    scripts/with-postgres .venv/bin/python bench/processes.py [--areas 10000]
        [--history-per-area 10] [--workers 2] [--changes 20] [--idle 20]

1. fills the database: a Kazakhstan-shaped tree of about --areas areas in kk/ru/en and
   --history-per-area closed declarations per area (bench/scale_data.py `populate`: the
   tree through `tocsin areas import`, the history in bulk, one real `tocsin declare`);
2. starts `tocsin serve --workers N --no-worker` pinned to core 1 (taskset), with
   TOCSIN_TEST_PROCESS_HEADER=1 so that every answer names its process, and waits until
   each of the N processes has answered a fresh connection; the CPU time each process used
   to get there (its start-up, first snapshot included) is the "full build" figure;
3. idle: each process's CPU over --idle seconds, nobody asking anything;
4. latency: --changes regional changes on KZ-75 through a writer that stays up
   (bench/scale_writer.py --paced), each followed by fresh connections to
   `/api/v1/levels?area=KZ-75&level=any` until every process has named the new
   declaration;
   p50 / p99 over the changes, from the writer's commit to the last process;
5. cost: --changes more changes, one a second, with no reads at all; each process's CPU over
   that phase, less its idle rate, divided by the number of changes: what one change costs
   one process.

The script, its clients and the writer run on core 0. Prints a table and a summary of
key=value lines; exit 0 when the run completed (figures are reported, not enforced), 1 when a
check failed, 2 when PostgreSQL's URL is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import scale_data
from idle import cpu_seconds, descendants, free_port, stop, tocsin_command
from machine import cpu_model, load_average
from scale_changes import Changer
from serve import BenchFailure, percentile

HOST = "127.0.0.1"
REGION = "KZ-75"
SERVER_CORE, CLIENT_CORE = 1, 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--areas", type=int, default=10_000, help="about this many areas")
    parser.add_argument("--history-per-area", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--changes", type=int, default=20, help="changes per phase")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.changes < 1 or args.areas < 100 or args.idle <= 0:
        parser.error("--workers and --changes must be at least 1, --areas at least 100, "
                     "--idle above 0")
    return args


def pinned(core: int) -> list[str]:
    taskset = shutil.which("taskset")
    cores = os.sched_getaffinity(0)
    return [taskset, "-c", str(core)] if taskset and {0, 1} <= cores else []


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """One request on a fresh connection: (status, the answering process, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("x-tocsin-process") or "?", answer.read()
    finally:
        conn.close()


def until_every_process(port: int, path: str, workers: int, shows: bytes,
                        timeout: float) -> dict[str, float]:
    """Fresh connections to `path` until each of `workers` processes has answered 200 with
    `shows` in the body; when each first did (seconds from now)."""
    began = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < workers:
        if time.monotonic() - began > timeout:
            raise BenchFailure(f"only processes {sorted(seen)} showed {shows!r} on {path} "
                               f"within {timeout:g} s")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, pid, body = get(port, path)
            if status == 200 and shows in body and pid not in seen:
                seen[pid] = time.monotonic() - began
        time.sleep(0.002)
    return seen


def workers_of(server: int) -> list[int]:
    """The server's processes that serve requests (below the one started)."""
    return [pid for pid in descendants(server) if pid != server]


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) or 0.0 for pid in pids}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get("TOCSIN_TEST_POSTGRES_URL")
    if not url:
        print("needs PostgreSQL: run it as 'scripts/with-postgres .venv/bin/python "
              "bench/processes.py' (or 'make bench-processes')", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {CLIENT_CORE})
    folder = Path(tempfile.mkdtemp(prefix="tocsin-bench-processes-"))
    tocsin = tocsin_command()
    env = {**os.environ, "TOCSIN_DATABASE_URL": url, "TOCSIN_KEYS_DIR": str(folder / "keys"),
           "TOCSIN_TEST_PROCESS_HEADER": "1", "NO_COLOR": "1"}

    def run(command: list[str], database: str, what: str, timeout: float) -> None:
        done = subprocess.run([*tocsin, *command], env={**env, "TOCSIN_DATABASE_URL": database},
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise BenchFailure(f"{what} failed: {done.stderr.strip()[-2000:]}")

    server: subprocess.Popen[bytes] | None = None
    try:
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average "
              f"{load_average()}; PostgreSQL at {url.rsplit('@', 1)[-1]}", flush=True)
        print(f"filling the database ({args.areas:,} areas, "
              f"{args.history_per_area} closed declarations each):", flush=True)
        areas, _ = scale_data.populate(url, folder, args.areas,
                                       args.areas * args.history_per_area, run, print)
        port = free_port()
        command = [*pinned(SERVER_CORE), *tocsin, "serve", "--host", HOST, "--port", str(port),
                   "--workers", str(args.workers), "--no-worker"]
        log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed with the folder
        began = time.monotonic()
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        levels = f"/api/v1/levels?area={REGION}&level=any"
        until_every_process(port, levels, args.workers, REGION.encode(), 900)
        pids = workers_of(server.pid)
        build = cpu_of(pids)
        print(f"tocsin serve --workers {args.workers} on {areas:,} areas: every process "
              f"answered within {time.monotonic() - began:.1f} s; CPU each used to start "
              "(its first snapshot included): " +
              ", ".join(f"{s:.2f} s" for s in build.values()), flush=True)
        time.sleep(3)

        before = cpu_of(pids)
        time.sleep(args.idle)
        idle = {pid: (cpu - before[pid]) / args.idle for pid, cpu in cpu_of(pids).items()}
        print("idle: " + ", ".join(f"{100 * r:.2f} % of a core" for r in idle.values()),
              flush=True)

        changer = Changer(tocsin, env, folder, 300)
        writer = changer.paced(url, 2 * args.changes, REGION)
        samples: list[float] = []
        try:
            for _ in range(args.changes):
                made = writer.next(300)
                asked = time.monotonic()
                seen = until_every_process(port, levels, args.workers, made.id.encode(), 60)
                samples.append((asked - made.acked + max(seen.values())) * 1000)
                time.sleep(0.2)
            print(f"change -> every process shows it: n={len(samples)}, p50 "
                  f"{percentile(samples, 0.5):.0f} ms, p99 {percentile(samples, 0.99):.0f} ms",
                  flush=True)
            time.sleep(2)
            before = cpu_of(pids)
            phase = time.monotonic()
            for _ in range(args.changes):
                writer.next(300)
                time.sleep(1.0)
            time.sleep(2)
            spent = time.monotonic() - phase
            after = cpu_of(pids)
        finally:
            writer.close()
        cost = {pid: max(0.0, after[pid] - before[pid] - idle[pid] * spent) / args.changes
                for pid in pids}
        print()
        print("| process | start, first snapshot included (CPU) | idle | one change (CPU) |")
        print("| --- | --- | --- | --- |")
        for pid in pids:
            print(f"| {pid} | {build[pid]:.2f} s | {100 * idle[pid]:.2f} % | "
                  f"{1000 * cost[pid]:.1f} ms |")
        print()
        worst = max(cost.values())
        print(f"summary: areas={areas} workers={args.workers} changes={args.changes} "
              f"latency_p50_ms={percentile(samples, 0.5):.0f} "
              f"latency_p99_ms={percentile(samples, 0.99):.0f} "
              f"change_cpu_ms_max={1000 * worst:.1f} "
              f"start_cpu_s_min={min(build.values()):.2f} "
              f"change_share_of_start={worst / max(min(build.values()), 1e-9):.4f}")
        return 0
    except BenchFailure as failure:
        print(f"failed: {failure}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            stop(server, descendants(server.pid))
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
