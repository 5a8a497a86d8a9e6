"""Effective levels: which level holds for each area at an instant, and why.

The effective level of area A under scheme S at instant t is the highest-ranked level among
the published declarations holding at t (effective <= t < end, where end is the earliest of
expiry, cancellation and the first replacement taking effect) that name A or an ancestor of A.
Where none holds, the scheme's baseline level applies (or no level at all).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
from operator import and_, attrgetter

from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.scheme import Level, Scheme


@dataclass(frozen=True, slots=True)
class Window:
    """The span in which one published declaration holds: start <= t < end."""

    declaration: Declaration
    rank: int
    start: datetime
    end: datetime | None

    def holds_at(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


@dataclass(frozen=True, slots=True)
class Source:
    """A declaration that puts a level on an area, through the area it names (`via`)."""

    window: Window
    via: str

    @property
    def declaration(self) -> Declaration:
        return self.window.declaration


@dataclass(frozen=True, slots=True)
class Effective:
    """The level of one area at one instant, with the declarations that put it there."""

    area: str
    level: Level | None
    sources: tuple[Source, ...]

    @property
    def is_baseline(self) -> bool:
        """True when no declaration holds and the scheme's baseline level applies."""
        return self.level is not None and not self.sources

    @property
    def inherited_from(self) -> str | None:
        """The ancestor whose declaration sets the level, if no source names the area itself."""
        if not self.sources or any(s.via == self.area for s in self.sources):
            return None
        return self.sources[0].via


@dataclass(frozen=True, slots=True)
class Period:
    """An unbroken stretch in which an area keeps one level (None: no level)."""

    level: Level | None
    start: datetime | None
    """None: since before any declaration."""
    end: datetime | None
    """None: until further notice."""

    def contains(self, at: datetime) -> bool:
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)


_FOREVER = datetime.max.replace(tzinfo=UTC)
"""The end of a window that never ends, so that ends compare without a None check."""

_ID = attrgetter("id")
_LEVEL = attrgetter("level")
_EFFECTIVE = attrgetter("effective")
_EXPIRES = attrgetter("expires")
_CANCELLATION = attrgetter("cancellation")
_REPLACES = attrgetter("replaces")
_AREAS = attrgetter("areas")


class _Recent:
    """The windows that still matter from an instant on, found when a question first names
    an instant (for a snapshot: its own instant).

    `live` holds every window with a start or end after that instant; `settled` is the last
    start or end of all the others (None: there are none). From `settled` on, the others
    neither hold nor start nor end, so answers for such instants read `live` alone.
    """

    __slots__ = ("by_area", "ends", "live", "settled", "starts")

    def __init__(self, settled: datetime | None, live: list[int], starts: list[datetime],
                 ends: list[datetime]) -> None:
        self.settled = settled
        self.live = live
        self.starts = starts
        self.ends = ends
        self.by_area: dict[str, list[int]] | None = None


