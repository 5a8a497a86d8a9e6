"""Schemathesis over the JSON API, generated from our own OpenAPI document: every answer
must match the document, and no input may produce a 500. The authority API is driven with a
real token whose user holds every role, so requests get past the door and into the rules."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tocsin import demo
from tocsin.domain.access import Role, Scope
from tocsin.service import people
from tocsin.store.database import connect
from tocsin.web.app import create_app

_folder = tempfile.TemporaryDirectory(prefix="tocsin-fuzz-")
SETTINGS = {
    # A webhook or push URL is then checked without resolving its host: there may be no DNS.
    "TOCSIN_ALLOW_PRIVATE_TARGETS": "1",
    # Keys made on first use (the VAPID key of browser push) stay out of the home folder.
    "TOCSIN_KEYS_DIR": f"{_folder.name}/keys",
}


def _apply(patch: pytest.MonkeyPatch) -> None:
    for name, value in SETTINGS.items():
        patch.setenv(name, value)


# Schemathesis makes its test cases when this module is collected, so the app is made now;
# the settings are undone at once so that they do not leak into the modules collected next.
with pytest.MonkeyPatch.context() as _patch:
    _apply(_patch)
    _engine = connect(f"sqlite:///{_folder.name}/db.sqlite3")
    demo.replay(_engine, set_up_at=demo.COUNTRYWIDE_AT)
    _now = datetime.now(UTC)  # the token must hold today, not in the replayed January 2022
    people.add_user(_engine, "everyone", "a long enough password", list(Role), ["KZ"],
                    break_glass=True, now=_now, by=None, actor="fuzz-setup")
    _TOKEN = people.create_token(_engine, "everyone", list(Scope), label="fuzz", now=_now,
                                 by=None, actor="fuzz-setup")
    _app = create_app(_engine, rate_limit=10_000_000)
    schema = schemathesis.openapi.from_asgi("/openapi.json", _app)
public = schema.exclude(path_regex="^/api/v1/authority")
authority = schema.include(path_regex="^/api/v1/authority")


@pytest.fixture(autouse=True)
def _same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app rebuilds its snapshot (and reads the settings again) while the fuzz runs."""
    _apply(monkeypatch)


@public.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_public_api_matches_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()


@authority.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_authority_api_with_a_valid_token_matches_its_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_TOKEN.secret}"})


# --- production settings, on both databases ------------------------------------------------
# The same fuzz with the settings a real deployment runs: the default rate limit, and private
# webhook and push targets refused (their hosts resolved). Answers of 429 (the limit) are
# then expected; a 500 never is. Schemathesis's lazy (fixture) schemas do not run under this
# pytest, so each operation's strategy is driven here, on an app made for the backend.

EXPECTED = [
    ignored_auth,  # its probe with bad credentials may meet the limit first (429)
    positive_data_acceptance,  # a valid webhook URL whose host does not resolve is refused
]


@pytest.fixture
def production_app(empty_db_url: str, monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path) -> Iterator[tuple[Any, str]]:
    for name in ("TOCSIN_ALLOW_PRIVATE_TARGETS", "TOCSIN_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOCSIN_KEYS_DIR", str(tmp_path / "keys"))
    engine = connect(empty_db_url)
    demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    now = datetime.now(UTC)
    people.add_user(engine, "everyone", "a long enough password", list(Role), ["KZ"],
                    break_glass=True, now=now, by=None, actor="fuzz-setup")
    token = people.create_token(engine, "everyone", list(Scope), label="fuzz", now=now,
                                by=None, actor="fuzz-setup")
    yield create_app(engine), token.secret
    engine.dispose()


def test_the_api_with_production_settings_never_answers_500(
        production_app: tuple[Any, str]) -> None:
    app, secret = production_app
    operations = [result.ok() for result in
                  schemathesis.openapi.from_asgi("/openapi.json", app).get_all_operations()]
    assert operations
    statuses: Counter[int] = Counter()
    for operation in operations:
        authority = operation.path.startswith("/api/v1/authority")
        _never_500(operation, {"Authorization": f"Bearer {secret}"} if authority else None,
                   15 if authority else 25, statuses)
    print(f"answers by status: {dict(sorted(statuses.items()))}")
    assert sum(n for status, n in statuses.items() if status != 429) > len(operations), (
        "the limit answered nearly everything: the fuzz reached no route")


def _never_500(operation: Any, headers: dict[str, str] | None, examples: int,
               statuses: Counter[int]) -> None:
    """`examples` cases of one operation: none may answer 5xx, and any that is not 429 must
    match the document."""

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        assert response.status_code < 500, (f"{case.method} {case.formatted_path}: "
                                            f"{response.status_code} {response.text[:500]}")
        if response.status_code != 429:  # the limit answers first: not in the document
            case.validate_response(response, headers=headers, excluded_checks=EXPECTED)

    call()
