"""Declarations: one authority's statement that a level holds for some areas, and its rules.

A published declaration is immutable. A correction, extension or lowering is a new declaration
that replaces it (CAP Update); ending one early is a cancellation (CAP Cancel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from tocsin.domain.area import AreaTree
from tocsin.domain.errors import Conflict, InvalidInput, unknown
from tocsin.domain.scheme import Scheme
from tocsin.domain.times import format_duration, iso

HEADLINE_MAX = 160
"""CAP 1.2 advises headlines of fewer than 160 characters (text messages)."""


class Status(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    """Submitted; waits for a second person's approval."""
    PUBLISHED = "published"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Statement:
    """The public texts of a declaration in one language."""

    headline: str
    description: str = ""
    measures: str = ""
    instructions: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"headline": self.headline, "description": self.description,
                "measures": self.measures, "instructions": self.instructions}


@dataclass(frozen=True, slots=True)
class Cancellation:
    at: datetime
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class Rejection:
    at: datetime
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A cancellation that waits for a second person's approval."""

    at: datetime
    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class DeclarationRequest:
    """What an issuer asks for, before it is checked against the current state."""

    scheme: str
    level: str
    areas: tuple[str, ...]
    texts: Mapping[str, Statement]
    sender: str
    effective: datetime | None = None
    """None: from the moment of publication."""
    expires: datetime | None = None
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Declaration:
    id: str
    scheme: str
    level: str
    areas: tuple[str, ...]
    texts: Mapping[str, Statement]
    sender: str
    effective: datetime | None
    """None only for a draft that takes effect when published."""
    expires: datetime | None
    replaces: tuple[str, ...]
    status: Status
    created_at: datetime
    created_by: str
    published_at: datetime | None = None
    published_by: str | None = None
    cancellation: Cancellation | None = None
    revision: int = 1
    """Counts the author's edits, so an approval names the exact text it approves."""
    submitted_at: datetime | None = None
    break_glass: str | None = None
    """The reason given when it was published without a second person."""
    rejection: Rejection | None = None
    cancel_request: CancelRequest | None = None
    cap_sender: str | None = None
    """The CAP <sender> its alert carries, fixed when it is published."""

    @property
    def is_published(self) -> bool:
        return self.status is Status.PUBLISHED


def check_request(
    request: DeclarationRequest, *, scheme: Scheme, tree: AreaTree, now: datetime, publish: bool
) -> None:
    """Check the rules that need no other declaration; InvalidInput names the first broken."""
    if request.scheme != scheme.key:
        raise InvalidInput(f"request is for scheme {request.scheme!r}, not {scheme.key!r}")
    scheme.level(request.level)
    if not request.areas:
        raise InvalidInput("no area given", "name at least one area, e.g. --area KZ")
    seen: set[str] = set()
    for code in request.areas:
        tree.get(code)
        if code in seen:
            raise InvalidInput(f"area {code!r} is listed twice", "list each area once")
        seen.add(code)
    if not request.sender.strip():
        raise InvalidInput("sender is empty", "name the declaring authority")
    _check_texts(request, scheme)
    effective = request.effective if request.effective is not None else now
    if publish and effective < now:
        raise InvalidInput(
            f"effective time {iso(effective)} is in the past (now is {iso(now)})",
            "a published level cannot start in the past: omit the effective time to start now",
        )
    if request.expires is None:
        if scheme.expiry_required:
            raise InvalidInput(
                f"scheme {scheme.key!r} requires an expiry (sunset)", "give an expiry time"
            )
        return
    if request.expires <= effective:
        raise InvalidInput(
            f"expiry {iso(request.expires)} is not after the effective time {iso(effective)}",
            "give an expiry later than the effective time",
        )
    if scheme.max_term is not None and request.expires - effective > scheme.max_term:
        raise InvalidInput(
            f"term {iso(effective)} to {iso(request.expires)} is longer than scheme "
            f"{scheme.key!r} allows ({format_duration(scheme.max_term)})",
            "shorten it, and extend later with a declaration that replaces this one",
        )


def _check_texts(request: DeclarationRequest, scheme: Scheme) -> None:
    if not request.texts:
        raise InvalidInput("no headline given", "give a headline in at least one language")
    for lang, statement in request.texts.items():
        if lang not in scheme.languages:
            raise InvalidInput(
                f"language {lang!r} is not one of scheme {scheme.key!r}'s languages",
                f"use one of {', '.join(scheme.languages)}",
            )
        if not statement.headline.strip():
            raise InvalidInput(f"headline in {lang!r} is empty", "give a headline")
        if len(statement.headline) > HEADLINE_MAX:
            raise InvalidInput(
                f"headline in {lang!r} has {len(statement.headline)} characters",
                f"keep it under {HEADLINE_MAX}; put details in the description",
            )


def replaced_by(declarations: Mapping[str, Declaration]) -> dict[str, list[str]]:
    """For each declaration id, the ids of the published declarations that replace it."""
    out: dict[str, list[str]] = {}
    for declaration in declarations.values():
        if declaration.is_published:
            for old in declaration.replaces:
                out.setdefault(old, []).append(declaration.id)
    return out


def end_of(declaration: Declaration, replacers: Sequence[Declaration]) -> datetime | None:
    """When a published declaration stops holding: expiry, cancellation or first replacement."""
    ends = [d.effective for d in replacers if d.effective is not None and d.is_published]
    if declaration.expires is not None:
        ends.append(declaration.expires)
    if declaration.cancellation is not None:
        ends.append(declaration.cancellation.at)
    return min(ends) if ends else None


