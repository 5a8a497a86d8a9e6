"""The parsers for areas: CSV files, GeoJSON FeatureCollections, and ISO 3166 via pycountry.

Each returns a list of Area values; the tree rules (unique codes, known parents, no cycles)
are checked by the domain's AreaTree when the areas are merged into the store's tree.
"""

from __future__ import annotations

import csv
import gettext
import io
import json
import math
import re
import reprlib
import sys
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pycountry

from tocsin.domain.area import Area, AreaKind, check_code
from tocsin.domain.errors import InvalidInput

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry
from tocsin.ingest.document import LANGUAGE

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 32
"""GeoJSON needs 8 levels (collection, features, feature, geometry, and four of coordinates)."""
NOT_IN_A_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
"""Control characters, lone surrogates and non-characters: no SVG badge, page or CAP
document can carry them."""


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path}: is larger than {MAX_FILE_BYTES // 2**20} MiB",
                               "split it into several files")
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"file {str(path)!r} does not exist", "check the path") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: is not UTF-8 text", "save it as UTF-8") from None


def check_kind(value: str, where: str) -> AreaKind:
    try:
        return AreaKind(value.strip().lower())
    except ValueError:
        raise InvalidInput(f"{where}: kind {value!r} is not known",
                           f"use one of {', '.join(k.value for k in AreaKind)}") from None


