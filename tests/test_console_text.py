"""The issuing console's words: every page language has every English key, with the same
`{fields}`, and every key the console templates use exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from tocsin.domain.declaration import Status
from tocsin.render import urls
from tocsin.render.console_text import TEXTS, texts

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "tocsin" / "templates" / "console"
ENGLISH = TEXTS["en"]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _template_keys() -> set[str]:
    keys: set[str] = set()
    for path in sorted(TEMPLATES.glob("*.html")):
        source = path.read_text(encoding="utf-8")
        keys.update(re.findall(r"\bt\.([a-z_]+)", source))
        keys.update(re.findall(r"""\bt\[["']([a-z_]+)["']\]""", source))
    return keys


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_every_language_has_exactly_the_english_keys(lang: str) -> None:
    assert lang in TEXTS
    table = TEXTS[lang]
    assert set(table) == set(ENGLISH), (
        f"missing: {sorted(set(ENGLISH) - set(table))}, "
        f"extra: {sorted(set(table) - set(ENGLISH))}")


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_no_value_is_empty(lang: str) -> None:
    empty = [key for key, value in TEXTS[lang].items() if not value.strip()]
    assert empty == []


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_fields_match_english(lang: str) -> None:
    table = TEXTS[lang]
    wrong = {key: (sorted(_fields(table[key])), sorted(_fields(english)))
             for key, english in ENGLISH.items()
             if key in table and _fields(table[key]) != _fields(english)}
    assert wrong == {}


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_texts_return_the_language_table(lang: str) -> None:
    assert texts(lang) is TEXTS[lang]


def test_unknown_language_falls_back_to_english() -> None:
    assert texts("xx") is ENGLISH


def test_templates_use_only_english_keys() -> None:
    used = _template_keys()
    assert used, f"no t.<key> found under {TEMPLATES}"
    assert sorted(used - set(ENGLISH)) == []


def test_declaration_statuses_have_words() -> None:
    """render/console.py shows a declaration's status through these keys."""
    assert {s.value for s in Status} | {"cancelled"} <= set(ENGLISH)
