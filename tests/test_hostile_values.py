"""Values that once crashed a door, each refused by the one parser of its kind and naming the
field: a lone surrogate in any text (a 500 from the audit hash), a time whose UTC form leaves
the calendar (a crash in `effective`, `expires`, `status --at`), a Last-Event-ID of 5,000
digits (a dead event stream), area files nested 100,000 deep, with numbers of hundreds or
thousands of digits, CSV fields past the csv module's limit, control characters in names
(broken SVG badges), shapes that repair into lines or points, and a CAP file whose 30,000
findings took a minute to lay out as a table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from tests.helpers import assert_error
from tests.test_authority_http import API, Site, body, serve
from tests.test_cap_check import alert
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


# --- area files ------------------------------------------------------------------------------

SQUARE = [[76.0, 43.0], [77.0, 43.0], [77.0, 44.0], [76.0, 44.0], [76.0, 43.0]]


def feature(coordinates: Any = None, *, kind: str = "Polygon", name: str = "Hostile",
            **properties: Any) -> dict[str, Any]:
    return {"type": "Feature",
            "properties": {"code": "KZ-75-X", "parent": "KZ-75", "name:en": name, **properties},
            "geometry": {"type": kind, "coordinates": [SQUARE] if coordinates is None
                         else coordinates}}


def geojson(*features: dict[str, Any]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def areas_json(db_url: str) -> Any:
    result = runner.invoke(cli_app, ["areas", "list", "--json"],
                           env={"TOCSIN_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused_import(db_url: str, path: Path, *flags: str) -> str:
    """The import exits 2 with a message and writes nothing; the message, on one line."""
    before = areas_json(db_url)
    result = runner.invoke(cli_app, ["areas", "import", str(path), *flags],
                           env={"TOCSIN_DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert areas_json(db_url) == before
    return " ".join(result.stderr.split())


def test_geojson_nested_100000_deep_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.geojson"
    path.write_text('{"type": "FeatureCollection", "features": ' + "[" * 100_000
                    + "]" * 100_000 + "}")
    said = refused_import(db_url, path)
    assert f"{path}: arrays and objects nest more than 32 deep" in said
    assert "FeatureCollection of Polygon or MultiPolygon features" in said


def test_geojson_nesting_is_bounded_even_where_python_copes(db_url: str,
                                                            tmp_path: Path) -> None:
    # 200 levels in a property nobody reads: json parses it, the bound refuses it
    path = tmp_path / "deep.geojson"
    path.write_text(geojson(feature(extra=json.loads("[" * 200 + "]" * 200))))
    assert "nest more than 32 deep" in refused_import(db_url, path)


@pytest.mark.parametrize(("digits", "message"), [
    (400, "feature 1 (KZ-75-X): position [1000000"),
    (5000, "line 1: a number of 5,000 digits is not a coordinate or a value"),
])
def test_geojson_integers_of_hundreds_or_thousands_of_digits_are_refused(
        db_url: str, tmp_path: Path, digits: int, message: str) -> None:
    huge = "1" + "0" * (digits - 1)
    ring = json.dumps(SQUARE).replace("76.0, 43.0", f"{huge}, 43.0")
    path = tmp_path / "huge.geojson"
    path.write_text(geojson(feature()).replace(json.dumps([SQUARE]), f"[{ring}]"))
    said = refused_import(db_url, path)
    assert message in said
    assert "decimal degrees" in said or "[longitude, latitude]" in said
    assert len(said) < 600  # the number is not echoed whole


def test_a_csv_field_past_the_csv_limit_is_refused_naming_line_and_limit(
        db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("code,parent,name:en\nKZ-75-X,KZ-75,Short\n"
                    f"KZ-75-Y,KZ-75,{'N' * 131_073}\n", encoding="utf-8")
    said = refused_import(db_url, path)
    assert f"{path}: line 3: a field is longer than the limit of 131,072 characters" in said


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f", "\n"])
def test_control_characters_in_csv_names_are_refused(db_url: str, tmp_path: Path,
                                                     character: str) -> None:
    path = tmp_path / "names.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(f'code,parent,name:en,name:kk\nKZ-75-X,KZ-75,Fine,"Bad{character}name"\n')
    said = refused_import(db_url, path)
    assert (f"{path}: line " in said and "area 'KZ-75-X': name:kk holds the control character "
            f"U+{ord(character):04X} at position 4") in said
    assert "one line of printable text" in said


@pytest.mark.parametrize("character", ["\x00", "\x1f", "\u0085", "\ud800"])
def test_control_characters_in_geojson_names_are_refused(db_url: str, tmp_path: Path,
                                                         character: str) -> None:
    path = tmp_path / "names.geojson"
    path.write_text(geojson(feature(name=f"Bad{character}name")), encoding="utf-8")
    said = refused_import(db_url, path)
    assert (f"feature 1 (KZ-75-X): property 'name:en' holds the control character "
            f"U+{ord(character):04X} at position 4") in said


@pytest.mark.parametrize(("ring", "repaired"), [
    ([[76, 43], [77, 44], [78, 45], [76, 43]], "MultiLineString"),
    ([[76, 43], [76, 43], [76, 43], [76, 43]], "Point"),
    ([[76, 43], [77, 44], [76, 43], [77, 44], [76, 43]], "LineString"),
])
def test_a_repair_that_leaves_no_area_is_refused(db_url: str, tmp_path: Path,
                                                 ring: list[list[int]], repaired: str) -> None:
    path = tmp_path / "flat.geojson"
    path.write_text(geojson(feature([ring])))
    said = refused_import(db_url, path, "--repair-geometry")
    assert "feature 1 (KZ-75-X): geometry is not valid" in said
    assert f"repairing it gives a {repaired}, which encloses no area" in said


# --- CAP check -------------------------------------------------------------------------------

def test_cap_check_lists_a_bounded_table_of_30000_findings(tmp_path: Path) -> None:
    attributes = "".join(f' a{i}="x"' for i in range(30_000))
    path = tmp_path / "attributes.xml"
    path.write_text(alert().replace("<scope>", f"<scope{attributes}>"), encoding="utf-8")
    assert 300_000 < path.stat().st_size < 330_000
    result = runner.invoke(cli_app, ["cap", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "CAP 1.2, 30000 errors, 0 warnings" in result.stdout
    assert "attribute 'a199' is not allowed" in result.stdout
    assert "attribute 'a200' is not allowed" not in result.stdout
    assert ("29,800 more findings not shown (the table lists the first 200); give --json to "
            "list them all") in " ".join(result.stdout.split())
    listed = runner.invoke(cli_app, ["cap", "check", "--json", str(path)])
    assert len(json.loads(listed.stdout)["findings"]) == 30_000
