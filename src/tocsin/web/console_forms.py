"""The console's declaration form: its fields as the declaration parser's document (one
parser for every input), and the choices it offers."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from tocsin.domain import access
from tocsin.domain.access import Principal
from tocsin.domain.declaration import Declaration, DeclarationRequest, publish_as
from tocsin.domain.errors import InvalidInput
from tocsin.domain.text import pick
from tocsin.domain.times import iso, parse_instant
from tocsin.service.queries import World

TEXT_FIELDS = ("headline", "description", "measures", "instructions")


def one(fields: dict[str, list[str]], key: str) -> str:
    return (fields.get(key) or [""])[0].strip()


def candidate(world: World, p: Principal, req: DeclarationRequest, *,
              now: datetime) -> Declaration:
    """The declaration the form asks for, checked as a draft, without saving it."""
    scheme = world.scheme(req.scheme)
    d = publish_as(req, id="preview", scheme=scheme, tree=world.tree, known={}, now=now,
                   actor=p.actor, publish=False)
    replaced = [world.declarations[i] for i in d.replaces if i in world.declarations]
    access.may_draft(p, world.tree, access.at_stake(d, replaced))
    return d


def seen_by(world: World, p: Principal) -> World:
    """The world with only the declarations a preview may show `p`: published ones and
    their own, so naming another's unpublished id previews as if it did not exist."""
    return World(world.tree, world.schemes,
                 {key: d for key, d in world.declarations.items()
                  if d.is_published or d.created_by == p.actor})


def request_document(fields: dict[str, list[str]]) -> dict[str, Any]:
    """The form, shaped as the declaration parser's document (one parser for every input)."""
    scheme, _, level = one(fields, "level").partition("/")
    texts: dict[str, dict[str, str]] = {}
    for key, values in fields.items():
        if not key.startswith("text-"):
            continue
        _, lang, part = [*key.split("-", 2), "", ""][:3]
        if not lang or part not in TEXT_FIELDS:
            raise InvalidInput(f"form field {key!r} is not known",
                               "name text fields text-LANG-" + "|".join(TEXT_FIELDS))
        texts.setdefault(lang, {})[part] = values[0].strip()
    texts = {lang: t for lang, t in texts.items() if any(t.values())}
    zone = one(fields, "zone") or "UTC"
    out: dict[str, Any] = {
        "scheme": scheme, "level": level, "areas": [a for a in fields.get("areas", []) if a],
        "texts": texts, "replaces": [r for r in fields.get("replaces", []) if r],
        "effective": aware(one(fields, "effective"), zone, "effective"),
        "expires": aware(one(fields, "expires"), zone, "expires"),
    }
    sender = one(fields, "sender")
    if sender:
        out["sender"] = sender
    return out


def aware(local: str, zone: str, what: str) -> str:
    """A datetime-local value in the chosen zone, as an ISO 8601 time with offset."""
    if not local:
        return ""
    if zone not in _known_zones():
        raise InvalidInput(f"time zone {zone!r} is not known", "choose one from the list")
    try:
        value = datetime.fromisoformat(local)
    except ValueError:
        raise InvalidInput(f"{what} {local!r} is not a date and time",
                           "write it like 2022-01-07T12:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    # As for every other door: 9999-12-31T23:59 in UTC+14 is outside the years an instant has.
    return iso(parse_instant(value.isoformat(), what))


@functools.cache
def _known_zones() -> frozenset[str]:
    """The IANA zone names, read once: listing them walks the tz database (27 ms a form)."""
    return frozenset(available_timezones())


def values_of(d: Declaration, world: World) -> dict[str, list[str]]:
    zone = (world.tree.timezone(d.areas[0]) if d.areas and d.areas[0] in world.tree
            else None) or "UTC"
    tz = ZoneInfo(zone)
    values: dict[str, list[str]] = {
        "level": [f"{d.scheme}/{d.level}"], "areas": list(d.areas), "zone": [zone],
        "replaces": list(d.replaces), "sender": [d.sender],
        "effective": [d.effective.astimezone(tz).strftime("%Y-%m-%dT%H:%M")]
        if d.effective else [],
        "expires": [d.expires.astimezone(tz).strftime("%Y-%m-%dT%H:%M")] if d.expires else [],
    }
    for lang, statement in d.texts.items():
        for part, text in statement.as_dict().items():
            values[f"text-{lang}-{part}"] = [text]
    return values


def level_options(world: World, lang: str) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(pick(s.name, [lang]) or s.key,
             [(f"{s.key}/{lv.key}", pick(lv.name, [lang]) or lv.key) for lv in s.levels])
            for s in sorted(world.schemes.values(), key=lambda s: s.key)]


def area_options(world: World, lang: str) -> list[tuple[str, int, str]]:
    out = []
    stack = [(c, 0) for c in reversed(world.tree.order) if world.tree.areas[c].parent is None]
    while stack:
        code, depth = stack.pop()
        out.append((code, depth, pick(world.tree.areas[code].names, [lang]) or code))
        stack.extend((child, depth + 1) for child in reversed(world.tree.children(code)))
    return out


def text_languages(world: World) -> list[str]:
    seen: list[str] = []
    for scheme in sorted(world.schemes.values(), key=lambda s: s.key):
        seen += [lang for lang in scheme.languages if lang not in seen]
    return seen


def zones(world: World) -> list[str]:
    zones = sorted({a.timezone for a in world.tree if a.timezone})
    return [*zones, "UTC"]
