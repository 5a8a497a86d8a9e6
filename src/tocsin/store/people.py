"""Reading and writing users, API tokens and console sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tocsin.domain.access import Token, User, parse_roles, parse_scopes
from tocsin.store import tables as t


def _user(row: Any) -> User:
    return User(name=row.name, roles=parse_roles(row.roles),
                jurisdiction=tuple(row.jurisdiction), break_glass=row.break_glass,
                disabled=row.disabled, created_at=row.created_at,
                failed_logins=row.failed_logins, locked_until=row.locked_until,
                email=row.email)


def load_users(conn: Connection) -> dict[str, User]:
    rows = conn.execute(select(t.users).order_by(t.users.c.name))
    return {row.name: _user(row) for row in rows}


def load_user(conn: Connection, name: str) -> tuple[User, str] | None:
    """The user and their password hash."""
    row = conn.execute(select(t.users).where(t.users.c.name == name)).first()
    return (_user(row), row.password_hash) if row is not None else None


def insert_user(conn: Connection, user: User, password_hash: str) -> None:
    conn.execute(insert(t.users).values(
        name=user.name, password_hash=password_hash, roles=sorted(user.roles),
        jurisdiction=list(user.jurisdiction), break_glass=user.break_glass,
        disabled=user.disabled, created_at=user.created_at, failed_logins=0, locked_until=None,
        email=user.email))


def update_user(conn: Connection, user: User, password_hash: str | None = None) -> None:
    values: dict[str, Any] = {
        "roles": sorted(user.roles), "jurisdiction": list(user.jurisdiction),
        "break_glass": user.break_glass, "disabled": user.disabled,
        "failed_logins": user.failed_logins, "locked_until": user.locked_until,
        "email": user.email}
    if password_hash is not None:
        values["password_hash"] = password_hash
    conn.execute(update(t.users).where(t.users.c.name == user.name).values(**values))


def record_login(conn: Connection, name: str, failures: int,
                 locked_until: datetime | None) -> None:
    conn.execute(update(t.users).where(t.users.c.name == name).values(
        failed_logins=failures, locked_until=locked_until))


def _token(row: Any) -> Token:
    return Token(id=row.id, user=row.user_name, label=row.label,
                 scopes=parse_scopes(row.scopes), created_at=row.created_at,
                 expires_at=row.expires_at, revoked_at=row.revoked_at,
                 last_used_at=row.last_used_at)


def load_tokens(conn: Connection, user: str | None = None) -> list[Token]:
    query = select(t.tokens).order_by(t.tokens.c.created_at, t.tokens.c.id)
    if user is not None:
        query = query.where(t.tokens.c.user_name == user)
    return [_token(row) for row in conn.execute(query)]


def load_token(conn: Connection, token_id: str) -> tuple[Token, str] | None:
    """The token and the hash of its secret."""
    row = conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).first()
    return (_token(row), row.secret_hash) if row is not None else None


def insert_token(conn: Connection, token: Token, secret_hash: str) -> None:
    conn.execute(insert(t.tokens).values(
        id=token.id, user_name=token.user, label=token.label, secret_hash=secret_hash,
        scopes=sorted(token.scopes), created_at=token.created_at, expires_at=token.expires_at,
        revoked_at=None, last_used_at=None))


def revoke_token(conn: Connection, token_id: str, at: datetime) -> None:
    conn.execute(update(t.tokens).where(t.tokens.c.id == token_id).values(revoked_at=at))


def revoke_user_tokens(conn: Connection, user: str, at: datetime) -> list[str]:
    """Revoke every token of `user` not yet revoked; their ids."""
    ids = [row.id for row in conn.execute(select(t.tokens.c.id).where(
        t.tokens.c.user_name == user, t.tokens.c.revoked_at.is_(None)).order_by(t.tokens.c.id))]
    if ids:
        conn.execute(update(t.tokens).where(t.tokens.c.id.in_(ids)).values(revoked_at=at))
    return ids


def touch_token(conn: Connection, token_id: str, at: datetime) -> None:
    conn.execute(update(t.tokens).where(t.tokens.c.id == token_id).values(last_used_at=at))


def insert_session(conn: Connection, id_hash: str, user: str, csrf: str, created_at: datetime,
                   expires_at: datetime) -> None:
    conn.execute(insert(t.sessions).values(id_hash=id_hash, user_name=user, csrf=csrf,
                                           created_at=created_at, expires_at=expires_at))


def load_session(conn: Connection, id_hash: str) -> Any:
    return conn.execute(select(t.sessions).where(t.sessions.c.id_hash == id_hash)).first()


def delete_sessions(conn: Connection, *, id_hash: str | None = None, user: str | None = None,
                    expired_before: datetime | None = None) -> None:
    query = delete(t.sessions)
    if id_hash is not None:
        query = query.where(t.sessions.c.id_hash == id_hash)
    if user is not None:
        query = query.where(t.sessions.c.user_name == user)
    if expired_before is not None:
        query = query.where(t.sessions.c.expires_at <= expired_before)
    conn.execute(query)


def insert_password_reset(conn: Connection, id_hash: str, user: str, created_at: datetime,
                          expires_at: datetime, created_by: str) -> None:
    """A new reset link for `user`; any she had not used yet stops working."""
    conn.execute(delete(t.password_resets).where(t.password_resets.c.user_name == user,
                                                 t.password_resets.c.used_at.is_(None)))
    conn.execute(insert(t.password_resets).values(
        id_hash=id_hash, user_name=user, created_at=created_at, expires_at=expires_at,
        created_by=created_by, used_at=None))


def load_password_reset(conn: Connection, id_hash: str) -> Any:
    return conn.execute(select(t.password_resets).where(
        t.password_resets.c.id_hash == id_hash)).first()


def use_password_reset(conn: Connection, id_hash: str, at: datetime) -> bool:
    """Mark the link used; False when it was used already (by a request racing this one)."""
    done = conn.execute(update(t.password_resets).where(
        t.password_resets.c.id_hash == id_hash,
        t.password_resets.c.used_at.is_(None)).values(used_at=at))
    return done.rowcount == 1
