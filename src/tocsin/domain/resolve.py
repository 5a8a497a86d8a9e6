"""Effective levels: which level holds for each area at an instant, and why.

The effective level of area A under scheme S at instant t is the highest-ranked level among
the published declarations holding at t (effective <= t < end, where end is the earliest of
expiry, cancellation and the first replacement taking effect) that name A or an ancestor of A.
Where none holds, the scheme's baseline level applies (or no level at all).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import Declaration, Status, end_of, replaced_by
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


class SchemeHistory:
    """Every published declaration of one scheme with the window in which it holds."""

    def __init__(self, scheme: Scheme, declarations: Iterable[Declaration]) -> None:
        self.scheme = scheme
        published = {
            d.id: d for d in declarations
            if d.status is Status.PUBLISHED and d.scheme == scheme.key
        }
        replacers = replaced_by(published)
        ranks = {level.key: level.rank for level in scheme.levels}
        windows = []
        for d in published.values():
            assert d.effective is not None, "published declarations have an effective time"
            replacing = replacers.get(d.id)
            if replacing is None and d.cancellation is None:
                end = d.expires  # the common case, without building a list
            else:
                end = end_of(d, [published[r] for r in replacing or ()])
            windows.append(Window(d, ranks[d.level], d.effective, end))
        # Two stable sorts order by (start, id) without building a million key tuples.
        windows.sort(key=attrgetter("declaration.id"))
        windows.sort(key=attrgetter("start"))
        self.windows: tuple[Window, ...] = tuple(windows)
        self._starts = [w.start for w in windows]
        by_end = sorted(windows, key=_end_key)
        self._by_end = tuple(by_end)
        self._ends = [_end_key(w) for w in by_end]
        self._by_rank = {level.rank: level for level in scheme.levels}
        self._by_area: dict[str, list[Window]] | None = None

    def in_effect(self, at: datetime) -> list[Window]:
        """The windows holding at `at`, in start order.

        Scans whichever is shorter: the windows started by `at`, or those not ended by it.
        """
        started = bisect_right(self._starts, at)
        ended = bisect_right(self._ends, at)
        if started <= len(self._ends) - ended:
            return [w for w in self.windows[:started] if w.end is None or at < w.end]
        found = [w for w in self._by_end[ended:] if w.start <= at]
        found.sort(key=attrgetter("declaration.id"))
        found.sort(key=attrgetter("start"))
        return found

    def naming(self, codes: Iterable[str]) -> list[Window]:
        """Windows of declarations that name any of `codes`, in start order."""
        if self._by_area is None:
            index: dict[str, list[Window]] = {}
            for w in self.windows:
                for code in w.declaration.areas:
                    index.setdefault(code, []).append(w)
            self._by_area = index
        found = {id(w): w for code in codes for w in self._by_area.get(code, ())}
        return sorted(found.values(), key=lambda w: (w.start, w.declaration.id))

    def next_change_after(self, at: datetime) -> datetime | None:
        """The first instant after `at` at which some window starts or ends, if any."""
        later = [w.start for w in self.windows if w.start > at]
        later += [w.end for w in self.windows if w.end is not None and w.end > at]
        return min(later, default=None)

    def level_of_rank(self, rank: int | None) -> Level | None:
        if rank is None:
            return self.scheme.baseline_level
        return self._by_rank[rank]


_FOREVER = datetime.max.replace(tzinfo=UTC)


def _end_key(window: Window) -> datetime:
    return _FOREVER if window.end is None else window.end


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
    holding = [w for w in history.naming(chain) if w.holds_at(at)]
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
    for w in history.naming([code, *tree.ancestors(code)]):
        if w.end is not None and w.end <= w.start:
            continue  # cancelled or replaced before it began: never held
        changes.setdefault(w.start, []).append((w.rank, 1))
        if w.end is not None:
            changes.setdefault(w.end, []).append((w.rank, -1))
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