def check_replaceable(
    old_id: str, *, scheme: Scheme, known: Mapping[str, Declaration], now: datetime
) -> Declaration:
    """The declaration `old_id` if a new declaration may replace it now; else raise.

    `known` must hold the declaration and every published declaration replacing it.
    """
    old = known.get(old_id)
    if old is None:
        raise unknown("declaration", old_id, (), "try 'tocsin history AREA' to find its id")
    if not old.is_published:
        raise Conflict(f"declaration {old_id!r} is a {old.status} and cannot be replaced",
                       f"publish it with 'tocsin publish {old_id}' or replace a published one")
    if old.scheme != scheme.key:
        raise Conflict(
            f"declaration {old_id!r} is of scheme {old.scheme!r}, not {scheme.key!r}",
            "a declaration only replaces declarations of its own scheme",
        )
    replacers = [known[i] for i in replaced_by(known).get(old_id, [])]
    _check_still_holding(old, replacers, now, fix="replace the newest declaration instead")
    return old


def _check_still_holding(declaration: Declaration, replacers: Sequence[Declaration],
                         now: datetime, *, fix: str) -> None:
    """Refuse to act on a declaration that was replaced or cancelled, or has ended."""
    if replacers:
        raise Conflict(f"declaration {declaration.id!r} was already replaced by "
                       f"{', '.join(d.id for d in replacers)}", fix)
    if declaration.cancellation is not None:
        raise Conflict(f"declaration {declaration.id!r} was already cancelled at "
                       f"{iso(declaration.cancellation.at)}", "declare a new level instead")
    end = end_of(declaration, ())
    if end is not None and end <= now:
        raise Conflict(f"declaration {declaration.id!r} already ended at {iso(end)}",
                       "declare a new level instead")


def publish_as(
    request: DeclarationRequest,
    *,
    id: str,
    scheme: Scheme,
    tree: AreaTree,
    known: Mapping[str, Declaration],
    now: datetime,
    actor: str,
    publish: bool,
) -> Declaration:
    """The new declaration `request` asks for, checked against everything `known`.

    `known` holds the declarations it replaces and whatever already replaces them.
    """
    check_request(request, scheme=scheme, tree=tree, now=now, publish=publish)
    if len(set(request.replaces)) != len(request.replaces):
        raise InvalidInput("a declaration is listed twice in replaces", "list each one once")
    if publish:
        for old_id in request.replaces:
            check_replaceable(old_id, scheme=scheme, known=known, now=now)
    draft = Declaration(
        id=id,
        scheme=request.scheme,
        level=request.level,
        areas=request.areas,
        texts=dict(request.texts),
        sender=request.sender,
        effective=request.effective,
        expires=request.expires,
        replaces=request.replaces,
        status=Status.DRAFT,
        created_at=now,
        created_by=actor,
    )
    return published(draft, now=now, actor=actor) if publish else draft


def published(draft: Declaration, *, now: datetime, actor: str) -> Declaration:
    """The draft as published now; a draft without an effective time starts now."""
    return replace(
        draft,
        status=Status.PUBLISHED,
        effective=draft.effective if draft.effective is not None else now,
        published_at=now,
        published_by=actor,
    )


def submitted(draft: Declaration, *, now: datetime) -> Declaration:
    """The draft, waiting for approval."""
    if draft.status is not Status.DRAFT:
        raise Conflict(f"declaration {draft.id!r} is {draft.status}, not a draft",
                       "only drafts can be submitted")
    return replace(draft, status=Status.PENDING, submitted_at=now)


def rejected(declaration: Declaration, *, reason: str, now: datetime, actor: str) -> Declaration:
    """A pending declaration, turned down with a reason; it never publishes."""
    if not reason.strip():
        raise InvalidInput("rejection reason is empty", "say why, so the author can act on it")
    if declaration.status is not Status.PENDING:
        raise Conflict(f"declaration {declaration.id!r} is {declaration.status}, not pending",
                       "only declarations waiting for approval can be rejected")
    return replace(declaration, status=Status.REJECTED,
                   rejection=Rejection(at=now, reason=reason.strip(), by=actor))


def edited(declaration: Declaration, request: DeclarationRequest, *, scheme: Scheme,
           tree: AreaTree, now: datetime) -> Declaration:
    """A draft or pending declaration with the author's new text; a new revision."""
    if declaration.status not in (Status.DRAFT, Status.PENDING):
        raise Conflict(f"declaration {declaration.id!r} is {declaration.status}",
                       "published and rejected declarations never change; declare a new one")
    check_request(request, scheme=scheme, tree=tree, now=now, publish=False)
    return replace(declaration, scheme=request.scheme, level=request.level,
                   areas=request.areas, texts=dict(request.texts), sender=request.sender,
                   effective=request.effective, expires=request.expires,
                   replaces=request.replaces, revision=declaration.revision + 1)


def request_of(draft: Declaration) -> DeclarationRequest:
    """The request a draft stands for, to check it again when it is published."""
    return DeclarationRequest(
        scheme=draft.scheme,
        level=draft.level,
        areas=draft.areas,
        texts=draft.texts,
        sender=draft.sender,
        effective=draft.effective,
        expires=draft.expires,
        replaces=draft.replaces,
    )


def cancelled(
    declaration: Declaration,
    *,
    reason: str,
    now: datetime,
    actor: str,
    replacers: Sequence[Declaration],
) -> Declaration:
    """The declaration with a cancellation taking effect now; refuses what cannot be cancelled."""
    if not reason.strip():
        raise InvalidInput("cancellation reason is empty", "say why the level ends early")
    if not declaration.is_published:
        raise Conflict(f"declaration {declaration.id!r} is a {declaration.status}, not published",
                       "only published declarations can be cancelled")
    _check_still_holding(declaration, replacers, now,
                         fix="cancel the declaration that replaced it")
    return replace(declaration, cancellation=Cancellation(at=now, reason=reason.strip(), by=actor))
