"""Users, API tokens and console sessions: who is asking, proven by password, token or cookie.

Passwords are kept as argon2id hashes; tokens and session ids are random and kept only as
SHA-256 hashes (they carry 256 bits, so a fast hash is enough), shown once when made.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine

from tocsin.domain.access import (
    Principal,
    Role,
    Scope,
    Token,
    User,
    check_roles,
    check_token_scopes,
    check_user_name,
    lockout,
    require,
)
from tocsin.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    RateLimited,
    Unauthenticated,
    unknown,
)
from tocsin.domain.notify import check_email
from tocsin.domain.times import iso
from tocsin.service.change import change
from tocsin.store import people, records
from tocsin.store.database import check_current, reading, writing

TOKEN_PREFIX = "tocsin_"
SESSION_LIFETIME = timedelta(hours=12)
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
LONGEST_TOKEN_LIFETIME = timedelta(days=366)
MIN_PASSWORD = 12
RESET_LIFETIME = timedelta(hours=24)
RESET_PREFIX = "reset_"
TOKEN_TOUCH = timedelta(minutes=1)
"""How stale a token's last-used time may get before a request records it again."""

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to check unknown users' passwords against: the same work as for real ones."""
    return _hasher.hash("a password nobody has")

WRONG = Unauthenticated("user name or password is wrong", "check both and try again")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password has {len(password)} characters",
                           f"use at least {MIN_PASSWORD}; a passphrase of several words is best")
    return password


# --- users -----------------------------------------------------------------------------------


def add_user(engine: Engine, name: str, password: str, roles: Sequence[Role],
             jurisdiction: Sequence[str], *, break_glass: bool, now: datetime,
             by: Principal | None, actor: str, email: str | None = None) -> User:
    """Create a user; `by` is the admin doing it (None: the local operator)."""
    check_current(engine)
    if by is not None:
        require(by, Scope.ADMIN, "manage users")
    check_user_name(name)
    if not roles:
        raise InvalidInput(f"user {name!r} has no role",
                           "give at least one of " + ", ".join(role.value for role in Role))
    check_password(password)
    with change(engine, now=now, actor=actor) as unit:
        check_roles(roles, jurisdiction, records.load_tree(unit.conn))
        if people.load_user(unit.conn, name) is not None:
            raise Conflict(f"user {name!r} already exists", "choose another name, or change it "
                           f"with 'tocsin users set {name}'")
        user = User(name, frozenset(roles), tuple(jurisdiction), break_glass, False, now,
                    email=check_email(email) if email else None)
        people.insert_user(unit.conn, user, _hasher.hash(password))
        unit.audit("user.created", name, _user_details(user))
        return user


