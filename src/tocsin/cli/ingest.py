"""`tocsin ingest FILE|URL|-`: a thin adapter over `tocsin.service.importing`; a report for
people or, with --json, one object. Exit 0 when imported, already imported or stored, 2 when
refused."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text

from tocsin.cli import context as ctx
from tocsin.domain.errors import TocsinError
from tocsin.domain.incoming import IncomingAlert, Unmapped
from tocsin.domain.times import iso
from tocsin.ingest.sources import Sources, no_sources, read_sources
from tocsin.render import data
from tocsin.service import importing
from tocsin.service.importing import ImportReport


def ingest(
    location: Annotated[str, typer.Argument(
        metavar="FILE|URL|-", help="A CAP XML file, an http(s) URL, or - for standard input.")],
    source: Annotated[str | None, typer.Option(
        "--source", help="Import under this source (by name) instead of the one whose "
        "senders match the alert's sender.")] = None,
    sources_file: Annotated[Path | None, typer.Option(
        "--sources", help="The sources TOML file; default: the TOCSIN_SOURCES setting.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a report.")
                        ] = False,
) -> None:
    """Import a CAP alert from another authority: check it, verify its signature, and declare
    the level it carries (an Update replaces, a Cancel cancels). Exit 0 when imported,
    already imported or stored without a level; 2 when refused."""
    alert: IncomingAlert | None = None
    try:
        sources = _sources(sources_file)
        raw, label = importing.read_location(
            location, stdin=typer.get_binary_stream("stdin"),
            allow_private=ctx.current_settings().allow_private_targets)
        received = importing.receive(raw, label)
        alert = received.alert
        report = importing.import_alert(ctx.engine(), received, sources, now=ctx.now(),
                                        source_name=source)
    except TocsinError as error:
        _refused(error, alert, json_out)
    if json_out:
        ctx.emit_json(report_json(report))
        return
    for line in report_lines(report):
        ctx.console.print(Text(line))


def _sources(path: Path | None) -> Sources:
    if path is not None:
        return read_sources(path)
    configured = ctx.current_settings().sources
    return read_sources(Path(configured)) if configured else no_sources()


def _alert_json(alert: IncomingAlert | None) -> dict[str, Any]:
    return {"identifier": alert.identifier if alert else None,
            "sender": alert.sender if alert else None,
            "msg_type": str(alert.msg_type) if alert else None,
            "sent": iso(alert.sent) if alert else None}


def report_json(report: ImportReport) -> dict[str, Any]:
    return {"outcome": str(report.outcome), "source": report.source,
            **_alert_json(report.alert), "signature": report.signature,
            "declarations": [data.declaration_json(d) for d in report.declared],
            "replaced": list(report.replaced), "cancelled": list(report.cancelled),
            "notes": list(report.notes), "warnings": list(report.warnings)}


def report_lines(report: ImportReport) -> list[str]:
    alert = report.alert
    lines = [f"{report.outcome} {alert.msg_type} {alert.label} from source {report.source!r}"]
    for d in report.declared:
        start = iso(d.effective) if d.effective else "publication"
        end = iso(d.expires) if d.expires else "further notice"
        lines.append(f"  declared {d.id}: {d.scheme} {d.level} for {', '.join(d.areas)}, "
                     f"from {start} until {end}")
    lines += [f"  replaced {i}" for i in report.replaced]
    lines += [f"  cancelled {i}" for i in report.cancelled]
    lines.append(f"  signature: {report.signature}")
    lines += [f"  note: {note}" for note in report.notes]
    lines += [f"  WARNING: {warning}" for warning in report.warnings]
    return lines


def _refused(error: TocsinError, alert: IncomingAlert | None, json_out: bool) -> NoReturn:
    if json_out:
        ctx.emit_json({"outcome": "refused", **_alert_json(alert), "problem": error.problem,
                       "fix": error.fix, "mapping": isinstance(error, Unmapped)})
        raise typer.Exit(ctx.EXIT_BAD_INPUT)
    what = f"refused {alert.msg_type} {alert.label}: " if alert else ""
    ctx.errors.print(Text.assemble(("error: ", "bold red"), what + error.message))
    raise typer.Exit(ctx.EXIT_BAD_INPUT)
