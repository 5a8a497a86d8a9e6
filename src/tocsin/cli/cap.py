"""`tocsin cap check`: a thin adapter over `tocsin.cap.check`, findings as a table or JSON."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tocsin.cap import xml as capxml
from tocsin.cap.check import check as check_tree
from tocsin.cap.check import profile_names
from tocsin.cli import context as ctx
from tocsin.service.importing import read_location

TABLE_ROWS = 200
"""Findings a table lists; a hostile file gives tens of thousands, which take a terminal
minutes to lay out and nobody reads (--json lists them all)."""
app = typer.Typer(help="CAP documents: check them against CAP 1.2 and profiles.",
                  no_args_is_help=True)


@app.command("check")
def check(
    file: Annotated[str, typer.Argument(metavar="FILE",
                                        help="A CAP XML file, an http(s) URL, or - (stdin).")],
    profile: Annotated[list[str] | None, typer.Option(
        "--profile", help="Also apply a profile: google, ipaws, meteoalarm or wmo; repeat.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                        ] = False,
) -> None:
    """Check a CAP document: the CAP 1.2 schema, the spec's rules, and chosen profiles.

    Exit 0 without errors (warnings allowed), 1 with error findings, 2 when the file cannot
    be read or parsed.
    """
    with ctx.refusals():
        profiles = profile_names(profile or [])
        data, source = read_location(
            file, stdin=typer.get_binary_stream("stdin"),
            allow_private=ctx.current_settings().allow_private_targets)
        tree = capxml.parse(data, source)
        version = capxml.version(tree, source)
        findings = check_tree(tree, profiles=profiles)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if json_out:
        ctx.emit_json({"file": source, "version": version, "profiles": profiles,
                       "errors": errors, "warnings": warnings,
                       "findings": [f.as_dict() for f in findings]})
    elif not findings:
        ctx.console.print(Text(f"{source}: CAP {version}, no findings"))
    else:
        table = Table(title=Text(f"{source}: CAP {version}, {errors} errors, "
                                 f"{warnings} warnings"), title_justify="left")
        for column in ("severity", "line", "rule"):
            table.add_column(column, no_wrap=True)
        table.add_column("path", overflow="fold")
        table.add_column("message", ratio=1, overflow="fold")
        for f in findings[:TABLE_ROWS]:
            table.add_row(Text(f.severity, style="bold red" if f.severity == "error"
                               else "yellow"), str(f.line or "—"), Text(f.rule), Text(f.path),
                          Text(f.message))
        ctx.console.print(table)
        if len(findings) > TABLE_ROWS:
            ctx.console.print(Text(f"{len(findings) - TABLE_ROWS:,} more findings not shown "
                                   f"(the table lists the first {TABLE_ROWS}); give --json to "
                                   "list them all"))
    if errors:
        raise typer.Exit(ctx.EXIT_FINDING)
