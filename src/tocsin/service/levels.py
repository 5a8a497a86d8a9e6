"""Announcing level changes: the effective levels, compared with those last announced.

Every change the public sees (a publication, a cancellation, a new scheme) checks the levels
in its own transaction, so that the change and its `levels.changed` event commit together.
Levels also move with nobody writing, when a term starts or ends: the schedule row says when
that happens next, and the worker runs the same check then. The check is idempotent, so any
number of workers may run it; each change of level is announced once.

The same check finds the declarations whose term ends within the reminder window and queues
one `term.ending` reminder for each of their issuers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update

from tocsin.domain import notify
from tocsin.domain.declaration import Declaration
from tocsin.service.queries import LevelMap, World, world_of
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import writing
from tocsin.store.listen import NOTIFY_CHANNEL

REMIND_BEFORE = timedelta(hours=24)
KEEP = 1000


def check(conn: Connection, now: datetime, *, remind_before: timedelta = REMIND_BEFORE
          ) -> list[dict[str, str | None]]:
    """Announce what moved since the last check, queue due reminders and set the next
    check; returns the level changes announced. Runs inside the caller's write transaction."""
    schedule = conn.execute(select(t.schedule).where(t.schedule.c.id == 1)
                            .with_for_update()).one()
    # Levels now and what comes next need only what may still hold: at a million closed
    # declarations, reading them all would make every write take minutes.
    world = world_of(conn, published_only=True, holding_from=now)
    current = world.levels_at(now, schemes=sorted(world.schemes))
    announced: LevelMap = {(r.scheme, r.area_code): r.level
                           for r in conn.execute(select(t.announced_levels))}
    changes = notify.level_changes(announced, current)
    if schedule.baselined:
        # A pair never announced (a new scheme or area) starts at its baseline silently.
        loud = [c for c in changes if (c["scheme"], c["area"]) in announced
                or c["to"] != _baseline(world, str(c["scheme"]))]
    else:
        loud = []
    if changes:
        _remember(conn, announced, changes)
    if loud:
        _emit(conn, now, notify.LEVELS_CHANGED, {"at": now.isoformat(), "changes": loud})
    reminders, next_reminder = _reminders(conn, world, now, remind_before)
    for payload in reminders:
        _emit(conn, now, notify.TERM_ENDING, payload)
    upcoming = [x for x in (world.next_change_after(now), next_reminder) if x is not None]
    conn.execute(update(t.schedule).where(t.schedule.c.id == 1).values(
        next_check=min(upcoming, default=None), baselined=True))
    return loud


def run_due(engine: Engine, now: datetime, *, remind_before: timedelta = REMIND_BEFORE
            ) -> list[dict[str, str | None]] | None:
    """The scheduler's step: check if the schedule says so; None when nothing was due."""
    with engine.connect() as conn:
        row = conn.execute(select(t.schedule.c.next_check, t.schedule.c.baselined)
                           .where(t.schedule.c.id == 1)).one()
    if row.baselined and (row.next_check is None or row.next_check > now):
        return None
    with writing(engine) as conn:
        announced = check(conn, now, remind_before=remind_before)
        if announced:  # servers rebuild their snapshot and tell open pages
            conn.execute(update(t.state).where(t.state.c.id == 1)
                         .values(version=t.state.c.version + 1))
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return announced


def announcements(engine: Engine, *, after: int | None = None, last: int | None = None
                  ) -> list[tuple[int, dict[str, Any]]]:
    """`levels.changed` events in order: those after the id `after`, or the `last` few."""
    o = t.outbox
    query = select(o.c.id, o.c.payload).where(o.c.topic == notify.LEVELS_CHANGED)
    if after is not None:
        query = query.where(o.c.id > after).order_by(o.c.id).limit(KEEP)
    else:
        query = query.order_by(o.c.id.desc()).limit(last or KEEP)
    with engine.connect() as conn:
        rows = [(int(r.id), dict(r.payload)) for r in conn.execute(query)]
    return sorted(rows)


def next_check(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(t.schedule.c.next_check).where(t.schedule.c.id == 1)).scalar_one()
        return value


def _baseline(world: World, scheme: str) -> str | None:
    level = world.scheme(scheme).baseline_level
    return level.key if level else None


def _remember(conn: Connection, announced: LevelMap,
              changes: list[dict[str, str | None]]) -> None:
    for c in changes:
        key = (c["scheme"], c["area"])
        table = t.announced_levels
        if key in announced:
            conn.execute(update(table).where(table.c.scheme == key[0],
                                             table.c.area_code == key[1])
                         .values(level=c["to"]))
        else:
            conn.execute(insert(table).values(scheme=key[0], area_code=key[1], level=c["to"]))


def _emit(conn: Connection, now: datetime, topic: str, payload: dict[str, Any]) -> None:
    state = records.read_state(conn)
    conn.execute(insert(t.outbox).values(created_at=now, topic=topic, payload=payload,
                                         audit_seq=int(state.audit_seq or 0)))


def _reminders(conn: Connection, world: World, now: datetime, before: timedelta
               ) -> tuple[list[dict[str, Any]], datetime | None]:
    """Reminders due now (each once per declaration and end), and when the next one is due."""
    sent = {(r.declaration_id, r.expires_at) for r in conn.execute(select(t.reminders))}
    due: list[Declaration] = []
    later: list[datetime] = []
    for key in world.schemes:
        for window in world.history(key).windows:
            d = window.declaration
            if d.expires is None or window.end != d.expires or d.expires <= now:
                continue  # open-ended, replaced, cancelled or over
            if (d.id, d.expires) in sent:
                continue
            if d.expires - before <= now:
                due.append(d)
            else:
                later.append(d.expires - before)
    emails = {r.name: r.email for r in conn.execute(select(t.users.c.name, t.users.c.email))}
    out = []
    for d in due:
        assert d.expires is not None
        conn.execute(insert(t.reminders).values(declaration_id=d.id, expires_at=d.expires,
                                                sent_at=now))
        issuer = d.created_by.partition(":")[2] if ":" in d.created_by else d.created_by
        email = emails.get(issuer)
        if email:
            out.append({"declaration": d.id, "scheme": d.scheme, "level": d.level,
                        "areas": list(d.areas), "expires_at": d.expires.isoformat(),
                        "issuer": issuer, "email": email})
    return out, min(later, default=None)

