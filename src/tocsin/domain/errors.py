"""The exception ladder every adapter maps once (CLI exit codes, HTTP statuses)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TocsinError(Exception):
    """A refusal that names the problem and, where there is one, the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem


class InvalidInput(TocsinError):
    """The input is malformed or breaks a rule; nothing was written."""


class NotFound(InvalidInput):
    """The input names something that does not exist."""


class Conflict(TocsinError):
    """The request is well-formed but the current state does not allow it."""


class Unavailable(TocsinError):
    """The database cannot take the change (read-only, full, or denied); nothing was written."""


class Unauthenticated(TocsinError):
    """The request names no one, or credentials that do not hold."""


class Forbidden(TocsinError):
    """The one asking lacks the right, or the areas are outside their jurisdiction."""


class RateLimited(TocsinError):
    """Too many attempts; try again after `retry_after` seconds."""

    def __init__(self, problem: str, fix: str | None = None, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(problem, fix)


def unknown(kind: str, value: str, known: Iterable[str], hint: str) -> NotFound:
    """Build a NotFound that suggests close matches among `known`."""
    candidates = list(known)
    close = difflib.get_close_matches(value, candidates, n=3, cutoff=0.6)
    if not close:
        close = [c for c in candidates if c.lower() == value.lower()]
    fix = f"did you mean {', '.join(repr(c) for c in close)}? {hint}" if close else hint
    return NotFound(f"{kind} {value!r} is not known", fix)
