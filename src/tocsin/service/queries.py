"""Read-side questions: the level where and when, why, and what happened before."""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby

from sqlalchemy import Connection, Engine

from tocsin.domain.area import Area, AreaTree
from tocsin.domain.audit import AuditEntry, Verdict, verify
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.errors import unknown
from tocsin.domain.layered import with_changes
from tocsin.domain.resolve import (
    Effective,
    Period,
    SchemeHistory,
    Source,
    Window,
    effective_level,
    effective_levels,
    period_at,
    timeline,
)
from tocsin.domain.scheme import Level, Scheme
from tocsin.service.archive import Archive
from tocsin.store import records
from tocsin.store.database import check_current, reading

SCHEMES_HINT = "try 'tocsin schemes list'"
RECENT_PERIODS = 20
"""Periods before the current one that pages and area documents show; the history page and
/api/v1/history have them all."""
TIMELINES_KEPT = 20_000
"""Per-area timelines kept by one world; beyond that the memo starts again."""
ARCHIVE_REACH = timedelta(days=30)
"""How far back from an instant an area's closed history is first read for its recent
periods (then four times as far, and so on)."""
ARCHIVE_GRID = timedelta(days=7)
"""Where those reads start is rounded down to a multiple of this since 1970, so that areas
read the same windows of the history above them (the country's, a region's), which the
archive then keeps once for all of them."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OWN_KEPT = 4_096
"""Per-area worlds of one area's own windows (`World._around_one`) kept by one world: the
areas above the pages asked for (the country, regions, districts) stay."""
AROUND_KEPT = 64
"""Per-area worlds with closed history (`World.around`) kept by one world: enough for the
questions of one page (its documents are cached, not these)."""


_TICK = timedelta(microseconds=1)

LevelMap = dict[tuple[str, str], str | None]
"""(scheme, area) → level key or None."""


@dataclass(frozen=True)
class AreaStatus:
    """An area's level under one scheme at one instant, with its explanation and term."""

    area: Area
    scheme: Scheme
    effective: Effective
    period: Period
    """The unbroken stretch of this level that contains the instant asked about."""


@dataclass(frozen=True)
class Beneath:
    """The highest level in force anywhere strictly inside an area, and where: the topmost
    areas beneath it that declarations name at that level (`count` of them, the first few
    in `where`), and when the newest of those declarations took effect."""

    level: Level
    count: int
    where: tuple[str, ...]
    since: datetime


Inside = tuple[int, int, list[str], datetime]
"""What is highest inside an area: rank, how many topmost areas hold it, the first few of
them, and the newest start among their declarations."""
InsideMap = tuple[dict[str, tuple[int, datetime]], dict[str, Inside]]
WHERE_SHOWN = 5
"""How many of the areas holding the highest level beneath an area are named."""