def check_timezone(value: str, where: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise InvalidInput(f"{where}: time zone {value!r} is not known",
                           "use an IANA name such as Asia/Almaty or Europe/London") from None
    return value


def check_grid(row: object, col: object, where: str) -> tuple[int, int] | None:
    """A tile position from two optional values: both or neither, whole numbers 0-99."""
    texts = ["" if v is None else str(v).strip() for v in (row, col)]
    if not any(texts):
        return None
    # isascii: '²' is a digit to isdigit but not to int; length first: int() refuses 4,301
    # digits and more.
    if not all(t.isascii() and t.isdigit() and len(t.lstrip("0")) <= 2 for t in texts):
        raise InvalidInput(f"{where}: grid position ({texts[0]!r}, {texts[1]!r}) is not valid",
                           "give grid_row and grid_col together, as whole numbers 0-99")
    return int(texts[0]), int(texts[1])


def check_label(value: str, where: str, field: str) -> str:
    """`value` if it is one line of printable text; InvalidInput naming `field` otherwise."""
    bad = NOT_IN_A_NAME.search(value)
    if bad:
        raise InvalidInput(f"{where}: {field} holds the control character U+{ord(bad.group()):04X}"
                           f" at position {bad.start() + 1}",
                           "remove it: names and geocodes are one line of printable text")
    return value


def _check_language(lang: str, where: str) -> str:
    if not LANGUAGE.match(lang):
        raise InvalidInput(f"{where}: {lang!r} is not a language tag", "use e.g. name:kk, name:en")
    return lang


# --- CSV -------------------------------------------------------------------------------------

CSV_FIXED = ("code", "parent", "kind", "timezone", "grid_row", "grid_col")


def parse_areas_csv(text: str, source: str) -> list[Area]:
    """Areas from CSV with columns code, parent, kind, timezone, name:LANG…, geocode:NAME…"""
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _csv_areas(reader, source)
    except csv.Error as error:
        line = reader.reader.line_num  # the DictReader's own count lags a row behind
        if "field larger than field limit" in str(error):
            raise InvalidInput(f"{source}: line {line}: a field is longer than the "
                               f"limit of {csv.field_size_limit():,} characters",
                               "shorten it; an unbalanced quote (\") also makes a field run on "
                               "to the end of the file") from None
        raise InvalidInput(f"{source}: line {line}: is not valid CSV: {error}",
                           "check its quotes") from None


def _csv_areas(reader: csv.DictReader[str], source: str) -> list[Area]:
    header = reader.fieldnames or []
    if "code" not in header:
        raise InvalidInput(f"{source}: the header has no 'code' column",
                           "the first row must name the columns: code,parent,kind,name:en,…")
    for column in header:
        if column not in CSV_FIXED and not column.startswith(("name:", "geocode:")):
            raise InvalidInput(f"{source}: column {column!r} is not known",
                               "use code, parent, kind, timezone, grid_row, grid_col, "
                               "name:LANG and geocode:NAME")
    name_columns = {c: _check_language(c[5:], source) for c in header if c.startswith("name:")}
    if not name_columns:
        raise InvalidInput(f"{source}: there is no name column", "add one such as name:en")
    areas = []
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        if None in row:
            raise InvalidInput(f"{where}: has more fields than the header", "check its commas")
        code = (row.get("code") or "").strip()
        if not code:
            raise InvalidInput(f"{where}: code is empty", "give every area a code")
        check_code(code)
        names = {lang: check_label((row[c] or "").strip(), f"{where}: area {code!r}", c)
                 for c, lang in name_columns.items() if row[c]}
        if not names:
            raise InvalidInput(f"{where}: area {code!r} has no name", "fill a name column")
        timezone = (row.get("timezone") or "").strip()
        areas.append(Area(
            code=code,
            kind=check_kind(row.get("kind") or "region", where),
            names=names,
            parent=(row.get("parent") or "").strip() or None,
            geocodes=tuple((c[8:], check_label((row[c] or "").strip(), f"{where}: area {code!r}",
                                               c))
                           for c in header if c.startswith("geocode:") and (row[c] or "").strip()),
            timezone=check_timezone(timezone, where) if timezone else None,
            grid=check_grid(row.get("grid_row"), row.get("grid_col"), where),
        ))
    if not areas:
        raise InvalidInput(f"{source}: has no rows", "add one row per area")
    return areas


def read_areas_csv(path: Path) -> list[Area]:
    return parse_areas_csv(_read_text(path), str(path))


# --- GeoJSON ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeoJSONMapping:
    """Which feature properties carry the area's fields, and defaults for those absent."""

    code: str = "code"
    parent: str = "parent"
    kind: str = "kind"
    timezone: str = "timezone"
    names: Mapping[str, str] = field(default_factory=dict)
    """language → property; by default every property named name:LANG."""
    default_parent: str | None = None
    default_kind: AreaKind = AreaKind.REGION
    repair: bool = False
    """Repair invalid geometry (shapely make_valid) instead of refusing it."""


def parse_areas_geojson(text: str, source: str, options: GeoJSONMapping) -> list[Area]:
    """Areas from a GeoJSON FeatureCollection of Polygon/MultiPolygon features."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{source}: not valid JSON: {error}", "fix the syntax") from None
    except RecursionError:
        raise _too_deep(source) from None
    except ValueError:  # an integer past Python's int_max_str_digits
        raise _huge_number(text, source) from None
    if _depth_exceeds(text, MAX_JSON_DEPTH):
        raise _too_deep(source)
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise InvalidInput(f"{source}: is not a GeoJSON FeatureCollection",
                           'the top level must be {"type": "FeatureCollection", "features": [...]}')
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidInput(f"{source}: has no features", "add one feature per area")
    return [_feature(f, f"{source}: feature {i + 1}", options) for i, f in enumerate(features)]


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether well-formed JSON `text` nests arrays and objects more than `limit` deep; each
    round strips the innermost pairs at C speed, so the cost is limit × size at worst."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST.sub("", brackets)
    return bool(brackets)


def _too_deep(source: str) -> InvalidInput:
    return InvalidInput(f"{source}: arrays and objects nest more than {MAX_JSON_DEPTH} deep",
                        "GeoJSON needs 8 levels: check that the file is a FeatureCollection "
                        "of Polygon or MultiPolygon features")


def _huge_number(text: str, source: str) -> InvalidInput:
    found = re.search(rf"\d{{{sys.get_int_max_str_digits() + 1},}}", text)
    line = f" line {text.count(chr(10), 0, found.start()) + 1}:" if found else ""
    digits = f"of {len(found.group()):,} digits" if found else "with too many digits"
    return InvalidInput(f"{source}:{line} a number {digits} is not a coordinate or a value",
                        "write positions as decimal degrees, e.g. [76.93, 43.25]")


def _feature(feature: Any, where: str, options: GeoJSONMapping) -> Area:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidInput(f"{where}: is not a GeoJSON Feature")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidInput(f"{where}: properties must be an object")

    def prop(name: str) -> str | None:
        value = props.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str | int):
            raise InvalidInput(f"{where}: property {name!r} must be text, not {value!r}")
        return str(value).strip()

    code = prop(options.code)
    if code is None:
        raise InvalidInput(f"{where}: has no {options.code!r} property",
                           "name the property that holds the area code with --code-property")
    where = f"{where} ({code})"
    check_code(code)
    columns = options.names or {k[5:]: k for k in props if k.startswith("name:")}
    names = {_check_language(lang, where): (p, prop(p)) for lang, p in columns.items()}
    clean = {lang: check_label(name, where, f"property {p!r}") for lang, (p, name)
             in names.items() if name}
    if not clean:
        raise InvalidInput(f"{where}: has no name",
                           "add name:LANG properties or map one with --name-property en=PROP")
    kind = prop(options.kind)
    timezone = prop(options.timezone)
    geometry = _geometry(feature.get("geometry"), where, options.repair)
    return Area(
        code=code,
        kind=check_kind(kind, where) if kind else options.default_kind,
        names=clean,
        parent=prop(options.parent) or options.default_parent,
        timezone=check_timezone(timezone, where) if timezone else None,
        geometry=geometry,
        grid=check_grid(props.get("grid_row"), props.get("grid_col"), where),
    )


def _geometry(raw: Any, where: str, repair: bool) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in ("Polygon", "MultiPolygon"):
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        raise InvalidInput(f"{where}: geometry type {kind!r} cannot carry an area",
                           "use Polygon or MultiPolygon")
    polygons = raw.get("coordinates")
    if raw["type"] == "Polygon":
        polygons = [polygons]
    if not isinstance(polygons, list) or not polygons:
        raise InvalidInput(f"{where}: geometry has no coordinates")
    flat: list[list[list[list[float]]]] = []
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise InvalidInput(f"{where}: a polygon has no rings")
        flat.append([_ring(ring, where) for ring in polygon])
    clean = {"type": "MultiPolygon", "coordinates": flat} if len(flat) > 1 or raw["type"] == (
        "MultiPolygon") else {"type": "Polygon", "coordinates": flat[0]}
    # shapely (with numpy) is imported when a shape is first read: most commands never do.
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union
    from shapely.validation import explain_validity, make_valid

    geometry = shape(clean)
    if not geometry.is_valid:
        if not repair:
            raise InvalidInput(f"{where}: geometry is not valid: {explain_validity(geometry)}",
                               "fix the shape, or import with --repair-geometry to repair it")
        made = make_valid(geometry)
        polygons = _polygonal_parts(made)  # keep the areas, drop stray lines and points
        if not polygons:
            raise InvalidInput(f"{where}: geometry is not valid ({explain_validity(geometry)})"
                               f" and repairing it gives a {made.geom_type}, which encloses "
                               "no area", "fix the shape: its rings must enclose an area")
        repaired = unary_union(polygons)
        if repaired.geom_type not in ("Polygon", "MultiPolygon") or repaired.is_empty:
            raise InvalidInput(f"{where}: repairing the geometry gives a {repaired.geom_type}",
                               "fix the shape by hand: its rings must enclose an area")
        clean = json.loads(json.dumps(mapping(repaired)))
    return clean


def _polygonal_parts(geometry: BaseGeometry) -> list[BaseGeometry]:
    """The non-empty Polygons inside `geometry`, however deep its collections nest."""
    if geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        return [geometry]
    parts = getattr(geometry, "geoms", ())
    return [p for part in parts for p in _polygonal_parts(part)]


def _ring(ring: Any, where: str) -> list[list[float]]:
    if not isinstance(ring, list) or len(ring) < 4:
        raise InvalidInput(f"{where}: a ring has fewer than 4 positions",
                           "a closed ring repeats its first position at the end")
    out = []
    for position in ring:
        if (not isinstance(position, list) or len(position) < 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in position)):
            raise InvalidInput(f"{where}: position {_short(position)} is not "
                               "[longitude, latitude]")
        try:
            lon, lat = float(position[0]), float(position[1])
        except OverflowError:  # an integer of more than 308 digits
            lon = lat = math.inf
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
                and -90 <= lat <= 90):
            raise InvalidInput(f"{where}: position {_short(position)} is outside longitude "
                               "-180..180 or latitude -90..90",
                               "GeoJSON positions are [longitude, latitude]")
        out.append([lon, lat])
    if out[0] != out[-1]:
        raise InvalidInput(f"{where}: a ring is not closed",
                           "repeat the first position at the end of the ring")
    return out


def _short(value: Any) -> str:
    text = reprlib.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_areas_geojson(path: Path, options: GeoJSONMapping) -> list[Area]:
    return parse_areas_geojson(_read_text(path), str(path), options)


# --- ISO 3166 (pycountry) --------------------------------------------------------------------

CITY_TYPES = {"city", "municipality", "autonomous city", "metropolitan city", "capital city",
              "city with county rights", "capital district", "federal city"}


def iso_areas(country_code: str) -> list[Area]:
    """The country and its ISO 3166-2 subdivisions, with every name pycountry has."""
    country = pycountry.countries.get(alpha_2=country_code.upper())
    if country is None:
        raise InvalidInput(f"{country_code!r} is not an ISO 3166-1 alpha-2 country code",
                           "use a code such as KZ, GB or US")
    code = country.alpha_2
    areas = [Area(
        code=code,
        kind=AreaKind.COUNTRY,
        names=_translations("iso3166-1", {"en": country.name}),
        geocodes=(("ISO3166-1", code),),
    )]
    found = pycountry.subdivisions.get(country_code=code)  # type: ignore[no-untyped-call]
    subdivisions = sorted(found or [],
                          key=lambda s: s.code)
    for sub in subdivisions:
        kind = (AreaKind.CITY if sub.type.lower() in CITY_TYPES
                else AreaKind.DISTRICT if "district" in sub.type.lower() else AreaKind.REGION)
        areas.append(Area(
            code=sub.code,
            kind=kind,
            names=_translations("iso3166-2", {"und": sub.name}),
            parent=sub.parent_code or code,
            geocodes=(("ISO3166-2", sub.code),),
        ))
    return areas


def _translations(domain: str, base: dict[str, str]) -> dict[str, str]:
    """`base` plus each translation pycountry ships that differs from the original name."""
    original = next(iter(base.values()))
    names = dict(base)
    for lang in _locales():
        try:
            catalogue = gettext.translation(domain, pycountry.LOCALES_DIR, languages=[lang])
        except OSError:
            continue
        translated = catalogue.gettext(original)
        tag = lang.replace("_", "-")
        if translated != original and LANGUAGE.match(tag):
            names[tag] = translated
    return names


def _locales() -> Iterable[str]:
    folder = Path(pycountry.LOCALES_DIR)
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
