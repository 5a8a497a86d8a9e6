"""Rich renderings for people: the level's colour and its name, side by side."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import Declaration
from tocsin.domain.resolve import Period
from tocsin.domain.scheme import Level
from tocsin.domain.text import pick
from tocsin.render.colour import text_colour_on
from tocsin.render.explain import level_label, local_time
from tocsin.service.queries import AreaStatus


def swatch(level: Level | None, languages: Sequence[str]) -> Text:
    """A coloured block followed by the level's name: colour is never the only signal."""
    if level is None:
        return Text("— no level", style="dim")
    text = Text("  ", style=f"on {level.colour}")
    text.append(" ")
    text.append(level_label(level, languages).upper(),
                style=f"bold {text_colour_on(level.colour)} on {level.colour}")
    return text


def status_table(tree: AreaTree, statuses: Sequence[AreaStatus], languages: Sequence[str],
                 title: str) -> Table:
    table = Table(title=title, title_justify="left")
    several = len({status.scheme.key for status in statuses}) > 1
    for column in ("area", *(("scheme",) if several else ()), "level", "since", "until", "why"):
        table.add_column(column)
    for status in statuses:
        tz = tree.timezone(status.area.code)
        effective, period = status.effective, status.period
        why = ("baseline" if effective.is_baseline
               else f"inherited from {effective.inherited_from}" if effective.inherited_from
               else ", ".join(s.declaration.id for s in effective.sources) or "—")
        table.add_row(
            f"{status.area.code} {_name(tree, status.area.code, languages)}",
            *((status.scheme.key,) if several else ()),
            swatch(effective.level, languages),
            local_time(period.start, tz) if period.start and effective.level else "—",
            (local_time(period.end, tz) if period.end else "further notice")
            if effective.level else "—",
            why,
        )
    return table


def _name(tree: AreaTree, code: str, languages: Sequence[str]) -> str:
    return pick(tree.areas[code].names, languages) or ""


def timeline_table(tree: AreaTree, code: str, scheme: str, periods: Sequence[Period],
                   languages: Sequence[str]) -> Table:
    tz = tree.timezone(code)
    table = Table(title=f"{code} under {scheme}: level over time", title_justify="left")
    for column in ("from", "to", "level"):
        table.add_column(column)
    for period in periods:
        table.add_row(local_time(period.start, tz) if period.start else "(beginning)",
                      local_time(period.end, tz) if period.end else "further notice",
                      swatch(period.level, languages))
    return table


def declarations_table(tree: AreaTree, code: str, declarations: Sequence[Declaration],
                       replaced: dict[str, list[str]], languages: Sequence[str]) -> Table:
    tz = tree.timezone(code)
    table = Table(title=f"declarations for {code} and the areas containing it",
                  title_justify="left")
    for column in ("id", "scheme", "level", "areas", "effective", "expires", "status",
                   "headline"):
        table.add_column(column)
    for d in declarations:
        status = d.status.value
        if d.cancellation:
            status = f"cancelled {local_time(d.cancellation.at, tz)}: {d.cancellation.reason}"
        elif replaced.get(d.id):
            status = f"replaced by {', '.join(replaced[d.id])}"
        headline = pick({k: v.headline for k, v in d.texts.items()}, languages) or ""
        table.add_row(d.id, d.scheme, d.level, ", ".join(d.areas),
                      local_time(d.effective, tz) if d.effective else "at publication",
                      local_time(d.expires, tz) if d.expires else "—", status, headline)
    return table
