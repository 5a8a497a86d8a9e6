"""A declaration as a CAP 1.2 alert: an explicit builder in the OASIS schema's element order.

Validators check element order, so every element is appended by hand in the order the
schema's sequences give; nothing walks a dict. Same input, same bytes: no clock, no sets,
and coordinates with a fixed precision. It sits below the service layer because publishing
makes, checks and stores each message in its own transaction (tocsin.service.exports).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from lxml import etree

from tocsin.domain.area import Area, AreaTree
from tocsin.domain.declaration import Declaration, Statement
from tocsin.domain.errors import InvalidInput
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.text import pick

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MAX_RING_POINTS = 1000
"""Rings with more points are simplified: big polygons bloat alerts and choke receivers."""
COORDINATE_DECIMALS = 6
_FORBIDDEN = re.compile(r"[\s,<&]")


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"


def cap_time(value: datetime, what: str = "time") -> str:
    """CAP's time text in UTC, whole seconds: 2022-01-07T03:00:00-00:00 (CAP 1.2, 3.3.2,
    writes UTC as -00:00)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} {value.isoformat()} has no UTC offset",
                           "pass a timezone-aware datetime, e.g. datetime(..., tzinfo=UTC)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")


def check_token(value: str, what: str) -> str:
    """`value` if CAP can carry it as a sender or identifier; else InvalidInput."""
    if not value or _FORBIDDEN.search(value):
        raise InvalidInput(f"{what} {value!r} is empty or contains a space, comma, '<' or '&'",
                           f"CAP forbids these in a {what}; use e.g. 'kz.antiterror.gov'")
    return value


@dataclass(frozen=True, slots=True)
class Reference:
    """An earlier CAP message this one updates or cancels."""

    sender: str
    identifier: str
    sent: datetime

    def __post_init__(self) -> None:
        check_token(self.sender, "referenced sender")
        check_token(self.identifier, "referenced identifier")
        cap_time(self.sent, "referenced sent time")

    @property
    def text(self) -> str:
        """'sender,identifier,sent' as CAP's <references> lists it."""
        return f"{self.sender},{self.identifier},{cap_time(self.sent)}"


def identifier_of(sender: str, declaration_id: str) -> str:
    """The CAP identifier of a declaration: fixed at publication, the same on every render."""
    check_token(sender, "sender")
    check_token(declaration_id, "declaration id")
    return f"{sender}.{declaration_id}"


def cap_alert(declaration: Declaration, *, scheme: Scheme, tree: AreaTree, sender: str,
              sent: datetime, msg_type: MsgType, references: Sequence[Reference] = (),
              permalink: str | None = None, status: str = "Actual",
              note: str | None = None) -> bytes:
    """The CAP 1.2 alert for `declaration` as UTF-8 bytes, one <info> per language.

    Refuses (InvalidInput) a sender CAP cannot carry, an unknown status, an Update or Cancel
    without references or an Alert with them, a declaration of another scheme or without
    texts, and text XML cannot hold. Unknown levels and areas raise NotFound.
    """
    if status not in STATUSES:
        raise InvalidInput(f"status {status!r} is not a CAP status",
                           f"use one of {', '.join(STATUSES)}")
    if msg_type is not MsgType.ALERT and not references:
        raise InvalidInput(f"a CAP {msg_type} names no earlier message",
                           "pass the references of the messages it updates or cancels")
    if msg_type is MsgType.ALERT and references:
        raise InvalidInput("a CAP Alert cannot reference earlier messages",
                           "send an Update to replace them, or a Cancel to end them")
    if declaration.scheme != scheme.key:
        raise InvalidInput(f"declaration {declaration.id!r} is of scheme "
                           f"{declaration.scheme!r}, not {scheme.key!r}", "pass its own scheme")
    if not declaration.texts:
        raise InvalidInput(f"declaration {declaration.id!r} has no texts",
                           "give a headline in at least one language")
    level = scheme.level(declaration.level)
    areas = [tree.get(code) for code in declaration.areas]
    polygons = {area.code: polygons_of(area) for area in areas}

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _add(alert, "identifier", identifier_of(sender, declaration.id))
    _add(alert, "sender", sender)
    _add(alert, "sent", cap_time(sent, "sent time"))
    _add(alert, "status", status)
    _add(alert, "msgType", str(msg_type))
    _add(alert, "scope", "Public")
    _add(alert, "note", note)
    _add(alert, "references", " ".join(r.text for r in references) or None)
    for lang in _languages(declaration, scheme):
        info = _info(declaration, declaration.texts[lang], lang, scheme=scheme, level=level,
                     permalink=permalink)
        alert.append(info)
        for area in areas:
            info.append(_area(area, lang, polygons[area.code]))
    out: bytes = etree.tostring(alert, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True)
    return out


def _languages(declaration: Declaration, scheme: Scheme) -> list[str]:
    """The texts' languages in the scheme's order, then any others alphabetically."""
    ordered = [lang for lang in scheme.languages if lang in declaration.texts]
    return ordered + sorted(set(declaration.texts) - set(ordered))


