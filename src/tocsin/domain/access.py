"""Who may do what to which areas: roles, jurisdictions, token scopes and the two-person rule.

Pure policy, used alike by the CLI, the JSON API and the console. Every refusal is a
Forbidden that says which right or which area is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.errors import Forbidden, InvalidInput
from tocsin.domain.scheme import ApprovalRule, Scheme


class Role(StrEnum):
    ADMIN = "admin"
    ISSUER = "issuer"
    APPROVER = "approver"
    AUDITOR = "auditor"
    SUBSCRIBER = "subscriber"
    """A newsroom, app or agency that registers webhooks for itself."""


class Scope(StrEnum):
    """What a token (or a role) allows; a token never allows more than its user's roles."""

    READ_AUDIT = "read-audit"
    DECLARE = "declare"
    APPROVE = "approve"
    ADMIN = "admin"
    SUBSCRIBE = "subscribe"
    """Register, list and remove one's own webhooks and read their deliveries."""


E = TypeVar("E", "Role", "Scope")

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset({Scope.ADMIN, Scope.READ_AUDIT, Scope.SUBSCRIBE}),
    Role.ISSUER: frozenset({Scope.DECLARE}),
    Role.APPROVER: frozenset({Scope.APPROVE}),
    Role.AUDITOR: frozenset({Scope.READ_AUDIT}),
    Role.SUBSCRIBER: frozenset({Scope.SUBSCRIBE}),
}
AREA_ROLES = (Role.ISSUER, Role.APPROVER)
"""Roles that are limited to a jurisdiction (area subtrees)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user, or a token acting for one (then `scopes` narrows the user's rights)."""

    name: str
    roles: frozenset[Role]
    jurisdiction: tuple[str, ...] = ()
    """Roots of the area subtrees this user issues or approves for."""
    break_glass: bool = False
    scopes: frozenset[Scope] | None = None
    """None for a session: everything the roles allow."""

    @property
    def actor(self) -> str:
        """How this principal is named in the audit log."""
        return f"user:{self.name}"

    @property
    def rights(self) -> frozenset[Scope]:
        granted = frozenset().union(*(ROLE_SCOPES[role] for role in self.roles))
        return granted if self.scopes is None else granted & self.scopes

    def has(self, scope: Scope) -> bool:
        return scope in self.rights


def check_roles(roles: Iterable[Role], jurisdiction: Sequence[str], tree: AreaTree) -> None:
    """A user's roles and jurisdiction must fit together and name known areas."""
    for code in jurisdiction:
        tree.get(code)
    needs_areas = [role.value for role in roles if role in AREA_ROLES]
    if needs_areas and not jurisdiction:
        raise InvalidInput(f"role {', '.join(needs_areas)} needs a jurisdiction",
                           "give the areas the user acts for, e.g. --area KZ-75")


def check_token_scopes(user: Principal, scopes: Iterable[Scope]) -> None:
    """A token may only carry scopes its user's roles grant."""
    extra = sorted(scope.value for scope in scopes if scope not in user.rights)
    if extra:
        raise Forbidden(f"user {user.name!r} cannot hold a token with scope {', '.join(extra)}",
                        "give the user the role that grants it first")


def within(tree: AreaTree, roots: Iterable[str], code: str) -> bool:
    """Whether `code` is one of `roots` or inside one of them."""
    found = set(roots)
    return code in found or bool(found.intersection(tree.ancestors(code)))


def outside(principal: Principal, tree: AreaTree, areas: Iterable[str]) -> list[str]:
    """The areas not inside any subtree of the principal's jurisdiction."""
    return [code for code in areas if not within(tree, principal.jurisdiction, code)]


def at_stake(declaration: Declaration, replaced: Iterable[Declaration]) -> list[str]:
    """The areas a declaration changes: its own, and those of the declarations it ends."""
    out = list(declaration.areas)
    for old in replaced:
        out += [code for code in old.areas if code not in out]
    return out


def require(principal: Principal, scope: Scope, what: str) -> None:
    if not principal.has(scope):
        via = " (through this token)" if principal.scopes is not None else ""
        raise Forbidden(f"{principal.name}{via} may not {what}",
                        f"this needs the {scope.value!r} right")


def _require_areas(principal: Principal, tree: AreaTree, areas: Iterable[str],
                   what: str) -> None:
    missing = outside(principal, tree, areas)
    if missing:
        raise Forbidden(f"{principal.name} may not {what} for {', '.join(missing)}: outside "
                        f"their jurisdiction ({', '.join(principal.jurisdiction) or 'none'})",
                        "ask someone whose jurisdiction covers these areas")


def may_draft(principal: Principal, tree: AreaTree, areas: Iterable[str]) -> None:
    """Draft or submit a declaration for these areas."""
    require(principal, Scope.DECLARE, "declare levels")
    _require_areas(principal, tree, areas, "declare levels")


def may_edit(principal: Principal, declaration: Declaration) -> None:
    """Change a draft or pending declaration: only its author, only before approval."""
    require(principal, Scope.DECLARE, "edit declarations")
    if declaration.created_by != principal.actor:
        raise Forbidden(f"declaration {declaration.id!r} was written by "
                        f"{declaration.created_by}, not {principal.name}",
                        "only its author can change it")
    if declaration.status not in (Status.DRAFT, Status.PENDING):
        raise Forbidden(f"declaration {declaration.id!r} is {declaration.status}",
                        "published and rejected declarations never change; declare a new one")


def may_approve(principal: Principal, tree: AreaTree, declaration: Declaration,
                author: str, areas: Sequence[str]) -> None:
    """Approve or reject what `author` asked for (a declaration or its cancellation), which
    changes the levels of `areas` (see `at_stake`)."""
    require(principal, Scope.APPROVE, "approve declarations")
    if author == principal.actor:
        raise Forbidden(f"{principal.name} asked for {declaration.id!r} and cannot approve "
                        "or reject it", "another approver must decide (two-person rule)")
    _require_areas(principal, tree, areas, "approve levels")


