"""`tocsin areas import|list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tocsin.cli import context as ctx
from tocsin.domain.area import AreaKind
from tocsin.domain.errors import InvalidInput
from tocsin.domain.text import pick
from tocsin.ingest.areas import GeoJSONMapping, iso_areas, read_areas_csv, read_areas_geojson
from tocsin.render import data
from tocsin.service import commands, queries

app = typer.Typer(help="Areas: import them, list them.", no_args_is_help=True)


@app.command("import")
def import_(
    file: Annotated[Path | None, typer.Argument(help="A .csv or .geojson/.json file.")] = None,
    iso: Annotated[str | None, typer.Option("--iso", help="ISO 3166-1 alpha-2 country code: "
                                            "import the country and its subdivisions.")] = None,
    code_property: Annotated[str, typer.Option(help="GeoJSON property with the code.")] = "code",
    name_property: Annotated[list[str] | None, typer.Option(
        help="GeoJSON LANG=PROPERTY for names; repeat. Default: properties name:LANG.")] = None,
    parent: Annotated[str | None, typer.Option(
        help="GeoJSON: parent for features without a parent property.")] = None,
    kind: Annotated[AreaKind, typer.Option(
        help="GeoJSON: kind for features without a kind property.")] = AreaKind.REGION,
    repair_geometry: Annotated[bool, typer.Option(
        help="GeoJSON: repair invalid shapes instead of refusing them.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import areas from a file or from ISO 3166; all or nothing."""
    with ctx.refusals():
        names = dict(_pair(item) for item in name_property or [])
        if (file is None) == (iso is None):
            raise InvalidInput("give either a FILE or --iso CODE", "e.g. tocsin areas import "
                               "--iso KZ, or tocsin areas import areas.csv")
        geojson_only = {"--code-property": code_property != "code", "--name-property": names,
                        "--parent": parent, "--kind": kind is not AreaKind.REGION,
                        "--repair-geometry": repair_geometry}
        is_geojson = file is not None and file.suffix.lower() in (".geojson", ".json")
        misplaced = [flag for flag, given in geojson_only.items() if given and not is_geojson]
        if misplaced:
            raise InvalidInput(f"{', '.join(misplaced)} only apply to GeoJSON files",
                               "leave them out, or import a .geojson file")
        if iso is not None:
            areas = iso_areas(iso)
        else:
            assert file is not None
            suffix = file.suffix.lower()
            if suffix == ".csv":
                areas = read_areas_csv(file)
            elif suffix in (".geojson", ".json"):
                mapping = GeoJSONMapping(code=code_property, names=names, default_parent=parent,
                                         default_kind=kind, repair=repair_geometry)
                areas = read_areas_geojson(file, mapping)
            else:
                raise InvalidInput(f"{file}: cannot tell the format from {suffix or 'no suffix'!r}",
                                   "name it .csv, .geojson or .json")
        report = commands.import_areas(ctx.engine(), areas, now=ctx.now(), actor=ctx.actor())
    if json_out:
        ctx.emit_json({"created": list(report.created), "updated": list(report.updated),
                       "unchanged": list(report.unchanged)})
        return
    ctx.console.print(f"{len(report.created)} created, {len(report.updated)} updated, "
                      f"{len(report.unchanged)} unchanged")


def _pair(item: str) -> tuple[str, str]:
    lang, sep, prop = item.partition("=")
    if not sep or not lang or not prop:
        raise InvalidInput(f"--name-property {item!r} is not LANG=PROPERTY",
                           "e.g. --name-property en=ADM1_EN")
    return lang, prop


@app.command("list")
def list_(lang: Annotated[str, typer.Option(help="Languages for names.")] = "en",
          json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every area, parents before children."""
    with ctx.refusals():
        languages = ctx.languages(lang)
        tree = queries.load_world(ctx.engine()).tree
    if json_out:
        ctx.emit_json([data.area_json(area) for area in tree])
        return
    table = Table(title=f"{len(tree)} areas", title_justify="left")
    for column in ("code", "name", "kind", "parent", "time zone", "geocodes", "shape"):
        table.add_column(column)
    for area in tree:
        table.add_row(area.code, pick(area.names, languages) or "", area.kind.value,
                      area.parent or "—", tree.timezone(area.code) or "—",
                      ", ".join(f"{n}={v}" for n, v in area.geocodes) or "—",
                      "yes" if area.geometry else "—")
    ctx.console.print(table)
