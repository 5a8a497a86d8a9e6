"""Texts per language and how to pick one for a reader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

Localized = Mapping[str, str]
"""Language tag (BCP 47, e.g. 'kk', 'ru', 'en') to text."""


def pick(texts: Mapping[str, T], preferred: Sequence[str]) -> T | None:
    """The text in the first preferred language present, else in any language, else None."""
    for lang in preferred:
        if lang in texts:
            return texts[lang]
        base = lang.split("-")[0]
        if base in texts:
            return texts[base]
    return next(iter(texts.values()), None)