def set_user(engine: Engine, name: str, *, roles: Sequence[Role] | None = None,
             jurisdiction: Sequence[str] | None = None, break_glass: bool | None = None,
             disabled: bool | None = None, password: str | None = None, now: datetime,
             by: Principal | None, actor: str, email: str | None = None) -> User:
    """Change a user; disabling one ends their sessions, and their tokens stop working.
    `email` '' removes the address; None leaves it."""
    check_current(engine)
    if by is not None:
        require(by, Scope.ADMIN, "manage users")
        if by.name == name and (disabled or (roles is not None and Role.ADMIN not in roles)):
            raise Conflict("you cannot disable yourself or drop your own admin role",
                           "ask another administrator")
    if password is not None:
        if by is not None and by.name != name:
            raise Forbidden(f"{by.name} may not choose a password for {name}",
                            "issue a one-time reset link instead (POST …/users/NAME/"
                            "password-reset, or the console's users page); she sets her own")
        check_password(password)
    if roles is not None and not roles:
        raise InvalidInput(f"user {name!r} would have no role",
                           "keep at least one role, or disable the user instead")
    with change(engine, now=now, actor=actor) as unit:
        found = people.load_user(unit.conn, name)
        if found is None:
            raise unknown("user", name, people.load_users(unit.conn), "try 'tocsin users list'")
        user = found[0]
        changed = replace(
            user,
            roles=frozenset(roles) if roles is not None else user.roles,
            jurisdiction=tuple(jurisdiction) if jurisdiction is not None else user.jurisdiction,
            break_glass=break_glass if break_glass is not None else user.break_glass,
            disabled=disabled if disabled is not None else user.disabled,
            failed_logins=0 if password is not None else user.failed_logins,
            locked_until=None if password is not None else user.locked_until,
            email=user.email if email is None else (check_email(email) if email else None),
        )
        if by is not None and by.name == name and (
                changed.roles != user.roles or set(changed.jurisdiction) != set(user.jurisdiction)
                or changed.break_glass != user.break_glass):
            raise Forbidden("another admin must do this",
                            "no one changes their own roles, jurisdiction or break-glass "
                            "right: ask another administrator")
        check_roles(changed.roles, changed.jurisdiction, records.load_tree(unit.conn))
        people.update_user(unit.conn, changed,
                           _hasher.hash(password) if password is not None else None)
        if changed.disabled or password is not None:
            people.delete_sessions(unit.conn, user=name)
        details = _user_details(changed)
        details["password_changed"] = password is not None
        if changed.disabled and not user.disabled:
            # Revoked for good: enabling her again must not bring old credentials back.
            details["tokens_revoked"] = people.revoke_user_tokens(unit.conn, name, now)
        unit.audit("user.updated", name, details)
        return changed


def _user_details(user: User) -> dict[str, object]:
    return {"roles": sorted(user.roles), "jurisdiction": list(user.jurisdiction),
            "break_glass": user.break_glass, "disabled": user.disabled,
            "email": bool(user.email)}


def list_users(engine: Engine, *, by: Principal | None) -> list[User]:
    check_current(engine)
    if by is not None:
        require(by, Scope.ADMIN, "list users")
    with reading(engine) as conn:
        return list(people.load_users(conn).values())


def get_user(engine: Engine, name: str) -> User:
    with reading(engine) as conn:
        found = people.load_user(conn, name)
    if found is None:
        raise Unauthenticated(f"user {name!r} no longer exists", "sign in again")
    return found[0]


# --- password resets -------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordReset:
    user: str
    secret: str
    """What the user types or follows (`/console/reset?token=…`); shown once, never stored."""
    expires_at: datetime


RESET_REFUSED = Unauthenticated("this password reset link is not valid, was used already or "
                                "has expired", "ask an administrator for a new one")


def issue_password_reset(engine: Engine, name: str, *, now: datetime, by: Principal | None,
                         actor: str) -> PasswordReset:
    """A one-time link for `name` to choose her own password, good for RESET_LIFETIME; an
    earlier unused one stops working. An administrator hands it over and never learns the
    password: choosing it for her would give him a credential that acts as her."""
    check_current(engine)
    if by is not None:
        require(by, Scope.ADMIN, "issue password reset links")
    secret = RESET_PREFIX + secrets.token_urlsafe(32)
    with change(engine, now=now, actor=actor) as unit:
        if people.load_user(unit.conn, name) is None:
            raise unknown("user", name, people.load_users(unit.conn), "try 'tocsin users list'")
        people.insert_password_reset(unit.conn, _digest(secret), name, now,
                                     now + RESET_LIFETIME, actor)
        unit.audit("user.password_reset_issued", name,
                   {"expires": iso(now + RESET_LIFETIME)})
    return PasswordReset(name, secret, now + RESET_LIFETIME)


