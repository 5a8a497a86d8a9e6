"""The one parser for declaration requests: files for --from-file, CLI flags, API bodies.

A change document holds one or more declarations that are published together:

    [[declaration]]
    scheme = "kz-terror"
    level = "critical"
    areas = ["KZ-75", "KZ-19"]
    effective = 2022-01-14T00:00:00+06:00   # optional: from publication
    expires = 2022-01-28T00:00:00+06:00     # optional
    replaces = ["20220107-3fa9c2d1"]        # optional
    [declaration.texts.en]
    headline = "…"
    description = "…"                       # optional, as are measures and instructions
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.domain.errors import InvalidInput
from tocsin.domain.times import parse_instant
from tocsin.ingest.document import Document, check_language
from tocsin.ingest.schemes import read_toml

DECLARATION_KEYS = {"scheme", "level", "areas", "effective", "expires", "replaces", "sender",
                    "texts"}
STATEMENT_KEYS = {"headline", "description", "measures", "instructions"}


def parse_change(document: Mapping[str, Any], source: str, *,
                 default_sender: str) -> list[DeclarationRequest]:
    """The declaration requests of a change document, in order."""
    root = Document(document, source)
    root.reject_unknown({"declaration"})
    return [parse_declaration(item, default_sender=default_sender)
            for item in root.tables("declaration")]


def parse_declaration(item: Document, *, default_sender: str) -> DeclarationRequest:
    item.reject_unknown(DECLARATION_KEYS)
    texts_table = item.table("texts")
    texts: dict[str, Statement] = {}
    for lang in texts_table.data:
        check_language(lang, texts_table)
        statement = texts_table.table(lang)
        statement.reject_unknown(STATEMENT_KEYS)
        texts[lang] = Statement(
            headline=statement.text("headline"),
            description=statement.text("description", "", empty=True),
            measures=statement.text("measures", "", empty=True),
            instructions=statement.text("instructions", "", empty=True),
        )
    return DeclarationRequest(
        scheme=item.text("scheme"),
        level=item.text("level"),
        areas=tuple(item.strings("areas")),
        texts=texts,
        sender=item.text("sender", default_sender),
        effective=_instant(item, "effective"),
        expires=_instant(item, "expires"),
        replaces=tuple(item.strings("replaces", [])),
    )


def _instant(item: Document, key: str) -> datetime | None:
    value = item.raw(key, None)
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            item.fail(key, f"{value.isoformat()} has no UTC offset",
                      "write it like 2022-01-07T00:00:00+06:00")
        return parse_instant(value.isoformat(), key)
    if not isinstance(value, str):
        item.fail(key, f"must be a time, not {value!r}")
    try:
        return parse_instant(value, key)
    except InvalidInput as error:
        item.fail(key, error.problem, error.fix)


def read_change_file(path: Path, *, default_sender: str) -> list[DeclarationRequest]:
    """Requests from a TOML file (or JSON, when the name ends in .json)."""
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInput(f"file {str(path)!r} does not exist", "check the path") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidInput(f"{path}: not valid JSON: {error}", "fix the syntax") from None
        except ValueError:  # an integer past Python's int_max_str_digits
            raise InvalidInput(f"{path}: holds an integer of more than "
                               f"{sys.get_int_max_str_digits():,} digits",
                               "shorten it") from None
        except RecursionError:
            raise InvalidInput(f"{path}: arrays or objects nest too deeply",
                               "flatten the document") from None
    else:
        document = read_toml(path)
    return parse_change(document, str(path), default_sender=default_sender)
