"""`tocsin schemes list|show|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tocsin.cli import context as ctx
from tocsin.cli.views import swatch
from tocsin.domain.text import pick
from tocsin.domain.times import format_duration
from tocsin.ingest.schemes import load_scheme_file
from tocsin.render import data
from tocsin.service import commands, queries

app = typer.Typer(help="Level schemes: list, show, import.", no_args_is_help=True)


@app.command("list")
def list_(lang: Annotated[str, typer.Option(help="Languages for names.")] = "en",
          json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The schemes in this database."""
    with ctx.refusals():
        languages = ctx.languages(lang)
        schemes = queries.load_world(ctx.engine()).schemes
    if json_out:
        ctx.emit_json([data.scheme_json(s) for s in schemes.values()])
        return
    table = Table(title=f"{len(schemes)} schemes", title_justify="left")
    for column in ("key", "name", "levels", "baseline", "expiry", "languages"):
        table.add_column(column)
    for scheme in schemes.values():
        table.add_row(scheme.key, pick(scheme.name, languages) or "",
                      ", ".join(level.key for level in scheme.levels), scheme.baseline or "—",
                      "required" if scheme.expiry_required else "optional",
                      ", ".join(scheme.languages))
    ctx.console.print(table)


@app.command("show")
def show(key: Annotated[str, typer.Argument(help="Scheme key.")],
         lang: Annotated[str, typer.Option(help="Languages for texts.")] = "en",
         json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A scheme's levels with their meaning, measures and guidance."""
    with ctx.refusals():
        languages = ctx.languages(lang)
        scheme = queries.load_world(ctx.engine()).scheme(key)
    if json_out:
        ctx.emit_json(data.scheme_json(scheme))
        return
    ctx.console.print(f"[bold]{pick(scheme.name, languages)}[/] ({scheme.key}, CAP category "
                      f"{scheme.category.value})")
    ctx.console.print(pick(scheme.description, languages) or "")
    if scheme.max_term:
        ctx.console.print(f"maximum term: {format_duration(scheme.max_term)}")
    for level in reversed(scheme.levels):
        ctx.console.print()
        ctx.console.print(swatch(level, languages), f" rank {level.rank}, CAP "
                          f"{level.cap.severity}/{level.cap.urgency}/{level.cap.certainty}")
        ctx.console.print(pick(level.meaning, languages) or "")
        for title, items in (("measures", level.measures), ("guidance", level.guidance)):
            chosen = pick(items, languages) or ()
            if chosen:
                ctx.console.print(f"  {title}:")
                for item in chosen:
                    ctx.console.print(f"   • {item}")


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="Scheme TOML file.")],
            json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Add a scheme, or update one (levels in use cannot be removed)."""
    with ctx.refusals():
        scheme, document = load_scheme_file(file)
        outcome = commands.import_scheme(ctx.engine(), scheme, document, now=ctx.now(),
                                         actor=ctx.actor())
    if json_out:
        ctx.emit_json({"scheme": scheme.key, "outcome": outcome})
        return
    ctx.console.print(f"scheme {scheme.key}: {outcome}")
