"""Benchmark: effective levels of every area of a large tree against a long declaration history.

What it measures, on synthetic data with the real built-in `kz-terror` scheme:

* building `SchemeHistory(scheme, declarations)` (the index built once per snapshot) from
  `--history` published declarations, of which exactly `--in-effect` hold at the measured
  instant and the rest are history: expired, cancelled, or replaced by a later declaration
  that took effect before that instant;
* `effective_levels(tree, history, at)` for every area of an `--areas`-sized tree four levels
  deep (country, regions, cities, districts);
* the process's peak resident memory (RSS) after everything.

Each timing is repeated `--repeat` times; the minimum and median are printed. A sample of areas
is checked against the single-area `effective_level`, and the number of windows holding at the
instant against `--in-effect`; the script exits 1 if anything differs (the timing and memory
target in the summary is informational only).

Run it from the project root:

    .venv/bin/python bench/resolve.py [--areas N] [--in-effect N] [--history N] [--repeat K]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from machine import cpu_model
from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.declaration import Cancellation, Declaration, Statement, Status
from tocsin.domain.resolve import Effective, SchemeHistory, effective_level, effective_levels
from tocsin.domain.scheme import Scheme
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file

T = TypeVar("T")

SCHEME_KEY = "kz-terror"
AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
"""The measured instant."""
HOUR = 3600
DAY = 24 * HOUR
SPAN = 10 * 365 * DAY
"""History reaches back this many seconds before AT."""
SAMPLE = 200
TARGET_SECONDS = 1.0
TARGET_MIB = 1024.0
KINDS = (AreaKind.COUNTRY, AreaKind.REGION, AreaKind.CITY, AreaKind.DISTRICT)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--areas", type=int, default=100_000, help="areas in the tree (>= 4)")
    parser.add_argument("--in-effect", type=int, default=10_000,
                        help="declarations holding at the measured instant")
    parser.add_argument("--history", type=int, default=1_000_000,
                        help="published declarations in all, including those in effect")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each step (>= 1)")
    parser.add_argument("--seed", type=int, default=20250601, help="random seed")
    args = parser.parse_args(argv)
    if args.areas < 4:
        parser.error("--areas must be at least 4 (a tree four levels deep)")
    if not 0 <= args.in_effect <= args.history:
        parser.error("--in-effect must be between 0 and --history")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# --- synthetic data ---------------------------------------------------------------------------


def load_scheme() -> Scheme:
    for path in builtin_scheme_files():
        scheme, _ = load_scheme_file(path)
        if scheme.key == SCHEME_KEY:
            return scheme
    raise SystemExit(f"built-in scheme {SCHEME_KEY!r} not found")


def fan_out(total: int) -> int:
    """The largest f with 1 + f + f^2 + f^3 <= total."""
    f = 1
    while 1 + (f + 1) + (f + 1) ** 2 + (f + 1) ** 3 <= total:
        f += 1
    return f


def build_tree(total: int) -> AreaTree:
    """A tree of exactly `total` areas: a root, f regions, f*f cities, the rest districts."""
    f = fan_out(total)

    def area(code: str, depth: int, parent: str | None) -> Area:
        return Area(code=code, kind=KINDS[depth], names={"en": code}, parent=parent)

    root = "XX"
    areas = [area(root, 0, None)]
    regions = [f"{root}-{i:02d}" for i in range(f)]
    areas += [area(code, 1, root) for code in regions]
    cities = [f"{region}-{j:02d}" for region in regions for j in range(f)]
    areas += [area(code, 2, code.rsplit("-", 1)[0]) for code in cities]
    districts = total - 1 - f - f * f
    for k in range(districts):
        city = cities[k % len(cities)]
        areas.append(area(f"{city}-{k // len(cities):02d}", 3, city))
    tree = AreaTree.build(areas)
    assert len(tree) == total
    return tree


@dataclass(frozen=True, slots=True)
class Spec:
    """Times of one declaration, in seconds relative to AT (negative: before)."""

    effective: int
    expires: int | None
    cancelled: int | None = None


class Generator:
    """Declarations in replacement chains; each chain ends in one that holds, expired or was
    cancelled."""

    def __init__(self, scheme: Scheme, codes: Sequence[str], rng: random.Random) -> None:
        self.scheme = scheme
        self.levels = [level.key for level in scheme.levels]
        self.codes = codes
        self.rng = rng
        self.texts = {
            lang: Statement(headline="Benchmark level", description="Synthetic declaration")
            for lang in scheme.languages
        }
        self.out: list[Declaration] = []

    def declaration(self, spec: Spec, replaces: tuple[str, ...]) -> Declaration:
        rng = self.rng
        effective = AT + timedelta(seconds=spec.effective)
        expires = None if spec.expires is None else AT + timedelta(seconds=spec.expires)
        cancellation = None
        if spec.cancelled is not None:
            cancellation = Cancellation(
                at=AT + timedelta(seconds=spec.cancelled), reason="threat over", by="bench"
            )
        d = Declaration(
            id=f"d{len(self.out):07d}",
            scheme=self.scheme.key,
            level=rng.choice(self.levels),
            areas=tuple(rng.sample(self.codes, rng.randint(1, 3))),
            texts=self.texts,
            sender="Benchmark authority",
            effective=effective,
            expires=expires,
            replaces=replaces,
            status=Status.PUBLISHED,
            created_at=effective,
            created_by="bench",
            published_at=effective,
            published_by="bench",
            cancellation=cancellation,
        )
        self.out.append(d)
        return d

    def terminal(self, kind: str) -> Spec:
        rng = self.rng
        if kind == "in-effect":
            start = -rng.randint(1, 30 * DAY)
            return Spec(start, rng.choice((None, rng.randint(1, 30 * DAY))))
        start = -rng.randint(2 * DAY, SPAN)
        if kind == "expired":
            return Spec(start, start + rng.randint(HOUR, min(30 * DAY, -start - 1)))
        expires = rng.choice((None, start + rng.randint(HOUR, 60 * DAY)))
        latest = -start - 1 if expires is None else min(-start, expires - start) - 1
        return Spec(start, expires, start + rng.randint(1, latest))

    def chain(self, kind: str, replaced: int) -> None:
        """`replaced` declarations, each replaced by the next, then one of `kind`."""
        rng = self.rng
        specs = [self.terminal(kind)]
        for _ in range(replaced):
            successor = specs[-1].effective
            start = successor - rng.randint(HOUR, 30 * DAY)
            # Expiry (if any) after the successor takes effect: only the replacement ends it.
            expires = rng.choice((None, successor + rng.randint(1, 30 * DAY)))
            specs.append(Spec(start, expires))
        previous: tuple[str, ...] = ()
        for spec in reversed(specs):
            previous = (self.declaration(spec, previous).id,)


@dataclass(frozen=True, slots=True)
class Mix:
    in_effect: int
    replaced: int
    expired: int
    cancelled: int


def generate(
    scheme: Scheme, tree: AreaTree, history: int, in_effect: int, rng: random.Random
) -> tuple[list[Declaration], Mix]:
    rest = history - in_effect
    replaced = cancelled = rest // 3
    expired = rest - replaced - cancelled
    chains = ["in-effect"] * in_effect + ["expired"] * expired + ["cancelled"] * cancelled
    rng.shuffle(chains)
    extra = [0] * len(chains)
    for _ in range(replaced):
        extra[rng.randrange(len(chains))] += 1
    # Areas other than the root: a country-wide declaration in effect would lift every area to
    # at least its level, which makes the checked results uniform (it happens for some seeds).
    generator = Generator(scheme, list(tree.order[1:]), rng)
    for kind, count in zip(chains, extra, strict=True):
        generator.chain(kind, count)
    assert len(generator.out) == history
    return generator.out, Mix(in_effect, replaced, expired, cancelled)


# --- measuring --------------------------------------------------------------------------------


def timed(step: Callable[[], T]) -> tuple[float, T]:
    gc.collect()
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def summary(times: list[float]) -> str:
    return f"min {min(times):.3f} s, median {statistics.median(times):.3f} s"


def level_key(effective: Effective) -> str | None:
    return effective.level.key if effective.level is not None else None


def source_set(effective: Effective) -> set[tuple[str, str]]:
    return {(s.declaration.id, s.via) for s in effective.sources}


def verify(
    tree: AreaTree,
    history: SchemeHistory,
    result: dict[str, Effective],
    args: argparse.Namespace,
    rng: random.Random,
) -> list[str]:
    """Problems found: the all-areas result against the single-area function, and counts."""
    problems: list[str] = []
    if len(result) != len(tree):
        problems.append(f"effective_levels gave {len(result)} areas, the tree has {len(tree)}")
    if len(history.windows) != args.history:
        problems.append(f"history holds {len(history.windows)} windows, not {args.history}")
    holding = len(history.in_effect(AT))
    if holding != args.in_effect:
        problems.append(f"{holding} windows hold at {AT.isoformat()}, not {args.in_effect}")
    codes = list(tree.order)
    for code in rng.sample(codes, min(SAMPLE, len(codes))):
        one = effective_level(tree, history, code, AT)
        every = result.get(code)
        if every is None:
            problems.append(f"{code}: missing from effective_levels")
        elif level_key(one) != level_key(every):
            problems.append(f"{code}: level {level_key(every)!r} from effective_levels, "
                            f"{level_key(one)!r} from effective_level")
        elif source_set(one) != source_set(every):
            problems.append(f"{code}: sources {sorted(source_set(every))} from effective_levels,"
                            f" {sorted(source_set(one))} from effective_level")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"processor={platform.processor()!r} ({cpu_model()}), machine={platform.machine()}, "
          f"cpus={os.cpu_count()}")
    print(f"areas={args.areas} in_effect={args.in_effect} history={args.history} "
          f"repeat={args.repeat} seed={args.seed} at={AT.isoformat()}")

    scheme = load_scheme()
    seconds, tree = timed(lambda: build_tree(args.areas))
    print(f"tree: {len(tree)} areas, fan-out {fan_out(args.areas)}, built in {seconds:.2f} s")
    gc.disable()  # generating is not measured; the collector only slows it down
    seconds, (declarations, mix) = timed(
        lambda: generate(scheme, tree, args.history, args.in_effect, rng)
    )
    gc.enable()
    print(f"declarations: {len(declarations)} ({mix.in_effect} in effect, {mix.replaced} replaced,"
          f" {mix.expired} expired, {mix.cancelled} cancelled), generated in {seconds:.2f} s")
    print(f"peak RSS after generating data: {peak_rss_mib():.0f} MiB")

    build_times: list[float] = []
    history: SchemeHistory | None = None
    for _ in range(args.repeat):
        history = None  # let the previous index go before building the next one
        seconds, history = timed(lambda: SchemeHistory(scheme, declarations))
        build_times.append(seconds)
    assert history is not None
    index: SchemeHistory = history
    print(f"SchemeHistory build: {summary(build_times)}")

    resolve_times: list[float] = []
    result: dict[str, Effective] = {}
    for _ in range(args.repeat):
        result = {}
        seconds, result = timed(lambda: effective_levels(tree, index, AT))
        resolve_times.append(seconds)
    print(f"effective_levels (all {len(tree)} areas): {summary(resolve_times)}")
    levels: dict[str | None, int] = {}
    for effective in result.values():
        levels[level_key(effective)] = levels.get(level_key(effective), 0) + 1
    print("levels at instant: " + ", ".join(f"{k}={v}" for k, v in sorted(
        levels.items(), key=lambda item: item[0] or "")))

    problems = verify(tree, index, result, args, rng)
    for problem in problems[:20]:
        print(f"MISMATCH {problem}")
    checks = "FAIL" if problems else "PASS"
    print(f"checks: {SAMPLE} sampled areas against effective_level, windows in effect: {checks}")

    resolve_median = statistics.median(resolve_times)
    peak = peak_rss_mib()
    target = resolve_median < TARGET_SECONDS and peak < TARGET_MIB
    print()
    print("--- summary ---")
    print(f"areas={args.areas}")
    print(f"in_effect={args.in_effect}")
    print(f"history={args.history}")
    print(f"resolve_all_min_s={min(resolve_times):.3f}")
    print(f"resolve_all_median_s={resolve_median:.3f}")
    print(f"history_build_min_s={min(build_times):.3f}")
    print(f"history_build_s={statistics.median(build_times):.3f}")
    print(f"peak_rss_mib={peak:.0f}")
    print(f"checks={checks}")
    print(f"target: < {TARGET_SECONDS:g} s and < {TARGET_MIB / 1024:g} GiB -> "
          f"{'PASS' if target else 'FAIL'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
