"""Declaring as a signed-in person: drafts, the two-person rule, break-glass, approval.

The same functions serve the JSON API and the console; the local CLI uses commands.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Engine

from tocsin.domain import access
from tocsin.domain.access import Principal, Scope, outside
from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import (
    CancelRequest,
    Declaration,
    DeclarationRequest,
    Status,
    cancelled,
    edited,
    end_of,
    publish_as,
    published,
    rejected,
    request_of,
    submitted,
)
from tocsin.domain.errors import Conflict, InvalidInput, TocsinError, unknown
from tocsin.domain.scheme import Scheme
from tocsin.domain.times import iso
from tocsin.service import levels
from tocsin.service.change import Change, change
from tocsin.service.commands import (
    known_declarations,
    new_declaration_id,
    record_cancellation,
    record_declaration,
    scheme_of,
    stamped,
)
from tocsin.store import records
from tocsin.store.database import check_current, reading


@dataclass(frozen=True)
class Outcome:
    declaration: Declaration
    needs_approval: bool
    """True when the declaration (or its cancellation) now waits for a second person."""


def _load(unit: Change, principal: Principal, declaration_id: str) -> Declaration:
    """The declaration, if `principal` may see it; otherwise as if it did not exist."""
    found = records.load_declarations(unit.conn, ids=[declaration_id]).get(declaration_id)
    if found is None or not _seen_by(principal, records.load_tree(unit.conn), found, _replaced(
            unit, found)):
        raise unknown("declaration", declaration_id, (), "see the console's list")
    return found


def _replaced(unit: Change, d: Declaration) -> list[Declaration]:
    return list(records.load_declarations(unit.conn, ids=list(d.replaces)).values())


def _check_areas(principal: Principal, tree: AreaTree, d: Declaration,
                 replaced: list[Declaration]) -> None:
    """The issuer's jurisdiction must hold the new areas and every area it takes over from."""
    access.may_draft(principal, tree, access.at_stake(d, replaced))


def create(engine: Engine, principal: Principal, request: DeclarationRequest, *,
           now: datetime, submit: bool, break_glass: str | None = None) -> Outcome:
    """Write a draft; with `submit`, publish it at once or queue it for approval."""
    check_current(engine)
    if break_glass is not None:
        access.may_break_glass(principal, break_glass)
        if not submit:
            raise InvalidInput("a break-glass reason was given for a draft",
                               "submit it to publish alone, or leave the reason out")
    with change(engine, now=now, actor=principal.actor) as unit:
        tree = records.load_tree(unit.conn)
        scheme = scheme_of(records.load_schemes(unit.conn), request.scheme)
        draft_id = new_declaration_id(now)
        while records.declaration_exists(unit.conn, draft_id):
            draft_id = new_declaration_id(now)
        draft = publish_as(request, id=draft_id, scheme=scheme, tree=tree,
                           known=known_declarations(unit, request.replaces), now=now,
                           actor=principal.actor, publish=False)
        replaced = _replaced(unit, draft)
        _check_areas(principal, tree, draft, replaced)
        if not submit:
            records.insert_declaration(unit.conn, draft)
            record_declaration(unit, draft, tree)
            return Outcome(draft, False)
        records.insert_declaration(unit.conn, draft)
        outcome = _submit(unit, principal, draft, scheme, tree, replaced, break_glass)
        if outcome.declaration.status is Status.PENDING:
            records.update_unpublished(unit.conn, outcome.declaration)
        else:
            records.mark_published(unit.conn, outcome.declaration)
        return outcome


