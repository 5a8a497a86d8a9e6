"""A scheme's history after a few changes, without building the whole index again.

A change publishes or cancels a handful of declarations; the history of a scheme may hold a
million. `LayeredHistory` answers every question `SchemeHistory` answers from the previous
snapshot's history (the base, whose indexes were built once and stay shared) and a small
history of the declarations the changes touched (the delta), where a declaration in the
delta hides its older self in the base. Published windows never change except by what the
delta holds: a declaration's end moves only with its own cancellation or a replacement, and
every declaration a change touches is put in the delta together with everything that
replaces it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime

from tocsin.domain.declaration import Declaration
from tocsin.domain.resolve import SchemeHistory, Window
from tocsin.domain.scheme import Level

FOLD_AT = 2_000
"""Past this many declarations in the delta, a full history is built instead."""


def _order(window: Window) -> tuple[datetime, str]:
    return window.start, window.declaration.id


class LayeredHistory(SchemeHistory):
    """The base history with the delta's declarations in place of their older selves."""

    def __init__(self, base: SchemeHistory, delta: Iterable[Declaration]) -> None:
        # Deliberately not SchemeHistory.__init__: nothing of the base is built again.
        self.scheme = base.scheme
        self.base = base
        self.changed: dict[str, Declaration] = {d.id: d for d in delta}
        self.delta = SchemeHistory(base.scheme, self.changed.values())
        self._hidden = frozenset(self.changed)
        self._whole: tuple[Window, ...] | None = None

    def _merge(self, older: list[Window], newer: list[Window]) -> list[Window]:
        kept = [w for w in older if w.declaration.id not in self._hidden]
        return list(heapq.merge(kept, newer, key=_order)) if newer else kept

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def windows(self) -> tuple[Window, ...]:
        if self._whole is None:
            self._whole = tuple(self._merge(list(self.base.windows), list(self.delta.windows)))
        return self._whole

    def in_effect(self, at: datetime) -> list[Window]:
        return self._merge(self.base.in_effect(at), self.delta.in_effect(at))

    def ending_after(self, at: datetime) -> list[Window]:
        return self._merge(self.base.ending_after(at), self.delta.ending_after(at))

    def naming(self, codes: Iterable[str]) -> list[Window]:
        wanted = list(codes)
        return self._merge(self.base.naming(wanted), self.delta.naming(wanted))

    def naming_at(self, codes: Iterable[str], at: datetime) -> list[Window]:
        wanted = list(codes)
        return self._merge(self.base.naming_at(wanted, at), self.delta.naming_at(wanted, at))

    def next_change_after(self, at: datetime) -> datetime | None:
        # The base may name an instant a hidden window no longer has: one rebuild too many,
        # never one too few.
        found = [t for t in (self.base.next_change_after(at), self.delta.next_change_after(at))
                 if t is not None]
        return min(found, default=None)

    def last_change_until(self, at: datetime) -> datetime | None:
        found = [t for t in (self.base.last_change_until(at), self.delta.last_change_until(at))
                 if t is not None]
        return max(found, default=None)

    def level_of_rank(self, rank: int | None) -> Level | None:
        return self.base.level_of_rank(rank)


def with_changes(history: SchemeHistory, changed: Iterable[Declaration],
                 declarations: Mapping[str, Declaration],
                 replacers: Mapping[str, Iterable[str]]) -> SchemeHistory:
    """`history` after `changed` (new, cancelled) declarations of its scheme, given every
    declaration now (`declarations`) and who replaces whom (`replacers`).

    The delta holds the changed declarations, those they replace, and everything that
    replaces any of these, so that every end in it is known; past FOLD_AT of them, or when
    nothing changed, a plain history is the answer.
    """
    key = history.scheme.key
    base, delta = history, {}
    if isinstance(history, LayeredHistory):
        base, delta = history.base, dict(history.changed)
    queue = [d.id for d in changed if d.scheme == key]
    if not queue:
        return history
    for d in changed:
        if d.scheme == key:
            queue.extend(d.replaces)
    while queue:
        found = declarations.get(queue.pop())
        if found is None or found.scheme != key:
            continue
        if found.id in delta and delta[found.id] is found:
            continue
        delta[found.id] = found
        queue.extend(replacers.get(found.id, ()))
        if len(delta) > FOLD_AT:
            return SchemeHistory(history.scheme, declarations.values())
    return LayeredHistory(base, delta.values())