def _info(declaration: Declaration, statement: Statement, lang: str, *, scheme: Scheme,
          level: Level, permalink: str | None) -> Any:
    prefer = [lang, scheme.default_language]
    guidance = pick(level.guidance, prefer) or ()
    instruction = statement.instructions or "\n".join(guidance)
    measures = statement.measures or "; ".join(pick(level.measures, prefer) or ())
    info = etree.Element(f"{{{CAP_NS}}}info")
    _add(info, "language", lang)
    _add(info, "category", str(scheme.category))
    _add(info, "event", pick(scheme.event, prefer) or scheme.key)
    _add(info, "responseType", "Prepare" if instruction else "Monitor")
    _add(info, "urgency", str(level.cap.urgency))
    _add(info, "severity", str(level.cap.severity))
    _add(info, "certainty", str(level.cap.certainty))
    _pair(info, "eventCode", "tocsin:scheme", scheme.key)
    _pair(info, "eventCode", "tocsin:level", level.key)
    if declaration.effective is not None:  # absent: effective when sent, as CAP defaults
        _add(info, "effective", cap_time(declaration.effective, "effective time"))
    if declaration.expires is not None:
        _add(info, "expires", cap_time(declaration.expires, "expiry"))
    _add(info, "senderName", declaration.sender.strip() or None)
    _add(info, "headline", statement.headline)
    _add(info, "description", statement.description or pick(level.meaning, prefer) or None)
    _add(info, "instruction", instruction or None)
    _add(info, "web", permalink)
    _pair(info, "parameter", "level", level.key)
    _pair(info, "parameter", "colour", level.colour)
    if measures:
        _pair(info, "parameter", "measures", measures)
    return info


def _area(area: Area, lang: str, polygons: Sequence[str]) -> Any:
    element = etree.Element(f"{{{CAP_NS}}}area")
    _add(element, "areaDesc", pick(area.names, [lang]) or area.code)
    for polygon in polygons:
        _add(element, "polygon", polygon)
    for name, value in area.geocodes:
        _pair(element, "geocode", name, value)
    return element


def polygons_of(area: Area) -> list[str]:
    """CAP <polygon> texts for the exterior rings of the area's geometry (holes are dropped).

    Rings of more than MAX_RING_POINTS points are simplified, keeping them valid.
    """
    geometry: Mapping[str, Any] | None = area.geometry
    if geometry is None:
        return []
    if geometry.get("type") == "Polygon":
        shapes = [geometry["coordinates"]]
    elif geometry.get("type") == "MultiPolygon":
        shapes = list(geometry["coordinates"])
    else:
        raise InvalidInput(f"area {area.code!r} has a {geometry.get('type')!r} geometry",
                           "give it a Polygon or MultiPolygon")
    out = []
    for rings in shapes:
        text = _polygon_text(_simplified([(float(p[0]), float(p[1])) for p in rings[0]]))
        if text is not None:
            out.append(text)
    return out


def _simplified(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(ring) <= MAX_RING_POINTS:
        return ring
    from shapely.geometry import Polygon  # here: most messages have no long ring

    polygon = Polygon(ring)
    minx, miny, maxx, maxy = polygon.bounds
    tolerance = max(maxx - minx, maxy - miny) / 10_000
    while True:
        simple = polygon.simplify(tolerance, preserve_topology=True)
        points = list(simple.exterior.coords)
        # an invalid input cannot become valid: stop on the point count alone
        if len(points) <= MAX_RING_POINTS and (simple.is_valid or not polygon.is_valid):
            return [(float(x), float(y)) for x, y in points]
        tolerance *= 2


def _polygon_text(ring: list[tuple[float, float]]) -> str | None:
    """'lat,lon lat,lon …' closed, or None when rounding leaves no area (fewer than 4 pairs)."""
    pairs: list[str] = []
    for lon, lat in ring:
        pair = f"{_number(lat)},{_number(lon)}"
        if not pairs or pairs[-1] != pair:
            pairs.append(pair)
    if pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return " ".join(pairs) if len(pairs) >= 4 else None


def _number(value: float) -> str:
    """Fixed precision, trailing zeros dropped but one decimal kept for strict parsers: 43.0."""
    text = f"{value:.{COORDINATE_DECIMALS}f}".rstrip("0")
    text = text + "0" if text.endswith(".") else text
    return "0.0" if text == "-0.0" else text


def _add(parent: Any, name: str, text: str | None) -> None:
    """Append <name>text</name>; nothing when text is None (an optional element left out)."""
    if text is None:
        return
    try:
        etree.SubElement(parent, f"{{{CAP_NS}}}{name}").text = text
    except ValueError:
        raise InvalidInput(f"CAP <{name}> text {text[:40]!r} holds characters XML cannot carry",
                           "remove control characters from it") from None


def _pair(parent: Any, name: str, value_name: str, value: str) -> None:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
    _add(element, "valueName", value_name)
    _add(element, "value", value)