def _submit(unit: Change, principal: Principal, draft: Declaration, scheme: Scheme,
            tree: AreaTree, replaced: list[Declaration], break_glass: str | None) -> Outcome:
    """Publish now (no approval needed, or break-glass) or mark pending; audits either way."""
    needed = access.needs_approval(scheme, scheme.approval, tree, draft, replaced,
                                   now=unit.now)
    if needed and break_glass is None:
        pending = submitted(draft, now=unit.now)
        unit.audit("declaration.submitted", pending.id, {
            "scheme": pending.scheme, "level": pending.level, "areas": list(pending.areas),
            "revision": pending.revision, "texts": _texts(pending)})
        return Outcome(pending, True)
    if break_glass is not None:
        unit.audit("declaration.break-glass", draft.id, {
            "reason": break_glass.strip(), "approval_needed": needed})
    result = _publish(unit, draft, scheme, tree, unit.actor,
                      break_glass.strip() if break_glass is not None else None)
    return Outcome(result, False)


def _publish(unit: Change, d: Declaration, scheme: Scheme, tree: AreaTree, actor: str,
             break_glass: str | None) -> Declaration:
    checked = publish_as(request_of(d), id=d.id, scheme=scheme, tree=tree,
                         known=known_declarations(unit, d.replaces), now=unit.now,
                         actor=actor, publish=True)
    result = stamped(replace(published(d, now=unit.now, actor=actor),
                             effective=checked.effective, break_glass=break_glass))
    record_declaration(unit, result, tree)
    return result


def _texts(d: Declaration) -> dict[str, dict[str, str]]:
    return {lang: s.as_dict() for lang, s in d.texts.items()}


def edit(engine: Engine, principal: Principal, declaration_id: str,
         request: DeclarationRequest, *, now: datetime) -> Declaration:
    """The author changes a draft or pending declaration; a pending one stays pending."""
    check_current(engine)
    with change(engine, now=now, actor=principal.actor) as unit:
        current = _load(unit, principal, declaration_id)
        access.may_edit(principal, current)
        tree = records.load_tree(unit.conn)
        scheme = scheme_of(records.load_schemes(unit.conn), request.scheme)
        changed = edited(current, request, scheme=scheme, tree=tree, now=now)
        _check_areas(principal, tree, changed, _replaced(unit, changed))
        records.update_unpublished(unit.conn, changed)
        unit.audit("declaration.edited", changed.id, {
            "scheme": changed.scheme, "level": changed.level, "areas": list(changed.areas),
            "revision": changed.revision, "status": changed.status.value,
            "effective": iso(changed.effective) if changed.effective else None,
            "expires": iso(changed.expires) if changed.expires else None,
            "texts": _texts(changed)})
        return changed


def submit(engine: Engine, principal: Principal, declaration_id: str, *, now: datetime,
           break_glass: str | None = None) -> Outcome:
    """The author sends a draft on: published at once, or waiting for approval."""
    check_current(engine)
    if break_glass is not None:
        access.may_break_glass(principal, break_glass)
    with change(engine, now=now, actor=principal.actor) as unit:
        current = _load(unit, principal, declaration_id)
        access.may_edit(principal, current)
        tree = records.load_tree(unit.conn)
        scheme = scheme_of(records.load_schemes(unit.conn), current.scheme)
        replaced = _replaced(unit, current)
        _check_areas(principal, tree, current, replaced)
        if current.status is Status.PENDING and break_glass is None:
            raise Conflict(f"declaration {declaration_id!r} already waits for approval",
                           "an approver decides next")
        outcome = _submit(unit, principal, replace(current, status=Status.DRAFT), scheme, tree,
                          replaced, break_glass)
        if outcome.declaration.status is Status.PENDING:
            records.update_unpublished(unit.conn, outcome.declaration)
        else:
            records.mark_published(unit.conn, outcome.declaration)
        return outcome


