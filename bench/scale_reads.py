"""The measures bench/scale.py takes against a running `tocsin serve --no-worker`: memory
after a crawl, how soon a change shows, read throughput during a burst of changes. Each
returns its Figure for the table and the details for the JSON."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scale_changes import Changer
from scale_probe import (
    Answer,
    Check,
    Client,
    Waited,
    Wrk,
    area_level_is,
    contains,
    crawl,
    etag_differs,
    found,
    rss_kib,
    settle,
    wait_until,
)
from scale_report import Figure, error_line

HOST = "127.0.0.1"
REGION = "KZ-75"
COUNTRY = "KZ"
SCHEME = "kz-terror"
LANGS = ("kk", "ru", "en")
SUBTREE_SAMPLE = 25
COUNTRY_SAMPLE = 200
WRK_CONNECTIONS = 32


@dataclass(frozen=True)
class Budget:
    """How much of each is measured, and how long each step may take (seconds)."""

    start: float = 900
    settle: float = 120
    crawl: float = 900
    samples: int = 30
    sample_timeout: float = 60
    changes_budget: float = 900
    """The latency samples, and the consistency rounds, stop being taken after this long
    (each change goes through the CLI, whose cost grows with the history)."""
    rounds: int = 3
    consistency_timeout: float = 60
    countrywide_timeout: float = 300
    wrk_seconds: int = 10
    burst: int = 100
    burst_timeout: float = 900
    idle_seconds: int = 60
    publish_timeout: float = 1200
    command_timeout: float = 900


QUICK = Budget(start=600, settle=60, crawl=300, samples=10, sample_timeout=30,
               changes_budget=300, rounds=1,
               consistency_timeout=30, countrywide_timeout=120, wrk_seconds=5, burst=30,
               burst_timeout=300, idle_seconds=30, publish_timeout=300, command_timeout=300)

Result = tuple[Figure, dict[str, Any]]


@dataclass
class Served:
    """A running server and what the measures need to know about its data."""

    port: int
    pid: int
    codes: list[str]
    """Every area code."""
    names: dict[str, str]
    """REGION's name per language."""
    levels_path: str
    changes: Changer
    budget: Budget
    say: Callable[[str], None]
    rng: random.Random
    wrk: str | None
    database_url: str

    @property
    def below(self) -> list[str]:
        return [c for c in self.codes if c.startswith(REGION + "-")]


# --- memory -----------------------------------------------------------------------------------


def memory(s: Served) -> Result:
    """Crawl every area page once in kk, ru and en, then read the server's RSS."""
    paths = [f"/{lang}/areas/{code}" for code in s.codes for lang in LANGS]
    done = crawl(s.port, paths, timeout=s.budget.crawl)
    rss, hwm, count = rss_kib(s.pid)
    details = {"rss_mib": round(rss / 1024, 1), "hwm_mib": round(hwm / 1024, 1),
               "processes": count, "crawled": done.fetched, "of": len(paths),
               "seconds": round(done.seconds, 1), "per_s": round(done.rate),
               "statuses": dict(done.statuses), "errors": done.errors, "bytes": done.body_bytes}
    s.say(f"  crawl: {done.fetched:,} of {len(paths):,} area pages in {done.seconds:.1f} s "
          f"({done.rate:,.0f}/s, {done.body_bytes / 2**20:,.0f} MiB; statuses "
          f"{dict(done.statuses)}, errors {done.errors}); server RSS {rss / 1024:,.0f} MiB "
          f"(sum of peaks {hwm / 1024:,.0f}) in {count} processes")
    answered = done.statuses.get(200, 0)
    note = "" if answered == len(paths) else f"{answered:,} of {len(paths):,} pages answered 200"
    if done.timed_out:
        note = (f"crawl stopped after {s.budget.crawl:g} s at {done.fetched:,} of "
                f"{len(paths):,} pages")
    return Figure(f"{rss / 1024:,.0f} MiB", rss < 1024 * 1024 and not note, note,
                  rss / 1024), details


