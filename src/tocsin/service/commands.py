"""The commands that change tocsin's state. Each is one transaction (see change.py)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from tocsin import settings
from tocsin.domain.area import Area, AreaTree
from tocsin.domain.declaration import (
    Declaration,
    DeclarationRequest,
    Status,
    cancelled,
    publish_as,
    request_of,
)
from tocsin.domain.errors import Conflict, TocsinError, unknown
from tocsin.domain.scheme import Scheme
from tocsin.domain.times import iso
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file
from tocsin.service import exports
from tocsin.service.change import Change, change
from tocsin.service.queries import SCHEMES_HINT
from tocsin.store import records
from tocsin.store import tables as t
from tocsin.store.database import check_current, migrate


@dataclass(frozen=True)
class InitReport:
    before: str | None
    after: str
    schemes_installed: tuple[str, ...]


def initialise(engine: Engine, *, now: datetime, actor: str) -> InitReport:
    """Create or upgrade the database, then install the shipped schemes it lacks."""
    before, after = migrate(engine)
    installed = []
    with change(engine, now=now, actor=actor) as unit:
        if before != after:
            unit.audit("database.migrated", after, {"from": before, "to": after})
        present = set(records.load_scheme_documents(unit.conn))
        for path in builtin_scheme_files():
            scheme, document = load_scheme_file(path)
            if scheme.key not in present:
                _save_scheme(unit, scheme, document, existed=False)
                installed.append(scheme.key)
    return InitReport(before, after, tuple(installed))


def import_scheme(
    engine: Engine, scheme: Scheme, document: dict[str, Any], *, now: datetime, actor: str
) -> str:
    """Add or update a scheme; returns 'created', 'updated' or 'unchanged'.

    Refuses an update that drops a level that declarations already use.
    """
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        stored = records.load_scheme_documents(unit.conn).get(scheme.key)
        if stored == document:
            return "unchanged"
        if stored is not None:
            used = set(unit.conn.execute(
                select(t.declarations.c.level).where(t.declarations.c.scheme == scheme.key)
            ).scalars())
            kept = {level.key for level in scheme.levels}
            if used - kept:
                raise Conflict(
                    f"scheme {scheme.key!r} would lose level(s) {', '.join(sorted(used - kept))} "
                    "that declarations use",
                    "keep those levels in the file; published history cannot change",
                )
        _save_scheme(unit, scheme, document, existed=stored is not None)
        return "updated" if stored is not None else "created"


def _save_scheme(unit: Change, scheme: Scheme, document: dict[str, Any], *, existed: bool) -> None:
    if existed:
        unit.conn.execute(update(t.schemes).where(t.schemes.c.key == scheme.key)
                          .values(document=document, updated_at=unit.now))
    else:
        unit.conn.execute(insert(t.schemes).values(
            key=scheme.key, document=document, created_at=unit.now, updated_at=unit.now))
    digest = hashlib.sha256(
        json.dumps(document, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    unit.audit("scheme.updated" if existed else "scheme.created", scheme.key,
               {"levels": [level.key for level in scheme.levels], "sha256": digest})
    unit.emit("scheme.changed", {"scheme": scheme.key})


@dataclass(frozen=True)
class AreasReport:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]


def import_areas(engine: Engine, areas: Sequence[Area], *, now: datetime,
                 actor: str) -> AreasReport:
    """Add or update areas; the whole import is refused if the resulting tree is not valid."""
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        tree = records.load_tree(unit.conn)
        merged = tree.merged(areas)
        created = tuple(a.code for a in areas if a.code not in tree)
        updated = tuple(a.code for a in areas if a.code in tree and tree.areas[a.code] != a)
        unchanged = tuple(a.code for a in areas if a.code in tree and tree.areas[a.code] == a)
        changed = [a for a in areas if a.code not in unchanged]
        if changed:
            records.save_areas(unit.conn, merged, changed)
            unit.audit("areas.imported", f"{len(changed)} areas",
                       {"created": list(created), "updated": list(updated)})
            unit.emit("areas.changed", {"created": list(created), "updated": list(updated)})
        return AreasReport(created, updated, unchanged)


def stamped(d: Declaration) -> Declaration:
    """A declaration being published, with the CAP sender its alert will carry for good."""
    if not d.is_published or d.cap_sender is not None:
        return d
    return replace(d, cap_sender=settings.read().cap_sender)


def new_declaration_id(now: datetime) -> str:
    """A short, unguessable, date-prefixed id: 20220107-3fa9c2d1."""
    return f"{now:%Y%m%d}-{secrets.token_hex(4)}"


def declare(
    engine: Engine, requests: Sequence[DeclarationRequest], *, now: datetime, actor: str,
    publish: bool = True,
) -> list[Declaration]:
    """Create declarations (published, or drafts) in one transaction: all or none.

    Several declarations that together replace earlier ones take over in the same instant.
    """
    check_current(engine)
    if not requests:
        raise TocsinError("no declaration given")
    with change(engine, now=now, actor=actor) as unit:
        tree = records.load_tree(unit.conn)
        schemes = records.load_schemes(unit.conn)
        made: list[Declaration] = []
        for i, request in enumerate(requests):
            with _numbered(i, len(requests)):
                scheme = scheme_of(schemes, request.scheme)
                # Declarations of this same change may replace the same earlier one.
                siblings = {d.id for d in made}
                known = {k: v for k, v in known_declarations(unit, request.replaces).items()
                         if k not in siblings}
                new_id = new_declaration_id(now)
                while records.declaration_exists(unit.conn, new_id):
                    new_id = new_declaration_id(now)
                declaration = stamped(publish_as(request, id=new_id, scheme=scheme, tree=tree,
                                                 known=known, now=now, actor=actor,
                                                 publish=publish))
            records.insert_declaration(unit.conn, declaration)
            record_declaration(unit, declaration, tree)
            made.append(declaration)
        return made


def publish(engine: Engine, ids: Sequence[str], *, now: datetime, actor: str) -> list[Declaration]:
    """Publish drafts, all in one transaction; each is checked again as of now."""
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        tree = records.load_tree(unit.conn)
        schemes = records.load_schemes(unit.conn)
        drafts = records.load_declarations(unit.conn, ids=list(ids))
        done = []
        for i, draft_id in enumerate(ids):
            with _numbered(i, len(ids)):
                draft = drafts.get(draft_id)
                if draft is None:
                    raise unknown("declaration", draft_id, drafts, "try 'tocsin history AREA'")
                if draft.status is not Status.DRAFT:
                    raise Conflict(f"declaration {draft_id!r} is already {draft.status}")
                checked = publish_as(request_of(draft), id=draft.id,
                                     scheme=scheme_of(schemes, draft.scheme), tree=tree,
                                     known=known_declarations(unit, draft.replaces), now=now,
                                     actor=actor, publish=True)
            declaration = stamped(replace(checked, created_at=draft.created_at,
                                          created_by=draft.created_by))
            records.mark_published(unit.conn, declaration)
            record_declaration(unit, declaration, tree)
            done.append(declaration)
        return done


def cancel(engine: Engine, declaration_id: str, *, reason: str, now: datetime,
           actor: str) -> Declaration:
    """End a published declaration now, before its term; recorded with the reason."""
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        found = records.load_declarations(unit.conn, ids=[declaration_id])
        if declaration_id not in found:
            raise unknown("declaration", declaration_id, (), "try 'tocsin history AREA'")
        return record_cancellation(unit, found[declaration_id], reason)


def record_cancellation(unit: Change, declaration: Declaration, reason: str) -> Declaration:
    """Cancel a published declaration in this change: the cancellation, its CAP Cancel, the
    audit entry and the outbox event. Refuses what cannot be cancelled."""
    replacers = [d for d in records.load_replacers(unit.conn, [declaration.id]).values()
                 if d.is_published]
    result = cancelled(declaration, reason=reason, now=unit.now, actor=unit.actor,
                       replacers=replacers)
    assert result.cancellation is not None
    records.insert_cancellation(unit.conn, result.id, result.cancellation)
    exports.record_cap(unit, result, cancel=True)
    unit.audit("declaration.cancelled", result.id,
               {"scheme": result.scheme, "level": result.level,
                "at": iso(result.cancellation.at), "reason": result.cancellation.reason})
    unit.emit("declaration.cancelled", {"id": result.id, "scheme": result.scheme,
                                        "areas": list(result.areas),
                                        "at": iso(result.cancellation.at)})
    return result


def scheme_of(schemes: dict[str, Scheme], key: str) -> Scheme:
    if key not in schemes:
        raise unknown("scheme", key, schemes, SCHEMES_HINT)
    return schemes[key]


def known_declarations(unit: Change, ids: Sequence[str]) -> dict[str, Declaration]:
    """The declarations `ids` and every declaration already replacing one of them."""
    if not ids:
        return {}
    known = records.load_declarations(unit.conn, ids=list(ids))
    known.update(records.load_replacers(unit.conn, list(ids)))
    return known


def record_declaration(unit: Change, d: Declaration, tree: AreaTree) -> None:
    action = "declaration.published" if d.is_published else "declaration.drafted"
    details: dict[str, Any] = {
        "scheme": d.scheme,
        "level": d.level,
        "areas": list(d.areas),
        "effective": iso(d.effective) if d.effective else None,
        "expires": iso(d.expires) if d.expires else None,
        "replaces": list(d.replaces),
        "sender": d.sender,
        "texts": {lang: s.as_dict() for lang, s in d.texts.items()},
    }
    if d.break_glass is not None:
        details["break_glass"] = d.break_glass
    if d.published_by is not None and d.published_by != d.created_by:
        details["author"] = d.created_by
    unit.audit(action, d.id, details)
    if d.is_published:
        exports.record_cap(unit, d)
        unit.emit("declaration.published", {
            "id": d.id, "scheme": d.scheme, "level": d.level, "areas": list(d.areas),
            "covers": sorted({*d.areas, *(c for a in d.areas for c in tree.descendants(a))}),
            "effective": details["effective"], "expires": details["expires"],
            "replaces": list(d.replaces)})


class _numbered:
    """Prefix errors with the declaration's position when a change holds several."""

    def __init__(self, index: int, count: int) -> None:
        self.prefix = f"declaration {index + 1} of {count}: " if count > 1 else ""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, TocsinError) and self.prefix:
            error.problem = self.prefix + error.problem
            error.args = (error.message,)

