"""The one JSON error shape every HTTP endpoint answers with (pinned by tests/test_web.py).

    {"error": {"status": 404, "code": "not_found",
               "message": "area 'KZ-99' is not known", "fix": "try /api/v1/levels"}}
"""

from __future__ import annotations

from typing import Any

from tocsin.domain.errors import Conflict, NotFound, TocsinError

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
         413: "too_large", 500: "internal_error"}


def status_of(error: TocsinError) -> int:
    """The HTTP status a domain refusal maps to."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 400


def error_body(status: int, message: str, fix: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "code": CODES.get(status, "error"), "message": message,
                      "fix": fix}}


def error_of(error: TocsinError) -> dict[str, Any]:
    return error_body(status_of(error), error.problem, error.fix)
