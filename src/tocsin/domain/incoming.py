"""Alerts other authorities send, as read from CAP, and the rule that maps one onto a
declaration. Pure: the tree, the scheme and the instant come in as arguments.

A source's rule says which senders it covers, which scheme their alerts feed, where the level
is read (a parameter such as MeteoAlarm's awareness_level, an eventCode, or the severity) and
how areas are found (by geocode, or a fixed list). An alert that is sound CAP but cannot or
must not become a declaration is refused with `Unmapped`, naming the reason.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tocsin.domain.area import AreaTree
from tocsin.domain.cap import Category, Certainty, Severity, Urgency
from tocsin.domain.declaration import HEADLINE_MAX, DeclarationRequest, Statement, check_request
from tocsin.domain.errors import InvalidInput
from tocsin.domain.scheme import Scheme
from tocsin.domain.times import iso

DEFAULT_LANGUAGE = "en-US"
"""CAP 1.2 (3.2.2): an <info> without <language> is in en-US."""
SHOWN = 5
"""How many geocodes or references a message lists before it says 'and N more'."""


class Unmapped(InvalidInput):
    """The alert is sound CAP, but tocsin cannot or must not declare a level from it."""


class AlertStatus(StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


@dataclass(frozen=True, slots=True)
class MessageRef:
    """One sender,identifier,sent triple of <references>."""

    sender: str
    identifier: str
    sent: datetime

    @property
    def label(self) -> str:
        return f"{self.sender},{self.identifier}"


@dataclass(frozen=True, slots=True)
class IncomingArea:
    description: str
    geocodes: tuple[tuple[str, str], ...] = ()
    """(valueName, value) pairs, in document order."""


@dataclass(frozen=True, slots=True)
class IncomingInfo:
    language: str
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    categories: tuple[Category, ...] = ()
    event_codes: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    areas: tuple[IncomingArea, ...] = ()


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    """A CAP alert as received (1.2, or 1.1 read as 1.2); every time in UTC."""

    identifier: str
    sender: str
    sent: datetime
    status: AlertStatus
    msg_type: MsgType
    scope: Scope
    references: tuple[MessageRef, ...] = ()
    note: str | None = None
    infos: tuple[IncomingInfo, ...] = ()
    version: str = "1.2"

    @property
    def label(self) -> str:
        return f"{self.sender},{self.identifier}"


class LevelFrom(StrEnum):
    """Where a source's alerts carry the level."""

    PARAMETER = "parameter"
    EVENT_CODE = "event_code"
    SEVERITY = "severity"


@dataclass(frozen=True)
class SourceRule:
    """How the alerts of one source become declarations."""

    name: str
    senders: tuple[str, ...]
    """Exact senders or glob patterns (*, ?), compared without regard to case."""
    scheme: str
    level_from: LevelFrom
    level_name: str | None
    """The parameter's or eventCode's valueName; None for the severity."""
    levels: Mapping[str, str]
    """Incoming value, as the sources file writes it → level key of the scheme."""
    geocode: str | None
    """The geocode valueName matched against the areas' geocodes; None: `fixed_areas`."""
    fixed_areas: tuple[str, ...] = ()
    _normalised: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_normalised",
                           {normalised(key): level for key, level in self.levels.items()})

    @property
    def reads(self) -> str:
        """What the level is read from, as messages name it."""
        if self.level_from is LevelFrom.PARAMETER:
            return str(self.level_name)
        if self.level_from is LevelFrom.EVENT_CODE:
            return f"eventCode {self.level_name}"
        return "severity"

    def covers(self, sender: str) -> bool:
        return any(fnmatch.fnmatchcase(sender.casefold(), pattern.casefold())
                   for pattern in self.senders)

    def level_for(self, value: str) -> str | None:
        """The level key for an incoming value (case and spacing around ';' ignored)."""
        return self._normalised.get(normalised(value))

    def values_of(self, info: IncomingInfo) -> list[str]:
        """The values in `info` this rule reads the level from."""
        if self.level_from is LevelFrom.SEVERITY:
            return [str(info.severity)]
        pairs = info.parameters if self.level_from is LevelFrom.PARAMETER else info.event_codes
        return [value for name, value in pairs if name == self.level_name]


def normalised(value: str) -> str:
    """'2; Yellow;  Moderate' and '2;yellow;moderate' compare equal."""
    return ";".join(" ".join(part.split()) for part in value.split(";")).casefold()


@dataclass(frozen=True)
class AlertMapping:
    """What an Alert or Update declares: a request, or nothing because it expired already."""

    request: DeclarationRequest | None
    expired_at: datetime | None = None
    notes: tuple[str, ...] = ()