# --- a regional change, seen on the area page and the levels document ---------------------------


def latency(s: Served) -> Result:
    """`samples` changes on REGION, each until its page and the levels document show it."""
    client = Client(s.port)
    page = f"/en/areas/{REGION}"
    samples: list[float] = []
    parts: list[dict[str, Any]] = []
    timed_out: Figure | None = None
    writer = s.changes.paced(s.database_url, s.budget.samples, REGION)
    began = time.monotonic()
    try:
        for i in range(s.budget.samples):
            if time.monotonic() - began > s.budget.changes_budget:
                break
            declared = writer.next(s.budget.sample_timeout)
            checks = {page: contains(declared.id),
                      s.levels_path: area_level_is(REGION, declared.level)}
            waited = wait_until(client, checks, declared.acked, timeout=s.budget.sample_timeout)
            parts.append({"page_ms": ms(waited.seen[page]),
                          "levels_ms": ms(waited.seen[s.levels_path]),
                          "declare_s": round(declared.seconds, 2)})
            if waited.timed_out:
                timed_out = Figure.timeout(s.budget.sample_timeout,
                                           f"change {i + 1}: {missing(waited)}")
                break
            assert waited.last is not None
            samples.append(waited.last * 1000)
            time.sleep(0.2)
    finally:
        writer.close()
        client.close()
    declare_s = sorted(p["declare_s"] for p in parts)
    details = {"samples_ms": [round(x, 1) for x in samples], "parts": parts,
               "declare_p50_s": declare_s[len(declare_s) // 2] if declare_s else None}
    if not samples:
        return timed_out or Figure.failed("no sample"), details
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    s.say(f"  regional change -> {page} and {s.levels_path}: n={len(samples)} p50 {p50:.0f} "
          f"ms, p99 {p99:.0f} ms, max {max(samples):.0f} ms, from each commit of a writer "
          f"that stays up (a change took p50 {details['declare_p50_s']:.2f} s to commit)")
    if timed_out is not None:
        return timed_out, details
    note = "" if len(samples) >= 30 else f"n={len(samples)}"
    if len(samples) < s.budget.samples:
        note += f" in {s.budget.changes_budget:g} s"
    return Figure(f"{p50:.0f} / {p99:.0f} ms", p50 < 50 and p99 < 200, note, p50), details


# --- a regional change, seen by every document it affects ---------------------------------------


def map_check(s: Served, path: str, lang: str, before: Answer) -> Check:
    """The map must change when it draws REGION (a tile titled with its name); a map that
    does not draw it cannot show the change, and passes."""
    drawn = f"{s.names.get(lang, REGION)} — ".encode() in before.body
    return etag_differs(before.etag) if drawn else found()


def consistency(s: Served) -> Result:
    """`rounds` changes on REGION, each until every document it affects shows it."""
    client = Client(s.port)
    worst: Waited | None = None
    rounds: list[dict[str, Any]] = []
    undrawn: list[str] = []
    writer = s.changes.paced(s.database_url, s.budget.rounds, REGION)
    began = time.monotonic()
    try:
        for r in range(s.budget.rounds):
            if rounds and time.monotonic() - began > s.budget.changes_budget:
                break
            settle(s.pid, timeout=10)  # a server still busy with the last change: not
            # what this measures (the 'before' ETags must be the settled ones)
            below = s.rng.sample(s.below, min(SUBTREE_SAMPLE, len(s.below)))
            overviews = [*(f"/{lang}/" for lang in LANGS), "/"]
            maps = {f"/{lang}/map/{SCHEME}.svg": lang for lang in LANGS}
            maps[f"/map/{SCHEME}.svg"] = "en"
            badge = f"/badge/{SCHEME}/{REGION}.svg"
            before = {path: client.get(path) for path in [*overviews, *maps, badge]}
            declared = writer.next(s.budget.command_timeout)
            checks: dict[str, Check] = {p: etag_differs(before[p].etag)
                                        for p in [*overviews, badge]}
            for path, lang in maps.items():
                checks[path] = map_check(s, path, lang, before[path])
                if f"{s.names.get(lang, REGION)} — ".encode() not in before[path].body:
                    undrawn.append(path)
            checks.update({f"/{lang}/areas/{REGION}": contains(declared.id) for lang in LANGS})
            checks[f"/api/v1/areas/{REGION}"] = contains(declared.id)
            checks[s.levels_path] = area_level_is(REGION, declared.level)
            for feed in ("/feeds/alerts.atom", "/feeds/alerts.rss",
                         f"/feeds/areas/{REGION}.atom", f"/feeds/areas/{REGION}.rss"):
                checks[feed] = contains(declared.id)
            for path in (f"/en/declarations/{declared.id}", f"/cap/{declared.id}.xml",
                         f"/api/v1/declarations/{declared.id}"):
                checks[path] = found()
            for i, code in enumerate(below):
                checks[f"/{LANGS[i % 3]}/areas/{code}"] = contains(declared.id)
                checks[f"/api/v1/areas/{code}"] = contains(declared.id)
            waited = wait_until(client, checks, declared.acked,
                                timeout=s.budget.consistency_timeout, interval=0.005)
            rounds.append({"last_ms": ms(waited.last), "documents": len(checks),
                           "slowest": [(p, ms(t)) for p, t in waited.slowest(5)]})
            if worst is None or waited.timed_out or (
                    worst.last is not None and waited.last is not None
                    and waited.last > worst.last):
                worst = waited
            s.say(f"  regional change {r + 1}: {len(checks)} documents consistent " +
                  (f"after {waited.last * 1000:.0f} ms" if waited.last is not None
                   else f"— not after {s.budget.consistency_timeout:g} s ({missing(waited)})")
                  + "; slowest " + ", ".join(f"{p} {ms(t)} ms" for p, t in waited.slowest(3)))
            if waited.timed_out:
                break
    finally:
        writer.close()
        client.close()
    details: dict[str, Any] = {"rounds": rounds, "maps_without_region": sorted(set(undrawn))}
    if undrawn:
        s.say(f"  note: {', '.join(sorted(set(undrawn)))} draw no tile for {REGION}: nothing "
              "to check there")
    assert worst is not None
    if worst.timed_out:
        return Figure.timeout(s.budget.consistency_timeout, missing(worst)), details
    assert worst.last is not None
    note = f"worst of {len(rounds)}" if len(rounds) > 1 else ""
    if undrawn:
        note = ", ".join(x for x in (note, f"the map draws no tile for {REGION}") if x)
    return Figure.seconds(worst.last, worst.last < 1.0, note), details


# --- read throughput during a burst of changes ------------------------------------------------


def throughput(s: Served) -> Result:
    """wrk on REGION's page idle, then during `burst` regional changes (the writer runs on
    the load core beside wrk)."""
    if s.wrk is None:
        return Figure.skipped("wrk is not installed (apt-get install wrk, as root)"), {}
    url = f"http://{HOST}:{s.port}/en/areas/{REGION}"
    quiet = Wrk(s.wrk, url, seconds=s.budget.wrk_seconds,
                connections=WRK_CONNECTIONS).result(s.budget.wrk_seconds + 30)
    regions = [c for c in s.codes if c.count("-") == 1]
    burst = s.changes.burst(s.database_url, s.budget.burst, regions)
    busy = Wrk(s.wrk, url, seconds=s.budget.burst_timeout, connections=WRK_CONNECTIONS)
    try:
        burst.go()
        count, seconds = burst.wait(s.budget.burst_timeout)
        time.sleep(0.5)
        failed = burst.failure()
    finally:
        busy.stop()
        burst.close()
    loaded = busy.result(60)
    for area, (declaration_id, level) in burst.made.items():
        s.changes.chain[area], s.changes.levels[area] = declaration_id, level
    ratio = loaded.rps / quiet.rps if quiet.rps else 0.0
    details = {"path": f"/en/areas/{REGION}", "wrk": f"-t1 -c{WRK_CONNECTIONS}",
               "idle_rps": round(quiet.rps), "burst_rps": round(loaded.rps),
               "ratio": round(ratio, 3), "idle_p99_ms": quiet.p99_ms,
               "burst_p99_ms": loaded.p99_ms, "burst_changes": count,
               "burst_s": round(seconds, 1), "errors": loaded.errors + quiet.errors,
               "non_2xx": loaded.non_2xx_3xx + quiet.non_2xx_3xx}
    s.say(f"  wrk -t1 -c{WRK_CONNECTIONS} {url}: idle {quiet.rps:,.0f} req/s (p99 "
          f"{quiet.p99_ms:.1f} ms); during {count} changes in {seconds:.1f} s: "
          f"{loaded.rps:,.0f} req/s (p99 {loaded.p99_ms:.1f} ms); ratio {ratio:.2f}")
    note = "" if count == 100 else f"{count} changes"
    if failed:
        note = f"the writer failed after {count} changes: {error_line(failed)}"
        s.say(f"  burst writer: {failed}")
    elif count < s.budget.burst:
        note = f"{count} of {s.budget.burst} changes within {s.budget.burst_timeout:g} s"
    return Figure(f"{ratio:.2f}×", ratio >= 0.5 and count == s.budget.burst, note,
                  ratio), details


# --- a countrywide change, seen by every area page ----------------------------------------------


def countrywide(s: Served) -> Result:
    """Critical on the country; a sample of area pages (every language) polled until all show
    it, then every English area page crawled and checked; stale ones polled again."""
    client = Client(s.port)
    timeout = s.budget.countrywide_timeout
    late: Waited | None = None
    try:
        declared = s.changes.countrywide(COUNTRY)
        codes = s.rng.sample(s.codes, min(COUNTRY_SAMPLE, len(s.codes)))
        checks = {f"/{LANGS[i % 3]}/areas/{code}": contains(declared.id)
                  for i, code in enumerate(codes)}
        sampled = wait_until(client, checks, declared.acked, timeout=timeout)
        if sampled.timed_out:
            return Figure.timeout(timeout, "sample: " + missing(sampled)), {}
        paths = [f"/en/areas/{code}" for code in s.codes]
        left = timeout - (time.monotonic() - declared.acked)
        done = crawl(s.port, paths, timeout=max(1.0, left), check=contains(declared.id))
        crawl_end = time.monotonic() - declared.acked
        if done.failed and not done.timed_out:
            late = wait_until(client, dict.fromkeys(done.failed, contains(declared.id)),
                              declared.acked, timeout=timeout)
    finally:
        client.close()
    assert sampled.last is not None
    details = {"sample_ms": ms(sampled.last), "crawl_pages": done.fetched,
               "crawl_end_s": round(crawl_end, 1), "stale_in_crawl": len(done.failed),
               "stale_examples": done.failed[:5], "crawl_statuses": dict(done.statuses),
               "crawl_errors": done.errors, "declare_s": round(declared.seconds, 2)}
    if done.timed_out:
        return Figure.timeout(timeout, f"sample of {len(checks)} after {sampled.last:.2f} s; "
                              f"crawl checked {done.fetched:,} of {len(paths):,}"), details
    if late is not None and late.timed_out:
        return Figure.timeout(timeout, f"{len(done.failed):,} pages still stale"), details
    last = max(sampled.last, late.last if late and late.last is not None else 0.0)
    s.say(f"  countrywide change: {len(checks)} sampled pages consistent after "
          f"{sampled.last * 1000:.0f} ms; crawl of {done.fetched:,} English area pages ended "
          f"at {crawl_end:.1f} s with {len(done.failed):,} stale"
          + (f", all consistent at {last:.2f} s" if late else ""))
    return Figure.seconds(last, last < 5.0, f"all {len(paths):,} checked by {crawl_end:.0f} s"
                          ), details


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def missing(waited: Waited) -> str:
    stale = [p for p, t in waited.seen.items() if t is None]
    return f"{len(stale)} not showing it, e.g. {', '.join(stale[:3])}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
