"""Schemathesis over the public API, generated from our own OpenAPI document: every answer
must match the document, and no input may produce a 500."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from tocsin import demo
from tocsin.store.database import connect
from tocsin.web.app import create_app

_folder = tempfile.TemporaryDirectory(prefix="tocsin-fuzz-")
_engine = connect(f"sqlite:///{_folder.name}/db.sqlite3")
demo.replay(_engine, set_up_at=demo.COUNTRYWIDE_AT)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_engine))


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_public_api_matches_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()
