"""Plain-language explanations of an effective level (English; pages localise their own)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from tocsin.domain.area import AreaKind, AreaTree
from tocsin.domain.resolve import Effective, Period
from tocsin.domain.scheme import Level, Scheme
from tocsin.domain.text import pick
from tocsin.render.data import area_label


def local_time(value: datetime, timezone: str | None) -> str:
    """'2022-01-07 00:00 +06' in the area's time zone (UTC when it has none)."""
    local = value.astimezone(ZoneInfo(timezone)) if timezone else value
    offset = local.strftime("%z")
    short = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    return f"{local:%Y-%m-%d %H:%M} {'UTC' if short == '+00' else short}"


def level_label(level: Level | None, languages: Sequence[str]) -> str:
    """'critical (red)' — the level is always named, never shown by colour alone."""
    if level is None:
        return "no level"
    name = pick(level.name, languages) or level.key
    colour = pick(level.colour_name, languages)
    return f"{name} ({colour})" if colour else name


def explain(tree: AreaTree, scheme: Scheme, effective: Effective, period: Period,
            languages: Sequence[str]) -> str:
    """Why the area has its level: which declaration(s), inherited from where, since when."""
    area = area_label(tree, effective.area, languages)
    tz = tree.timezone(effective.area)
    if effective.level is None:
        return f"{area} has no {scheme.key} level: no declaration is in effect."
    label = level_label(effective.level, languages)
    if effective.is_baseline:
        return (f"{area} is {label}: no declaration is in effect, and {label} is the "
                f"baseline level of {scheme.key}.")
    reasons = []
    for source in effective.sources:
        via = tree.areas[source.via]
        where = area_label(tree, source.via, languages)
        if via.kind is AreaKind.COUNTRY:
            where += " (countrywide)"
        until = (f" until {local_time(source.window.end, tz)}" if source.window.end
                 else " until further notice")
        reasons.append(f"declaration {source.declaration.id} for {where} is in effect since "
                       f"{local_time(source.window.start, tz)}{until}")
    inherited = (f", inherited from {area_label(tree, effective.inherited_from, languages)}"
                 if effective.inherited_from else "")
    since = f"; {label} since {local_time(period.start, tz)}" if period.start else ""
    return f"{area} is {label} because {' and '.join(reasons)}{inherited}{since}."
