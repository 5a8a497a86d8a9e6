"""`make fuzz`: every parser of outside input against generated inputs, with figures.

    python fuzz/run.py [--inputs N] [--only NAME[,NAME…]] [--seconds-per-target S] [--seed K]

Each target of tests/fuzz_targets.py gets N inputs (default 100,000): a tenth from Hypothesis
(random bytes and text, and values it draws placed into valid documents), the rest from
fuzz/mutate.py (structure-aware and byte-level mutation of the seeds in fuzz/seeds.py, at
microseconds an input). An exception other than the door's own refusal is a crash; an input
that takes more than 1 s, a hang. Each crash and hang is shrunk (cheaply) and written to
tests/fuzz_cases/TARGET/SHA1.bin, where `make test` replays it. The table of targets,
inputs, seconds, inputs/s, crashes and hangs is printed and kept in fuzz/results/latest.txt
(with each target's slowest input beside it); the exit status is 1 if anything crashed or
hung. An input over 1 s is fed once more before it counts as a hang: a busy machine is not a
slow parser.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import random
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "fuzz")]

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mutate import NAMES, dump_toml, make  # noqa: E402
from seeds import seeds  # noqa: E402
from tests.fuzz_targets import CASES, HANG_SECONDS, TARGETS, Outcome, Target, feed  # noqa: E402

STRUCTURES = {"cap-xml": "xml", "scheme-toml": "toml", "areas-csv": "csv",
              "areas-geojson": "json", "change-toml": "toml", "change-json": "json",
              "sources-toml": "toml", "api-query": "query", "api-public": "target",
              "api-body": "json", "console-form": "query"}
HYPOTHESIS_SHARE = 0.1
RESULTS = ROOT / "fuzz" / "results" / "latest.txt"


@dataclass
class Tally:
    target: str
    inputs: int = 0
    hypothesis: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_input: bytes = b""
    crashes: dict[str, bytes] = field(default_factory=dict)
    """signature → the (shrunk) input, one per distinct crash"""
    hangs: dict[str, bytes] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def signature(outcome: Outcome) -> str | None:
    """'hang', a crash's signature, or None for an input that did no harm."""
    if outcome.hang or (outcome.crash or "").startswith("Hang"):
        return "hang"
    return outcome.crash


def record(tally: Tally, target: Target, data: bytes, outcome: Outcome) -> None:
    tally.inputs += 1
    if outcome.seconds > tally.slowest:
        tally.slowest, tally.slowest_input = outcome.seconds, data
    found = signature(outcome)
    if found is None:
        return
    if found == "hang" and signature(feed(target, data)) != "hang":
        return  # once slow, then not: the machine, not the input
    kept = tally.hangs if found == "hang" else tally.crashes
    if found in kept:
        return
    trace = "\n".join(line[:300] for line in outcome.trace.splitlines()[-40:])  # values may be huge
    print(f"  {target.name}: {found}\n{trace}", file=sys.stderr, flush=True)
    kept[found] = shrink(target, data, found)
    tally.written.append(write_case(target.name, kept[found]))


def shrink(target: Target, data: bytes, found: str, budget: float = 3.0) -> bytes:
    """`data` with chunks removed while the same crash remains, for at most `budget` s."""
    if found == "hang":
        return data
    deadline = time.monotonic() + budget
    size = max(1, len(data) // 2)
    while size >= 1 and time.monotonic() < deadline:
        at = 0
        while at < len(data) and time.monotonic() < deadline:
            smaller = data[:at] + data[at + size:]
            if signature(feed(target, smaller)) == found:
                data = smaller
            else:
                at += size
        size //= 2
    return data


def write_case(target: str, data: bytes) -> Path:
    folder = CASES / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    return path


# --- Hypothesis ------------------------------------------------------------------------------

def _trees(structure: str, found: list[bytes]) -> list[Any]:
    trees = []
    for data in found:
        try:
            trees.append(json.loads(data) if structure == "json" else tomllib.loads(data.decode()))
        except (ValueError, RecursionError):
            continue  # a kept case that is not a document
    return trees


def _placed(tree: Any, changes: list[tuple[int, Any]]) -> Any:
    tree = copy.deepcopy(tree)
    for index, new in changes:
        places: list[tuple[Any, Any]] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
                node, list) else ()
            for key, child in items:
                places.append((node, key))
                stack.append(child)
        if not places:
            return new
        container, key = places[index % len(places)]
        container[key] = new
    return tree


