"""Benchmark: effective levels of every area of a large tree against a long declaration history.

What it measures, on synthetic data with the real built-in `kz-terror` scheme:

* building `SchemeHistory(scheme, declarations)` (the index built once per snapshot) from
  `--history` published declarations, of which exactly `--in-effect` hold at the measured
  instant and the rest are history: expired, cancelled, or replaced by a later declaration
  that took effect before that instant; and, on that fresh index, the first question at the
  measured instant (`in_effect`), which finds the windows that still matter then;
* `effective_levels(tree, history, at)` for every area of an `--areas`-sized tree four levels
  deep (country, regions, cities, districts), at the measured instant and at a past one
  (`?at=` in the past);
* the timelines of a sample of areas (the first ones build the index by area), the next and
  the last change around the instant, and making every `Window` object (`history.windows`);
* with `--sqlite FILE`: writing the history into a SQLite database through the store's
  tables (once: an existing FILE is reused), and loading it back with
  `records.load_declarations` (what every snapshot does), then building the index from it;
* the process's peak resident memory (RSS), before the SQLite step and after it.

Each timing is repeated `--repeat` times (loading: `--load-repeat`); the minimum and median are
printed, wall-clock and CPU time of this process (on a busy machine the CPU time is the steadier
figure). Checked: a sample of areas against the single-area `effective_level` at both instants,
the windows holding at both instants against a brute-force scan of every window, the next
change against the same scan, the number of windows holding at the instant against
`--in-effect`, and the loaded declarations against the generated ones; the script exits 1 if
anything differs (the timing and memory target in the summary is informational only).

Run it from the project root:

    .venv/bin/python bench/resolve.py [--areas N] [--in-effect N] [--history N] [--repeat K]
                                      [--sqlite FILE] [--load-repeat K]
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
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, insert, select

from machine import cpu_model, load_average
from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.declaration import (
    Cancellation,
    Declaration,
    Statement,
    Status,
    end_of,
    replaced_by,
)
from tocsin.domain.resolve import (
    Effective,
    SchemeHistory,
    Window,
    effective_level,
    effective_levels,
    timeline,
)
from tocsin.domain.scheme import Scheme
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import connect, migrate, reading

T = TypeVar("T")

SCHEME_KEY = "kz-terror"
AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
"""The measured instant."""
HOUR = 3600
DAY = 24 * HOUR
SPAN = 10 * 365 * DAY
"""History reaches back this many seconds before AT."""
PAST = AT - timedelta(seconds=SPAN // 2, minutes=17)
"""The past instant measured (`?at=` five years back), in the middle of the history."""
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
    parser.add_argument("--sqlite", type=Path, metavar="FILE",
                        help="also write the history into this SQLite database (made once, "
                             "reused when it exists) and time loading it")
    parser.add_argument("--load-repeat", type=int, default=3,
                        help="timed loads from --sqlite (>= 1)")
    args = parser.parse_args(argv)
    if args.areas < 4:
        parser.error("--areas must be at least 4 (a tree four levels deep)")
    if not 0 <= args.in_effect <= args.history:
        parser.error("--in-effect must be between 0 and --history")
    if args.repeat < 1 or args.load_repeat < 1:
        parser.error("--repeat and --load-repeat must be at least 1")
    return args


# --- synthetic data ---------------------------------------------------------------------------


def load_scheme() -> tuple[Scheme, dict[str, Any]]:
    """The scheme and its document (as the store keeps it)."""
    for path in builtin_scheme_files():
        scheme, document = load_scheme_file(path)
        if scheme.key == SCHEME_KEY:
            return scheme, document
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


# --- the store ----------------------------------------------------------------------------------


CHUNK = 20_000


def write_store(path: Path, scheme_document: dict[str, Any], tree: AreaTree,
                declarations: Sequence[Declaration]) -> None:
    """A fresh SQLite database at `path` holding the areas, the scheme and `declarations`, in
    the rows `records.insert_declaration` writes, by bulk inserts (no audit entries). Rows go
    in by creation time, as a store that saw them made would hold them."""
    declarations = sorted(declarations, key=lambda d: (d.created_at, d.id))
    engine = connect(f"sqlite:///{path}")
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(insert(t.schemes).values(key=SCHEME_KEY, document=scheme_document,
                                                  created_at=AT, updated_at=AT))
            rows = [{"code": a.code, "parent": a.parent, "kind": a.kind.value,
                     "names": dict(a.names), "geocodes": [], "timezone": None,
                     "geometry": None, "position": i, "grid_row": None, "grid_col": None}
                    for i, a in enumerate(tree)]
            for start in range(0, len(rows), CHUNK):
                conn.execute(insert(t.areas), rows[start:start + CHUNK])
            known = {d.id: d for d in declarations}
            replacers = replaced_by(known)
            ends = {d.id: end_of(d, [known[r] for r in replacers.get(d.id, ())])
                    for d in declarations}
            for start in range(0, len(declarations), CHUNK):
                write_chunk(conn, declarations[start:start + CHUNK], ends)
    finally:
        engine.dispose()


def write_chunk(conn: Any, chunk: Sequence[Declaration],
                ends: dict[str, datetime | None]) -> None:
    conn.execute(insert(t.declarations), [{
        "id": d.id, "scheme": d.scheme, "level": d.level, "status": d.status.value,
        "effective_at": d.effective, "expires_at": d.expires,
        "texts": {lang: s.as_dict() for lang, s in d.texts.items()}, "sender": d.sender,
        "created_at": d.created_at, "created_by": d.created_by,
        "published_at": d.published_at, "published_by": d.published_by,
        "revision": d.revision, "submitted_at": d.submitted_at, "break_glass": d.break_glass,
        "cap_sender": d.cap_sender, "ends_at": ends[d.id]} for d in chunk])
    conn.execute(insert(t.declaration_areas), [
        {"declaration_id": d.id, "area_code": code, "position": i}
        for d in chunk for i, code in enumerate(d.areas)])
    replaces = [{"declaration_id": d.id, "replaces_id": old, "position": i}
                for d in chunk for i, old in enumerate(d.replaces)]
    if replaces:
        conn.execute(insert(t.declaration_replaces), replaces)
    cancels = [{"declaration_id": d.id, "at": d.cancellation.at, "reason": d.cancellation.reason,
                "actor": d.cancellation.by} for d in chunk if d.cancellation is not None]
    if cancels:
        conn.execute(insert(t.cancellations), cancels)


def stored_count(path: Path) -> int:
    engine = connect(f"sqlite:///{path}")
    try:
        with reading(engine) as conn:
            return int(conn.execute(select(func.count()).select_from(t.declarations)).scalar_one())
    finally:
        engine.dispose()


def load_published(path: Path) -> dict[str, Declaration]:
    """What a snapshot reads: every published declaration (`queries.world_of`)."""
    engine = connect(f"sqlite:///{path}")
    try:
        with reading(engine) as conn:
            return records.load_declarations(conn, statuses=[Status.PUBLISHED])
    finally:
        engine.dispose()


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Times:
    """Wall-clock and CPU seconds of the runs of one step."""

    wall: list[float]
    cpu: list[float]

    def __str__(self) -> str:
        return (f"min {min(self.wall):.3f} s, median {statistics.median(self.wall):.3f} s "
                f"(cpu min {min(self.cpu):.3f} s, median {statistics.median(self.cpu):.3f} s)")


def timed(step: Callable[[], T], times: Times | None = None) -> tuple[float, T]:
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = step()
    wall = time.perf_counter() - start
    if times is not None:
        times.wall.append(wall)
        times.cpu.append(time.process_time() - cpu)
    return wall, result


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def level_key(effective: Effective) -> str | None:
    return effective.level.key if effective.level is not None else None


def source_set(effective: Effective) -> set[tuple[str, str]]:
    return {(s.declaration.id, s.via) for s in effective.sources}


def verify_levels(tree: AreaTree, history: SchemeHistory, result: dict[str, Effective],
                  at: datetime, rng: random.Random) -> list[str]:
    """Problems found: the all-areas result against the single-area function."""
    problems: list[str] = []
    if len(result) != len(tree):
        problems.append(f"effective_levels gave {len(result)} areas, the tree has {len(tree)}")
    codes = list(tree.order)
    for code in rng.sample(codes, min(SAMPLE, len(codes))):
        one = effective_level(tree, history, code, at)
        every = result.get(code)
        if every is None:
            problems.append(f"{code}: missing from effective_levels")
        elif level_key(one) != level_key(every):
            problems.append(f"{code} at {at.isoformat()}: level {level_key(every)!r} from "
                            f"effective_levels, {level_key(one)!r} from effective_level")
        elif source_set(one) != source_set(every):
            problems.append(f"{code} at {at.isoformat()}: sources {sorted(source_set(every))} "
                            f"from effective_levels, {sorted(source_set(one))} from "
                            f"effective_level")
    return problems


def verify_index(history: SchemeHistory, windows: Sequence[Window], args: argparse.Namespace
                 ) -> list[str]:
    """Problems found: the index's answers against a brute-force scan of every window."""
    problems: list[str] = []
    if len(history) != args.history or len(windows) != args.history:
        problems.append(f"history holds {len(history)} windows ({len(windows)} made), "
                        f"not {args.history}")
    holding = len(history.in_effect(AT))
    if holding != args.in_effect:
        problems.append(f"{holding} windows hold at {AT.isoformat()}, not {args.in_effect}")
    for at in (AT, PAST):
        got = [w.declaration.id for w in history.in_effect(at)]
        expected = [w.declaration.id for w in windows if w.holds_at(at)]
        if got != expected:
            problems.append(f"in_effect({at.isoformat()}) gave {len(got)} windows, a scan of "
                            f"every window {len(expected)} (or another order)")
        boundaries = [x for w in windows for x in (w.start, w.end) if x is not None]
        later = min((x for x in boundaries if x > at), default=None)
        if history.next_change_after(at) != later:
            problems.append(f"next_change_after({at.isoformat()}) is "
                            f"{history.next_change_after(at)}, a scan says {later}")
        earlier = max((x for x in boundaries if x <= at), default=None)
        if history.last_change_until(at) != earlier:
            problems.append(f"last_change_until({at.isoformat()}) is "
                            f"{history.last_change_until(at)}, a scan says {earlier}")
    return problems