def approve(engine: Engine, principal: Principal, declaration_id: str, *, now: datetime,
            revision: int | None = None) -> Declaration:
    """A second person approves a pending declaration (it publishes) or cancellation."""
    check_current(engine)
    with change(engine, now=now, actor=principal.actor) as unit:
        current = _load(unit, principal, declaration_id)
        tree = records.load_tree(unit.conn)
        scheme = scheme_of(records.load_schemes(unit.conn), current.scheme)
        if current.status is Status.PENDING:
            access.may_approve(principal, tree, current, current.created_by,
                               access.at_stake(current, _replaced(unit, current)))
            if revision is not None and revision != current.revision:
                raise Conflict(f"declaration {declaration_id!r} changed after you read it "
                               f"(revision {current.revision}, you approved {revision})",
                               "read it again, then decide")
            unit.audit("declaration.approved", current.id, {
                "author": current.created_by, "revision": current.revision})
            result = _publish(unit, current, scheme, tree, principal.actor, None)
            records.mark_published(unit.conn, result)
            return result
        if current.cancel_request is not None:
            access.may_approve(principal, tree, current, current.cancel_request.by,
                               current.areas)
            asked = current.cancel_request
            unit.audit("cancellation.approved", current.id, {"asked_by": asked.by})
            records.delete_cancel_request(unit.conn, current.id)
            return record_cancellation(unit, replace(current, cancel_request=None), asked.reason)
        raise Conflict(f"declaration {declaration_id!r} is {current.status} and has no "
                       "cancellation waiting", "there is nothing to approve")


def reject(engine: Engine, principal: Principal, declaration_id: str, *, reason: str,
           now: datetime) -> Declaration:
    """A second person turns down a pending declaration or cancellation, saying why."""
    check_current(engine)
    if not reason.strip():
        raise InvalidInput("rejection reason is empty", "say why, so the author can act on it")
    with change(engine, now=now, actor=principal.actor) as unit:
        current = _load(unit, principal, declaration_id)
        tree = records.load_tree(unit.conn)
        if current.status is Status.PENDING:
            access.may_approve(principal, tree, current, current.created_by,
                               access.at_stake(current, _replaced(unit, current)))
            result = rejected(current, reason=reason, now=now, actor=principal.actor)
            records.update_unpublished(unit.conn, result)
            unit.audit("declaration.rejected", result.id, {
                "author": result.created_by, "reason": reason.strip()})
            return result
        if current.cancel_request is not None:
            access.may_approve(principal, tree, current, current.cancel_request.by,
                               current.areas)
            records.delete_cancel_request(unit.conn, current.id)
            unit.audit("cancellation.rejected", current.id, {
                "asked_by": current.cancel_request.by, "reason": reason.strip()})
            return replace(current, cancel_request=None)
        raise Conflict(f"declaration {declaration_id!r} is {current.status} and has no "
                       "cancellation waiting", "there is nothing to reject")


def cancel(engine: Engine, principal: Principal, declaration_id: str, *, reason: str,
           now: datetime, break_glass: str | None = None) -> Outcome:
    """End a published declaration early, or ask a second person to when the scheme says so."""
    check_current(engine)
    if break_glass is not None:
        access.may_break_glass(principal, break_glass)
    with change(engine, now=now, actor=principal.actor) as unit:
        current = _load(unit, principal, declaration_id)
        tree = records.load_tree(unit.conn)
        scheme = scheme_of(records.load_schemes(unit.conn), current.scheme)
        access.may_cancel(principal, tree, current)
        replacers = [d for d in records.load_replacers(unit.conn, [current.id]).values()
                     if d.is_published]
        cancelled(current, reason=reason, now=now, actor=principal.actor, replacers=replacers)
        if access.cancel_needs_approval(scheme, scheme.approval, current) and break_glass is None:
            if current.cancel_request is not None:
                raise Conflict(f"a cancellation of {declaration_id!r} already waits for approval",
                               "an approver decides next")
            asked = CancelRequest(at=now, reason=reason.strip(), by=principal.actor)
            records.insert_cancel_request(unit.conn, current.id, asked)
            unit.audit("cancellation.submitted", current.id, {"reason": asked.reason})
            return Outcome(replace(current, cancel_request=asked), True)
        if break_glass is not None:
            unit.audit("declaration.break-glass", current.id,
                       {"reason": break_glass.strip(), "action": "cancel"})
        if current.cancel_request is not None:
            records.delete_cancel_request(unit.conn, current.id)
        ended = record_cancellation(unit, replace(current, cancel_request=None), reason)
        return Outcome(ended, False)