def reset_password(engine: Engine, secret: str, password: str, *, now: datetime) -> User:
    """Set the password of the user a reset link was issued to, once, before it expires; her
    sessions end and a lock-out is lifted. Unauthenticated for a link unknown, used or
    expired, or for a disabled user; InvalidInput for a short password (the link stays)."""
    check_current(engine)
    check_password(password)
    with reading(engine) as conn:
        row = people.load_password_reset(conn, _digest(secret.strip()))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise RESET_REFUSED
    with change(engine, now=now, actor=f"user:{row.user_name}") as unit:
        found = people.load_user(unit.conn, row.user_name)
        if found is None or not people.use_password_reset(unit.conn, row.id_hash, now):
            raise RESET_REFUSED
        if found[0].disabled:
            raise Unauthenticated(f"user {row.user_name!r} is disabled", "ask an administrator")
        user = replace(found[0], failed_logins=0, locked_until=None)
        people.update_user(unit.conn, user, _hasher.hash(password))
        people.delete_sessions(unit.conn, user=user.name)
        unit.audit("user.password_reset", user.name, {"issued_by": row.created_by})
        return user


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    token: Token
    secret: str
    """The whole bearer token; shown once, never stored."""


def create_token(engine: Engine, user_name: str, scopes: Sequence[Scope], *, label: str,
                 lifetime: timedelta = DEFAULT_TOKEN_LIFETIME, now: datetime,
                 by: Principal | None, actor: str) -> NewToken:
    """A new API token for `user_name`, acting with at most `scopes`.

    People make tokens only for themselves: nobody, not even an administrator, obtains a
    credential that acts as someone else (that would undo the two-person rule). The local
    operator, who holds the database anyway, makes them for anyone. A token makes tokens
    only when it carries the admin scope.
    """
    check_current(engine)
    if by is not None and by.name != user_name:
        raise Forbidden(f"{by.name} may not make tokens for {user_name}",
                        f"{user_name} makes their own in the console (or the local operator "
                        "uses 'tocsin tokens create')")
    if by is not None and by.scopes is not None and Scope.ADMIN not in by.scopes:
        raise Forbidden("a token without the admin scope cannot make tokens",
                        "sign in to the console, or use a token with the admin scope")
    if not scopes:
        raise InvalidInput("no scope given", "give at least one of "
                           + ", ".join(scope.value for scope in Scope))
    if lifetime <= timedelta(0) or lifetime > LONGEST_TOKEN_LIFETIME:
        raise InvalidInput(f"token lifetime must be between 1 second and "
                           f"{LONGEST_TOKEN_LIFETIME.days} days", "e.g. P90D")
    with change(engine, now=now, actor=actor) as unit:
        found = people.load_user(unit.conn, user_name)
        if found is None:
            raise unknown("user", user_name, people.load_users(unit.conn),
                          "try 'tocsin users list'")
        check_token_scopes(found[0].principal(), scopes)
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        token = Token(token_id, user_name, label.strip() or "token", frozenset(scopes), now,
                      now + lifetime)
        people.insert_token(unit.conn, token, _digest(secret))
        unit.audit("token.created", token_id, {"user": user_name, "label": token.label,
                                               "scopes": sorted(token.scopes),
                                               "expires": iso(token.expires_at)})
        return NewToken(token, f"{TOKEN_PREFIX}{token_id}_{secret}")


def revoke_token(engine: Engine, token_id: str, *, now: datetime, by: Principal | None,
                 actor: str) -> Token:
    check_current(engine)
    with change(engine, now=now, actor=actor) as unit:
        found = people.load_token(unit.conn, token_id)
        if found is None:
            raise unknown("token", token_id, (), "try 'tocsin tokens list'")
        token = found[0]
        if by is not None and by.name != token.user:
            require(by, Scope.ADMIN, "revoke other users' tokens")
        if token.revoked_at is not None:
            raise Conflict(f"token {token_id!r} was already revoked at {iso(token.revoked_at)}")
        people.revoke_token(unit.conn, token_id, now)
        unit.audit("token.revoked", token_id, {"user": token.user})
        return replace(token, revoked_at=now)


