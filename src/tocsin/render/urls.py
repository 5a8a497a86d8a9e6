"""Every public URL, built in one place so pages, the server and the static mirror agree.

Pages carry their language in the path (/kk/areas/KZ-75) so that each URL has one set of
bytes and the static mirror can hold them as files; the live server also answers the
unprefixed paths (/, /areas/KZ-75) in the language the reader asks for.
"""

from __future__ import annotations

from urllib.parse import quote

PAGE_LANGUAGES = ("kk", "ru", "en")
"""Languages of the public pages, in the order the switch links show them."""
DEFAULT_LANGUAGE = "en"

STYLESHEET = "/static/tocsin.css"
ICON = "/static/tocsin.svg"
SCRIPT = "/static/live.js"
EVENTS = "/events"
OPENAPI = "/openapi.json"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _prefix(lang: str | None) -> str:
    """'/kk' for a language; '' for the unprefixed path that answers in the reader's language."""
    return f"/{lang}" if lang else ""


def overview(lang: str | None) -> str:
    return f"{_prefix(lang)}/"


def area(lang: str | None, code: str) -> str:
    return f"{_prefix(lang)}/areas/{_seg(code)}"


def declaration(lang: str | None, declaration_id: str) -> str:
    return f"{_prefix(lang)}/declarations/{_seg(declaration_id)}"


def history(lang: str | None) -> str:
    return f"{_prefix(lang)}/history"


def search(lang: str | None) -> str:
    return f"{_prefix(lang)}/search"


def map_svg(scheme: str, lang: str | None = None) -> str:
    return f"{_prefix(lang)}/map/{_seg(scheme)}.svg"


def badge(scheme: str, code: str, lang: str | None = None) -> str:
    return f"{_prefix(lang)}/badge/{_seg(scheme)}/{_seg(code)}.svg"


def api_levels() -> str:
    return "/api/v1/levels"


def api_area(code: str) -> str:
    return f"/api/v1/areas/{_seg(code)}"


def api_declarations() -> str:
    return "/api/v1/declarations"


def api_declaration(declaration_id: str) -> str:
    return f"/api/v1/declarations/{_seg(declaration_id)}"


def api_schemes() -> str:
    return "/api/v1/schemes"


def api_audit_head() -> str:
    return "/api/v1/audit/head"


def api_history() -> str:
    return "/api/v1/history"


def cap(declaration_id: str) -> str:
    """The CAP Alert (or Update) of a published declaration."""
    return f"/cap/{_seg(declaration_id)}.xml"


def cap_cancel(declaration_id: str) -> str:
    """The CAP Cancel of a cancelled declaration."""
    return f"/cap/{_seg(declaration_id)}-cancel.xml"


FEED_FORMATS = ("atom", "rss")


def feed(kind: str) -> str:
    """Every current alert, as Atom (`kind` 'atom') or RSS 2.0 ('rss')."""
    return f"/feeds/alerts.{kind}"


def area_feed(code: str, kind: str) -> str:
    """The current alerts that apply to one area (naming it or an area containing it)."""
    return f"/feeds/areas/{_seg(code)}.{kind}"


WEBSUB_HUB = "/websub"
"""Where WebSub subscribers register for the feeds (the hub each feed names)."""