def may_cancel(principal: Principal, tree: AreaTree, declaration: Declaration) -> None:
    require(principal, Scope.DECLARE, "cancel declarations")
    _require_areas(principal, tree, declaration.areas, "cancel levels")


def may_break_glass(principal: Principal, reason: str) -> None:
    """Publish alone in an emergency: needs the break-glass right and a reason."""
    if not principal.break_glass or not principal.has(Scope.DECLARE):
        raise Forbidden(f"{principal.name} has no break-glass right",
                        "submit it for approval instead")
    if not reason.strip():
        raise InvalidInput("break-glass reason is empty",
                           "say why this cannot wait for a second person")


def at_or_above(scheme: Scheme, rule: ApprovalRule, level: str) -> bool:
    if rule.from_level is None:
        return False
    return scheme.level(level).rank >= scheme.level(rule.from_level).rank


def needs_approval(scheme: Scheme, rule: ApprovalRule, tree: AreaTree,
                   declaration: Declaration, replaced: Sequence[Declaration], *,
                   now: datetime) -> bool:
    """Whether publishing this declaration at `now` needs a second person.

    Only a true lowering may skip the second person when the scheme's rule says lowering
    needs none (see `is_lowering`); anything else at or above the rule's level is a raise.
    """
    if not at_or_above(scheme, rule, declaration.level):
        return False
    lowering = is_lowering(scheme, tree, declaration, replaced, now=now)
    return rule.lowering if lowering else True


def is_lowering(scheme: Scheme, tree: AreaTree, declaration: Declaration,
                replaced: Sequence[Declaration], *, now: datetime) -> bool:
    """True when, at every instant of the declaration's term and in every one of its areas,
    a declaration it replaces held a higher level over that area (itself or an ancestor).

    The term runs from the declaration's effective time (publication, `now`, when it has
    none) to its expiry (or forever). A replacement that outlasts what it replaces, starts
    before it, or reaches an area it did not hold higher, raises the level somewhere.
    """
    if not declaration.areas:
        return False
    rank = scheme.level(declaration.level).rank
    start = declaration.effective if declaration.effective is not None else now
    end = declaration.expires
    if end is not None and end <= start:
        return False
    higher = [old for old in replaced
              if old.is_published and old.effective is not None
              and scheme.level(old.level).rank > rank]
    for code in declaration.areas:
        spans = [_held(old) for old in higher if within(tree, old.areas, code)]
        if not _covers(spans, start, end):
            return False
    return True


def _held(old: Declaration) -> tuple[datetime, datetime | None]:
    """The span in which a published declaration holds by its own term (None: open-ended)."""
    assert old.effective is not None
    ends = [t for t in (old.expires, old.cancellation.at if old.cancellation else None)
            if t is not None]
    return old.effective, min(ends) if ends else None


def _covers(spans: Sequence[tuple[datetime, datetime | None]], start: datetime,
            end: datetime | None) -> bool:
    """Whether the union of `spans` covers [start, end) (end None: all time after start)."""
    reached = start
    for span_start, span_end in sorted(spans, key=lambda s: s[0]):
        if span_start > reached:
            return False
        if span_end is None:
            return True
        reached = max(reached, span_end)
        if end is not None and reached >= end:
            return True
    return False


def cancel_needs_approval(scheme: Scheme, rule: ApprovalRule, declaration: Declaration) -> bool:
    return rule.cancelling and at_or_above(scheme, rule, declaration.level)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    roles: frozenset[Role]
    jurisdiction: tuple[str, ...]
    break_glass: bool
    disabled: bool
    created_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None
    email: str | None = None
    """Where reminders go (a declaration's term ending); None: no reminders."""

    def principal(self, scopes: frozenset[Scope] | None = None) -> Principal:
        return Principal(self.name, self.roles, self.jurisdiction, self.break_glass, scopes)


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: str
    label: str
    scopes: frozenset[Scope]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


FREE_FAILURES = 5
"""Failed logins allowed before a lockout starts."""
FIRST_LOCKOUT = timedelta(seconds=30)
LONGEST_LOCKOUT = timedelta(hours=1)


def lockout(failures: int) -> timedelta | None:
    """How long an account stays locked after `failures` failed logins in a row: none for the
    first few, then 30 s, doubling up to an hour."""
    if failures < FREE_FAILURES:
        return None
    doubled: timedelta = FIRST_LOCKOUT * (1 << min(failures - FREE_FAILURES, 16))
    return min(doubled, LONGEST_LOCKOUT)


USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise InvalidInput(f"user name {name!r} is not allowed",
                           "use 2-64 lowercase letters, digits, '.', '_' or '-'")
    return name


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    return frozenset(_member(Role, value, "role") for value in values)


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    return frozenset(_member(Scope, value, "scope") for value in values)


def _member(kind: type[E], value: str, what: str) -> E:
    try:
        return kind(value.strip())
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not known",
                           f"use one of {', '.join(m.value for m in kind)}") from None


def may_subscribe(principal: Principal) -> None:
    """Register webhooks (owned by the principal's user)."""
    require(principal, Scope.SUBSCRIBE, "manage webhook subscriptions")


def may_manage_subscription(principal: Principal, owner: str) -> bool:
    """Whether the principal may see and remove a subscription owned by `owner`: its own,
    or any with the admin right. False answers as if it did not exist."""
    if principal.has(Scope.ADMIN):
        return True
    return principal.has(Scope.SUBSCRIBE) and owner == principal.actor
