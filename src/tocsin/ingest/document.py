"""A typed reader over parsed TOML/JSON documents whose errors name the source and the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn

from tocsin.domain.errors import InvalidInput

LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class Document:
    """One table of a document, at `path` inside `source`."""

    def __init__(self, data: Mapping[str, Any], source: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{source}: {path or 'the document'} must be a table")
        self.data = data
        self.source = source
        self.path = path

    def where(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        key = key if is_text(key) else ascii(key)
        return f"{self.path}.{key}" if self.path else key

    def _checked(self, key: str, value: str) -> str:
        if not is_text(value):
            self.fail(key, "holds a lone surrogate (an unpaired \\ud800–\\udfff), which is not "
                           "text", "send the text as valid UTF-8")
        return value

    def fail(self, key: str | int, problem: str, fix: str | None = None) -> NoReturn:
        raise InvalidInput(f"{self.source}: {self.where(key)}: {problem}", fix)

    def reject_unknown(self, allowed: set[str]) -> None:
        """Refuse keys that would otherwise be silently ignored (typos)."""
        for key in self.data:
            if key not in allowed:
                self.fail(key, "is not a known key", f"use one of {', '.join(sorted(allowed))}")

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is missing", "add it")
            return default
        return self.data[key]

    def text(self, key: str, default: str | None = None, *, empty: bool = False) -> str:
        value = self.raw(key, default if default is not None else ...)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            self.fail(key, "is empty", "give a value")
        return self._checked(key, value)

    def optional_text(self, key: str) -> str | None:
        value = self.raw(key, None)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__}")
        return self._checked(key, value)

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {value!r}")
        return value

    def table(self, key: str) -> Document:
        value = self.raw(key)
        if not isinstance(value, Mapping):
            self.fail(key, "must be a table")
        return Document(value, self.source, self.where(key))

    def tables(self, key: str) -> list[Document]:
        value = self.raw(key)
        if not isinstance(value, list) or not value:
            self.fail(key, "must be a non-empty list of tables")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                self.fail(key, f"item {i + 1} must be a table")
            out.append(Document(item, self.source, f"{self.where(key)}[{i + 1}]"))
        return out

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(key, default if default is not None else ...)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return [self._checked(key, v) for v in value]

    def localized(self, key: str, languages: tuple[str, ...] | None) -> dict[str, str]:
        """A table of language → text; with `languages`, exactly those languages."""
        table = self.table(key)
        out: dict[str, str] = {}
        for lang in table.data:
            check_language(lang, table)
            out[lang] = table.text(lang)
        _check_languages(table, out, languages)
        return out

    def localized_lists(self, key: str, languages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        table = self.table(key)
        out: dict[str, tuple[str, ...]] = {}
        for lang in table.data:
            check_language(lang, table)
            items = table.strings(lang)
            if any(not item.strip() for item in items):
                table.fail(lang, "has an empty item")
            out[lang] = tuple(items)
        _check_languages(table, out, languages)
        return out


def is_text(text: str) -> bool:
    """Whether `text` is real text: JSON's "\\ud800" and a command line's undecodable bytes
    give lone surrogates, which no UTF-8 store, audit hash or page can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_language(lang: str, where: Document) -> str:
    if not LANGUAGE.match(lang):
        where.fail(lang, "is not a language tag", "use tags like 'kk', 'ru', 'en' or 'en-GB'")
    return lang


def _check_languages(
    table: Document, found: Mapping[str, object], wanted: tuple[str, ...] | None
) -> None:
    if wanted is None:
        if not found:
            raise InvalidInput(f"{table.source}: {table.path}: has no language", "add at least one")
        return
    missing = [lang for lang in wanted if lang not in found]
    extra = [lang for lang in found if lang not in wanted]
    if missing:
        raise InvalidInput(
            f"{table.source}: {table.path}: missing language {', '.join(missing)}",
            "every text must exist in each of the scheme's languages",
        )
    if extra:
        raise InvalidInput(
            f"{table.source}: {table.path}: language {', '.join(extra)} is not in the scheme's "
            "languages",
            f"use only {', '.join(wanted)} or add it to [scheme].languages",
        )
