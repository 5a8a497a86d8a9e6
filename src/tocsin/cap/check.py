"""One checker for CAP documents, shared by export, import and `tocsin cap check`.

`check` reports findings instead of raising: the OASIS CAP 1.2 schema, the spec's rules that
the schema cannot express (polygon and circle syntax and shape, reference triplets, explicit
time offsets, expiry after start, token characters) and, on request, the extra rules of a
named profile (Google Public Alerts, IPAWS, MeteoAlarm, WMO).
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from lxml import etree

from tocsin.cap import xml as capxml
from tocsin.domain.errors import unknown

Severity = Literal["error", "warning"]
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
CAP_TIME_EXAMPLE = "2002-05-24T16:49:00-07:00"

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_PAIR = re.compile(rf"({_NUMBER}),({_NUMBER})")
_CIRCLE = re.compile(rf"({_NUMBER}),({_NUMBER}) ({_NUMBER})")
_CAP_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d")
_LOOSE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?([zZ]|[-+]\d\d:?\d\d)?")
_BAD_TOKEN = re.compile(r"[\s,<&]")
_CROSSING = re.compile(r"Self-intersection\[(\S+) (\S+)\]")
_schema_lock = threading.Lock()  # an XMLSchema's error_log is shared state


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: where (element path and source line), which rule, what, how bad."""

    path: str
    rule: str
    message: str
    severity: Severity = "error"
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_bytes(data: bytes, source: str, profiles: Sequence[str] = ()) -> list[Finding]:
    """Parse `data` with the hardened reader and check it; a refused parse raises InvalidInput."""
    chosen = profile_names(profiles)
    return check(capxml.parse(data, source), profiles=chosen)


def check(tree: Any, *, profiles: Sequence[str] = ()) -> list[Finding]:
    """Every finding for a parsed CAP document (see `tocsin.cap.xml.parse`), in line order.

    Raises InvalidInput for an unknown profile name or a root that is not a CAP alert.
    """
    chosen = profile_names(profiles)
    version = capxml.version(tree)
    doc = _Doc(tree)
    _schema(doc, tree, version)
    _tokens(doc)
    sent = _alert_times(doc)
    _references(doc)
    for info in doc.infos:
        _info_times(doc, info, sent)
        for area in doc.all(info, "area"):
            for polygon in doc.all(area, "polygon"):
                _polygon(doc, polygon)
            for circle in doc.all(area, "circle"):
                _circle(doc, circle)
    for name in chosen:
        PROFILES[name](doc)
    return sorted(doc.findings, key=lambda f: f.line or 0)


