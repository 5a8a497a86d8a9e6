"""Schemathesis over the JSON API, generated from our own OpenAPI document: every answer
must match the document, and no input may produce a 500. The authority API is driven with a
real token whose user holds every role, so requests get past the door and into the rules."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from tocsin import demo
from tocsin.domain.access import Role, Scope
from tocsin.service import people
from tocsin.store.database import connect
from tocsin.web.app import create_app

_folder = tempfile.TemporaryDirectory(prefix="tocsin-fuzz-")
_engine = connect(f"sqlite:///{_folder.name}/db.sqlite3")
demo.replay(_engine, set_up_at=demo.COUNTRYWIDE_AT)
people.add_user(_engine, "everyone", "a long enough password", list(Role), ["KZ"],
                break_glass=True, now=demo.COUNTRYWIDE_AT, by=None, actor="fuzz-setup")
_TOKEN = people.create_token(_engine, "everyone", list(Scope), label="fuzz",
                             lifetime=people.LONGEST_TOKEN_LIFETIME,
                             now=demo.COUNTRYWIDE_AT, by=None, actor="fuzz-setup")
_app = create_app(_engine, rate_limit=10_000_000)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)
public = schema.exclude(path_regex="^/api/v1/authority")
authority = schema.include(path_regex="^/api/v1/authority")


@public.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_public_api_matches_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()


@authority.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_authority_api_with_a_valid_token_matches_its_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_TOKEN.secret}"})
