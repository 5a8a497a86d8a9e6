"""JSON-ready forms of domain values, shared by the CLI's --json output and the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tocsin.domain.area import Area, AreaTree
from tocsin.domain.audit import AuditEntry, Verdict
from tocsin.domain.declaration import Declaration
from tocsin.domain.resolve import Effective, Period
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.text import pick
from tocsin.domain.times import format_duration, iso


def _time(value: Any) -> str | None:
    return iso(value) if value is not None else None


def level_json(level: Level | None) -> dict[str, Any] | None:
    if level is None:
        return None
    return {
        "key": level.key, "rank": level.rank, "colour": level.colour,
        "name": level.name, "colour_name": level.colour_name, "meaning": level.meaning,
        "measures": {k: list(v) for k, v in level.measures.items()},
        "guidance": {k: list(v) for k, v in level.guidance.items()},
        "cap": {"severity": level.cap.severity.value, "urgency": level.cap.urgency.value,
                "certainty": level.cap.certainty.value},
    }


def scheme_json(scheme: Scheme) -> dict[str, Any]:
    return {
        "key": scheme.key, "name": scheme.name, "event": scheme.event,
        "description": scheme.description, "category": scheme.category.value,
        "languages": list(scheme.languages), "default_language": scheme.default_language,
        "baseline": scheme.baseline, "expiry_required": scheme.expiry_required,
        "max_term": format_duration(scheme.max_term) if scheme.max_term else None,
        "source": scheme.source, "levels": [level_json(level) for level in scheme.levels],
    }


def area_json(area: Area, *, geometry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": area.code, "kind": area.kind.value, "parent": area.parent,
        "names": dict(area.names),
        "geocodes": [{"valueName": n, "value": v} for n, v in area.geocodes],
        "timezone": area.timezone, "has_geometry": area.geometry is not None,
        "grid": {"row": area.grid[0], "column": area.grid[1]} if area.grid else None,
    }
    if geometry:
        out["geometry"] = dict(area.geometry) if area.geometry is not None else None
    return out


def declaration_json(d: Declaration, *, replaced_by: Sequence[str] = (),
                     authority: bool = False) -> dict[str, Any]:
    """The public form; `authority` adds the workflow an issuing console needs."""
    out: dict[str, Any] = {
        "id": d.id, "scheme": d.scheme, "level": d.level, "status": d.status.value,
        "areas": list(d.areas), "effective": _time(d.effective), "expires": _time(d.expires),
        "sender": d.sender, "replaces": list(d.replaces), "replaced_by": list(replaced_by),
        "texts": {lang: s.as_dict() for lang, s in d.texts.items()},
        "created_at": _time(d.created_at), "created_by": d.created_by,
        "published_at": _time(d.published_at), "published_by": d.published_by,
        "cancellation": None if d.cancellation is None else {
            "at": iso(d.cancellation.at), "reason": d.cancellation.reason,
            "by": d.cancellation.by},
        "break_glass": d.break_glass,
    }
    if authority:
        out.update({
            "revision": d.revision, "submitted_at": _time(d.submitted_at),
            "rejection": None if d.rejection is None else {
                "at": iso(d.rejection.at), "reason": d.rejection.reason,
                "by": d.rejection.by},
            "cancel_request": None if d.cancel_request is None else {
                "at": iso(d.cancel_request.at), "reason": d.cancel_request.reason,
                "by": d.cancel_request.by},
        })
    return out


def effective_json(effective: Effective, period: Period) -> dict[str, Any]:
    """The level with its explanation: sources, inheritance, since and until."""
    return {
        "level": effective.level.key if effective.level else None,
        "baseline": effective.is_baseline,
        "inherited_from": effective.inherited_from,
        "since": _time(period.start),
        "until": _time(period.end),
        "sources": [
            {"declaration": s.declaration.id, "via": s.via, "effective": _time(s.window.start),
             "ends": _time(s.window.end)}
            for s in effective.sources
        ],
    }


def period_json(period: Period) -> dict[str, Any]:
    return {"level": period.level.key if period.level else None,
            "start": _time(period.start), "end": _time(period.end)}


def audit_entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "at": iso(entry.at), "actor": entry.actor,
            "action": entry.action, "subject": entry.subject, "details": entry.details,
            "prev_hash": entry.prev_hash, "hash": entry.hash}


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {"ok": verdict.ok, "checked": verdict.checked,
            "head": {"seq": verdict.head_seq, "hash": verdict.head_hash},
            "broken_entry": verdict.broken_seq, "problem": verdict.problem}


def area_label(tree: AreaTree, code: str, languages: Sequence[str]) -> str:
    """'KZ-75 Almaty' in the reader's language where the area has that name."""
    area = tree.areas[code]
    name = pick(area.names, languages)
    return f"{code} {name}" if name and name != code else code