class SchemeHistory:
    """Every published declaration of one scheme with the window in which it holds.

    It is built for every snapshot from the whole history, so building it costs a few passes
    over parallel lists (one entry per declaration: no object per window, no sort). Whatever a
    question needs beyond that is made when first asked, then kept: the windows that still
    matter at the first instant asked about (a snapshot's own instant), the index by area (for
    timelines), `Window` objects (only for the windows an answer returns). An instant before
    the last change of the rest (`?at=` in the past) is answered by one pass over everything.
    """

    def __init__(self, scheme: Scheme, declarations: Iterable[Declaration]) -> None:
        """`declarations` may hold any declarations (of any status and scheme), each id once."""
        self.scheme = scheme
        key, published = scheme.key, Status.PUBLISHED
        decls = [d for d in declarations if d.status is published and d.scheme == key]
        ranks = {level.key: level.rank for level in scheme.levels}
        self._declarations = decls
        self._ids: list[str] = list(map(_ID, decls))
        self._ranks: list[int] = list(map(ranks.__getitem__, map(_LEVEL, decls)))
        self._starts: list[datetime] = list(map(_EFFECTIVE, decls))
        self._ends = _ends(decls, self._ids)
        try:
            self._lasts: list[datetime] = list(map(max, self._starts, self._ends))
        except TypeError:  # max(None, end): a published declaration without an effective time
            raise AssertionError("published declarations have an effective time") from None
        self._by_rank = {level.rank: level for level in scheme.levels}
        self._made: dict[int, Window] = {}
        self._recent: _Recent | None = None
        self._by_area: dict[str, list[int]] | None = None
        self._all: tuple[Window, ...] | None = None

    def __len__(self) -> int:
        """The number of windows (published declarations of the scheme)."""
        return len(self._starts)

    @property
    def windows(self) -> tuple[Window, ...]:
        """Every window, in start order (then by declaration id).

        Made on first use, a `Window` per declaration: prefer the questions below, which make
        only the windows they return.
        """
        if self._all is None:
            self._all = tuple(self._windows(range(len(self._starts))))
        return self._all

    def in_effect(self, at: datetime) -> list[Window]:
        """The windows holding at `at`, in start order (then by declaration id)."""
        at = _utc(at)
        indices, starts, ends = self._scope(at)
        return self._windows(compress(indices, map(and_, map(at.__ge__, starts),
                                                   map(at.__lt__, ends))))

    def ending_after(self, at: datetime) -> list[Window]:
        """The windows not over by `at`: holding then, starting later, or never ending; in start
        order. (What may still change: reminders of an expiry, for instance.)"""
        at = _utc(at)
        indices, _, ends = self._scope(at)
        return self._windows(compress(indices, map(at.__lt__, ends)))

    def naming(self, codes: Iterable[str]) -> list[Window]:
        """Windows of declarations that name any of `codes`, in start order."""
        index = self._area_index()
        return self._windows({i for code in codes for i in index.get(code, ())})

    def spans(self, codes: Iterable[str]) -> list[tuple[int, datetime, datetime | None]]:
        """(rank, start, end) of the windows of declarations that name any of `codes`, in no
        particular order: what a timeline needs, without making `Window` objects."""
        index, ranks, starts, ends = self._area_index(), self._ranks, self._starts, self._ends
        return [(ranks[i], starts[i], None if ends[i] is _FOREVER else ends[i])
                for i in {i for code in codes for i in index.get(code, ())}]

    def naming_at(self, codes: Iterable[str], at: datetime) -> list[Window]:
        """Windows holding at `at` of declarations that name any of `codes`, in start order."""
        at = _utc(at)
        recent = self._settled_at(at)
        index = self._area_index() if recent is None else self._recent_area_index(recent)
        starts, ends = self._starts, self._ends
        return self._windows({i for code in codes for i in index.get(code, ())
                              if starts[i] <= at < ends[i]})

    def next_change_after(self, at: datetime) -> datetime | None:
        """The first instant after `at` at which some window starts or ends, if any."""
        at = _utc(at)
        _, starts, ends = self._scope(at)
        first = min(min(filter(at.__lt__, starts), default=_FOREVER),
                    min(filter(at.__lt__, ends), default=_FOREVER))
        return None if first is _FOREVER else first

    def last_change_until(self, at: datetime) -> datetime | None:
        """The last instant at or before `at` at which some window started or ended, if any."""
        at = _utc(at)
        recent = self._settled_at(at)
        if recent is None:
            starts, ends, found = self._starts, self._ends, None
        else:
            starts, ends, found = recent.starts, recent.ends, recent.settled
        for latest in (max(filter(at.__ge__, starts), default=None),
                       max(filter(at.__ge__, ends), default=None)):
            if latest is not None and (found is None or latest > found):
                found = latest
        return found

    def level_of_rank(self, rank: int | None) -> Level | None:
        if rank is None:
            return self.scheme.baseline_level
        return self._by_rank[rank]

    # --- what the questions are read from ------------------------------------------------

    def _settled_at(self, at: datetime) -> _Recent | None:
        """The recent windows if they alone answer for `at`, else None (read everything)."""
        recent = self._recent
        if recent is None:
            lasts = self._lasts
            live = list(compress(range(len(lasts)), map(at.__lt__, lasts)))
            recent = self._recent = _Recent(
                max(filter(at.__ge__, lasts), default=None), live,
                list(map(self._starts.__getitem__, live)), list(map(self._ends.__getitem__, live)))
        if recent.settled is None or at >= recent.settled:
            return recent
        return None

    def _scope(self, at: datetime) -> tuple[Sequence[int], list[datetime], list[datetime]]:
        """Indices, starts and ends of the windows that can matter at `at`."""
        recent = self._settled_at(at)
        if recent is None:
            return range(len(self._starts)), self._starts, self._ends
        return recent.live, recent.starts, recent.ends

    def _area_index(self) -> dict[str, list[int]]:
        if self._by_area is None:
            self._by_area = _by_area(enumerate(map(_AREAS, self._declarations)))
        return self._by_area

    def _recent_area_index(self, recent: _Recent) -> dict[str, list[int]]:
        if recent.by_area is None:
            decls = self._declarations
            recent.by_area = _by_area((i, decls[i].areas) for i in recent.live)
        return recent.by_area

    def _windows(self, indices: Iterable[int]) -> list[Window]:
        """The windows of `indices`, in start order (then by declaration id)."""
        order = sorted(indices, key=self._ids.__getitem__)
        order.sort(key=self._starts.__getitem__)
        made = self._made
        out = []
        for i in order:
            window = made.get(i)
            if window is None:
                end = self._ends[i]
                window = made.setdefault(i, Window(
                    self._declarations[i], self._ranks[i], self._starts[i],
                    None if end is _FOREVER else end))
            out.append(window)
        return out


