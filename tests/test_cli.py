"""The command line through its runner: output for people, --json, exit codes, and that a
refused command writes nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.helpers import dump
from typer.testing import CliRunner

from tocsin.cli.main import app

runner = CliRunner()


def cli(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200"})


def ok_json(url: str, *args: str) -> Any:
    result = cli(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_declare_status_explain_history(db_url: str) -> None:
    made = ok_json(db_url, "declare", "--scheme", "kz-terror", "--level", "high",
                   "--area", "KZ-75", "--headline", "High level in Almaty")
    [d] = made
    assert d["status"] == "published" and d["texts"]["en"]["headline"] == "High level in Almaty"
    status = ok_json(db_url, "status", "KZ-75")
    [level] = status["levels"]
    assert level["level"] == "high" and level["sources"][0]["declaration"] == d["id"]
    result = cli(db_url, "explain", "KZ-75")
    assert result.exit_code == 0
    assert f"KZ-75 Almaty is High (orange) because declaration {d['id']} for KZ-75 Almaty" \
        in result.stdout
    history = ok_json(db_url, "history", "KZ-75")
    assert [x["id"] for x in history["declarations"]] == [d["id"]]
    assert [p["level"] for p in history["timeline"]["kz-terror"]] == [None, "high"]
    table = cli(db_url, "status", "--scheme", "kz-terror")
    assert table.exit_code == 0 and "HIGH (ORANGE)" in table.stdout


def test_change_file_with_languages_replaces_and_cancel(db_url: str, tmp_path: Path) -> None:
    [first] = ok_json(db_url, "declare", "--scheme", "kz-terror", "--level", "critical",
                      "--area", "KZ", "--headline", "Critical countrywide")
    change = tmp_path / "step-down.toml"
    change.write_text(textwrap.dedent(f"""
        [[declaration]]
        scheme = "kz-terror"
        level = "critical"
        areas = ["KZ-75", "KZ-19"]
        replaces = ["{first['id']}"]
        [declaration.texts.en]
        headline = "Critical stays in Almaty"
        [declaration.texts.kk]
        headline = "Алматыда қатерлі деңгей сақталады"
        [declaration.texts.ru]
        headline = "В Алматы сохраняется критический уровень"

        [[declaration]]
        scheme = "kz-terror"
        level = "moderate"
        areas = ["KZ-11"]
        replaces = ["{first['id']}"]
        expires = 2099-01-01T00:00:00+06:00
        [declaration.texts.en]
        headline = "Moderate in Akmola"
        instructions = "Stay vigilant."
        """), encoding="utf-8")
    made = ok_json(db_url, "declare", "--from-file", str(change))
    assert [d["level"] for d in made] == ["critical", "moderate"]
    assert set(made[0]["texts"]) == {"en", "kk", "ru"}
    levels = {x["area"]: x["level"] for x in ok_json(db_url, "status")["levels"]}
    assert levels["KZ-75"] == "critical" and levels["KZ-11"] == "moderate"
    assert levels["KZ-79"] is None
    history = ok_json(db_url, "history", "KZ-11")
    first_entry = next(x for x in history["declarations"] if x["id"] == first["id"])
    assert first_entry["replaced_by"] == sorted(d["id"] for d in made)
    cancelled = ok_json(db_url, "cancel", made[1]["id"], "--reason", "Threat has passed")
    assert cancelled["cancellation"]["reason"] == "Threat has passed"
    levels = {x["area"]: x["level"] for x in ok_json(db_url, "status")["levels"]}
    assert levels["KZ-11"] is None


def test_draft_then_publish(db_url: str) -> None:
    [draft] = ok_json(db_url, "declare", "--scheme", "kz-terror", "--level", "moderate",
                      "--area", "KZ-79", "--headline", "Moderate in Shymkent", "--draft")
    assert draft["status"] == "draft" and draft["effective"] is None
    assert ok_json(db_url, "status", "KZ-79")["levels"][0]["level"] is None
    [published] = ok_json(db_url, "publish", draft["id"])
    assert published["status"] == "published"
    assert ok_json(db_url, "status", "KZ-79")["levels"][0]["level"] == "moderate"


def test_status_at_another_instant_and_kazakh_names(db_url: str) -> None:
    ok_json(db_url, "declare", "--scheme", "kz-terror", "--level", "critical", "--area", "KZ",
            "--headline", "Critical", "--effective", "2090-01-07T09:00+06:00")
    before = ok_json(db_url, "status", "KZ-75", "--at", "2090-01-07T08:59+06:00")
    after = ok_json(db_url, "status", "KZ-75", "--at", "2090-01-07T03:00Z")
    assert before["levels"][0]["level"] is None
    assert after["levels"][0]["level"] == "critical"
    assert after["levels"][0]["inherited_from"] == "KZ"
    result = cli(db_url, "explain", "KZ-75", "--at", "2090-01-08T00:00Z", "--lang", "kk")
    assert result.exit_code == 0 and "Алматы" in result.stdout and "Қазақстан" in result.stdout


BAD_INPUTS = [
    (["declare", "--level", "high", "--area", "KZ", "--headline", "h"], "--scheme is missing"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ-99",
      "--headline", "h"], "area 'KZ-99' is not known"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "kz-75",
      "--headline", "h"], "did you mean 'KZ-75'"),
    (["declare", "--scheme", "kz-terror", "--level", "red", "--area", "KZ",
      "--headline", "h"], "choose one of moderate, high, critical"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ", "--headline", "h",
      "--effective", "tomorrow"], "is not an ISO 8601 time"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ", "--headline", "h",
      "--effective", "2099-01-07T09:00"], "has no UTC offset"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ", "--headline", "h",
      "--lang", "de"], "language 'de' is not one of scheme 'kz-terror'"),
    (["declare", "--scheme", "kz-terror", "--level", "high", "--area", "KZ", "--headline", "h",
      "--expires", "2000-01-01T00:00Z"], "is not after the effective time"),
    (["declare", "--from-file", "missing.toml"], "does not exist"),
    (["declare", "--from-file", "x.toml", "--level", "high"], "cannot be combined"),
    (["publish", "20990101-00000000"], "declaration '20990101-00000000' is not known"),
    (["cancel", "20990101-00000000", "--reason", "r"], "is not known"),
    (["status", "--at", "2022-13-01T00:00Z"], "is not an ISO 8601 time"),
    (["status", "--scheme", "kz-terorr"], "did you mean 'kz-terror'"),
    (["explain", "XX"], "area 'XX' is not known"),
    (["history", "KZ", "--scheme", "nope"], "scheme 'nope' is not known"),
    (["audit", "verify", "--head", "12:abc"], "is not SEQ:HASH"),
    (["areas", "import"], "give either a FILE or --iso CODE"),
    (["areas", "import", "--iso", "QQ"], "is not an ISO 3166-1 alpha-2 country code"),
    (["areas", "import", "areas.txt"], "cannot tell the format"),
    (["areas", "import", "--iso", "KZ", "--name-property", "en"], "is not LANG=PROPERTY"),
    (["areas", "import", "--iso", "KZ", "--repair-geometry"], "only apply to GeoJSON files"),
    (["schemes", "show", "nope"], "scheme 'nope' is not known"),
    (["schemes", "import", "missing.toml"], "does not exist"),
    (["status", "--lang", ""], "--lang is empty"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    db_url: str, engine: Engine, args: list[str], message: str
) -> None:
    before = dump(engine)
    result = cli(db_url, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert dump(engine) == before


BAD_FILES = [
    ("scheme", "this is not = = toml", "not valid TOML"),
    ("scheme", '[scheme]\nkey = "x"\n', "scheme.languages: is missing"),
    ("scheme", '[scheme]\nkey = "Bad Key"\n[[levels]]\nkey="a"\n', "is not a valid scheme key"),
    ("change", '[[declaration]]\nscheme = "kz-terror"\nlevel = "high"\nareas = ["KZ"]\n'
     'colour = "red"\n[declaration.texts.en]\nheadline = "h"\n',
     "declaration[1].colour: is not a known key"),
    ("change", '[[declaration]]\nscheme = "kz-terror"\nlevel = "high"\nareas = "KZ"\n'
     '[declaration.texts.en]\nheadline = "h"\n', "areas: must be a list of strings"),
    ("change", '[[declaration]]\nscheme = "kz-terror"\nlevel = "high"\nareas = ["KZ"]\n'
     'effective = 2099-01-01T00:00:00\n[declaration.texts.en]\nheadline = "h"\n',
     "has no UTC offset"),
    ("change", '[[declaration]]\nscheme = "kz-terror"\nlevel = "high"\nareas = ["KZ"]\n',
     "texts: is missing"),
]


@pytest.mark.parametrize(("kind", "content", "message"), BAD_FILES)
def test_bad_files_exit_2_naming_file_key_and_problem(
    db_url: str, engine: Engine, tmp_path: Path, kind: str, content: str, message: str
) -> None:
    path = tmp_path / f"{kind}.toml"
    path.write_text(content, encoding="utf-8")
    before = dump(engine)
    args = ["schemes", "import", str(path)] if kind == "scheme" else [
        "declare", "--from-file", str(path)]
    result = cli(db_url, *args)
    assert result.exit_code == 2, result.output
    flat = " ".join(result.stderr.split())
    assert str(path) in flat and message in flat
    assert dump(engine) == before


def test_schemes_list_show_and_import(db_url: str, tmp_path: Path) -> None:
    keys = [s["key"] for s in ok_json(db_url, "schemes", "list")]
    assert keys == ["kz-terror", "meteoalarm", "uk-terror", "us-ntas"]
    shown = cli(db_url, "schemes", "show", "kz-terror", "--lang", "ru")
    assert shown.exit_code == 0 and "КРИТИЧЕСКИЙ" in shown.stdout
    campus = tmp_path / "campus.toml"
    campus.write_text(textwrap.dedent("""
        [scheme]
        key = "campus"
        languages = ["en"]
        category = "Safety"
        max_term = "P2D"
        name = { en = "Campus security level" }
        event = { en = "Campus security" }
        description = { en = "Security level of the campus." }
        [[levels]]
        key = "guarded"
        rank = 1
        colour = "#1565C0"
        cap = { severity = "Minor", urgency = "Future", certainty = "Possible" }
        name = { en = "Guarded" }
        colour_name = { en = "blue" }
        meaning = { en = "Be watchful." }
        measures = { en = ["Doors are checked."] }
        guidance = { en = ["Carry your badge."] }
        """), encoding="utf-8")
    assert ok_json(db_url, "schemes", "import", str(campus))["outcome"] == "created"
    assert ok_json(db_url, "schemes", "import", str(campus))["outcome"] == "unchanged"
    result = cli(db_url, "declare", "--scheme", "campus", "--level", "guarded", "--area",
                 "KZ-75", "--headline", "Guarded", "--expires", "2099-01-01T00:00Z")
    assert result.exit_code == 2 and "longer than scheme 'campus' allows (P2D)" in " ".join(
        result.stderr.split())


def test_areas_import_csv_and_list(db_url: str, tmp_path: Path) -> None:
    districts = tmp_path / "districts.csv"
    districts.write_text("code,parent,kind,name:en,name:ru,geocode:KATO\n"
                         "KZ-75-MED,KZ-75,district,Medeu District,Медеуский район,751210000\n",
                         encoding="utf-8")
    assert ok_json(db_url, "areas", "import", str(districts))["created"] == ["KZ-75-MED"]
    listed = {a["code"]: a for a in ok_json(db_url, "areas", "list")}
    assert listed["KZ-75-MED"]["parent"] == "KZ-75"
    assert listed["KZ-75-MED"]["geocodes"] == [{"valueName": "KATO", "value": "751210000"}]
    again = ok_json(db_url, "areas", "import", str(districts))
    assert again["unchanged"] == ["KZ-75-MED"]


def test_areas_import_iso_on_an_empty_database(empty_db_url: str) -> None:
    assert cli(empty_db_url, "init").exit_code == 0
    report = ok_json(empty_db_url, "areas", "import", "--iso", "KZ")
    assert len(report["created"]) == 21
    listed = {a["code"]: a for a in ok_json(empty_db_url, "areas", "list")}
    assert listed["KZ"]["names"]["kk"] == "Қазақстан"
    assert listed["KZ-75"]["kind"] == "city" and listed["KZ-75"]["parent"] == "KZ"


def test_init_is_idempotent_and_commands_need_it(empty_db_url: str) -> None:
    result = cli(empty_db_url, "status")
    assert result.exit_code == 2 and "run 'tocsin init' first" in result.stderr
    first = ok_json(empty_db_url, "init")
    assert first["migrated_from"] is None and len(first["schemes_installed"]) == 4
    second = ok_json(empty_db_url, "init")
    assert second["migrated_from"] == second["migration"] and second["schemes_installed"] == []


def test_audit_verify_exit_codes(db_url: str, engine: Engine) -> None:
    from sqlalchemy import update

    from tocsin.store import tables

    good = ok_json(db_url, "audit", "verify")
    assert good["ok"] and good["checked"] >= 5
    head = f"{good['head']['seq']}:{good['head']['hash']}"
    assert cli(db_url, "audit", "verify", "--head", head).exit_code == 0
    shown = ok_json(db_url, "audit", "show", "--limit", "2")
    assert [e["seq"] for e in shown] == [good["head"]["seq"] - 1, good["head"]["seq"]]
    with engine.begin() as conn:
        conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == 2)
                     .values(subject="tampered"))
    result = cli(db_url, "audit", "verify")
    assert result.exit_code == 1 and "BROKEN at entry 2" in result.stderr


def test_demo_replays_january_2022(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--dir", str(folder), "--no-serve"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "replay of January 2022 for demonstration" in out
    assert (folder / "tocsin.sqlite3").exists()
    assert "CRITICAL (RED)" in out and "HIGH (ORANGE)" in out and "MODERATE (YELLOW)" in out
    assert "KZ-75 Almaty is Critical (red) because declaration" in out
    assert "for KZ Kazakhstan (countrywide) is in effect since 2022-01-07 09:00 +06" in out
    assert "inherited from KZ Kazakhstan" in out
    assert "intact=True" in out
    again = runner.invoke(app, ["demo", "--dir", str(folder), "--no-serve"])
    assert again.exit_code == 2 and "is not empty" in again.stderr
