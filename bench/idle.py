"""Benchmark: the CPU an idle `tocsin serve` uses (its server processes and its notification
worker), which should be close to nothing (target: < 1% of one core in all).

One bounded run on loopback (127.0.0.1): replays the demo into a fresh SQLite database in a
temporary folder (`tocsin demo --dir D --no-serve`), starts `tocsin serve` on a free port,
waits until it answers and has finished its start-up work (pre-rendering), then reads every
process's user+system CPU time from /proc/PID/stat before and after `--seconds` of idleness
and prints each process's share of a core and the total. Nobody sends a request meanwhile.
Stops the server with SIGTERM at the end and prints how long it took to go (target < 5 s).
Linux only (/proc).

Run it from the project root:

    .venv/bin/python bench/idle.py [--seconds 60] [--settle 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from machine import cpu_model, load_average, print_summary

HOST = "127.0.0.1"
TARGET_PERCENT = 1.0
STOP_TARGET_SECONDS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait after start-up before measuring")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.settle < 0 or args.workers < 1:
        parser.error("--seconds must be > 0, --settle >= 0 and --workers >= 1")
    return args


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def parent_of(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])


def descendants(root: int) -> list[int]:
    """`root` and every process below it (a scan of /proc: no psutil needed)."""
    parents = {int(p.name): parent_of(int(p.name)) for p in Path("/proc").iterdir()
               if p.name.isdigit()}
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found.extend(frontier)
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def name_of(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode(errors="replace") for w in words if w)[-70:]


def tocsin_command() -> list[str]:
    script = Path(sys.executable).with_name("tocsin")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tocsin.cli.main"]


def wait_ready(url: str, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"tocsin serve exited with code {child.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"tocsin serve did not answer {url} within {timeout:g} s")


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie has ended; only its exit status is left)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def stop(child: subprocess.Popen[bytes], pids: list[int]) -> float:
    """SIGTERM the server; seconds until it and every process it started are gone."""
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    while any(alive(pid) for pid in pids) and time.monotonic() - started < 30:
        time.sleep(0.02)
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/stat").exists():
        print("this benchmark reads /proc: Linux only", file=sys.stderr)
        return 2
    began = time.perf_counter()
    load_start = load_average()
    print(f"{cpu_model()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"load average at start: {load_start}")
    folder = Path(tempfile.mkdtemp(prefix="tocsin-bench-idle-"))
    tocsin = tocsin_command()
    env = {**os.environ, "TOCSIN_DATABASE_URL": f"sqlite:///{folder}/db/tocsin.sqlite3",
           "TOCSIN_KEYS_DIR": str(folder / "keys")}
    summary: dict[str, object] = {}
    child: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([*tocsin, "demo", "--dir", str(folder / "db"), "--no-serve"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        with open(folder / "serve.log", "wb") as log:
            child = subprocess.Popen([*tocsin, "serve", "--port", str(port), "--workers",
                                      str(args.workers)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_ready(f"http://{HOST}:{port}/api/v1/schemes", child)
        time.sleep(args.settle)
        pids = descendants(child.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        time.sleep(args.seconds)
        after = {pid: cpu_seconds(pid) for pid in pids}
        total = 0.0
        print(f"\nidle for {args.seconds:g} s after {args.settle:g} s of settling:")
        for pid in pids:
            start, end = before[pid], after[pid]
            if start is None or end is None:
                print(f"  pid {pid:>7}  gone during the measurement")
                continue
            share = (end - start) / args.seconds * 100
            total += share
            print(f"  pid {pid:>7}  {share:6.2f}% of a core  {name_of(pid)}")
        verdict = "PASS" if total < TARGET_PERCENT else "FAIL"
        print(f"  all {len(pids)} processes: {total:.2f}% of a core "
              f"(target < {TARGET_PERCENT:g}%: {verdict})")
        took = stop(child, pids)
        print(f"SIGTERM -> all gone in {took:.2f} s (target < {STOP_TARGET_SECONDS:g} s)")
        summary.update(processes=len(pids), idle_cpu_percent=f"{total:.2f}",
                       idle_target=verdict, seconds=f"{args.seconds:g}",
                       stop_seconds=f"{took:.2f}")
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(folder, ignore_errors=True)
    print_summary(summary, load_start, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
