"""Closed history: the published declarations that were over before a server read the store.

A server's world holds only the declarations that may still hold when it starts (and what
happens after), so that start-up and memory do not grow with the years of history behind
it. Questions that reach back further (an area's past periods, `?at=` an earlier instant, a
declaration that ended long ago, the history listings) ask the `Archive`, which reads just
what they need from the store. Nothing over by `until` changes any more, so what it reads is
kept (bounded) for the life of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Engine

from tocsin.domain.declaration import Declaration, Status
from tocsin.store import records
from tocsin.store.database import reading

KEPT_AREAS = 4_096
"""Areas whose closed history's first and last end are kept, and windows of it (the
country's and the regions' are asked for by every page beneath them, so they stay)."""
KEPT_DECLARATIONS = 50_000
SUGGESTED = 1_000
"""Ids read to suggest what an unknown id may have meant."""
KEPT_INSTANTS = 8
"""Past instants whose holding declarations are kept (`?at=` on the whole tree)."""


K = TypeVar("K")
V = TypeVar("V")


class _Kept(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)


class Archive:
    """The published declarations over by `until`, read from the store on demand."""

    def __init__(self, engine: Engine, until: datetime, schemes: Sequence[str],
                 last_end: datetime | None) -> None:
        self.engine = engine
        self.until = until
        self.schemes = list(schemes)
        """Keys of the schemes with a published declaration when the archive was opened."""
        self.last_end = last_end
        """When the last declaration over by `until` ended."""
        self._spans: _Kept[str, tuple[datetime | None, datetime | None]] = _Kept(KEPT_AREAS)
        self._windows: _Kept[tuple[str, datetime | None], tuple[list[str], list[str]]] = (
            _Kept(KEPT_AREAS))
        self._by_id: _Kept[str, Declaration] = _Kept(KEPT_DECLARATIONS)
        self._replacers: _Kept[str, list[str]] = _Kept(KEPT_DECLARATIONS)
        self._holding: _Kept[datetime, dict[str, Declaration]] = _Kept(KEPT_INSTANTS)

    @classmethod
    def open(cls, engine: Engine, until: datetime) -> Archive:
        with reading(engine) as conn:
            return cls(engine, until, records.published_schemes(conn),
                       records.last_end_by(conn, until))

    def _span(self, code: str) -> tuple[datetime | None, datetime | None]:
        """When the first and the last closed declaration naming `code` ended."""
        found = self._spans.get(code)
        if found is None:
            with reading(self.engine) as conn:
                found = records.closed_span(conn, code, self.until)
            self._spans.put(code, found)
        return found

    def _closed(self, code: str, since: datetime | None) -> tuple[list[str], list[str]]:
        """The ids of the closed declarations naming `code` (that ended after `since`, if
        given), and of the declarations replacing them. A region under years of history
        reads only the window asked for."""
        found = self._windows.get((code, since))
        if found is None:
            first, _ = self._span(code)
            if first is None:
                found = ([], [])
            else:
                with reading(self.engine) as conn:
                    keys = [key for _, key in records.closed_of(conn, code, self.until,
                                                                 since)]
                    replacing = records.replacing_of(conn, keys) if keys else {}
                found = (keys, [r for key in keys for r in replacing.get(key, ())])
            self._windows.put((code, since), found)
        return found

    def naming(self, codes: Iterable[str],
               since: datetime | None = None) -> dict[str, Declaration]:
        """The closed declarations naming any of `codes` (that ended after `since`, if
        given), with the declarations replacing them (which say when they ended)."""
        ids: list[str] = []
        for code in codes:
            keys, replacing = self._closed(code, since)
            ids += keys
            ids += replacing
        return self.declarations(dict.fromkeys(ids)) if ids else {}

    def complete_after(self, codes: Iterable[str], since: datetime) -> bool:
        """Whether no closed declaration naming any of `codes` ended at or before `since`
        (then `naming(codes, since)` is all there is)."""
        return all(first is None or first > since for first, _ in map(self._span, codes))

    def declarations(self, ids: Iterable[str]) -> dict[str, Declaration]:
        """The published declarations among `ids` (any the store has, closed or not)."""
        out: dict[str, Declaration] = {}
        missing = []
        for key in ids:
            found = self._by_id.get(key)
            if found is None:
                missing.append(key)
            else:
                out[key] = found
        if missing:
            with reading(self.engine) as conn:
                loaded = records.load_declarations(conn, ids=missing,
                                                   statuses=[Status.PUBLISHED])
            for key, d in loaded.items():
                self._by_id.put(key, d)
            out.update(loaded)
        return out

    def prefetch_spans(self, codes: Sequence[str]) -> None:
        """Read, in one statement, when the closed history of each of `codes` begins and
        ends (`_span`): the static mirror asks it of every area."""
        wanted = [code for code in codes if self._spans.get(code) is None]
        if wanted:
            with reading(self.engine) as conn:
                found = records.closed_spans(conn, wanted, self.until)
            for code, span in found.items():
                self._spans.put(code, span)

    def prefetch(self, ids: Sequence[str]) -> None:
        """Read the declarations `ids` and those replacing them in a few statements, so
        that asking for each of them (`declarations`, `replacing`) reads nothing more: the
        static mirror asks that of every declaration ever published."""
        wanted = [key for key in ids if self._by_id.get(key) is None]
        with reading(self.engine) as conn:
            loaded = (records.load_declarations(conn, ids=wanted, statuses=[Status.PUBLISHED])
                      if wanted else {})
            replacing = records.replacing_of(conn, ids)
            newer = [new for news in replacing.values() for new in news
                     if new not in loaded and self._by_id.get(new) is None]
            if newer:
                loaded.update(records.load_declarations(conn, ids=newer,
                                                        statuses=[Status.PUBLISHED]))
        for key, d in loaded.items():
            self._by_id.put(key, d)
        for key in ids:  # only published declarations are read and kept
            self._replacers.put(key, sorted(
                new for new in replacing.get(key, ())
                if new in loaded or self._by_id.get(new) is not None))

    def replacing(self, declaration_id: str) -> list[str]:
        """Ids of the published declarations replacing `declaration_id`, sorted."""
        found = self._replacers.get(declaration_id)
        if found is None:
            with reading(self.engine) as conn:
                found = records.replacing_ids(conn, declaration_id)
            self._replacers.put(declaration_id, found)
        return list(found)

    def holding_at(self, at: datetime) -> dict[str, Declaration]:
        """The published declarations holding at `at` (closed or not), with what replaces
        them."""
        found = self._holding.get(at)
        if found is None:
            with reading(self.engine) as conn:
                found = records.load_declarations(conn, holding_at=at)
            self._holding.put(at, found)
        return found

    def ended(self, codes: Iterable[str]) -> datetime | None:
        """When the last closed declaration naming any of `codes` ended."""
        return max((last for _, last in map(self._span, codes) if last is not None),
                   default=None)

    def ended_after(self, after: datetime) -> set[str]:
        """The areas named by a closed declaration that ended after `after`."""
        if after >= self.until:
            return set()
        with reading(self.engine) as conn:
            codes = records.closed_ends_after(conn, after, self.until)
        return codes

    def search(self, *, scheme: str | None, codes: Sequence[str] | None,
               since: datetime | None, until: datetime | None) -> dict[str, Declaration]:
        """Published declarations of `scheme` naming any of `codes`, taking effect in
        [since, until) (each filter only if given), from the whole store."""
        with reading(self.engine) as conn:
            return records.load_declarations(
                conn, statuses=[Status.PUBLISHED], scheme=scheme, area_codes=codes,
                effective_from=since, effective_until=until)

    def ids_like(self, prefix: str) -> list[str]:
        """Up to SUGGESTED published ids starting with `prefix`."""
        with reading(self.engine) as conn:
            return records.published_ids_from(conn, prefix, SUGGESTED)

    def page(self, *, scheme: str | None, codes: Sequence[str] | None,
             since: datetime | None, until: datetime | None, limit: int | None,
             offset: int) -> tuple[int, list[Declaration]]:
        """How many published declarations match, and `limit` of them from `offset` on,
        newest first (see `records.published_page`), from the whole store."""
        with reading(self.engine) as conn:
            total, ids = records.published_page(conn, scheme=scheme, codes=codes,
                                                since=since, until=until, limit=limit,
                                                offset=offset)
            found = records.load_declarations(conn, ids=ids) if ids else {}
        return total, [found[key] for key in ids if key in found]

    def published_ids(self) -> list[tuple[str, bool]]:
        """Every published declaration's id, and whether it was cancelled."""
        with reading(self.engine) as conn:
            return records.published_ids(conn)
