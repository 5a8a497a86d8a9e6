"""Small helpers shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, select

from tocsin.domain.access import Role
from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.store import tables


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show that a refused command wrote nothing."""
    out = {}
    with engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            out[table.name] = sorted(tuple(map(repr, row)) for row in rows)
    return out


def request(level: str = "critical", areas: tuple[str, ...] = ("KZ",), *,
            scheme: str = "kz-terror", effective: datetime | None = None,
            expires: datetime | None = None, replaces: tuple[str, ...] = (),
            headline: str = "Test level") -> DeclarationRequest:
    return DeclarationRequest(scheme=scheme, level=level, areas=areas,
                              texts={"en": Statement(headline)}, sender="Test authority",
                              effective=effective, expires=expires, replaces=replaces)


AUTHORITY_PASSWORD = "correct horse battery staple"
AUTHORITY_USERS: dict[str, tuple[tuple[Role, ...], tuple[str, ...], bool]] = {
    # name: (roles, jurisdiction, break-glass right)
    "admin": ((Role.ADMIN,), (), False),
    "issuer-almaty": ((Role.ISSUER,), ("KZ-75",), False),
    "issuer-kz": ((Role.ISSUER,), ("KZ",), False),
    "approver-almaty": ((Role.APPROVER,), ("KZ-75",), False),
    "approver-kz": ((Role.APPROVER,), ("KZ",), False),
    "auditor": ((Role.AUDITOR,), (), False),
    "breaker": ((Role.ISSUER,), ("KZ",), True),
    "both": ((Role.ISSUER, Role.APPROVER), ("KZ",), False),  # never decides on own work
}
"""The people the authority tests (service and HTTP) work with."""


def assert_error(response: httpx.Response, status: int, message: str = "") -> None:
    """The one JSON error shape, with this status, naming `message`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "fix"}
    assert error["status"] == status and message in error["message"], error
