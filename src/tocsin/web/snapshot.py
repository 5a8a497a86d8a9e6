"""The read model: an immutable picture of everything public, and how the next one is made.

A snapshot is made from the store when a public change lands (seen through the outbox, the
log of public changes) and at the next instant some level starts or ends. The first holds
only the declarations that may still hold (closed history stays in the store, and is read
when a question reaches back into it: `service.archive`). The next snapshot is made from
the previous one: only the declarations written since are read, the areas and
schemes are shared unless they changed, and every document whose inputs did not change is
carried over as it was (same bytes, same ETag, same Last-Modified). Nothing renders up
front: a document renders on its first request, into a bounded cache. Requests only ever
read the current snapshot and never wait for the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from tocsin import settings
from tocsin.domain.audit import AuditHead
from tocsin.domain.errors import TocsinError
from tocsin.render.feeds import Publication
from tocsin.service import exports, keys, queries
from tocsin.service.archive import Archive
from tocsin.service.queries import World
from tocsin.store import records
from tocsin.store.database import reading
from tocsin.web.site import Affected, Site

log = logging.getLogger("tocsin.web")


@dataclass(frozen=True)
class Snapshot:
    version: int
    """The store's change counter when this snapshot was read."""
    outbox: int
    """The newest public change (outbox event id) this snapshot includes."""
    built_at: datetime
    world: World
    site: Site
    next_change: datetime | None
    """When some level next starts or ends without anyone writing; rebuild then."""


@dataclass(frozen=True)
class StoreState:
    """The counters a watcher compares: any change, public changes, the audit head."""

    version: int
    outbox: int
    written: datetime
    head: AuditHead | None


def read_state(conn: Connection) -> StoreState:
    state = records.read_state(conn)
    head = (AuditHead(int(state.audit_seq), state.audit_hash, state.changed_at)
            if state.audit_seq else None)
    return StoreState(int(state.version), records.newest_outbox_id(conn),
                      state.public_changed_at or state.changed_at, head)


def read_version(engine: Engine) -> StoreState:
    with reading(engine) as conn:
        return read_state(conn)


def last_change(world: World, at: datetime, written: datetime) -> datetime:
    """The latest instant at or before `at` when anything public changed."""
    latest = written
    if world.archive is not None and world.archive.last_end is not None:
        latest = max(latest, world.archive.last_end)
    for key in world.used_schemes():
        found = world.history(key).last_change_until(at)
        if found is not None and found > latest:
            latest = found
    return min(latest, at)


def build(engine: Engine, now: datetime | None = None, *, prerender: bool = False,
          config: settings.Settings | None = None,
          previous: Snapshot | None = None) -> Snapshot:
    """A snapshot of the store as of `now` (default: the clock).

    With `previous`, only what changed since it is read and rendered again (see the module
    doc); a change to areas or schemes reads everything. `config` (default: the
    environment's settings) gives the public address for absolute links and the CAP sender
    of declarations published without one. `prerender` renders every document (the static
    mirror and tests; a server never does).
    """
    at = now or datetime.now(UTC)
    config = config or settings.read()
    publication = Publication(config.public_url, config.cap_sender)
    folder = Path(config.keys_dir)
    signer = keys.document_signer(folder)  # unusable key: no new snapshot, nothing unsigned
    with reading(engine) as conn:  # one consistent view of everything read
        state = read_state(conn)
        delta = (records.public_changes_after(conn, previous.outbox)
                 if previous is not None else None)
        if delta is None:
            # What may still hold from now on; what ended before is read when asked for.
            world = queries.world_of(conn, published_only=True, holding_from=at)
            world.structure_at = records.structure_changed_at(conn)
            world.archive = Archive(engine, at, records.published_schemes(conn),
                                    records.last_end_by(conn, at))
        else:
            loaded = records.load_declarations(conn, ids=sorted(delta)) if delta else {}
            changed = {k: d for k, d in loaded.items() if d.is_published}
    affected: Affected | None = None
    if delta is None or previous is None:
        world.now = at  # levels at `at` are those at the last change before it
    else:
        since = previous.world.now or previous.built_at
        due = previous.next_change is not None and previous.next_change <= at
        crossed = previous.world.windows_crossed(since, at) if due else []
        world = previous.world.evolved(changed, at, crossed)
        if world.used_schemes() == previous.world.used_schemes():
            # A first declaration of a scheme changes which schemes every page shows.
            affected = Affected.of(world, [*changed.values(), *crossed])
    site_now = last_change(world, at, state.written)
    world.now = site_now  # nothing public changed in (site_now, at]: the same levels
    site = Site(world, site_now, site_now, state.head, publication=publication,
                cap_loader=_cap_loader(engine), signer=signer,
                keys_document=keys.public_keys_document(folder),
                push_key=previous.site.push_key if previous is not None else push_key(folder),
                previous=previous.site if previous is not None else None, affected=affected)
    snapshot = Snapshot(state.version, state.outbox, at, world, site,
                        world.next_change_after(at))
    if prerender:
        render_all(snapshot)
    return snapshot


def _cap_loader(engine: Engine) -> exports.CapLoader:
    def load(names: Iterable[str]) -> dict[str, bytes]:
        with reading(engine) as conn:
            return exports.load_documents(conn, names=list(names))
    return load


def push_key(folder: Path) -> str | None:
    """The VAPID public key the area pages hand to browsers, made on first use; None (the
    pages offer no push) when the key folder cannot hold a usable key."""
    try:
        key = keys.vapid_key(folder, create=True)
    except (TocsinError, OSError) as error:
        log.warning("browser push is off: %s", error)
        return None
    return key.public_key_b64url if key is not None else None


def render_all(snapshot: Snapshot) -> int:
    """Render every query-free document into the snapshot's site; returns how many."""
    count = 0
    for path in snapshot.site.paths():
        snapshot.site.render(path)
        count += 1
    return count
