"""A parsed CAP alert (see `tocsin.cap.xml.parse`) as the domain's IncomingAlert.

Elements are found by the root's own namespace, so CAP 1.2 and 1.1, with a default namespace
or a prefix (cap:alert), read alike. Run `tocsin.cap.check.check` first: this reader expects
a schema-valid alert, and refuses (InvalidInput) what it cannot read rather than guess.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from lxml import etree

from tocsin.cap import xml as capxml
from tocsin.domain.cap import Category, Certainty, Severity, Urgency
from tocsin.domain.errors import InvalidInput
from tocsin.domain.incoming import (
    DEFAULT_LANGUAGE,
    AlertStatus,
    IncomingAlert,
    IncomingArea,
    IncomingInfo,
    MessageRef,
    MsgType,
    Scope,
)

E = TypeVar("E", bound=StrEnum)


def read_alert(tree: Any, source: str = "the alert") -> IncomingAlert:
    """The alert in `tree`, every time in UTC; InvalidInput names an element it cannot read."""
    version = capxml.version(tree, source)
    reader = _Reader(tree.getroot(), source)
    root = reader.root
    return IncomingAlert(
        identifier=reader.required(root, "identifier"),
        sender=reader.required(root, "sender"),
        sent=reader.required_time(root, "sent"),
        status=reader.enum(root, "status", AlertStatus),
        msg_type=reader.enum(root, "msgType", MsgType),
        scope=reader.enum(root, "scope", Scope),
        references=reader.references(root),
        note=reader.text(root, "note"),
        infos=tuple(reader.info(info) for info in reader.all(root, "info")),
        version=version,
    )


class _Reader:
    def __init__(self, root: Any, source: str) -> None:
        self.root = root
        self.ns = etree.QName(root).namespace
        self.source = source

    def all(self, parent: Any, name: str) -> list[Any]:
        return list(parent.iterfind(f"{{{self.ns}}}{name}"))

    def text(self, parent: Any, name: str) -> str | None:
        element = parent.find(f"{{{self.ns}}}{name}")
        if element is None:
            return None
        return (element.text or "").strip() or None

    def required(self, parent: Any, name: str) -> str:
        value = self.text(parent, name)
        if value is None:
            raise self._refusal(parent, f"<{name}> is missing or empty")
        return value

    def enum(self, parent: Any, name: str, kind: type[E]) -> E:
        value = self.required(parent, name)
        try:
            return kind(value)
        except ValueError:
            raise self._refusal(parent, f"<{name}> {value!r} is not one of "
                                f"{', '.join(member.value for member in kind)}") from None

    def required_time(self, parent: Any, name: str) -> datetime:
        return self._instant(parent, name, self.required(parent, name))

    def time(self, parent: Any, name: str) -> datetime | None:
        value = self.text(parent, name)
        return None if value is None else self._instant(parent, name, value)

    def _instant(self, parent: Any, what: str, value: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.utcoffset() is None:
            raise self._refusal(parent, f"<{what}> {value!r} is not a CAP time with an offset")
        return parsed.astimezone(UTC)

    def pairs(self, parent: Any, name: str) -> tuple[tuple[str, str], ...]:
        return tuple((self.text(e, "valueName") or "", self.text(e, "value") or "")
                     for e in self.all(parent, name))

    def references(self, root: Any) -> tuple[MessageRef, ...]:
        out = []
        for item in (self.text(root, "references") or "").split():
            parts = item.split(",")
            if len(parts) != 3 or not all(parts):
                raise self._refusal(root, f"reference {item!r} is not sender,identifier,sent")
            out.append(MessageRef(parts[0], parts[1],
                                  self._instant(root, "references", parts[2])))
        return tuple(out)

    def info(self, info: Any) -> IncomingInfo:
        categories = tuple(self._category(info, c.text) for c in self.all(info, "category"))
        return IncomingInfo(
            language=self.text(info, "language") or DEFAULT_LANGUAGE,
            categories=categories,
            event=self.required(info, "event"),
            urgency=self.enum(info, "urgency", Urgency),
            severity=self.enum(info, "severity", Severity),
            certainty=self.enum(info, "certainty", Certainty),
            event_codes=self.pairs(info, "eventCode"),
            parameters=self.pairs(info, "parameter"),
            effective=self.time(info, "effective"),
            onset=self.time(info, "onset"),
            expires=self.time(info, "expires"),
            sender_name=self.text(info, "senderName"),
            headline=self.text(info, "headline"),
            description=self.text(info, "description"),
            instruction=self.text(info, "instruction"),
            web=self.text(info, "web"),
            areas=tuple(IncomingArea(self.text(area, "areaDesc") or "",
                                     self.pairs(area, "geocode"))
                        for area in self.all(info, "area")),
        )

    def _category(self, info: Any, value: str | None) -> Category:
        try:
            return Category((value or "").strip())
        except ValueError:
            raise self._refusal(info, f"<category> {value!r} is not one of "
                                f"{', '.join(c.value for c in Category)}") from None

    def _refusal(self, element: Any, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: line {element.sourceline}: {problem}",
                            "check the alert with 'tocsin cap check FILE'")