@dataclass(frozen=True)
class Desk:
    """What one person sees on their console: own work, work waiting for them, and the rest."""

    mine: list[Declaration]
    to_decide: list[Declaration]
    active: list[Declaration]
    ending: list[Declaration] = field(default_factory=list)
    """In force, theirs to extend, and ending by expiry within the reminder window."""


def desk(engine: Engine, principal: Principal, *, now: datetime) -> Desk:
    check_current(engine)
    with reading(engine) as conn:
        tree = records.load_tree(conn)
        waiting = records.load_declarations(conn, statuses=[Status.DRAFT, Status.PENDING,
                                                            Status.REJECTED])
        live = records.load_declarations(conn, statuses=[Status.PUBLISHED])
    mine = [d for d in waiting.values() if d.created_by == principal.actor]
    to_decide = [d for d in [*waiting.values(), *live.values()]
                 if _may_decide(principal, tree, d, live)]
    replacers: dict[str, list[Declaration]] = {}
    for d in live.values():
        for old in d.replaces:
            replacers.setdefault(old, []).append(d)
    active = [d for d in live.values() if _holds(d, replacers.get(d.id, []), now)
              and _concerns(principal, tree, d)]
    mine.sort(key=lambda d: d.created_at, reverse=True)
    ending = [d for d in active if principal.has(Scope.DECLARE) and d.expires is not None
              and end_of(d, replacers.get(d.id, [])) == d.expires
              and d.expires - levels.REMIND_BEFORE <= now and not outside(principal, tree,
                                                                          d.areas)]
    return Desk(mine, to_decide, sorted(active, key=lambda d: d.effective or d.created_at),
                sorted(ending, key=lambda d: (d.expires, d.id)))


def _may_decide(principal: Principal, tree: AreaTree, d: Declaration,
                published: dict[str, Declaration]) -> bool:
    """Whether `principal` may approve or reject `d` (a pending declaration or cancellation)."""
    if d.status is Status.PENDING:
        author = d.created_by
        areas = access.at_stake(d, [published[i] for i in d.replaces if i in published])
    elif d.cancel_request is not None:
        author, areas = d.cancel_request.by, list(d.areas)
    else:
        return False
    try:
        access.may_approve(principal, tree, d, author, areas)
    except TocsinError:
        return False
    return True


def _concerns(principal: Principal, tree: AreaTree, d: Declaration) -> bool:
    """Whether a declaration touches the principal's jurisdiction (inside it, or holding it,
    like a countrywide level over a region); everything when they have none."""
    roots = principal.jurisdiction
    if not roots:
        return True
    return any(access.within(tree, roots, code) or access.within(tree, [code], root)
               for code in d.areas for root in roots)


def _holds(d: Declaration, replacers: list[Declaration], now: datetime) -> bool:
    end = end_of(d, replacers)
    return end is None or end > now


def get(engine: Engine, principal: Principal, declaration_id: str) -> Declaration:
    """One declaration, as `_seen_by` allows."""
    check_current(engine)
    with reading(engine) as conn:
        d = records.load_declarations(conn, ids=[declaration_id]).get(declaration_id)
        tree = records.load_tree(conn)
        replaced = (list(records.load_declarations(conn, ids=list(d.replaces),
                                                   statuses=[Status.PUBLISHED]).values())
                    if d is not None else [])
    if d is None or not _seen_by(principal, tree, d, replaced):
        raise unknown("declaration", declaration_id, (), "see the console's list")
    return d


def _seen_by(principal: Principal, tree: AreaTree, d: Declaration,
             replaced: list[Declaration]) -> bool:
    """Published declarations are seen by anyone signed in; drafts by their author; pending
    and rejected ones by their author and by those who may decide on them."""
    if d.is_published or d.created_by == principal.actor:
        return True
    if d.status is Status.DRAFT:
        return False
    published = {r.id: r for r in replaced if r.is_published}
    return _may_decide(principal, tree, replace(d, status=Status.PENDING), published)
