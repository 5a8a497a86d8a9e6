"""Read-side questions: the level where and when, why, and what happened before."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine

from tocsin.domain.area import Area, AreaTree
from tocsin.domain.audit import AuditEntry, Verdict, verify
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.errors import unknown
from tocsin.domain.resolve import (
    Effective,
    Period,
    SchemeHistory,
    effective_levels,
    period_at,
    timeline,
)
from tocsin.domain.scheme import Scheme
from tocsin.store import records
from tocsin.store.database import check_current, reading

SCHEMES_HINT = "try 'tocsin schemes list'"


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


@dataclass
class World:
    """Everything needed to answer questions, read in one consistent transaction."""

    tree: AreaTree
    schemes: dict[str, Scheme]
    declarations: dict[str, Declaration]
    _histories: dict[str, SchemeHistory] = field(default_factory=dict)

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
        used = sorted({d.scheme for d in self.declarations.values() if d.is_published})
        return used or sorted(self.schemes)

    def status(self, at: datetime, *, area: str | None = None,
               scheme: str | None = None) -> list[AreaStatus]:
        """Each area's (or one area's) level at `at`, per scheme (or one scheme)."""
        codes = [self.tree.get(area).code] if area else list(self.tree.order)
        keys = [self.scheme(scheme).key] if scheme else self.used_schemes()
        out = []
        for key in keys:
            history = self.history(key)
            levels = effective_levels(self.tree, history, at)
            for code in codes:
                periods = timeline(self.tree, history, code)
                out.append(AreaStatus(self.tree.areas[code], history.scheme, levels[code],
                                      period_at(periods, at)))
        return out

    def timeline(self, area: str, scheme: str) -> list[Period]:
        return timeline(self.tree, self.history(scheme), self.tree.get(area).code)

    def declarations_for(self, area: str) -> list[Declaration]:
        """Declarations naming the area or one of its ancestors, oldest first."""
        chain = {self.tree.get(area).code, *self.tree.ancestors(area)}
        found = [d for d in self.declarations.values() if chain.intersection(d.areas)]
        return sorted(found, key=lambda d: (d.effective or d.created_at, d.id))

    def levels_at(self, at: datetime, schemes: Iterable[str] | None = None) -> LevelMap:
        """Every area's effective level key (None: no level) at `at`, per scheme (default:
        the schemes in use)."""
        out: LevelMap = {}
        for key in self.used_schemes() if schemes is None else schemes:
            for code, effective in effective_levels(self.tree, self.history(key), at).items():
                out[(key, code)] = effective.level.key if effective.level else None
        return out

    def next_change_after(self, at: datetime) -> datetime | None:
        """When some level next starts or ends without anyone writing, if ever."""
        candidates = [self.history(key).next_change_after(at) for key in self.schemes]
        return min((c for c in candidates if c is not None), default=None)

    def replaced_by(self, declaration_id: str) -> list[str]:
        """Ids of the published declarations replacing this one, sorted."""
        return sorted(d.id for d in self.declarations.values()
                      if d.is_published and declaration_id in d.replaces)


def load_world(engine: Engine, *, published_only: bool = False) -> World:
    """The world; the public side sees published declarations only."""
    check_current(engine)
    with reading(engine) as conn:
        return world_of(conn, published_only=published_only)


def world_of(conn: Connection, *, published_only: bool = False) -> World:
    """The world as `conn`'s transaction sees it."""
    statuses = [Status.PUBLISHED] if published_only else None
    return World(records.load_tree(conn), records.load_schemes(conn),
                 records.load_declarations(conn, statuses=statuses))


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