def strategy(structure: str, found: list[bytes]) -> st.SearchStrategy[bytes]:
    """Noise, and for documents Hypothesis's values placed into valid ones."""
    noise = st.binary(max_size=2048) | st.text(max_size=300).map(
        lambda t: t.encode("utf-8", "surrogatepass"))
    if structure in ("json", "toml") and (trees := _trees(structure, found)):
        scalars: st.SearchStrategy[Any] = st.one_of(
            st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
            *((st.datetimes(), st.dates(), st.times()) if structure == "toml" else (st.none(),)))
        values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                              max_leaves=8)
        placed = st.builds(_placed, st.sampled_from(trees),
                           st.lists(st.tuples(st.integers(0, 10**6), values), min_size=1,
                                    max_size=3))
        if structure == "json":
            return noise | placed.map(
                lambda tree: json.dumps(tree).encode())
        return noise | placed.map(lambda tree: dump_toml(tree).encode("utf-8", "surrogatepass"))
    if structure in ("query", "target"):
        pairs = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=10),
                                   st.text(max_size=60)), max_size=6)
        query = pairs.map(lambda ps: "&".join(f"{k}={v}" for k, v in ps).encode(
            "utf-8", "surrogatepass"))
        if structure == "target":
            paths = [data.partition(b"?")[0] for data in found]
            return noise | st.builds(lambda p, q: p + b"?" + q, st.sampled_from(paths), query)
        return noise | query
    return noise


def hypothesis_phase(target: Target, tally: Tally, count: int, key: int) -> None:
    @seed(key)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy(STRUCTURES[target.name], seeds(target.name)))
    def one(data: bytes) -> None:
        record(tally, target, data, feed(target, data))

    before = tally.inputs
    one()
    tally.hypothesis = tally.inputs - before


# --- the run ---------------------------------------------------------------------------------

def fuzz(target: Target, inputs: int, seconds: float, key: int) -> Tally:
    tally = Tally(target.name)
    start = time.perf_counter()
    feed(target, b"")  # the target's set-up (the demo's world) is not an input's time
    hypothesis_phase(target, tally, int(inputs * HYPOTHESIS_SHARE), key)
    rng = random.Random(key)
    found = seeds(target.name)
    structure = STRUCTURES[target.name]
    while tally.inputs < inputs and time.perf_counter() - start < seconds:
        data = make(structure, found, rng)
        record(tally, target, data, feed(target, data))
    tally.seconds = time.perf_counter() - start
    return tally


def table(tallies: list[Tally], inputs: int) -> str:
    lines = [f"{'target':<15}{'inputs':>10}{'hypothesis':>12}{'seconds':>10}{'inputs/s':>10}"
             f"{'slowest s':>11}{'crashes':>9}{'hangs':>7}"]
    for t in tallies:
        short = "" if t.inputs >= inputs else "  (time ran out)"
        lines.append(f"{t.target:<15}{t.inputs:>10,}{t.hypothesis:>12,}{t.seconds:>10.1f}"
                     f"{t.inputs / t.seconds:>10,.0f}{t.slowest:>11.3f}{len(t.crashes):>9}"
                     f"{len(t.hangs):>7}{short}")
    total = sum(t.seconds for t in tallies)
    lines.append(f"{'total':<15}{sum(t.inputs for t in tallies):>10,}"
                 f"{sum(t.hypothesis for t in tallies):>12,}{total:>10.1f}"
                 f"{'':>10}{'':>11}{sum(len(t.crashes) for t in tallies):>9}"
                 f"{sum(len(t.hangs) for t in tallies):>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--only", default="", help="comma-separated targets: "
                        + ", ".join(TARGETS))
    parser.add_argument("--seconds-per-target", type=float, default=600.0,
                        help="stop a target after this long, however few its inputs")
    parser.add_argument("--seed", type=int, default=15, help="the run's random seed")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}: use {', '.join(TARGETS)}")
    tallies = []
    for name in names:
        print(f"{name}: {TARGETS[name].what} ...", flush=True)
        tally = fuzz(TARGETS[name], args.inputs, args.seconds_per_target, args.seed)
        print(f"  {tally.inputs:,} inputs in {tally.seconds:.1f} s, {len(tally.crashes)} "
              f"crashes, {len(tally.hangs)} hangs", flush=True)
        tallies.append(tally)
    report = table(tallies, args.inputs)
    machine = f"{platform.python_implementation()} {platform.python_version()}, seed {args.seed}"
    print(f"\n{report}\n{machine}, hang = over {HANG_SECONDS:.0f} s")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(f"{report}\n{machine}\n", encoding="utf-8")
    for tally in tallies:  # to time again: was the slowest input slow, or the machine busy?
        (RESULTS.parent / f"{tally.target}.slowest.bin").write_bytes(tally.slowest_input)
    written = [p for t in tallies for p in t.written]
    for path in written:
        print(f"new case: {path.relative_to(ROOT)}")
    return 1 if written or any(t.crashes or t.hangs for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