def source_for(rules: Sequence[SourceRule], sender: str, *, hint: str) -> SourceRule:
    """The first rule (in file order) whose senders cover `sender`; Unmapped otherwise."""
    for rule in rules:
        if rule.covers(sender):
            return rule
    raise Unmapped(f"no source is configured for sender {sender!r}", hint)


def check_declarable(alert: IncomingAlert) -> None:
    """Refuse what is never declared: not Actual, not Public, or an Ack or Error."""
    if alert.status is not AlertStatus.ACTUAL:
        raise Unmapped(f"status is {alert.status}: only Actual alerts declare levels "
                       "(Exercise, Test, System and Draft messages are not declared)",
                       "nothing to do; import the Actual alert when it comes")
    if alert.scope is not Scope.PUBLIC:
        raise Unmapped(f"scope is {alert.scope}: tocsin publishes levels to everyone, so it "
                       "declares only Public alerts", "ask the sender for the Public alert")
    if alert.msg_type not in (MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL):
        raise Unmapped(f"msgType {alert.msg_type} carries no level: only Alert, Update and "
                       "Cancel messages are imported", "nothing to do")


def cancel_reason(alert: IncomingAlert) -> str:
    """Why a Cancel ends its declarations: the sender's note, else who cancelled."""
    return (alert.note or "").strip() or f"cancelled by {alert.sender}"


def map_alert(alert: IncomingAlert, rule: SourceRule, tree: AreaTree, scheme: Scheme,
              now: datetime) -> AlertMapping:
    """The declaration an Alert or Update asks for under `rule`, as of `now`.

    An alert that has expired already maps to no request (it is only stored). A start in
    the past becomes `now`: a published level cannot start in the past. Raises Unmapped
    naming the reason: not declarable (see check_declarable), a Cancel, no <info>, a level
    value missing or not in the rule's levels, infos with different levels, no area found,
    or a declaration the scheme's rules refuse.
    """
    check_declarable(alert)
    if alert.msg_type is MsgType.CANCEL:
        raise Unmapped("a Cancel declares no level", "import it to end what it references")
    if rule.scheme != scheme.key:
        raise InvalidInput(f"source {rule.name!r} feeds scheme {rule.scheme!r}, not "
                           f"{scheme.key!r}", "pass the source's own scheme")
    if not alert.infos:
        raise Unmapped(f"the {alert.msg_type} has no <info>, so it carries no level",
                       "nothing to declare")
    start, start_name = _start(alert)
    expires = _expiry(alert.infos)
    if expires is not None and expires <= now:
        return AlertMapping(None, expires, (f"expired at {iso(expires)}: stored, no level "
                                            "declared",))
    notes: list[str] = []
    level = _level(alert, rule, scheme)
    areas = _areas(alert, rule, tree, notes)
    texts = _texts(alert, scheme, notes)
    effective = start
    if start < now:
        effective = now
        notes.append(f"the alert's {start_name} {iso(start)} is in the past: the level starts "
                     f"now ({iso(now)}), when tocsin learned of it")
    sender = next((i.sender_name.strip() for i in alert.infos
                   if i.sender_name and i.sender_name.strip()), alert.sender)
    request = DeclarationRequest(scheme=scheme.key, level=level, areas=areas, texts=texts,
                                 sender=sender, effective=effective, expires=expires)
    try:
        check_request(request, scheme=scheme, tree=tree, now=now, publish=True)
    except InvalidInput as error:
        raise Unmapped(f"source {rule.name!r} maps the alert to a declaration that scheme "
                       f"{scheme.key!r} refuses: {error.problem}",
                       "tocsin cannot declare the alert as it is: ask the sender to correct "
                       f"it, or feed source {rule.name!r} into a scheme whose rules it meets"
                       ) from None
    return AlertMapping(request, None, tuple(notes))


def _start(alert: IncomingAlert) -> tuple[datetime, str]:
    """The earliest start of the infos: effective, else onset, else the alert's sent."""
    return min((_info_start(alert, info) for info in alert.infos), key=lambda pair: pair[0])


def _info_start(alert: IncomingAlert, info: IncomingInfo) -> tuple[datetime, str]:
    if info.effective is not None:
        return info.effective, "effective"
    if info.onset is not None:
        return info.onset, "onset"
    return alert.sent, "sent time"


def _expiry(infos: Sequence[IncomingInfo]) -> datetime | None:
    """The latest expiry of the infos; None when any runs until further notice."""
    ends = [info.expires for info in infos]
    return None if any(end is None for end in ends) else max(e for e in ends if e is not None)