def profile_names(names: Sequence[str]) -> list[str]:
    """`names` without repeats; InvalidInput naming the known profiles for any other name."""
    chosen: list[str] = []
    for name in names:
        if name not in PROFILES:
            raise unknown("CAP profile", name, PROFILES,
                          f"known profiles: {', '.join(PROFILES)}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def element_path(element: Any, positions: dict[Any, dict[Any, int]] | None = None) -> str:
    """`/alert/info[2]/area[1]/polygon[1]`: local names, 1-based among same-named siblings.

    `positions` (parent → child → its number), kept by the caller across calls, numbers each
    parent's children once, so that paths for many siblings cost time linear in their count.
    """
    positions = {} if positions is None else positions
    steps: list[str] = []
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        if parent is None:
            steps.append(name)
        else:
            if parent not in positions:
                counts: dict[Any, int] = {}
                numbered: dict[Any, int] = {}
                for child in parent:
                    if isinstance(child.tag, str):
                        counts[child.tag] = numbered[child] = counts.get(child.tag, 0) + 1
                positions[parent] = numbered
            steps.append(f"{name}[{positions[parent][element]}]")
        element = parent
    return "/" + "/".join(reversed(steps))


class _Doc:
    """A CAP tree read namespace-blind (1.2 or 1.1), collecting findings."""

    def __init__(self, tree: Any) -> None:
        self.root = tree.getroot()
        self.ns = etree.QName(self.root).namespace
        self.findings: list[Finding] = []
        self.infos = self.all(self.root, "info")
        self._positions: dict[Any, dict[Any, int]] = {}

    def path(self, element: Any) -> str:
        return element_path(element, self._positions)

    def all(self, parent: Any, name: str) -> list[Any]:
        return list(parent.iterfind(f"{{{self.ns}}}{name}"))

    def one(self, parent: Any, name: str) -> Any:
        return parent.find(f"{{{self.ns}}}{name}")

    def text(self, parent: Any, name: str) -> str | None:
        element = self.one(parent, name)
        return None if element is None else (element.text or "").strip()

    def parameters(self, info: Any, name: str) -> list[tuple[str, Any]]:
        """(value, element) of every <parameter> of `info` whose valueName is `name`."""
        return [(self.text(p, "value") or "", p) for p in self.all(info, "parameter")
                if self.text(p, "valueName") == name]

    def add(self, element: Any, rule: str, message: str, severity: Severity = "error") -> None:
        self.findings.append(Finding(self.path(element), rule, message, severity,
                                     element.sourceline))


# --- the schema ---------------------------------------------------------------------------

def _schema(doc: _Doc, tree: Any, version: str) -> None:
    target, prefix = tree, ""
    if version == "1.1":
        doc.add(doc.root, "cap.version",
                "the document is CAP 1.1; tocsin checks CAP 1.2: change the namespace to "
                f"{capxml.CAP_12} and fix what the 1.2 schema reports")
        target, prefix = _renamed_to_12(tree), "as CAP 1.2: "
    validator = capxml.schema()
    with _schema_lock:
        validator.validate(target)
        errors = list(validator.error_log)
    locate = _Locator(target)
    # paths in the renamed copy of a 1.1 document are its own: number them apart
    path = doc.path if target is tree else functools.partial(element_path, positions={})
    for error in errors:
        element = locate(error)
        message = prefix + error.message.replace(f"{{{capxml.CAP_12}}}", "").replace(
            f"{{{DSIG_NS}}}", "ds:")
        doc.findings.append(Finding(path(element) if element is not None else "/",
                                    "xsd", message, "error", error.line or None))


def _renamed_to_12(tree: Any) -> Any:
    copied = copy.deepcopy(tree)
    for element in copied.iter():
        if isinstance(element.tag, str) and etree.QName(element).namespace == capxml.CAP_11:
            element.tag = f"{{{capxml.CAP_12}}}{etree.QName(element).localname}"
    return copied


class _Locator:
    """The element an XSD error names: by libxml2's path, else the last one on its line.

    Each path is looked up once and the lines indexed in one pass, so thousands of errors
    (30,000 stray attributes on one element) cost time linear in errors plus elements.
    """

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.prefixes = {k: v for k, v in tree.getroot().nsmap.items() if k}
        self.by_path: dict[str, Any] = {}
        self.by_line: dict[int, Any] | None = None

    def __call__(self, error: Any) -> Any:
        if error.path:
            if error.path not in self.by_path:
                try:
                    found = self.tree.xpath(error.path, namespaces=self.prefixes)
                except etree.XPathError:
                    found = []
                first = found[0] if found else None
                self.by_path[error.path] = (first if first is not None
                                            and isinstance(first.tag, str) else None)
            if self.by_path[error.path] is not None:
                return self.by_path[error.path]
        if self.by_line is None:
            self.by_line = {e.sourceline: e for e in self.tree.iter()
                            if isinstance(e.tag, str)}
        return self.by_line.get(error.line)


# --- rules of the CAP 1.2 specification ----------------------------------------------------

def _tokens(doc: _Doc) -> None:
    for name in ("identifier", "sender"):
        element = doc.one(doc.root, name)
        if element is None:
            continue  # the schema reports it missing
        value = element.text or ""
        bad = _BAD_TOKEN.search(value)
        if not value:
            doc.add(element, f"{name}.characters", f"{name} is empty; give a value")
        elif bad:
            doc.add(element, f"{name}.characters",
                    f"{name} {value!r} contains {bad.group()!r}; CAP forbids spaces, commas, "
                    f"'<' and '&' in a {name} (they break <references>)")


def _time(doc: _Doc, element: Any, value: str, what: str) -> datetime | None:
    """The instant in `value` if it is in CAP form; otherwise a finding and None."""
    text = value.strip()
    if _CAP_TIME.fullmatch(text):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            doc.add(element, "time.format", f"{what} {text!r} is not a real date and time")
            return None
        if text.endswith("+00:00"):
            doc.add(element, "time.zone",
                    f"{what} {text!r} uses +00:00: CAP 1.2 (3.3.2) writes UTC as -00:00",
                    "warning")
        return parsed
    loose = _LOOSE_TIME.fullmatch(text)
    if loose and loose.group(1) in (None, "z", "Z"):
        zone = "has no UTC offset" if loose.group(1) is None else "ends in Z, which CAP forbids"
        doc.add(element, "time.zone", f"{what} {text!r} {zone}; write the offset as digits, "
                f"e.g. {CAP_TIME_EXAMPLE}")
    else:
        doc.add(element, "time.format", f"{what} {text!r} is not a CAP time; write it as "
                f"{CAP_TIME_EXAMPLE} (whole seconds, explicit offset)")
    return None


def _alert_times(doc: _Doc) -> datetime | None:
    element = doc.one(doc.root, "sent")
    return None if element is None else _time(doc, element, element.text or "", "sent")


def _info_times(doc: _Doc, info: Any, sent: datetime | None) -> None:
    times: dict[str, datetime | None] = {}
    for name in ("effective", "onset", "expires"):
        element = doc.one(info, name)
        if element is not None:
            times[name] = _time(doc, element, element.text or "", name)
    expires, effective = times.get("expires"), times.get("effective")
    start, start_name = (effective, "effective") if "effective" in times else (sent, "sent")
    if expires is not None and start is not None and expires <= start:
        doc.add(doc.one(info, "expires"), "expires.after-effective",
                f"expires {expires.isoformat()} is not after {start_name} "
                f"{start.isoformat()}; an alert must expire after it takes effect")


def _references(doc: _Doc) -> None:
    element = doc.one(doc.root, "references")
    msg_type = doc.text(doc.root, "msgType")
    items = (element.text or "").split() if element is not None else []
    if element is not None and not items and msg_type not in ("Update", "Cancel"):
        doc.add(element, "references.format", "references is empty; leave it out, or list "
                "sender,identifier,sent triplets separated by spaces")
    for number, item in enumerate(items, 1):
        parts = item.split(",")
        if len(parts) != 3 or not all(parts):
            doc.add(element, "references.format",
                    f"reference {number} {item!r} is not sender,identifier,sent (e.g. "
                    f"trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00)")
        else:
            _time(doc, element, parts[2], f"sent of reference {number}")
    if msg_type in ("Update", "Cancel") and not items:
        article, verb = ("an", "updates") if msg_type == "Update" else ("a", "cancels")
        doc.add(element if element is not None else doc.root, "update.references-required",
                f"{article} {msg_type} must name the messages it {verb} in <references> "
                "(sender,identifier,sent triplets)")


def _coordinates(doc: _Doc, element: Any, rule: str, pair: str, what: str
                 ) -> tuple[float, float] | None:
    match = _PAIR.fullmatch(pair)
    if match is None:
        doc.add(element, f"{rule}.syntax", f"{what} {pair!r} is not lat,lon in decimal "
                "degrees (e.g. 38.47,-120.14)")
        return None
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        doc.add(element, f"{rule}.range", f"{what} {pair!r} is out of range: latitude comes "
                "first and lies in [-90, 90], longitude in [-180, 180]")
        return None
    return lat, lon


def _polygon(doc: _Doc, element: Any) -> None:
    text = (element.text or "").strip()
    if not text:
        doc.add(element, "polygon.points", "polygon is empty; give at least 4 lat,lon pairs "
                "(the first repeated last), or remove the element")
        return
    if text.split() != text.split(" "):
        doc.add(element, "polygon.whitespace", "pairs are separated by line breaks, tabs or "
                "several spaces; many receivers split on single spaces", "warning")
    points: list[tuple[float, float]] = []
    for number, pair in enumerate(text.split(), 1):
        point = _coordinates(doc, element, "polygon", pair, f"pair {number}")
        if point is None:
            return
        points.append(point)
    if len(points) < 4:
        doc.add(element, "polygon.points", f"polygon has {len(points)} pairs; it needs at least "
                "4 (three corners and the first pair repeated last)")
    elif points[0] != points[-1]:
        doc.add(element, "polygon.closed", f"polygon is not closed: the first pair "
                f"{_show(points[0])} differs from the last {_show(points[-1])}; repeat the "
                "first pair at the end")
    else:
        from shapely.geometry import Polygon  # here: most messages have no polygon
        from shapely.validation import explain_validity

        shape = Polygon([(lon, lat) for lat, lon in points])
        if not shape.is_valid:
            reason = explain_validity(shape)
            crossing = _CROSSING.search(reason)
            where = (f"near {_show((float(crossing.group(2)), float(crossing.group(1))))}"
                     if crossing else f"({reason})")
            doc.add(element, "polygon.self-intersection",
                    f"polygon crosses or touches itself {where}; order the pairs along the "
                    "outline so that no edges meet")


def _show(point: tuple[float, float]) -> str:
    return f"{point[0]:g},{point[1]:g}"


def _circle(doc: _Doc, element: Any) -> None:
    text = (element.text or "").strip()
    match = _CIRCLE.fullmatch(text)
    if match is None:
        doc.add(element, "circle.syntax", f"circle {text!r} is not 'lat,lon radius' with the "
                "radius in kilometres (e.g. 32.9525,-115.5527 10)")
        return
    _coordinates(doc, element, "circle", text.split(" ")[0], "centre")
    if float(match.group(3)) < 0:
        doc.add(element, "circle.syntax", f"circle {text!r} has a negative radius; give it "
                "in kilometres, 0 or more")


# --- profiles ------------------------------------------------------------------------------

def _google(doc: _Doc) -> None:
    """Google Public Alerts' CAP requirements."""
    languages: set[str] = set()
    for info in doc.infos:
        language = (doc.text(info, "language") or "en-US").lower()
        if language in languages:
            doc.add(info, "google.info-language", f"a second info in {language!r}; Google "
                    "Public Alerts takes one info per language: merge them")
        languages.add(language)
        event = doc.one(info, "event")
        if event is not None and len(text := (event.text or "").strip()) >= 35:
            doc.add(event, "google.event-length", f"event {text!r} has {len(text)} "
                    "characters; Google Public Alerts needs fewer than 35")
        if not doc.text(info, "headline"):
            doc.add(info, "google.headline", "info has no headline; Google Public Alerts "
                    "needs one (a short human-readable summary)")
        for area in doc.all(info, "area"):
            desc = doc.one(area, "areaDesc")
            if desc is not None and len(text := (desc.text or "").strip()) >= 50:
                doc.add(desc, "google.areadesc-length", f"areaDesc has {len(text)} "
                        "characters; Google Public Alerts needs fewer than 50")
            for shape in doc.all(area, "polygon") + doc.all(area, "circle"):
                coordinates = " ".join(p for p in (shape.text or "").split() if "," in p)
                longest = max((len(d) for d in re.findall(r"\.(\d+)", coordinates)), default=0)
                if longest > 6:
                    doc.add(shape, "google.coordinate-decimals", f"coordinates have {longest} "
                            "decimals; Google Public Alerts takes at most 6 (about 0.1 m)")


def _ipaws(doc: _Doc) -> None:
    """FEMA IPAWS: Wireless Emergency Alert texts and SAME geocodes."""
    public_actual = (doc.text(doc.root, "status") == "Actual"
                     and doc.text(doc.root, "scope") == "Public")
    for info in doc.infos:
        wea = False
        for name, limit in (("CMAMtext", 90), ("CMAMlongtext", 360)):
            for value, parameter in doc.parameters(info, name):
                wea = True
                if len(value) > limit:
                    doc.add(parameter, f"ipaws.{name.lower()}-length", f"{name} has "
                            f"{len(value)} characters; WEA takes at most {limit}")
        if public_actual and not wea:
            doc.add(info, "ipaws.cmam-missing", "no CMAMtext or CMAMlongtext parameter: "
                    "phones will show text built from other fields; add a CMAMtext of at "
                    "most 90 characters", "warning")
        for area in doc.all(info, "area"):
            if not any(doc.text(g, "valueName") == "SAME" for g in doc.all(area, "geocode")):
                doc.add(area, "ipaws.same-geocode", "area has no SAME geocode; IPAWS routes "
                        "by SAME codes: add <geocode><valueName>SAME</valueName><value>006109"
                        "</value></geocode>")


_AWARENESS_LEVEL = re.compile(r"([1-4]); ?([A-Za-z]+); ?(\S.*)")
_AWARENESS_TYPE = re.compile(r"(\d{1,2}); ?(\S.*)")
_COLOURS = {"1": "green", "2": "yellow", "3": "orange", "4": "red"}


def _meteoalarm(doc: _Doc) -> None:
    """MeteoAlarm: every info carries awareness_level and awareness_type."""
    for info in doc.infos:
        for name, form, example in (("awareness_level", _AWARENESS_LEVEL, "2; yellow; Moderate"),
                                    ("awareness_type", _AWARENESS_TYPE, "1; Wind")):
            rule = f"meteoalarm.{name.replace('_', '-')}"
            found = doc.parameters(info, name)
            if not found:
                doc.add(info, rule, f"info has no {name} parameter; add one such as "
                        f"<valueName>{name}</valueName><value>{example}</value>")
            for value, parameter in found:
                match = form.fullmatch(value)
                if match is None:
                    doc.add(parameter, rule, f"{name} {value!r} is not in the form {example!r}")
                elif name == "awareness_level" and match.group(2).lower() != _COLOURS[
                        match.group(1)]:
                    doc.add(parameter, rule, f"{name} {value!r}: level {match.group(1)} is "
                            f"{_COLOURS[match.group(1)]}, not {match.group(2)}")


_WMO_IDENTIFIER = re.compile(r"urn:oid:2\.49\.0\.1\.\d{1,3}(?:\.[0-9A-Za-z_-]+)+")


def _wmo(doc: _Doc) -> None:
    """WMO Register of Alerting Authorities: OID identifiers, a named sender."""
    sender = doc.one(doc.root, "sender")
    sender_text = "" if sender is None else (sender.text or "").strip()
    if sender is not None and not sender_text:
        doc.add(sender, "wmo.sender", "sender is empty; give the alerting authority's "
                "address as registered with WMO")
    identifier = doc.one(doc.root, "identifier")
    value = "" if identifier is None else (identifier.text or "").strip()
    if identifier is None or _WMO_IDENTIFIER.fullmatch(value):
        return
    if sender_text.startswith("urn:oid:") and value.startswith(sender_text + "."):
        return
    hint = " (add the urn:oid: prefix)" if value.startswith("2.49.0.1.") else ""
    doc.add(identifier, "wmo.identifier", f"identifier {value!r} is not in the WMO register "
            f"form urn:oid:2.49.0.1.<country>.<…>{hint}; build it from the OID your "
            "alerting authority holds in the WMO Register of Alerting Authorities")


PROFILES: dict[str, Callable[[_Doc], None]] = {
    "google": _google, "ipaws": _ipaws, "meteoalarm": _meteoalarm, "wmo": _wmo,
}
