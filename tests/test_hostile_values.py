"""Values that once crashed a door, each refused by the one parser of its kind and naming the
field: a lone surrogate in any text (a 500 from the audit hash), a time whose UTC form leaves
the calendar (a crash in `effective`, `expires`, `status --at`), a Last-Event-ID of 5,000
digits (a dead event stream)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from tests.helpers import assert_error
from tests.test_authority_http import API, Site, body, serve
from tests.test_web import read_events
from tests.web_server import running
from typer.testing import CliRunner

from tocsin.cli.main import app as cli_app
from tocsin.web.app import create_app

LONE = "\ud800"
BEYOND = "9999-12-31T23:59:59-14:00"
runner = CliRunner()


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    with serve(engine) as fresh:
        yield fresh


@pytest.mark.parametrize(("who", "path", "sent", "field"), [
    ("issuer-kz", "/declarations",
     body("high", "KZ-75", texts={"en": {"headline": f"Critical {LONE}"}}), "headline"),
    ("breaker", "/declarations",
     body("high", "KZ", submit=True, break_glass=f"no approver {LONE}"), "break_glass"),
    ("admin", "/tokens", {"user": "admin", "scopes": ["read-audit"], "label": LONE}, "label"),
    ("admin", "/users", {"name": "new", "password": "long enough password", "roles": ["auditor"],
                         "email": f"a{LONE}@example.org"}, "email"),
    ("admin", "/users", {"name": "new", "password": f"long enough {LONE}",
                         "roles": ["auditor"]}, "password"),
])
def test_a_lone_surrogate_is_refused_naming_the_field(
        site: Site, who: str, path: str, sent: dict[str, Any], field: str) -> None:
    before = site.quiet(who)
    # JSON's escape "\ud800", which json.loads reads as a lone surrogate
    response = site.api.post(API + path, content=json.dumps(sent).encode(), headers={
        "authorization": f"Bearer {site.tokens[who]}", "content-type": "application/json"})
    assert_error(response, 400, field)
    assert "surrogate" in response.json()["error"]["message"]
    assert site.quiet(who) == before


@pytest.mark.parametrize("field", ["effective", "expires"])
def test_a_time_beyond_the_calendar_is_refused_by_the_api(site: Site, field: str) -> None:
    before = site.quiet("issuer-kz")
    response = site.call("issuer-kz", "POST", "/declarations",
                         json=body("high", "KZ-75", **{field: BEYOND}))
    assert_error(response, 400, f"{field} '{BEYOND}' is out of range")
    assert site.quiet("issuer-kz") == before


def test_a_token_lifetime_beyond_the_calendar_is_refused_by_the_api(site: Site) -> None:
    before = site.quiet("admin")
    response = site.call("admin", "POST", "/tokens", json={
        "user": "admin", "scopes": ["read-audit"], "expires": "P99999999999W"})
    assert_error(response, 400, "expires 'P99999999999W' is longer than 100 years")
    assert site.quiet("admin") == before


@pytest.mark.parametrize(("args", "field"), [
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ-75",
      "--headline", "Test", "--effective", BEYOND], "effective"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ-75",
      "--headline", "Test", "--expires", BEYOND], "expires"),
    (["status", "KZ-75", "--at", BEYOND], "at"),
])
def test_a_time_beyond_the_calendar_exits_2_on_the_command_line(
        db_url: str, args: list[str], field: str) -> None:
    result = runner.invoke(cli_app, args, env={"TOCSIN_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert f"'{BEYOND}' is out of range" in said and field in said


@pytest.mark.parametrize(("args", "option"), [
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ-75",
      "--headline", "Test \udcff"], "--headline"),
    (["tokens", "create", "--user", "nobody", "--scope", "read-audit", "--label", "x\udcff"],
     "--label"),
    (["cancel", "nope", "--reason", "\udcff"], "--reason"),
])
def test_a_lone_surrogate_on_the_command_line_exits_2(db_url: str, args: list[str],
                                                       option: str) -> None:
    # an argument whose bytes are not UTF-8 reaches Python as a lone surrogate
    result = runner.invoke(cli_app, args, env={"TOCSIN_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert f"the value of {option} (" in result.stderr and "is not UTF-8 text" in result.stderr


def test_a_last_event_id_of_5000_digits_gets_a_reset_and_the_stream_lives(
        engine: Engine) -> None:
    with running(create_app(engine)) as base:
        found: list[tuple[str, str, str]] = []
        reader = threading.Thread(target=read_events,
                                  args=(base, "9" * 5000, 1, found, threading.Event()))
        reader.start()
        reader.join(10)
        assert [e[1] for e in found] == ["reset"]
        assert httpx.get(f"{base}/api/v1/levels").status_code == 200
