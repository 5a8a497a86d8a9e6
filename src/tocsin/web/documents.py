"""A public document: its bytes and the headers that let caches keep it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

HTML = "text/html; charset=utf-8"
JSON = "application/json"
SVG = "image/svg+xml"
CSS = "text/css; charset=utf-8"
JS = "text/javascript; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Document:
    body: bytes
    media_type: str
    etag: str
    """Strong validator: a quoted digest of the bytes."""
    last_modified: str
    """HTTP date of the snapshot that first held these exact bytes."""


def document(body: str | bytes, media_type: str, modified: datetime) -> Document:
    data = body.encode("utf-8") if isinstance(body, str) else body
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    return Document(data, media_type, etag, format_datetime(modified, usegmt=True))


def file_name(path: str, media_type: str) -> str:
    """Where the static mirror keeps the document for `path` (see the nginx notes in README).

    Pages become PATH.html (or PATH/index.html for PATH/), JSON becomes PATH.json, and files
    that already carry an extension keep their name.
    """
    relative = path.lstrip("/")
    if media_type == HTML:
        return relative + "index.html" if path.endswith("/") else relative + ".html"
    if media_type == JSON and not relative.endswith(".json"):
        return relative + ".json"
    return relative
