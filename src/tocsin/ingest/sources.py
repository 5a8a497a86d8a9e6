"""The one parser for the sources file: which CAP senders tocsin imports, how their alerts map
onto a scheme's levels and areas, and which signatures it demands of them.

    [[source]]
    name = "geosphere-austria"
    senders = ["*@zamg.ac.at"]            # exact senders or globs, any case
    scheme = "meteoalarm"
    map = "awareness_level"               # or "parameter:NAME", "event_code:NAME", "severity"
    areas = "geocode:EMMA_ID"             # or "fixed" (then fixed_areas)
    fixed_areas = []                      # area codes; only with areas = "fixed"
    require_signature = false             # true: unsigned alerts are refused
    trust = "any"                         # "pinned": the signer must be in certificates
    certificates = ["certs/zamg.pem"]     # PEM, relative to this file
    [source.levels]                       # incoming value -> level key
    "2; yellow; Moderate" = "yellow"

Scheme keys, level keys and fixed areas name things in the store: `Sources.check` checks them
when an alert is imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509

from tocsin.domain.area import AreaTree
from tocsin.domain.errors import unknown
from tocsin.domain.incoming import LevelFrom, SourceRule, normalised, source_for
from tocsin.domain.scheme import Scheme
from tocsin.ingest.document import Document
from tocsin.ingest.schemes import read_toml

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SOURCE_KEYS = {"name", "senders", "scheme", "map", "areas", "fixed_areas", "require_signature",
               "trust", "certificates", "levels"}
MAP_HINT = ('use "awareness_level", "parameter:NAME", "event_code:NAME" (an eventCode '
            'valueName) or "severity"')
AREAS_HINT = 'use "geocode:NAME" (a geocode valueName, e.g. "geocode:EMMA_ID") or "fixed"'
Trust = Literal["any", "pinned"]
MAX_CERTIFICATE_BYTES = 1024 * 1024
"""A PEM file of a certificate chain is a few kilobytes."""


@dataclass(frozen=True)
class Source:
    """One [[source]]: its mapping rule and what it demands of signatures."""

    rule: SourceRule
    require_signature: bool
    trust: Trust
    certificates: tuple[bytes, ...]
    """PEM certificates (or CA certificates) its signers are pinned to; may be empty."""
    where: Document
    """The table it was read from, to name keys in later refusals."""

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def pinned(self) -> tuple[bytes, ...] | None:
        """What `verify_cap` trusts: the certificates, or None (trust unknown) if none."""
        return self.certificates or None


@dataclass(frozen=True)
class Sources:
    """Every configured source, in file order; `file` is None when none is configured."""

    file: str | None
    sources: tuple[Source, ...]

    def for_sender(self, sender: str) -> Source:
        """The first source whose senders cover `sender`; Unmapped naming the fix otherwise."""
        if self.file is None:
            hint = ("no sources file is configured: set TOCSIN_SOURCES or give --sources "
                    "FILE with a [[source]] for this sender")
        else:
            hint = (f"add a [[source]] with senders = [\"{sender}\"] to {self.file}, or give "
                    "--source NAME")
        rule = source_for([s.rule for s in self.sources], sender, hint=hint)
        return self.named(rule.name)

    def named(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        where = self.file or "the sources (none are configured: set TOCSIN_SOURCES)"
        raise unknown("source", name, [s.name for s in self.sources], f"see {where}")

    def check(self, schemes: Mapping[str, Scheme], tree: AreaTree) -> None:
        """Refuse (InvalidInput naming file and key) schemes, levels and fixed areas the
        store does not have."""
        for source in self.sources:
            table, rule = source.where, source.rule
            if rule.scheme not in schemes:
                found = unknown("scheme", rule.scheme, schemes,
                                "try 'tocsin schemes list', or import the scheme first")
                table.fail("scheme", found.problem, found.fix)
            scheme = schemes[rule.scheme]
            keys = [level.key for level in scheme.levels]
            levels = table.table("levels")
            for value, level in rule.levels.items():
                if level not in keys:
                    levels.fail(f'"{value}"', f"{level!r} is not a level of scheme "
                                f"{scheme.key!r}", f"use one of {', '.join(keys)}")
            for code in rule.fixed_areas:
                if code not in tree:
                    found = unknown("area", code, tree.areas, "try 'tocsin areas list', or "
                                    "import it with 'tocsin areas import'")
                    table.fail("fixed_areas", found.problem, found.fix)


def no_sources() -> Sources:
    return Sources(None, ())


def read_sources(path: Path) -> Sources:
    """The sources file at `path`; InvalidInput names the file, the key and the fix."""
    return parse_sources(read_toml(path), str(path), base=path.parent)


def parse_sources(document: Mapping[str, Any], source: str, *, base: Path) -> Sources:
    """Sources from a parsed TOML document; certificate paths are relative to `base`."""
    root = Document(document, source)
    root.reject_unknown({"source"})
    if "source" not in root.data:
        root.fail("source", "is missing: the file names no source",
                  "add a [[source]] table for each authority whose alerts you import")
    tables = root.tables("source")
    sources = tuple(_source(table, base) for table in tables)
    seen: dict[str, str] = {}
    for table, item in zip(tables, sources, strict=True):
        if item.name in seen:
            table.fail("name", f"{item.name!r} is used by {seen[item.name]} too",
                       "give each source its own name")
        seen[item.name] = table.path
    patterns: dict[str, str] = {}
    for table, item in zip(tables, sources, strict=True):
        for number, pattern in enumerate(item.rule.senders):
            key = pattern.casefold()
            if key in patterns:
                table.fail(f"senders[{number}]", f"{pattern!r} is listed by {patterns[key]} "
                           "too", "list each sender in one source")
            patterns[key] = table.path
    return Sources(source, sources)


def _source(table: Document, base: Path) -> Source:
    table.reject_unknown(SOURCE_KEYS)
    name = table.text("name")
    if not NAME.match(name):
        table.fail("name", f"{name!r} is not a valid source name",
                   "use 1-64 letters, digits, '.', '_' or '-'")
    senders = table.strings("senders")
    if not senders:
        table.fail("senders", "is empty", "list the CAP <sender> values, e.g. [\"*@zamg.ac.at\"]")
    for number, sender in enumerate(senders):
        if not sender.strip() or any(c.isspace() for c in sender):
            table.fail(f"senders[{number}]", f"{sender!r} is empty or has a space",
                       "write the sender as it appears in <sender>, or a glob such as *@dwd.de")
    level_from, level_name = _map(table)
    geocode = _areas(table)
    fixed = table.strings("fixed_areas", [])
    if geocode is None and not fixed:
        table.fail("fixed_areas", "is empty, but areas = \"fixed\"",
                   "list the area codes the alerts declare levels for, e.g. [\"AT\"]")
    if geocode is not None and fixed:
        table.fail("fixed_areas", f"is only used with areas = \"fixed\", not "
                   f"\"geocode:{geocode}\"", "remove it, or set areas = \"fixed\"")
    trust = table.text("trust", "any")
    if trust not in ("any", "pinned"):
        table.fail("trust", f"{trust!r} is not \"any\" or \"pinned\"",
                   "\"pinned\" refuses signatures by signers outside certificates")
    certificates = _certificates(table, base)
    if trust == "pinned" and not certificates:
        table.fail("certificates", "is empty, but trust = \"pinned\"",
                   "list the PEM files of the signers (or their CAs) to pin")
    rule = SourceRule(name=name, senders=tuple(senders), scheme=table.text("scheme"),
                      level_from=level_from, level_name=level_name, levels=_levels(table),
                      geocode=geocode, fixed_areas=tuple(fixed))
    return Source(rule=rule, require_signature=table.boolean("require_signature", False),
                  trust="pinned" if trust == "pinned" else "any",
                  certificates=certificates, where=table)


def _map(table: Document) -> tuple[LevelFrom, str | None]:
    value = table.text("map")
    if value == "awareness_level":
        return LevelFrom.PARAMETER, "awareness_level"
    if value == "severity":
        return LevelFrom.SEVERITY, None
    kind, sep, name = value.partition(":")
    if sep and name.strip() and kind in ("parameter", "event_code"):
        return LevelFrom(kind), name.strip()
    table.fail("map", f"{value!r} is not a kind of level mapping", MAP_HINT)


def _areas(table: Document) -> str | None:
    value = table.text("areas")
    if value == "fixed":
        return None
    kind, sep, name = value.partition(":")
    if kind == "geocode" and sep and name.strip():
        return name.strip()
    table.fail("areas", f"{value!r} is not a way to find areas", AREAS_HINT)


def _levels(table: Document) -> dict[str, str]:
    levels = table.table("levels")
    if not levels.data:
        table.fail("levels", "is empty", "map each incoming value to a level key, e.g. "
                   "\"2; yellow; Moderate\" = \"yellow\"")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for value in levels.data:
        key = f'"{value}"'
        level = levels.raw(value)
        if not isinstance(level, str) or not level.strip():
            levels.fail(key, f"must be a level key (a string), not {level!r}",
                        "e.g. \"yellow\"")
        if not value.strip():
            levels.fail(key, "is an empty incoming value", "write the value the alerts carry")
        if normalised(value) in seen:
            levels.fail(key, f"is the same value as \"{seen[normalised(value)]}\" (case and "
                        "spaces around ';' do not count)", "keep one of them")
        seen[normalised(value)] = value
        out[value] = level
    return out


def _certificates(table: Document, base: Path) -> tuple[bytes, ...]:
    out = []
    for number, name in enumerate(table.strings("certificates", [])):
        key = f"certificates[{number}]"
        path = base / name
        try:
            # /dev/zero or a named pipe would be read for ever: only a regular file of a
            # certificate's size is read.
            if path.exists() and not path.is_file():
                table.fail(key, f"{str(path)!r} is not a regular file",
                           "give the path of a PEM certificate file")
            if path.exists() and path.stat().st_size > MAX_CERTIFICATE_BYTES:
                table.fail(key, f"file {str(path)!r} is larger than "
                           f"{MAX_CERTIFICATE_BYTES // 1024} KiB", "give a PEM certificate file")
            pem = path.read_bytes()
        except FileNotFoundError:
            table.fail(key, f"file {str(path)!r} does not exist",
                       "give the path of a PEM certificate, relative to the sources file")
        except OSError as error:
            table.fail(key, f"file {str(path)!r} cannot be read: {error.strerror}",
                       "give the path of a readable PEM certificate")
        except ValueError:  # a NUL character, which no path can hold
            table.fail(key, f"{name!r} is not a path", "give the path of a PEM certificate")
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            table.fail(key, f"{str(path)!r} holds no PEM certificate",
                       "give a file starting with -----BEGIN CERTIFICATE-----")
        out.append(pem)
    return tuple(out)