def _level(alert: IncomingAlert, rule: SourceRule, scheme: Scheme) -> str:
    found: dict[str, list[int]] = {}
    for number, info in enumerate(alert.infos, start=1):
        values = rule.values_of(info)
        if not values:
            raise Unmapped(f"info {number} ({info.language}) has no {rule.reads}, which source "
                           f"{rule.name!r} reads the level from",
                           "set map in the source to what this sender's alerts carry")
        for value in values:
            level = rule.level_for(value)
            if level is None:
                raise Unmapped(f"{rule.reads} {value!r} has no level in source {rule.name!r}",
                               f"add it under [source.levels], e.g. \"{value}\" = "
                               f"\"{scheme.levels[-1].key}\"")
            scheme.level(level)
            found.setdefault(level, []).append(number)
    if len(found) > 1:
        listed = ", ".join(f"{level} (info {', '.join(map(str, numbers))})"
                           for level, numbers in found.items())
        raise Unmapped(f"the alert's infos map to different levels: {listed}; tocsin "
                       "declares one level per alert",
                       "map these values to one level, or ask the sender for one alert per "
                       "level")
    return next(iter(found))


def _areas(alert: IncomingAlert, rule: SourceRule, tree: AreaTree,
           notes: list[str]) -> tuple[str, ...]:
    if rule.geocode is None:
        for code in rule.fixed_areas:
            tree.get(code)
        return rule.fixed_areas
    name = rule.geocode
    wanted = _unique(value for info in alert.infos for area in info.areas
                     for key, value in area.geocodes if key == name)
    if not wanted:
        raise Unmapped(f"the alert has no {name} geocode, and source {rule.name!r} finds "
                       f"areas by {name}", "set areas to the geocode this sender uses, or "
                       "use areas = \"fixed\" with fixed_areas")
    index: dict[str, list[str]] = {}
    for area in tree:
        for key, value in area.geocodes:
            if key == name:
                index.setdefault(value, []).append(area.code)
    codes = _unique(code for value in wanted for code in index.get(value, []))
    missing = [value for value in wanted if value not in index]
    if not codes:
        raise Unmapped(f"none of the alert's geocodes {_listed(name, missing)} names an area",
                       f"import areas with these geocodes (a geocode:{name} column) or use "
                       "fixed_areas")
    if missing:
        notes.append(f"geocodes {_listed(name, missing)} name no area; the level is declared "
                     f"for {', '.join(codes)}")
    return tuple(codes)


def _listed(name: str, values: Sequence[str]) -> str:
    shown = ", ".join(f"{name}={value}" for value in values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def scheme_language(tag: str, scheme: Scheme) -> str | None:
    """The scheme's language for a CAP language tag: the tag itself, else its primary
    subtag (en-GB → en) when the scheme has it; None when the scheme has neither."""
    by_lower = {lang.lower(): lang for lang in scheme.languages}
    lower = tag.strip().lower()
    return by_lower.get(lower) or by_lower.get(lower.split("-")[0])


def _texts(alert: IncomingAlert, scheme: Scheme, notes: list[str]) -> dict[str, Statement]:
    texts: dict[str, Statement] = {}
    dropped: list[str] = []
    for info in alert.infos:
        lang = scheme_language(info.language, scheme)
        if lang is not None and lang not in texts:
            texts[lang] = _statement(info, lang, notes)
        elif lang is None and info.language not in dropped:
            dropped.append(info.language)
    if texts:
        if dropped:
            notes.append(f"texts in {', '.join(dropped)} are not kept: scheme {scheme.key!r} "
                         f"has {', '.join(scheme.languages)}")
        return texts
    first = alert.infos[0]
    notes.append(f"no info is in a language of scheme {scheme.key!r} "
                 f"({', '.join(scheme.languages)}): the {first.language} text of info 1 is "
                 f"shown under {scheme.default_language!r}")
    return {scheme.default_language: _statement(first, scheme.default_language, notes)}


def _statement(info: IncomingInfo, lang: str, notes: list[str]) -> Statement:
    headline = " ".join((info.headline or "").split()) or " ".join(info.event.split())
    if len(headline) > HEADLINE_MAX:
        notes.append(f"the {lang} headline has {len(headline)} characters: shortened to "
                     f"{HEADLINE_MAX}")
        headline = headline[:HEADLINE_MAX - 1].rstrip() + "…"
    return Statement(headline=headline, description=(info.description or "").strip(),
                     instructions=(info.instruction or "").strip())