def count_levels(result: dict[str, Effective]) -> str:
    levels: dict[str | None, int] = {}
    for effective in result.values():
        levels[level_key(effective)] = levels.get(level_key(effective), 0) + 1
    return ", ".join(f"{k}={v}" for k, v in sorted(levels.items(), key=lambda kv: kv[0] or ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    load_start = load_average()
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"processor={platform.processor()!r} ({cpu_model()}), machine={platform.machine()}, "
          f"cpus={os.cpu_count()}, load average {load_start}")
    print(f"areas={args.areas} in_effect={args.in_effect} history={args.history} "
          f"repeat={args.repeat} seed={args.seed} at={AT.isoformat()} past={PAST.isoformat()}")

    scheme, scheme_document = load_scheme()
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

    build, first = Times([], []), Times([], [])
    history: SchemeHistory | None = None
    for _ in range(args.repeat):
        history = None  # let the previous index go before building the next one
        _, history = timed(lambda: SchemeHistory(scheme, declarations), build)
        timed(partial(history.in_effect, AT), first)
    assert history is not None
    index: SchemeHistory = history
    print(f"SchemeHistory build: {build}")
    print(f"first question at the instant (in_effect, on the fresh index): {first}")

    resolve, resolve_past = Times([], []), Times([], [])
    result: dict[str, Effective] = {}
    for _ in range(args.repeat):
        result = {}
        _, result = timed(lambda: effective_levels(tree, index, AT), resolve)
    print(f"effective_levels (all {len(tree)} areas): {resolve}")
    print(f"levels at instant: {count_levels(result)}")
    result_past: dict[str, Effective] = {}
    for _ in range(args.repeat):
        result_past = {}
        _, result_past = timed(lambda: effective_levels(tree, index, PAST), resolve_past)
    print(f"effective_levels at the past instant: {resolve_past}")
    print(f"levels at past instant: {count_levels(result_past)}")

    sample = rng.sample(list(tree.order), min(SAMPLE, len(tree)))
    timelines_first, timelines = Times([], []), Times([], [])
    timed(lambda: [timeline(tree, index, code) for code in sample], timelines_first)
    for _ in range(args.repeat):
        timed(lambda: [timeline(tree, index, code) for code in sample], timelines)
    print(f"timelines of {len(sample)} areas, first (builds the index by area): "
          f"{timelines_first}")
    print(f"timelines of {len(sample)} areas, again: {timelines}")
    changes = Times([], [])
    for _ in range(args.repeat):
        timed(lambda: (index.next_change_after(AT), index.last_change_until(AT)), changes)
    print(f"next_change_after + last_change_until at the instant: {changes}")
    every = Times([], [])
    _, windows = timed(lambda: index.windows, every)
    print(f"history.windows (a Window per declaration, once): {every}")

    problems = verify_levels(tree, index, result, AT, rng)
    problems += verify_levels(tree, index, result_past, PAST, rng)
    problems += verify_index(index, windows, args)
    peak = peak_rss_mib()

    load, build_loaded = Times([], []), Times([], [])
    if args.sqlite is not None:
        del windows  # a million Window objects
        if args.sqlite.exists():
            print(f"sqlite: reusing {args.sqlite} ({stored_count(args.sqlite)} declarations)")
        else:
            seconds, _ = timed(lambda: write_store(args.sqlite, scheme_document, tree,
                                                   declarations))
            print(f"sqlite: wrote {args.sqlite} in {seconds:.0f} s "
                  f"({args.sqlite.stat().st_size / 2**20:.0f} MiB)")
        loaded: dict[str, Declaration] = {}
        for _ in range(args.load_repeat):
            loaded = {}
            _, loaded = timed(lambda: load_published(args.sqlite), load)
        print(f"records.load_declarations (published, {len(loaded)}): {load}")
        for _ in range(args.repeat):
            timed(lambda: SchemeHistory(scheme, loaded.values()), build_loaded)
        print(f"SchemeHistory build from the loaded declarations: {build_loaded}")
        if loaded != {d.id: d for d in declarations}:
            different = [d.id for d in declarations if loaded.get(d.id) != d]
            problems.append(f"{len(different)} declarations load differently from how they "
                            f"were written, e.g. {different[:3]} (or {args.sqlite} holds "
                            f"another history: remove it)")
        print(f"peak RSS after loading: {peak_rss_mib():.0f} MiB")

    for problem in problems[:20]:
        print(f"MISMATCH {problem}")
    checks = "FAIL" if problems else "PASS"
    print(f"checks: {SAMPLE} sampled areas against effective_level at both instants, the index "
          f"against a scan of every window, windows in effect"
          f"{', loaded declarations' if args.sqlite else ''}: {checks}")

    resolve_median = statistics.median(resolve.wall)
    target = resolve_median < TARGET_SECONDS and peak < TARGET_MIB
    print()
    print("--- summary ---")
    print(f"areas={args.areas}")
    print(f"in_effect={args.in_effect}")
    print(f"history={args.history}")
    print(f"resolve_all_min_s={min(resolve.wall):.3f}")
    print(f"resolve_all_median_s={resolve_median:.3f}")
    print(f"resolve_all_cpu_median_s={statistics.median(resolve.cpu):.3f}")
    print(f"resolve_past_median_s={statistics.median(resolve_past.wall):.3f}")
    print(f"history_build_min_s={min(build.wall):.3f}")
    print(f"history_build_s={statistics.median(build.wall):.3f}")
    print(f"history_build_cpu_s={statistics.median(build.cpu):.3f}")
    print(f"history_first_question_s={statistics.median(first.wall):.3f}")
    print(f"timelines_first_s={statistics.median(timelines_first.wall):.3f}")
    print(f"timelines_s={statistics.median(timelines.wall):.3f}")
    print(f"windows_s={statistics.median(every.wall):.3f}")
    if args.sqlite is not None:
        print(f"load_declarations_min_s={min(load.wall):.3f}")
        print(f"load_declarations_s={statistics.median(load.wall):.3f}")
        print(f"load_declarations_cpu_s={statistics.median(load.cpu):.3f}")
        print(f"history_build_loaded_s={statistics.median(build_loaded.wall):.3f}")
    print(f"peak_rss_mib={peak:.0f}")
    print(f"checks={checks}")
    print(f"loadavg_start={load_start}")
    print(f"loadavg_end={load_average()}")
    print(f"target: < {TARGET_SECONDS:g} s and < {TARGET_MIB / 1024:g} GiB -> "
          f"{'PASS' if target else 'FAIL'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
