"""The issuing console's pages, and the preview of what a declaration will publish.

The preview is made by the public renderers themselves (page, badge, CAP alert) from the
public world with the declaration added as if published now, so it is exactly what appears.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from tocsin.domain import access
from tocsin.domain.declaration import Declaration, published
from tocsin.domain.text import pick
from tocsin.render import cap, pages, svg, urls
from tocsin.render.console_text import texts
from tocsin.render.i18n import LANGUAGE_NAMES, format_time
from tocsin.service.queries import World

_ENV = Environment(
    loader=PackageLoader("tocsin", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(stylesheet=urls.STYLESHEET, levels_css=pages.LEVELS_CSS)
_MAIN = re.compile(r"<main[^>]*>(.*)</main>", re.S)
CONSOLE = "/console"


@dataclass(frozen=True)
class Chrome:
    """What every console page shares."""

    lang: str
    title: str
    user: str | None
    rights: frozenset[access.Scope]
    csrf: str
    path: str

    @property
    def t(self) -> Mapping[str, str]:
        return texts(self.lang)

    @property
    def languages(self) -> list[tuple[str, str, bool]]:
        return [(lang, LANGUAGE_NAMES[lang], lang == self.lang) for lang in urls.PAGE_LANGUAGES]


def render(template: str, chrome: Chrome, **page: Any) -> str:
    return _ENV.get_template(f"console/{template}").render(
        c=chrome, t=chrome.t, Scope=access.Scope, **page)


@dataclass(frozen=True)
class Preview:
    page: str
    """The public declaration page's main content, as the public will see it."""
    badge: str
    """A data: URI of the badge of the first area."""
    cap_xml: str
    needs_approval: bool


def preview(world: World, d: Declaration, *, now: datetime, lang: str, cap_sender: str,
            needs_approval: bool) -> Preview:
    """What publishing `d` now would show: the public page, a badge and the CAP alert."""
    shown = published(d, now=now, actor=d.created_by) if not d.is_published else d
    declarations = dict(world.declarations)
    declarations[shown.id] = shown
    hypothetical = World(world.tree, world.schemes, declarations)
    at = max(now, shown.effective or now)
    ctx = pages.PageContext(lang=lang, at=at, now=at, time_travel=False)
    html = pages.declaration_page(hypothetical, shown.id, ctx)
    found = _MAIN.search(html)
    badge = svg.badge_svg(hypothetical, shown.scheme, shown.areas[0], at, lang)
    scheme = world.scheme(shown.scheme)
    references = [cap.Reference(cap_sender, cap.identifier_of(cap_sender, old.id),
                                old.published_at)
                  for old_id in shown.replaces
                  if (old := world.declarations.get(old_id)) is not None
                  and old.published_at is not None]
    xml = cap.cap_alert(shown, scheme=scheme, tree=world.tree, sender=cap_sender,
                        sent=shown.published_at or now,
                        msg_type=cap.MsgType.UPDATE if references else cap.MsgType.ALERT,
                        references=references,
                        permalink=urls.declaration(None, shown.id))
    return Preview(
        page=found.group(1) if found else html,
        badge="data:image/svg+xml;base64," + base64.b64encode(badge.encode()).decode(),
        cap_xml=xml.decode(),
        needs_approval=needs_approval)


@dataclass(frozen=True)
class Row:
    """One declaration in a console list."""

    id: str
    href: str
    headline: str
    level: str
    chip: str
    areas: str
    status: str
    author: str
    effective: str


def rows(world: World, items: Sequence[Declaration], lang: str) -> list[Row]:
    t = texts(lang)
    out = []
    for d in items:
        scheme = world.schemes.get(d.scheme)
        level = scheme.level(d.level) if scheme else None
        statement = pick(d.texts, [lang, *(scheme.languages if scheme else ())])
        names = [pick(world.tree.areas[c].names, [lang]) or c if c in world.tree else c
                 for c in d.areas]
        status = t["cancelled"] if d.cancellation else t.get(d.status.value, d.status.value)
        out.append(Row(
            id=d.id, href=f"{CONSOLE}/declarations/{d.id}",
            headline=statement.headline if statement else d.id,
            level=(pick(level.name, [lang]) or d.level) if level else d.level,
            chip=pages.level_class(d.scheme, level), areas=", ".join(names), status=status,
            author=d.created_by.removeprefix("user:"),
            effective=format_time(d.effective, None, lang) if d.effective else
            t["from_publication"]))
    return out


