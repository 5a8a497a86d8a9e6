"""The one parser for level schemes (TOML files and the documents stored from them)."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from tocsin.domain.cap import Category, Certainty, Severity, Urgency
from tocsin.domain.errors import InvalidInput
from tocsin.domain.scheme import ApprovalRule, CapMapping, Level, Scheme
from tocsin.domain.times import parse_duration
from tocsin.ingest.document import Document, check_language

E = TypeVar("E", Category, Severity, Urgency, Certainty)
KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
SCHEME_KEYS = {"key", "languages", "default_language", "category", "baseline", "expiry_required",
               "max_term", "source", "name", "event", "description"}
LEVEL_KEYS = {"key", "rank", "colour", "cap", "name", "colour_name", "meaning", "measures",
              "guidance"}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; InvalidInput names the file, line and problem."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidInput(f"file {str(path)!r} does not exist", "check the path") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{path}: not valid TOML: {error}", "fix the syntax") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: is not UTF-8 text", "save it as UTF-8") from None
    except ValueError:  # an integer past Python's int_max_str_digits
        raise InvalidInput(f"{path}: holds an integer of more than "
                           f"{sys.get_int_max_str_digits():,} digits", "shorten it") from None
    except RecursionError:
        raise InvalidInput(f"{path}: arrays or inline tables nest too deeply",
                           "flatten the document") from None


def parse_scheme(document: Mapping[str, Any], source: str) -> Scheme:
    """A validated Scheme from a scheme document; InvalidInput names source, key and problem."""
    root = Document(document, source)
    root.reject_unknown({"scheme", "levels", "approval"})
    head = root.table("scheme")
    head.reject_unknown(SCHEME_KEYS)
    key = head.text("key")
    if not KEY.match(key):
        head.fail("key", f"{key!r} is not a valid scheme key",
                  "use lowercase letters, digits and '-', e.g. 'kz-terror'")
    languages = tuple(check_language(lang, head) for lang in head.strings("languages"))
    if not languages or len(set(languages)) != len(languages):
        head.fail("languages", "must list each language once, at least one")
    default_language = head.text("default_language", languages[0])
    if default_language not in languages:
        head.fail("default_language", f"{default_language!r} is not in languages")
    category = _enum(head, "category", Category)
    max_term_text = head.optional_text("max_term")
    levels = tuple(sorted((_level(item, languages) for item in root.tables("levels")),
                          key=lambda level: level.rank))
    _check_levels(root, levels)
    baseline = head.optional_text("baseline")
    if baseline is not None and baseline not in {level.key for level in levels}:
        head.fail("baseline", f"{baseline!r} is not one of the levels",
                  f"use one of {', '.join(level.key for level in levels)} or \"\" for none")
    try:
        max_term = parse_duration(max_term_text, "max_term") if max_term_text else None
    except InvalidInput as error:
        head.fail("max_term", error.problem, error.fix)
    approval = _approval(root, levels, baseline)
    return Scheme(
        key=key,
        name=head.localized("name", languages),
        event=head.localized("event", languages),
        description=head.localized("description", languages),
        category=category,
        languages=languages,
        default_language=default_language,
        levels=levels,
        baseline=baseline,
        expiry_required=head.boolean("expiry_required", False),
        max_term=max_term,
        source=head.optional_text("source"),
        approval=approval,
    )


def _approval(root: Document, levels: tuple[Level, ...], baseline: str | None) -> ApprovalRule:
    """The two-person rule; without an [approval] table every level but the baseline needs it."""
    keys = [level.key for level in levels]
    if "approval" not in root.data:
        above = [key for key in keys if key != baseline]
        return ApprovalRule(from_level=above[0] if above else None)
    table = root.table("approval")
    table.reject_unknown({"from", "lowering", "cancelling"})
    start = table.optional_text("from")
    if start and start not in keys:
        table.fail("from", f"{start!r} is not one of the levels",
                   f"use one of {', '.join(keys)}, or \"\" when no level needs approval")
    return ApprovalRule(from_level=start or None, lowering=table.boolean("lowering", False),
                        cancelling=table.boolean("cancelling", False))


def _level(item: Document, languages: tuple[str, ...]) -> Level:
    item.reject_unknown(LEVEL_KEYS)
    key = item.text("key")
    if not KEY.match(key):
        item.fail("key", f"{key!r} is not a valid level key", "use lowercase letters, digits, '-'")
    colour = item.text("colour")
    if not COLOUR.match(colour):
        item.fail("colour", f"{colour!r} is not a colour", "write it as #RRGGBB")
    cap = item.table("cap")
    cap.reject_unknown({"severity", "urgency", "certainty"})
    return Level(
        key=key,
        rank=item.integer("rank"),
        colour=colour.upper(),
        name=item.localized("name", languages),
        colour_name=item.localized("colour_name", languages),
        meaning=item.localized("meaning", languages),
        measures=item.localized_lists("measures", languages),
        guidance=item.localized_lists("guidance", languages),
        cap=CapMapping(
            severity=_enum(cap, "severity", Severity),
            urgency=_enum(cap, "urgency", Urgency),
            certainty=_enum(cap, "certainty", Certainty),
        ),
    )


def _enum(table: Document, key: str, kind: type[E]) -> E:
    value = table.text(key)
    try:
        return kind(value)
    except ValueError:
        table.fail(key, f"{value!r} is not a CAP {key}",
                   f"use one of {', '.join(member.value for member in kind)}")


def _check_levels(root: Document, levels: tuple[Level, ...]) -> None:
    seen_keys: set[str] = set()
    seen_ranks: set[int] = set()
    for level in levels:
        if level.key in seen_keys:
            root.fail("levels", f"level key {level.key!r} appears twice",
                      "give each level its own key")
        if level.rank in seen_ranks:
            root.fail("levels", f"rank {level.rank} is used by two levels",
                      "give each level its own rank (higher = more severe)")
        seen_keys.add(level.key)
        seen_ranks.add(level.rank)


def load_scheme_file(path: Path) -> tuple[Scheme, dict[str, Any]]:
    """Parse a scheme file; returns the scheme and the document to store."""
    document = read_toml(path)
    return parse_scheme(document, str(path)), document


def builtin_scheme_files() -> list[Path]:
    """The scheme files that ship with tocsin."""
    folder = files("tocsin") / "data" / "schemes"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml"))