def _ends(decls: list[Declaration], ids: list[str]) -> list[datetime]:
    """When each declaration stops holding (_FOREVER: never): the earliest of the start of the
    first of `decls` that replaces it, its expiry and its cancellation (as `end_of`).

    Passes in C over all; Python loops only over the cancelled, the replacing and the replaced.
    """
    ends = [_FOREVER if expires is None else expires for expires in map(_EXPIRES, decls)]
    cancellations = list(map(_CANCELLATION, decls))
    for i in compress(range(len(decls)), cancellations):
        at = cancellations[i].at
        if at < ends[i]:  # on a tie, the expiry (as in `end_of`)
            ends[i] = at
    first = _first_replacements(list(compress(decls, map(_REPLACES, decls))))
    if first:
        replaced = list(compress(range(len(ids)), map(set(first).__contains__, ids)))
        for i, start in zip(replaced, map(first.__getitem__, map(ids.__getitem__, replaced)),
                            strict=True):
            if start <= ends[i]:  # on a tie, the replacement (as in `end_of`)
                ends[i] = start
    return ends


def _first_replacements(replacers: list[Declaration]) -> dict[str, datetime]:
    """For each id that `replacers` replace, when the first replacement takes effect."""
    first: dict[str, datetime] = {}
    for replacer in replacers:
        start = replacer.effective
        if start is not None:
            for old in replacer.replaces:
                if start < first.setdefault(old, start):
                    first[old] = start
    return first


def _by_area(entries: Iterable[tuple[int, tuple[str, ...]]]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, codes in entries:
        for code in codes:
            found = index.get(code)
            if found is None:
                index[code] = [i]
            else:
                found.append(i)
    return index


def _utc(at: datetime) -> datetime:
    """`at` in UTC (the same instant), so that it compares with stored times the fast way."""
    return at if at.tzinfo is UTC or at.tzinfo is None else at.astimezone(UTC)


def effective_levels(tree: AreaTree, history: SchemeHistory, at: datetime) -> dict[str, Effective]:
    """The effective level of every area of `tree` at `at`."""
    direct: dict[str, tuple[int, list[Source]]] = {}
    for window in history.in_effect(at):
        for code in window.declaration.areas:
            current = direct.get(code)
            if current is None or window.rank > current[0]:
                direct[code] = (window.rank, [Source(window, code)])
            elif window.rank == current[0]:
                current[1].append(Source(window, code))

    best: dict[str, tuple[int | None, tuple[Source, ...]]] = {}
    none: tuple[int | None, tuple[Source, ...]] = (None, ())
    areas = tree.areas
    for code in tree.order:
        parent = areas[code].parent
        inherited = best[parent] if parent is not None else none
        own = direct.get(code)
        if own is None:
            best[code] = inherited
        elif inherited[0] is None or own[0] > inherited[0]:
            best[code] = (own[0], tuple(own[1]))
        elif own[0] == inherited[0]:
            best[code] = (own[0], (*own[1], *inherited[1]))
        else:
            best[code] = inherited

    return {
        code: Effective(code, history.level_of_rank(rank), sources)
        for code, (rank, sources) in best.items()
    }


def effective_level(tree: AreaTree, history: SchemeHistory, code: str, at: datetime) -> Effective:
    """The effective level of one area at `at` (same rule as effective_levels)."""
    chain = [code, *tree.ancestors(code)]
    holding = history.naming_at(chain, at)
    if not holding:
        return Effective(code, history.level_of_rank(None), ())
    top = max(w.rank for w in holding)
    sources = tuple(
        Source(w, via)
        for via in chain
        for w in holding
        if w.rank == top and via in w.declaration.areas
    )
    return Effective(code, history.level_of_rank(top), sources)


def timeline(tree: AreaTree, history: SchemeHistory, code: str) -> list[Period]:
    """The unbroken periods of one area's level, oldest first, including scheduled ones.

    A sweep over the starts and ends of the windows that reach the area, keeping a count
    of holding windows per rank.
    """
    changes: dict[datetime, list[tuple[int, int]]] = {}
    for rank, start, end in history.spans([code, *tree.ancestors(code)]):
        if end is not None and end <= start:
            continue  # cancelled or replaced before it began: never held
        changes.setdefault(start, []).append((rank, 1))
        if end is not None:
            changes.setdefault(end, []).append((rank, -1))
    holding: Counter[int] = Counter()
    periods = [Period(history.level_of_rank(None), None, None)]
    for at in sorted(changes):
        for rank, delta in changes[at]:
            holding[rank] += delta
        top = max((rank for rank, count in holding.items() if count > 0), default=None)
        level = history.level_of_rank(top)
        if level is not periods[-1].level:
            periods[-1] = Period(periods[-1].level, periods[-1].start, at)
            periods.append(Period(level, at, None))
    return periods


def period_at(periods: list[Period], at: datetime) -> Period:
    """The period containing `at` (periods from `timeline` cover all time)."""
    return next(p for p in periods if p.contains(at))
