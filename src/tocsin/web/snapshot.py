"""The read model: an immutable picture of everything public, and the holder that swaps it.

A snapshot is built from the store after each change (seen through the state version) and at
the next instant some level starts or ends. Requests only ever read the current snapshot;
they never touch the database and never wait for a rebuild.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from tocsin import settings
from tocsin.domain.audit import AuditHead
from tocsin.domain.errors import TocsinError
from tocsin.render.feeds import Publication
from tocsin.service import exports, keys, queries
from tocsin.service.queries import World
from tocsin.store import records
from tocsin.store.database import reading
from tocsin.web.site import Site

log = logging.getLogger("tocsin.web")


@dataclass(frozen=True)
class Snapshot:
    version: int
    """The store's change counter this snapshot was built from."""
    built_at: datetime
    world: World
    site: Site
    next_change: datetime | None
    """When some level next starts or ends without anyone writing; rebuild then."""


def last_change(world: World, at: datetime, written: datetime) -> datetime:
    """The latest instant at or before `at` when anything public changed."""
    latest = written
    for key in world.schemes:
        for window in world.history(key).windows:
            for instant in (window.start, window.end):
                if instant is not None and latest < instant <= at:
                    latest = instant
    return latest


def read_version(engine: Engine) -> tuple[int, datetime, AuditHead | None]:
    with reading(engine) as conn:
        state = records.read_state(conn)
        head = (AuditHead(int(state.audit_seq), state.audit_hash, state.changed_at)
                if state.audit_seq else None)
        return int(state.version), state.public_changed_at or state.changed_at, head


def build(engine: Engine, now: datetime | None = None, *, prerender: bool = True,
          config: settings.Settings | None = None) -> Snapshot:
    """A snapshot of the store as of `now` (default: the clock), its documents rendered.

    `config` (default: the environment's settings) gives the public address for absolute
    links and the CAP sender of declarations published without one.
    """
    at = now or datetime.now(UTC)
    config = config or settings.read()
    publication = Publication(config.public_url, config.cap_sender)
    version, written, head = read_version(engine)
    world = queries.load_world(engine, published_only=True)
    folder = Path(config.keys_dir)
    signer = keys.document_signer(folder)  # unusable key: no new snapshot, nothing unsigned
    with reading(engine) as conn:
        stored = exports.load_documents(conn)
    # Documents describe the levels as of the last change: the same state always gives the
    # same bytes, whenever and wherever it is rendered (live server, static mirror).
    changed = last_change(world, at, written)
    site = Site(world, changed, changed, head, publication=publication, cap_documents=stored,
                signer=signer, keys_document=keys.public_keys_document(folder),
                push_key=push_key(folder))
    snapshot = Snapshot(version, at, world, site, world.next_change_after(at))
    if prerender:
        render_all(snapshot)
    return snapshot


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