def list_tokens(engine: Engine, *, by: Principal | None) -> list[Token]:
    """Every token (admins, local operator) or the asker's own."""
    check_current(engine)
    with reading(engine) as conn:
        if by is None or by.has(Scope.ADMIN):
            return people.load_tokens(conn)
        return people.load_tokens(conn, user=by.name)


def authenticate_token(engine: Engine, bearer: str, *, now: datetime) -> Principal:
    """The principal a bearer token acts as; Unauthenticated if it does not hold."""
    body = bearer.removeprefix(TOKEN_PREFIX)
    token_id, _, secret = body.partition("_")
    if not bearer.startswith(TOKEN_PREFIX) or not token_id or not secret:
        raise Unauthenticated("the bearer token is malformed",
                              "send 'Authorization: Bearer tocsin_…' as it was shown once")
    with reading(engine) as conn:
        found = people.load_token(conn, token_id)
        user = people.load_user(conn, found[0].user) if found else None
    if found is None or user is None or not hmac.compare_digest(found[1], _digest(secret)):
        raise Unauthenticated("the bearer token is not valid", "check it, or make a new one")
    token = found[0]
    state = token.state(now)
    if state != "active":
        raise Unauthenticated(f"the bearer token was {state} at "
                              f"{iso(token.revoked_at or token.expires_at)}",
                              "make a new token")
    if user[0].disabled:
        raise Unauthenticated(f"user {token.user!r} is disabled", "ask an administrator")
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH:
        with writing(engine) as conn:
            people.touch_token(conn, token_id, now)
    return user[0].principal(token.scopes)


# --- console sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    token: str = ""
    """The cookie value; only known when the session is made."""


def login(engine: Engine, name: str, password: str, *, now: datetime,
          lock_applies: bool = True) -> Session:
    """Check a password and open a session; repeated failures lock the account a while.

    The lock refuses (RateLimited) only a caller for whom it `lock_applies`: the web passes
    False for a client that has not failed on this name, so that a lock never keeps out the
    user herself. A refusal costs the same work as a check and names nobody; callers that
    must not reveal which names exist answer it as they answer a wrong password."""
    check_current(engine)
    with reading(engine) as conn:
        found = people.load_user(conn, name.strip())
    if found is None:
        _verify(_dummy_hash(), password)  # same work whether or not the user exists
        raise WRONG
    user, password_hash = found
    if lock_applies and user.locked_until is not None and user.locked_until > now:
        _verify(password_hash, password)  # same work whether or not the account is locked
        wait = int((user.locked_until - now).total_seconds()) + 1
        raise RateLimited("too many failed sign-ins for this account",
                          f"try again in {wait} seconds", retry_after=wait)
    if not _verify(password_hash, password):
        failures = user.failed_logins + 1
        pause = lockout(failures)
        with writing(engine) as conn:
            people.record_login(conn, user.name, failures, now + pause if pause else None)
        if pause:
            with change(engine, now=now, actor=f"user:{user.name}") as unit:
                unit.audit("user.locked", user.name,
                           {"failures": failures, "until": iso(now + pause)})
        raise WRONG
    if user.disabled:
        raise Unauthenticated(f"user {user.name!r} is disabled", "ask an administrator")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with writing(engine) as conn:
        people.record_login(conn, user.name, 0, None)
        people.delete_sessions(conn, expired_before=now)
        people.insert_session(conn, _digest(token), user.name, csrf, now, now + SESSION_LIFETIME)
    return Session(replace(user, failed_logins=0, locked_until=None), csrf, token)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session(engine: Engine, token: str, *, now: datetime) -> Session | None:
    """The open session this cookie names, or None."""
    with reading(engine) as conn:
        row = people.load_session(conn, _digest(token))
        if row is None or row.expires_at <= now:
            return None
        found = people.load_user(conn, row.user_name)
    if found is None or found[0].disabled:
        return None
    return Session(found[0], row.csrf)


def logout(engine: Engine, token: str) -> None:
    with writing(engine) as conn:
        people.delete_sessions(conn, id_hash=_digest(token))
