"""Schemathesis over the JSON API, generated from our own OpenAPI document: every answer
must match the document, and no input may produce a 500. The authority API is driven with a
real token whose user holds every role, so requests get past the door and into the rules."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

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
