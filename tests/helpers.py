"""Small helpers shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

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