@dataclass
class World:
    """Everything needed to answer questions, read in one consistent transaction.

    Effective levels are resolved once per scheme for the world's `now` (when it has one),
    in one pass over the tree; single areas at other instants resolve alone.

    With an `archive`, `declarations` holds only those that may still hold from
    `archive.until` on (and what replaces them, and what was written since): questions
    about later instants read them alone, and questions reaching further back (an area's
    past, an earlier instant, an old declaration) ask the archive, through `around`,
    `seeing`, `declaration` and `search`.
    """

    tree: AreaTree
    schemes: dict[str, Scheme]
    declarations: dict[str, Declaration]
    _histories: dict[str, SchemeHistory] = field(default_factory=dict)
    now: datetime | None = None
    """The instant whose levels are resolved once for every area and kept."""
    _resolved: dict[str, dict[str, Effective]] = field(default_factory=dict)
    _beneath: dict[str, dict[str, Beneath]] = field(default_factory=dict)
    _timelines: dict[tuple[str, str], list[Period]] = field(default_factory=dict)
    _used: list[str] | None = None
    _replacers: dict[str, list[str]] | None = None
    _owned: dict[tuple[str, str], tuple[list[datetime], list[Window], list[datetime],
                                        list[Window]]] = field(default_factory=dict)
    structure_at: datetime | None = None
    """When areas or schemes last changed: the oldest any area document can be."""
    _live: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    _pending: dict[str, tuple[dict[str, Effective], set[str]]] = field(default_factory=dict)
    _inside_raw: dict[str, InsideMap] = field(default_factory=dict)
    _pending_inside: dict[str, tuple[InsideMap, set[str]]] = field(default_factory=dict)
    """Per scheme: the previous levels and the areas a change named, to resolve again."""
    archive: Archive | None = None
    _around: dict[tuple[str, datetime | None], World] = field(default_factory=dict)
    _own_around: OrderedDict[tuple[str, datetime | None], World] = field(
        default_factory=OrderedDict)
    _own_lock: threading.Lock = field(default_factory=threading.Lock)
    _seeing: dict[datetime, World] = field(default_factory=dict)
    _ended_since: dict[datetime, set[str]] = field(default_factory=dict)

    # --- closed history ---------------------------------------------------------------

    def declaration(self, declaration_id: str) -> Declaration | None:
        """A declaration by id, from the archive when this world no longer holds it."""
        found = self.declarations.get(declaration_id)
        if found is None and self.archive is not None:
            found = self.archive.declarations([declaration_id]).get(declaration_id)
        return found

    def prefetch(self, ids: Sequence[str]) -> None:
        """Read ahead, in a few statements, the closed declarations among `ids` and what
        replaces them (see `Archive.prefetch`); nothing without an archive."""
        if self.archive is not None:
            self.archive.prefetch([key for key in ids if key not in self.declarations])

    def prefetch_areas(self, codes: Sequence[str]) -> None:
        """Read ahead, in one statement, the bounds of the closed history of `codes` and
        the areas above them (see `Archive.prefetch_spans`); nothing without an archive."""
        if self.archive is not None:
            chain = {c: None for code in codes for c in (code, *self.tree.ancestors(code))}
            self.archive.prefetch_spans(list(chain))

    def around(self, code: str, since: datetime | None = None) -> World:
        """A world complete for one area: every published declaration naming it or an area
        above it (that ended after `since`, if given: what decides its levels from then on),
        and what replaces them. Itself when it has no archive."""
        if self.archive is None:
            return self
        code = self.tree.get(code).code
        found = self._around.get((code, since))
        if found is None:
            found = self._naming([code, *self.tree.ancestors(code)], since)
            if len(self._around) >= AROUND_KEPT:
                self._around.clear()
            self._around[(code, since)] = found
        return found

    def _naming(self, codes: list[str], since: datetime | None) -> World:
        """A world of the published declarations naming any of `codes`: the closed ones
        that ended after `since` (all, when None), the live ones, and what replaces them."""
        assert self.archive is not None
        own = self.archive.naming(codes, since)
        for key in self.used_schemes():
            for window in self.history(key).naming(codes):
                d = window.declaration
                own[d.id] = d
                for r in self.replaced_by(d.id):
                    own[r] = self.declarations[r]
        return self._partial(own, self.now)

    def _around_one(self, code: str, since: datetime | None) -> World:
        """A world complete for the windows naming `code` itself (not the areas above it)
        from `since` on: its closed declarations that ended after `since` (all, when None),
        its live ones, and what replaces them. The areas above an area are those of many
        others, so theirs are made once a snapshot and kept (OWN_KEPT, least recently used
        first out)."""
        assert self.archive is not None
        with self._own_lock:
            found = self._own_around.get((code, since))
            if found is not None:
                self._own_around.move_to_end((code, since))
                return found
        found = self._naming([code], since)
        with self._own_lock:
            self._own_around[(code, since)] = found
            while len(self._own_around) > OWN_KEPT:
                self._own_around.popitem(last=False)
        return found

    def seeing(self, at: datetime) -> World:
        """A world complete for the whole tree at `at`: itself, unless `at` is before what
        it holds (then the declarations holding at `at`, from the archive)."""
        if self.archive is None or at >= self.archive.until:
            return self
        found = self._seeing.get(at)
        if found is None:
            held = self.archive.holding_at(at)
            held.update({k: d for k, d in self.declarations.items() if k in held})
            found = self._partial(held, at)
            self._seeing = {at: found}
        return found

    def ids_like(self, declaration_id: str) -> list[str]:
        """Published ids that may be what `declaration_id` meant, for suggestions: this
        world's, and the archive's that share the first half of it."""
        own = [k for k, d in self.declarations.items() if d.is_published]
        if self.archive is None:
            return own
        return [*own, *self.archive.ids_like(declaration_id[:len(declaration_id) // 2])]

    def about(self, ids: Iterable[str]) -> World:
        """A world holding the declarations `ids` (those that exist), from the archive too;
        itself when it has no archive."""
        if self.archive is None:
            return self
        ids = list(ids)
        found = {k: self.declarations[k] for k in ids if k in self.declarations}
        found.update(self.archive.declarations([k for k in ids if k not in found]))
        return self._partial(found, self.now)

    def _partial(self, declarations: dict[str, Declaration], now: datetime | None) -> World:
        world = World(self.tree, self.schemes, declarations, now=now,
                      structure_at=self.structure_at)
        world._used = self.used_schemes()
        return world

    def search(self, *, scheme: str | None = None, area: str | None = None,
               since: datetime | None = None,
               until: datetime | None = None) -> list[Declaration]:
        """Published declarations of the scheme, naming the area or an area above it, taking
        effect in [since, until) (each filter only if given), oldest first by (effective,
        id): this world's, and the archive's."""
        chain = [self.tree.get(area).code, *self.tree.ancestors(area)] if area else None
        names = set(chain) if chain is not None else None
        found = {k: d for k, d in self.declarations.items()
                 if d.is_published and d.effective is not None
                 and (scheme is None or d.scheme == scheme)
                 and (names is None or not names.isdisjoint(d.areas))
                 and (since is None or d.effective >= since)
                 and (until is None or d.effective < until)}
        if self.archive is not None:
            stored = self.archive.search(scheme=scheme, codes=chain, since=since, until=until)
            found = {**stored, **found}
        return sorted(found.values(), key=lambda d: (d.effective or d.created_at, d.id))

    def page(self, *, scheme: str | None = None, area: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             limit: int | None = None, offset: int = 0) -> tuple[int, list[Declaration]]:
        """How many published declarations `search` finds, and `limit` of them from
        `offset` on, newest first: read page by page from the store when there is an
        archive (a listing of a long history never reads all of it)."""
        if self.archive is None:
            found = self.search(scheme=scheme, area=area, since=since, until=until)
            found.reverse()
            return len(found), found[offset:] if limit is None else found[offset:offset + limit]
        chain = [self.tree.get(area).code, *self.tree.ancestors(area)] if area else None
        total, found = self.archive.page(scheme=scheme, codes=chain, since=since, until=until,
                                         limit=limit, offset=offset)
        return total, [self.declarations.get(d.id, d) for d in found]

    def published_ids(self) -> list[tuple[str, bool]]:
        """Every published declaration's id, and whether it was cancelled: this world's,
        and the archive's; oldest first."""
        own = {k: d.cancellation is not None for k, d in self.declarations.items()
               if d.is_published}
        if self.archive is None:
            return list(own.items())
        return list({**dict(self.archive.published_ids()), **own}.items())

    # --- questions --------------------------------------------------------------------

    def scheme(self, key: str) -> Scheme:
        if key not in self.schemes:
            raise unknown("scheme", key, self.schemes, SCHEMES_HINT)
        return self.schemes[key]

    def history(self, key: str) -> SchemeHistory:
        if key not in self._histories:
            self._histories[key] = SchemeHistory(self.scheme(key), self.declarations.values())
        return self._histories[key]

    def used_schemes(self) -> list[str]:
        """Schemes with at least one published declaration, else every scheme."""
        if self._used is None:
            used = sorted({d.scheme for d in self.declarations.values() if d.is_published}
                          | set(self.archive.schemes if self.archive is not None else ()))
            self._used = used or sorted(self.schemes)
        return list(self._used)

    def resolved(self, key: str) -> dict[str, Effective]:
        """Every area's effective level under `key` at `now`, resolved once (or, after a
        change, again only inside the areas it named)."""
        assert self.now is not None, "resolved() needs a world with a now"
        if key not in self._resolved:
            pending = self._pending.pop(key, None)
            self._resolved[key] = (
                self._resolve_within(key, *pending) if pending is not None
                else effective_levels(self.tree, self.history(key), self.now))
        return self._resolved[key]

    def effective(self, key: str, code: str, at: datetime) -> Effective:
        """One area's effective level: from the resolved map at `now`, else alone."""
        if at == self.now:
            return self.resolved(key)[code]
        return effective_level(self.tree, self.around(code, at).history(key), code, at)

    def status(self, at: datetime, *, area: str | None = None,
               scheme: str | None = None) -> list[AreaStatus]:
        """Each area's (or one area's) level at `at`, per scheme (or one scheme)."""
        codes = [self.tree.get(area).code] if area else list(self.tree.order)
        keys = [self.scheme(scheme).key] if scheme else self.used_schemes()
        if self.archive is not None and not area:  # each area's periods: its own past
            return [s for code in codes for s in self.status(at, area=code, scheme=scheme)]
        out = []
        for key in keys:
            history = self.history(key)
            if area:
                levels = {codes[0]: self.effective(key, codes[0], at)}
            elif at == self.now:
                levels = self.resolved(key)
            else:
                levels = effective_levels(self.tree, history, at)
            for code in codes:
                periods, _ = self.periods_around(key, code, at, 0)
                out.append(AreaStatus(self.tree.areas[code], history.scheme, levels[code],
                                      period_at(periods, at)))
        return out

    def timeline(self, area: str, scheme: str) -> list[Period]:
        code = self.tree.get(area).code
        if self.archive is not None:
            return self.around(code).timeline(code, scheme)
        found = self._timelines.get((code, scheme))
        if found is None:
            found = timeline(self.tree, self.history(scheme), code)
            if len(self._timelines) > TIMELINES_KEPT:
                self._timelines.clear()
            self._timelines[(code, scheme)] = found
        return found

    def periods_around(self, key: str, code: str, at: datetime,
                       before: int = RECENT_PERIODS) -> tuple[list[Period], bool]:
        """The area's periods around `at`, oldest first: up to `before` periods before the
        one holding at `at`, that one, and every scheduled one after it; and whether
        earlier periods were left out. Walks back from `at` only as far as it must, so an
        area under a long history costs what its recent past costs."""
        if self.archive is not None:
            return self._periods_from_archive(key, code, at, before)
        return self._periods_within(key, code, at, before)

    def _periods_within(self, key: str, code: str, at: datetime, before: int,
                        worlds: Sequence[World] | None = None) -> tuple[list[Period], bool]:
        """`periods_around` over this world's own declarations alone, or, with `worlds`
        (one per area of the chain, the area first), over each area's windows from its
        world."""
        history = self.history(key)
        chain = [self.tree.get(code).code, *self.tree.ancestors(code)]
        if worlds is None:
            holding: Counter[int] = Counter(w.rank for w in history.naming_at(chain, at))
            own = [self._own(key, c) for c in chain]
        else:
            held = {w.declaration.id: w.rank for world, c in zip(worlds, chain, strict=True)
                    for w in world.history(key).naming_at([c], at)}
            holding = Counter(held.values())
            own = [world._own(key, c) for world, c in zip(worlds, chain, strict=True)]
        current = _top(holding)

        def events(forward: bool) -> Iterator[tuple[datetime, int, int]]:
            """Window starts (+1) and ends (-1) after `at` ascending, or the reverse
            (a start leaves, an end joins) at or before `at` descending."""
            streams = []
            for n, (starts, by_start, ends, by_end) in enumerate(own):
                seen = frozenset(chain[:n])  # a window naming two of the chain counts once
                i, j = bisect_right(starts, at), bisect_right(ends, at)
                if forward:
                    streams += [_stream(starts, by_start, range(i, len(starts)), 1, seen),
                                _stream(ends, by_end, range(j, len(ends)), -1, seen)]
                else:
                    streams += [_stream(starts, by_start, range(i - 1, -1, -1), -1, seen),
                                _stream(ends, by_end, range(j - 1, -1, -1), 1, seen)]
            return heapq.merge(*streams, key=lambda e: e[0], reverse=not forward)

        level = history.level_of_rank  # ranks that name the same level are one period
        later: list[tuple[datetime, int | None]] = []  # (boundary, rank from it on)
        ahead = Counter(holding)
        for instant, group in groupby(events(True), key=lambda e: e[0]):
            for _, delta, rank in group:
                ahead[rank] += delta
            top = _top(ahead)
            if level(top) is not level(later[-1][1] if later else current):
                later.append((instant, top))
        earlier: list[tuple[datetime, int | None]] = []  # (boundary, rank before it)
        behind = Counter(holding)
        for instant, group in groupby(events(False), key=lambda e: e[0]):
            for _, delta, rank in group:
                behind[rank] += delta
            top = _top(behind)
            if level(top) is not level(earlier[-1][1] if earlier else current):
                earlier.append((instant, top))
                if len(earlier) > before:
                    break  # the boundaries of every period kept are known
        back = [Period(level(was), earlier[k + 1][0] if k + 1 < len(earlier) else None,
                       boundary) for k, (boundary, was) in enumerate(earlier[:before])]
        periods = [*reversed(back), Period(level(current), earlier[0][0] if earlier else None,
                                           later[0][0] if later else None)]
        for k, (instant, then) in enumerate(later):
            periods.append(Period(level(then), instant,
                                  later[k + 1][0] if k + 1 < len(later) else None))
        truncated = len(earlier) > before
        return periods, truncated

    def _periods_from_archive(self, key: str, code: str, at: datetime,
                              before: int) -> tuple[list[Period], bool]:
        """`periods_around` over the area's closed history, read back from `at` only as far
        as the periods asked for reach: declarations over by some instant cannot hold after
        it, so periods that begin after it are exact without them."""
        assert self.archive is not None
        code = self.tree.get(code).code
        # Nothing closed holds after the archive's cut: periods that all begin after it are
        # exact from this world's own declarations (after a change, most areas' are).
        periods, truncated = self._periods_within(key, code, at, before)
        oldest = periods[0].start
        if truncated and oldest is not None and oldest > self.archive.until:
            return periods, truncated
        chain = [code, *self.tree.ancestors(code)]
        # Closed history has no boundary after the last closed end: read back from there.
        newest = self.archive.ended(chain)
        anchor = min(at, self.archive.until, newest if newest is not None else at)
        reach = ARCHIVE_REACH
        while True:
            since = _EPOCH + (anchor - reach - _EPOCH) // ARCHIVE_GRID * ARCHIVE_GRID
            whole = [self.archive.complete_after([c], since) for c in chain]
            complete = all(whole)
            worlds = [self._around_one(c, None if done else since)
                      for c, done in zip(chain, whole, strict=True)]
            periods, truncated = self._periods_within(key, code, at, before, worlds)
            oldest = periods[0].start
            if complete or (truncated and oldest is not None and oldest > since):
                return periods, truncated
            reach *= 4

    def _own(self, key: str, code: str) -> tuple[list[datetime], list[Window],
                                                  list[datetime], list[Window]]:
        """The windows naming exactly `code` that ever held, by start and by end."""
        found = self._owned.get((key, code))
        if found is None:
            held = [w for w in self.history(key).naming([code])
                    if w.end is None or w.end > w.start]
            by_start = sorted(held, key=lambda w: w.start)
            by_end = sorted((w for w in held if w.end is not None),
                            key=lambda w: w.end or w.start)
            found = ([w.start for w in by_start], by_start,
                     [w.end or w.start for w in by_end], by_end)
            if len(self._owned) > TIMELINES_KEPT:
                self._owned.clear()
            self._owned[(key, code)] = found
        return found

    def beneath(self, key: str, code: str, at: datetime | None = None) -> Beneath | None:
        """The highest level in force strictly inside `code` at `at` (default `now`; kept
        for `now`), None when nothing inside is above the baseline."""
        at = at or self.now
        assert at is not None, "beneath() needs an instant"
        if at != self.now:
            seen = self.seeing(at)
            return seen._beneath_of(key, seen._inside(key, at)).get(code)
        if key not in self._beneath:
            pending = self._pending_inside.pop(key, None)
            raw = (self._inside_again(key, at, *pending) if pending is not None
                   else self._inside(key, at))
            self._inside_raw[key] = raw
            self._beneath[key] = self._beneath_of(key, raw)
        return self._beneath[key].get(code)

    def _named_at(self, key: str, at: datetime) -> dict[str, tuple[int, datetime]]:
        """Per area named by a declaration in force: its highest rank, and the newest start
        among the declarations at that rank."""
        named: dict[str, tuple[int, datetime]] = {}
        for window in self.history(key).in_effect(at):
            for code in window.declaration.areas:
                held = named.get(code)
                if held is None or window.rank > held[0]:
                    named[code] = (window.rank, window.start)
                elif window.rank == held[0] and window.start > held[1]:
                    named[code] = (held[0], window.start)
        return named

    def _best_inside(self, code: str, named: dict[str, tuple[int, datetime]],
                     best: dict[str, Inside]) -> Inside | None:
        """What is highest strictly inside `code`, from what its children offer (in the
        order one pass up the tree meets them, so that `where` reads the same)."""
        top: Inside | None = None
        for child in reversed(self.tree.children(code)):
            own, mine = named.get(child), best.get(child)
            if own is not None and (mine is None or own[0] >= mine[0]):
                offer: Inside = (own[0], 1, [child], own[1])  # the child covers its inside
            elif mine is not None:
                offer = mine
            else:
                continue
            if top is None or offer[0] > top[0]:
                top = (offer[0], offer[1], list(offer[2][:WHERE_SHOWN]), offer[3])
            elif offer[0] == top[0]:
                where = top[2] + offer[2][:WHERE_SHOWN - len(top[2])]
                top = (top[0], top[1] + offer[1], where, max(top[3], offer[3]))
        return top

    def _inside(self, key: str, at: datetime) -> InsideMap:
        """One pass up the tree from the areas that declarations in force name."""
        named = self._named_at(key, at)
        best: dict[str, Inside] = {}
        for code in reversed(self.tree.order):  # children before parents
            found = self._best_inside(code, named, best)
            if found is not None:
                best[code] = found
        return named, best

    def _inside_again(self, key: str, at: datetime, old: InsideMap,
                      codes: set[str]) -> InsideMap:
        """`old` made again only inside the areas a change named and above them."""
        tree = self.tree
        named = self._named_at(key, at)
        best = dict(old[1])
        roots = [c for c in codes if not codes.intersection(tree.ancestors(c))]
        redo: list[str] = []
        for root in roots:
            redo += reversed([root, *tree.descendants(root)])  # children before parents
        above = sorted({a for root in roots for a in tree.ancestors(root)},
                       key=lambda a: -len(tree.ancestors(a)))  # the deepest first
        for code in [*redo, *above]:
            found = self._best_inside(code, named, best)
            if found is None:
                best.pop(code, None)
            else:
                best[code] = found
        return named, best

    def _beneath_of(self, key: str, raw: InsideMap) -> dict[str, Beneath]:
        history = self.history(key)
        baseline = history.scheme.baseline_level
        floor = baseline.rank if baseline is not None else None
        out = {}
        for code, (rank, count, where, since) in raw[1].items():
            if floor is None or rank > floor:
                level = history.level_of_rank(rank)
                assert level is not None
                out[code] = Beneath(level, count, tuple(where), since)
        return out

    def area_changed(self, code: str) -> datetime | None:
        """The newest instant at or before `now` at which what an area's documents show
        changed: a declaration naming the area or an area above it was published, started,
        ended, was cancelled or replaced; the highest level in force inside it began; or
        the areas and schemes changed. (When a level inside the area ends and nothing
        inside stays above the baseline, the bytes change but this instant does not.)"""
        chain = (code, *self.tree.ancestors(code))
        instants = self._changes(code, chain)
        if self.archive is not None:  # what ended before this world's declarations
            instants.append(self.archive.ended(chain))
        return max((i for i in instants if i is not None), default=None)

    def _changes(self, code: str, chain: tuple[str, ...]) -> list[datetime | None]:
        """The instants of `area_changed` that this world's own declarations give."""
        assert self.now is not None, "area_changed() needs a world with a now"
        instants = [self.structure_at]
        for key in self.used_schemes():
            instants += [self._own_changed(key, c) for c in chain]
            inside = self.beneath(key, code)
            instants.append(inside.since if inside is not None else None)
        return instants

    def changed_since(self, code: str, since: datetime) -> bool:
        """Whether `area_changed(code)` is at or after `since`, asking the archive once for
        every area (`ended_since`) rather than once per area."""
        if self.archive is None:
            changed = self.area_changed(code)
            return changed is not None and changed >= since
        chain = (code, *self.tree.ancestors(code))
        if any(i is not None and i >= since for i in self._changes(code, chain)):
            return True
        ended = self._ended_since.get(since)
        if ended is None:
            ended = self.archive.ended_after(since - _TICK)
            self._ended_since = {since: ended}
        return not ended.isdisjoint(chain)

    def _own_changed(self, key: str, code: str) -> datetime | None:
        """The newest instant at or before `now` of the windows naming exactly `code`: a
        start or end, or the publication of one not begun or of what ends it later."""
        assert self.now is not None
        now = self.now
        starts, by_start, ends, _ = self._own(key, code)
        i, j = bisect_right(starts, now), bisect_right(ends, now)
        found = [starts[i - 1] if i else None, ends[j - 1] if j else None]
        found += [w.declaration.published_at for w in by_start[i:]]  # scheduled
        # Holding now, and ended later by a replacement already published:
        for window in self.history(key).naming_at([code], now):
            found += [self.declarations[r].published_at
                      for r in self._live_replacers(key).get(window.declaration.id, ())]
        return max((t for t in found if t is not None and t <= now), default=None)

    def _live_replacers(self, key: str) -> dict[str, list[str]]:
        """Replacements among the windows not over at `now`, by what they replace."""
        assert self.now is not None
        found = self._live.get(key)
        if found is None:
            found = {}
            for window in self.history(key).ending_after(self.now):
                for old in window.declaration.replaces:
                    found.setdefault(old, []).append(window.declaration.id)
            self._live[key] = found
        return found

    def declaration_changed(self, d: Declaration) -> datetime | None:
        """The newest instant at or before `now` at which the declaration's documents
        changed: published, started, ended, cancelled, or replaced."""
        assert self.now is not None
        instants = [d.published_at, d.effective, d.expires,
                    d.cancellation.at if d.cancellation else None]
        replacers = [r for r in map(self.declaration, self.replaced_by(d.id)) if r is not None]
        instants += [r.published_at for r in replacers]
        instants += [r.effective for r in replacers]
        return max((i for i in instants if i is not None and i <= self.now), default=None)

    def evolved(self, changed: Mapping[str, Declaration], now: datetime,
                crossed: Iterable[Declaration] = ()) -> World:
        """This world after `changed` declarations were written (added, cancelled), as of
        `now`; `crossed` are declarations whose windows started or ended since this
        world's `now`. Areas, schemes and unchanged histories are shared, and the
        per-area change instants move only for the areas concerned."""
        declarations = {**self.declarations, **changed}
        schemes_changed = {d.scheme for d in changed.values()}
        world = World(self.tree, self.schemes, declarations,
                      {k: h for k, h in self._histories.items() if k not in schemes_changed},
                      now=now, structure_at=self.structure_at, archive=self.archive)
        if self._used is not None and self._used != sorted(self.schemes):
            world._used = sorted({*self._used,
                                  *(d.scheme for d in changed.values() if d.is_published)})
        if self._replacers is not None:
            replacers = dict(self._replacers)
            for d in changed.values():
                if d.is_published and d.id not in self.declarations:
                    for old in d.replaces:
                        replacers[old] = [*replacers.get(old, ()), d.id]
            world._replacers = replacers
        self._carry_resolved(world, [*changed.values(), *crossed], schemes_changed)
        for key in schemes_changed:
            if key in self._histories:
                # The previous history stays the base; only what the change touched is new.
                world.replaced_by("")  # the index of replacements the delta needs
                assert world._replacers is not None
                world._histories[key] = with_changes(
                    self._histories[key], changed.values(), declarations, world._replacers)
        return world

    def _carry_resolved(self, world: World, moved: list[Declaration],
                        schemes: set[str]) -> None:
        """Give `world` this world's resolved levels and per-area window lists, made again
        only inside the areas `moved` declarations (and what they replace) name."""
        named: dict[str, set[str]] = {}
        for d in moved:
            codes = named.setdefault(d.scheme, set())
            codes.update(d.areas)
            for old in d.replaces:
                if old in world.declarations:
                    codes.update(world.declarations[old].areas)
        world._owned = {k: v for k, v in self._owned.items()
                        if k[0] not in schemes or k[1] not in named.get(k[0], ())}
        if self.now is None or world.now is None:
            return
        for key, levels in self._resolved.items():
            codes = {c for c in named.get(key, ()) if c in self.tree.areas}
            if key not in named:  # nothing of this scheme started, ended or changed
                world._resolved[key] = levels
            elif codes and len(codes) < 1_000:
                world._pending[key] = (levels, codes)
        for key, raw in self._inside_raw.items():
            codes = {c for c in named.get(key, ()) if c in self.tree.areas}
            if key not in named:
                world._inside_raw[key] = raw
                world._beneath[key] = self._beneath[key]
            elif codes and len(codes) < 1_000:
                world._pending_inside[key] = (raw, codes)

    def _resolve_within(self, key: str, levels: dict[str, Effective],
                        named: set[str]) -> dict[str, Effective]:
        """`levels` with the subtrees of the `named` areas resolved again (one pass down
        each subtree; everything outside them holds as it was)."""
        assert self.now is not None
        tree, history = self.tree, self.history(key)
        roots = [c for c in named if not named.intersection(tree.ancestors(c))]
        inside = {c for root in roots for c in (root, *tree.descendants(root))}
        direct: dict[str, tuple[int, list[Source]]] = {}
        for window in history.in_effect(self.now):
            for code in window.declaration.areas:
                if code in inside:
                    current = direct.get(code)
                    if current is None or window.rank > current[0]:
                        direct[code] = (window.rank, [Source(window, code)])
                    elif window.rank == current[0]:
                        current[1].append(Source(window, code))
        out = dict(levels)
        for root in roots:
            parent = tree.areas[root].parent
            above = out[parent] if parent is not None else None
            best: dict[str, tuple[int | None, tuple[Source, ...]]] = {}
            if above is not None and above.sources and above.level is not None:
                start: tuple[int | None, tuple[Source, ...]] = (above.level.rank,
                                                                above.sources)
            else:
                start = (None, ())
            queue = [root]
            while queue:
                code = queue.pop()
                up = tree.areas[code].parent
                inherited = best[up] if code != root and up is not None else start
                own = direct.get(code)
                if own is None:
                    best[code] = inherited
                elif inherited[0] is None or own[0] > inherited[0]:
                    best[code] = (own[0], tuple(own[1]))
                elif own[0] == inherited[0]:
                    best[code] = (own[0], (*own[1], *inherited[1]))
                else:
                    best[code] = inherited
                out[code] = Effective(code, history.level_of_rank(best[code][0]),
                                      best[code][1])
                queue.extend(tree.children(code))
        return out

    def windows_crossed(self, since: datetime, until: datetime) -> list[Declaration]:
        """Published declarations whose window started or ended in (since, until]."""
        out = []
        for key in self.schemes:
            for w in self.history(key).windows:
                if since < w.start <= until or (w.end is not None and since < w.end <= until):
                    out.append(w.declaration)
        return out

    def declarations_for(self, area: str) -> list[Declaration]:
        """Declarations naming the area or one of its ancestors, oldest first."""
        chain = {self.tree.get(area).code, *self.tree.ancestors(area)}
        found = [d for d in self.around(area).declarations.values()
                 if chain.intersection(d.areas)]
        return sorted(found, key=lambda d: (d.effective or d.created_at, d.id))

    def levels_at(self, at: datetime, schemes: Iterable[str] | None = None) -> LevelMap:
        """Every area's effective level key (None: no level) at `at`, per scheme (default:
        the schemes in use)."""
        out: LevelMap = {}
        seen = self.seeing(at)
        for key in self.used_schemes() if schemes is None else schemes:
            for code, effective in effective_levels(self.tree, seen.history(key), at).items():
                out[(key, code)] = effective.level.key if effective.level else None
        return out

    def next_change_after(self, at: datetime) -> datetime | None:
        """When some level next starts or ends without anyone writing, if ever."""
        candidates = [self.history(key).next_change_after(at) for key in self.schemes]
        return min((c for c in candidates if c is not None), default=None)

    def replaced_by(self, declaration_id: str) -> list[str]:
        """Ids of the published declarations replacing this one, sorted."""
        if (self.archive is not None and declaration_id
                and declaration_id not in self.declarations):
            return self.archive.replacing(declaration_id)
        if self._replacers is None:
            index: dict[str, list[str]] = {}
            for d in self.declarations.values():
                if d.is_published:
                    for old in d.replaces:
                        index.setdefault(old, []).append(d.id)
            self._replacers = index
        return sorted(self._replacers.get(declaration_id, ()))


def load_world(engine: Engine, *, published_only: bool = False) -> World:
    """The world; the public side sees published declarations only."""
    check_current(engine)
    with reading(engine) as conn:
        return world_of(conn, published_only=published_only)


def world_of(conn: Connection, *, published_only: bool = False,
             holding_from: datetime | None = None) -> World:
    """The world as `conn`'s transaction sees it; with `holding_from`, only the published
    declarations that may hold at or after that instant (see records.load_declarations)."""
    statuses = [Status.PUBLISHED] if published_only else None
    return World(records.load_tree(conn), records.load_schemes(conn),
                 records.load_declarations(conn, statuses=statuses,
                                           holding_from=holding_from))


def load_scheme(engine: Engine, key: str) -> Scheme:
    """One scheme, without reading declarations."""
    check_current(engine)
    with reading(engine) as conn:
        schemes = records.load_schemes(conn)
    if key not in schemes:
        raise unknown("scheme", key, schemes, SCHEMES_HINT)
    return schemes[key]


def verify_audit(engine: Engine, *, published_head: tuple[int, str] | None = None) -> Verdict:
    """Check the whole chain against itself, the head kept beside it, and a published head."""
    check_current(engine)
    with reading(engine) as conn:
        state = records.read_state(conn)
        verdict = verify(records.audit_entries(conn),
                         expected_head=(state.audit_seq, state.audit_hash))
    if verdict.ok and published_head is not None:
        with reading(engine) as conn:
            verdict = verify(records.audit_entries(conn), expected_head=published_head)
    return verdict


def audit_tail(engine: Engine, limit: int) -> list[AuditEntry]:
    """The newest `limit` audit entries, oldest of them first."""
    check_current(engine)
    with reading(engine) as conn:
        return records.last_audit_entries(conn, limit)


def _top(holding: Counter[int]) -> int | None:
    return max((rank for rank, count in holding.items() if count > 0), default=None)


def _stream(instants: list[datetime], windows: list[Window], order: range, delta: int,
            seen: frozenset[str]) -> Iterator[tuple[datetime, int, int]]:
    for k in order:
        window = windows[k]
        if not seen or seen.isdisjoint(window.declaration.areas):
            yield instants[k], delta, window.rank
