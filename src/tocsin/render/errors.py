"""The one JSON error shape every HTTP endpoint answers with (pinned by tests/test_web.py).

    {"error": {"status": 404, "code": "not_found",
               "message": "area 'KZ-99' is not known", "fix": "try /api/v1/levels"}}
"""

from __future__ import annotations

from typing import Any

from tocsin.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    TocsinError,
    Unauthenticated,
    Unavailable,
)

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 429: "too_many_requests", 500: "internal_error",
         503: "unavailable"}


class Refusal(TocsinError):
    """A refusal of the HTTP layer itself (size, media type, CSRF), with its status."""

    def __init__(self, status: int, problem: str, fix: str | None = None) -> None:
        self.status = status
        super().__init__(problem, fix)


def status_of(error: TocsinError) -> int:
    """The HTTP status a domain refusal maps to."""
    if isinstance(error, Refusal):
        return error.status
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, Unauthenticated):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, Unavailable):
        return 503
    return 400


def error_body(status: int, message: str, fix: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "code": CODES.get(status, "error"), "message": message,
                      "fix": fix}}


def error_of(error: TocsinError) -> dict[str, Any]:
    return error_body(status_of(error), error.problem, error.fix)
