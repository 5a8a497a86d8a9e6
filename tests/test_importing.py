"""Importing CAP alerts from other authorities: every corpus file, Update and Cancel chains,
duplicates, expiry, signatures and trust, HTTP, and `tocsin ingest` through its runner."""

from __future__ import annotations

import base64
import http.server
import json
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree
from sqlalchemy import Engine, select
from tests.conftest import CORPUS
from tests.helpers import dump
from typer.testing import CliRunner

from tocsin.cap.read import read_alert
from tocsin.cap.xml import MAX_BYTES, parse
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput, TocsinError
from tocsin.domain.incoming import Unmapped
from tocsin.ingest.areas import parse_areas_csv
from tocsin.ingest.sources import Sources, read_sources
from tocsin.service import commands, queries
from tocsin.service.importing import (
    ImportReport,
    Outcome,
    import_document,
    read_location,
)
from tocsin.store import tables as t

VALID = CORPUS / "cap" / "valid"
INVALID = CORPUS / "cap" / "invalid"
AREAS_AT = datetime(2021, 12, 2, tzinfo=UTC)
DS = {"ds": "http://www.w3.org/2000/09/xmldsig#"}

AREAS_CSV = """\
code,parent,kind,name:en,geocode:EMMA_ID,geocode:NUTS2,geocode:SAME,geocode:UGC,\
geocode:profile:CAP-CP:Location:0.3
AT,,country,Austria,,,,,
AT-1,AT,region,Burgenland,AT11,,,,
AT108,AT-1,district,Oberpullendorf,AT108,,,,
AT127,AT-1,district,Wiener Neustadt,AT127,,,,
BE,,country,Belgium,,,,,
BE21,BE,region,Antwerp,,BE21,,,
US,,country,United States,,,,,
US-CA-109,US,district,Tuolumne County,,,006109,,
US-LA-059,US,district,La Salle Parish,,,022059,,
US-AK-185,US,district,Aleutian Islands,,,,AKZ185,
CA,,country,Canada,,,,,
CA-4716053,CA,district,Biggar,,,,,4716053
CA-2401,CA,district,Îles-de-la-Madeleine,,,,,2401
CA-3520,CA,district,Toronto,,,,,3520
CA-4708042,CA,district,Kindersley,,,,,4708042
SC,,country,Seychelles,,,,,
TG,,country,Togo,,,,,
DZ,,country,Algeria,,,,,
BZ,,country,Belize,,,,,
CM,,country,Cameroon,,,,,
"""

SOURCES_TOML = """\
[[source]]
name = "geosphere-austria"
senders = ["*@zamg.ac.at"]
scheme = "meteoalarm"
map = "awareness_level"
areas = "geocode:EMMA_ID"
[source.levels]
"2; yellow; Moderate" = "yellow"
"3; orange; Severe" = "orange"
"4; red; Extreme" = "red"

[[source]]
name = "kmi-irm"
senders = ["kmi-irm"]
scheme = "meteoalarm"
map = "awareness_level"
areas = "geocode:NUTS2"
[source.levels]
"1; green; Minor" = "green"
"2; yellow; Moderate" = "yellow"
"3; orange; Severe" = "orange"
"4; red; Extreme" = "red"

[[source]]
name = "nws"
senders = ["w-nws.webmaster@noaa.gov", "*@nws.noaa.gov"]
scheme = "meteoalarm"
map = "severity"
areas = "geocode:SAME"
[source.levels]
Moderate = "yellow"
Severe = "orange"
Extreme = "red"

[[source]]
name = "ntwc"
senders = ["http://newwcatwc.arh.noaa.gov/tsuPortal/"]
scheme = "meteoalarm"
map = "severity"
areas = "geocode:UGC"
[source.levels]
Extreme = "red"

[[source]]
name = "eccc"
senders = ["cap-pac@ec.gc.ca", "cap-pac@canada.ca", "testSender@Pelmorex-test"]
scheme = "meteoalarm"
map = "event_code:profile:CAP-CP:Event:0.4"
areas = "geocode:profile:CAP-CP:Location:0.3"
[source.levels]
snowfall = "yellow"
wind = "orange"
thunderstorm = "orange"
tornado = "red"

[[source]]
name = "seychelles"
senders = ["info@meteo.gov.sc"]
scheme = "meteoalarm"
map = "severity"
areas = "fixed"
fixed_areas = ["SC"]
[source.levels]
Moderate = "yellow"

[[source]]
name = "togo"
senders = ["meteo_togo@yahoo.fr"]
scheme = "meteoalarm"
map = "event_code:Alerte"
areas = "fixed"
fixed_areas = ["TG"]
[source.levels]
"019" = "orange"

[[source]]
name = "algeria"
senders = ["www.meteo.dz"]
scheme = "meteoalarm"
map = "severity"
areas = "fixed"
fixed_areas = ["DZ"]
[source.levels]
Moderate = "yellow"

[[source]]
name = "belize"
senders = ["drudon@nms.gov.bz"]
scheme = "meteoalarm"
map = "severity"
areas = "fixed"
fixed_areas = ["BZ"]
[source.levels]
Moderate = "yellow"

[[source]]
name = "cameroon"
senders = ["meteo.cameroon@gmail.com"]
scheme = "meteoalarm"
map = "severity"
areas = "fixed"
fixed_areas = ["CM"]
[source.levels]
Moderate = "yellow"

[[source]]
name = "dwd"
senders = ["opendata@dwd.de"]
scheme = "meteoalarm"
map = "awareness_level"
areas = "geocode:WARNCELLID"
[source.levels]
"2; yellow; Moderate" = "yellow"

[[source]]
name = "dhs"
senders = ["hsas@dhs.gov"]
scheme = "us-ntas"
map = "parameter:HSAS"
areas = "fixed"
fixed_areas = ["US"]
[source.levels]
ORANGE = "elevated"
"""


@pytest.fixture
def world(engine: Engine) -> Engine:
    """The test database with the areas the corpus alerts name by geocode."""
    commands.import_areas(engine, parse_areas_csv(AREAS_CSV, "test areas"), now=AREAS_AT,
                          actor="test-setup")
    return engine


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES_TOML, encoding="utf-8")
    return path


@pytest.fixture
def sources(sources_file: Path) -> Sources:
    return read_sources(sources_file)


def sent_of(data: bytes) -> datetime:
    return read_alert(parse(data, "test")).sent


def ingest(engine: Engine, data: bytes, sources: Sources, *, now: datetime | None = None,
           label: str = "test alert") -> ImportReport:
    return import_document(engine, data, label, sources, now=now or sent_of(data))


# --- every corpus file -------------------------------------------------------------------

@dataclass(frozen=True)
class Imported:
    level: str
    areas: tuple[str, ...]
    words: tuple[str, ...] = ()
    """Words the notes and warnings must contain."""


@dataclass(frozen=True)
class Refused:
    words: tuple[str, ...]
    mapping: bool
    """True: refused for a mapping reason (Unmapped); False: the document or its signature."""


NO_SOURCE = "no source is configured for sender"
VALID_OUTCOMES: dict[str, Imported | Refused] = {
    "at_geosphere_thunderstorm_update_de_en.xml": Imported(
        "yellow", ("AT108",), ("has not imported", "texts in de-DE are not kept")),
    "au_nsw_rfs_fire_cap_au.xml": Refused((NO_SOURCE, "'webmaster@rfs.nsw.gov.au'"), True),
    "be_kmi_irm_update_4_languages.xml": Imported("green", ("BE21",)),
    # Signed by a self-signed alert-hub.org test certificate; the manifest says it did not
    # verify upstream either. verify_cap: the SignatureValue does not verify.
    "bz_nms_alert_signed_prefixed.xml": Refused(("signature does not hold",
                                                 "signature value"), False),
    "ca_ec_snowfall_update_signed.xml": Imported(
        "yellow", ("CA-4716053",), ("holds only without the other signatures", "SHA-1",
                                    "name no area", "was not checked")),
    # Two NAAD/ECCC signatures, neither of which verify_cap can make hold (see the report).
    "ca_eccc_update_signed_2024.xml": Refused(("signature does not hold", "digest",
                                               "signature value"), False),
    "ca_naad_freehand_circle_signed.xml": Imported(
        "red", ("CA-3520",), ("holds only with the whitespace between elements removed",)),
    "ca_naad_wind_warning_update_fr_en.xml": Imported("orange", ("CA-2401",)),
    "cm_alert_signed_fr.xml": Refused(("signature does not hold", "signature value"), False),
    "cn_baoding_thunder_update_zh_en.xml": Refused((NO_SOURCE,), True),
    "de_dwd_update_warncells.xml": Refused(("has no awareness_level", "'dwd'"), True),
    "dz_meteo_alert_fr.xml": Imported("yellow", ("DZ",), ("fr-FR text of info 1",
                                                           "uses +00:00")),
    "oasis_01_homeland_security.xml": Refused(("'us-ntas' requires an expiry",), True),
    "oasis_02_thunderstorm_warning.xml": Imported(
        "orange", ("US-CA-109",), ("SAME=006009, SAME=006003 name no area",)),
    "oasis_03_earthquake_update.xml": Refused((NO_SOURCE, "'trinet@caltech.edu'"), True),
    "oasis_04_amber_alert.xml": Refused((NO_SOURCE,), True),
    "sc_meteo_alert_signed.xml": Imported("yellow", ("SC",), ("was not checked",)),
    "tg_meteo_alert_signed_fr.xml": Imported("orange", ("TG",), ("shown under 'en'",)),
    "us_nws_fire_weather_watch_cancel.xml": Refused(
        ("the Cancel references only messages tocsin has not imported",
         "w-nws.webmaster@noaa.gov,urn:oid:2.49.0.1.840.0.1b30"), True),
    "us_nws_tornado_warning_update_en_es.xml": Imported("red", ("US-LA-059",)),
    "us_nws_update_2024.xml": Refused(("severity 'Minor' has no level in source 'nws'",
                                       "[source.levels]"), True),
    "us_usgs_earthquake_iso8859-1_signed.xml": Refused((NO_SOURCE,), True),
    "us_wcatwc_tsunami_update.xml": Imported("red", ("US-AK-185",), ("shortened to 160",)),
}


@pytest.mark.corpus
def test_the_table_names_every_valid_corpus_file() -> None:
    assert sorted(p.name for p in VALID.glob("*.xml")) == sorted(VALID_OUTCOMES)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(VALID_OUTCOMES))
def test_every_valid_corpus_file_imports_or_is_refused_for_a_named_reason(
        world: Engine, sources: Sources, name: str) -> None:
    data = (VALID / name).read_bytes()
    expected = VALID_OUTCOMES[name]
    before = dump(world)
    if isinstance(expected, Refused):
        with pytest.raises(TocsinError) as refusal:
            ingest(world, data, sources)
        assert isinstance(refusal.value, Unmapped) is expected.mapping, refusal.value.message
        for word in expected.words:
            assert word in refusal.value.message
        assert dump(world) == before
        return
    report = ingest(world, data, sources)
    assert report.outcome is Outcome.IMPORTED
    [declared] = report.declared
    assert (declared.level, declared.areas) == (expected.level, expected.areas)
    said = " ".join(report.notes + report.warnings)
    for word in expected.words:
        assert word in said
    with world.connect() as conn:
        row = conn.execute(select(t.cap_messages)).one()
        actors = set(conn.execute(select(t.audit_log.c.actor)
                                  .where(t.audit_log.c.seq > 0)).scalars())
    assert (row.sender, row.identifier) == (report.alert.sender, report.alert.identifier)
    assert row.declaration_id == declared.id and row.signature == report.signature
    assert row.document.encode(parse(data, name).docinfo.encoding) == data
    assert f"import:{report.source}" in actors


INVALID_OUTCOMES: dict[str, tuple[str, ...]] = {
    "bz_missing_sender.xml": ("not valid CAP 1.2", "Expected is ( sender )"),
    "cm_missing_status.xml": ("not valid CAP 1.2", "Expected is ( status )"),
    "google_cap11_empty_enums_bad_polygon.xml": (
        "CAP 1.1 is accepted only where it reads the same as CAP 1.2", "urgency"),
    "google_missing_scope.xml": ("not valid CAP 1.2", "scope"),
    "google_update_empty_references.xml": ("update.references-required",),
    "google_xxe_doctype_foreign_elements.xml": ("DOCTYPE",),
    "sc_bad_digest.xml": ("signature does not hold", "digest"),
    "sc_bad_signature_value.xml": ("signature does not hold", "signature value"),
    "sc_root_is_xsd_not_alert.xml": ("not a CAP alert",),
    "tg_bad_certificate.xml": ("signature does not hold", "certificate"),
    "tg_bad_signature_value.xml": ("signature does not hold", "signature value"),
    "tg_missing_certainty.xml": ("not valid CAP 1.2", "Expected is ( certainty )"),
}


@pytest.mark.corpus
def test_the_table_names_every_invalid_corpus_file() -> None:
    assert sorted(p.name for p in INVALID.glob("*.xml")) == sorted(INVALID_OUTCOMES)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(INVALID_OUTCOMES))
def test_every_invalid_corpus_file_is_refused_by_name(world: Engine, sources: Sources,
                                                     name: str) -> None:
    data = (INVALID / name).read_bytes()
    before = dump(world)
    with pytest.raises(InvalidInput) as refusal:
        import_document(world, data, name, sources, now=datetime(2024, 6, 1, tzinfo=UTC))
    assert not isinstance(refusal.value, Unmapped)
    for word in INVALID_OUTCOMES[name]:
        assert word in refusal.value.message
    assert dump(world) == before


# --- hand-made alerts: chains, duplicates, time ------------------------------------------

T0 = datetime(2030, 7, 12, 12, tzinfo=UTC)


def cap_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S-00:00")


def alert(identifier: str, *, sent: datetime = T0, msg_type: str = "Alert",
          references: tuple[tuple[str, datetime], ...] = (), level: str = "2; yellow; Moderate",
          emma: str = "AT108", effective: datetime | None = None,
          expires: datetime | None = None, status: str = "Actual", note: str | None = None,
          sender: str = "cap@zamg.ac.at", namespace: str = "1.2",
          referenced_sender: str | None = None) -> bytes:
    """A MeteoAlarm-style alert in German and English; references as (identifier, sent) of
    messages by `referenced_sender` (default: the same sender)."""
    refs = " ".join(f"{referenced_sender or sender},{i},{cap_time(s)}" for i, s in references)
    infos = ""
    for lang, headline in (("de-DE", "Gewitterwarnung"), ("en-GB", "Thunderstorm warning")):
        infos += f"""
          <info>
            <language>{lang}</language><category>Met</category><event>{headline}</event>
            <urgency>Future</urgency><severity>Moderate</severity><certainty>Likely</certainty>
            {f"<effective>{cap_time(effective)}</effective>" if effective else ""}
            {f"<expires>{cap_time(expires)}</expires>" if expires else ""}
            <senderName>GeoSphere Austria</senderName><headline>{headline}</headline>
            <description>Storms ({lang}).</description><instruction>Stay inside.</instruction>
            <parameter><valueName>awareness_level</valueName><value>{level}</value></parameter>
            <area><areaDesc>Somewhere</areaDesc>
              <geocode><valueName>EMMA_ID</valueName><value>{emma}</value></geocode></area>
          </info>"""
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <alert xmlns="urn:oasis:names:tc:emergency:cap:{namespace}">
          <identifier>{identifier}</identifier><sender>{sender}</sender>
          <sent>{cap_time(sent)}</sent><status>{status}</status><msgType>{msg_type}</msgType>
          <scope>Public</scope>{f"<note>{note}</note>" if note else ""}
          {f"<references>{refs}</references>" if refs else ""}{infos}
        </alert>
        """).encode()


def level_at(engine: Engine, code: str, when: datetime) -> str | None:
    [status] = queries.load_world(engine).status(when, area=code, scheme="meteoalarm")
    level = status.effective.level
    return None if level is None or status.effective.is_baseline else level.key


def test_alert_then_update_replaces_then_cancel_cancels(world: Engine,
                                                          sources: Sources) -> None:
    hour = timedelta(hours=1)
    first = ingest(world, alert("A1", expires=T0 + 12 * hour), sources)
    [d1] = first.declared
    assert (first.outcome, d1.level, d1.areas) == (Outcome.IMPORTED, "yellow", ("AT108",))
    assert d1.texts["en"].headline == "Thunderstorm warning" and set(d1.texts) == {"en"}
    assert d1.sender == "GeoSphere Austria" and d1.effective == T0

    update = ingest(world, alert("A2", sent=T0 + hour, msg_type="Update",
                                 references=(("A1", T0), ("UNKNOWN", T0)),
                                 level="3; orange; Severe", expires=T0 + 12 * hour), sources)
    [d2] = update.declared
    assert update.replaced == (d1.id,) and d2.replaces == (d1.id,) and d2.level == "orange"
    assert any("has not imported: cap@zamg.ac.at,UNKNOWN" in n for n in update.notes)
    assert level_at(world, "AT108", T0 + 2 * hour) == "orange"

    cancel = ingest(world, alert("A3", sent=T0 + 3 * hour, msg_type="Cancel",
                                 references=(("A1", T0), ("A2", T0 + hour)),
                                 note="Storms passed"), sources)
    assert cancel.cancelled == (d2.id,) and not cancel.declared
    assert any(f"{d1.id!r} was already replaced" in n for n in cancel.notes)
    assert level_at(world, "AT108", T0 + 4 * hour) is None
    with world.connect() as conn:
        reason = conn.execute(select(t.cancellations.c.reason)).scalar_one()
        messages = conn.execute(select(t.cap_messages.c.identifier,
                                       t.cap_messages.c.declaration_id)).all()
        actions = conn.execute(select(t.audit_log.c.action).where(
            t.audit_log.c.actor == "import:geosphere-austria").order_by(t.audit_log.c.seq)
        ).scalars().all()
    assert reason == "Storms passed"
    assert sorted(messages) == [("A1", d1.id), ("A2", d2.id), ("A3", None)]
    assert actions == ["declaration.published", "cap.imported", "declaration.published",
                       "cap.imported", "declaration.cancelled", "cap.imported"]


def test_a_cancel_without_a_note_names_the_sender(world: Engine, sources: Sources) -> None:
    ingest(world, alert("B1"), sources)
    ingest(world, alert("B2", sent=T0 + timedelta(minutes=5), msg_type="Cancel",
                        references=(("B1", T0),)), sources)
    with world.connect() as conn:
        assert conn.execute(select(t.cancellations.c.reason)).scalar_one() == \
            "cancelled by cap@zamg.ac.at"


def test_the_same_identifier_twice_imports_once(world: Engine, sources: Sources) -> None:
    first = ingest(world, alert("C1"), sources)
    before = dump(world)
    again = ingest(world, alert("C1"), sources, now=T0 + timedelta(minutes=1))
    assert first.outcome is Outcome.IMPORTED and again.outcome is Outcome.DUPLICATE
    assert any("already imported from source 'geosphere-austria'" in n for n in again.notes)
    assert not again.declared and dump(world) == before
    reused = ingest(world, alert("C1", level="3; orange; Severe"), sources)
    assert reused.outcome is Outcome.DUPLICATE
    assert any("reused the identifier" in n for n in reused.notes) and dump(world) == before


def test_an_expired_alert_is_stored_without_a_level(world: Engine, sources: Sources) -> None:
    report = ingest(world, alert("E1", expires=T0 + timedelta(hours=1)), sources,
                    now=T0 + timedelta(hours=2))
    assert report.outcome is Outcome.STORED_EXPIRED and not report.declared
    assert report.notes == ("expired at 2030-07-12T13:00:00Z: stored, no level declared",)
    with world.connect() as conn:
        assert conn.execute(select(t.cap_messages.c.declaration_id)).scalar_one() is None
        assert conn.execute(select(t.declarations)).all() == []


def test_a_past_start_becomes_now(world: Engine, sources: Sources) -> None:
    now = T0 + timedelta(hours=3)
    report = ingest(world, alert("P1", effective=T0, expires=T0 + timedelta(hours=6)),
                    sources, now=now)
    [d] = report.declared
    assert d.effective == now and d.expires == T0 + timedelta(hours=6)
    assert "the alert's effective 2030-07-12T12:00:00Z is in the past: the level starts now " \
        "(2030-07-12T15:00:00Z), when tocsin learned of it" in report.notes


def test_cap_1_1_is_read_as_1_2(world: Engine, sources: Sources) -> None:
    report = ingest(world, alert("V1", namespace="1.1"), sources)
    assert report.outcome is Outcome.IMPORTED and report.alert.version == "1.1"
    assert "CAP 1.1" in report.warnings[0]
    very_likely = alert("V2", namespace="1.1").replace(b"<certainty>Likely",
                                                        b"<certainty>Very Likely")
    with pytest.raises(InvalidInput, match=r"CAP 1.1 is accepted only where .*certainty"):
        ingest(world, very_likely, sources, now=T0)


MAPPING_REFUSALS = [
    (dict(level="1; green; Minor"),
     "awareness_level '1; green; Minor' has no level in source 'geosphere-austria' "
     "(add it under [source.levels]"),
    (dict(emma="AT12"), "none of the alert's geocodes EMMA_ID=AT12 names an area (import "
                        "areas with these geocodes (a geocode:EMMA_ID column) or use "
                        "fixed_areas)"),
    (dict(status="Exercise"), "status is Exercise: only Actual alerts declare levels"),
    (dict(sender="someone@example.org"), "no source is configured for sender "
                                         "'someone@example.org'"),
    (dict(msg_type="Cancel", references=(("NEVER", T0),)),
     "the Cancel references only messages tocsin has not imported: cap@zamg.ac.at,NEVER"),
]


@pytest.mark.parametrize(("change", "message"), MAPPING_REFUSALS)
def test_mapping_refusals_name_the_reason_and_write_nothing(
        world: Engine, sources: Sources, change: dict[str, Any], message: str) -> None:
    before = dump(world)
    with pytest.raises(Unmapped) as refusal:
        ingest(world, alert("M1", **change), sources)
    assert message in refusal.value.message
    assert dump(world) == before


def test_one_source_cannot_replace_another_sources_declarations(
        world: Engine, tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    other = SOURCES_TOML.split("[[source]]")[1].replace('"geosphere-austria"', '"other"') \
        .replace('"*@zamg.ac.at"', '"*@other.example"')
    path.write_text(SOURCES_TOML + "[[source]]" + other, encoding="utf-8")
    sources = read_sources(path)
    [d1] = ingest(world, alert("X1", sender="cap@zamg.ac.at"), sources).declared
    update = ingest(world, alert("X2", sender="cap@other.example", msg_type="Update",
                                 references=(("X1", T0),), referenced_sender="cap@zamg.ac.at",
                                 level="4; red; Extreme"), sources)
    [d2] = update.declared
    assert update.source == "other" and update.replaced == () and d2.replaces == ()
    assert "message cap@zamg.ac.at,X1 came from source 'geosphere-austria', not 'other': its " \
        "declaration is not replaced" in update.notes
    assert level_at(world, "AT108", T0 + timedelta(minutes=1)) == "red"
    cancel = ingest(world, alert("X3", sender="cap@other.example", msg_type="Cancel",
                                 references=(("X1", T0),), referenced_sender="cap@zamg.ac.at"),
                    sources)
    assert cancel.cancelled == () and "nothing in force was cancelled" in cancel.notes
    with world.connect() as conn:
        assert conn.execute(select(t.cancellations)).all() == []
    assert d1.level == "yellow"


# --- signatures and trust ----------------------------------------------------------------

def embedded_certificate(path: Path) -> bytes:
    root = etree.fromstring(path.read_bytes())
    text = root.find(".//ds:X509Certificate", DS).text
    return x509.load_der_x509_certificate(base64.b64decode("".join(text.split()))) \
        .public_bytes(Encoding.PEM)


def stranger_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM)


def seychelles_sources(tmp_path: Path, pem: bytes, trust: str) -> Sources:
    (tmp_path / "certs").mkdir(exist_ok=True)
    (tmp_path / "certs" / "sc.pem").write_bytes(pem)
    path = tmp_path / "sc.toml"
    path.write_text(textwrap.dedent(f"""\
        [[source]]
        name = "seychelles"
        senders = ["info@meteo.gov.sc"]
        scheme = "meteoalarm"
        map = "severity"
        areas = "fixed"
        fixed_areas = ["SC"]
        require_signature = true
        trust = "{trust}"
        certificates = ["certs/sc.pem"]
        [source.levels]
        Moderate = "yellow"
        """), encoding="utf-8")
    return read_sources(path)


@pytest.mark.corpus
def test_a_pinned_signer_is_trusted(world: Engine, tmp_path: Path) -> None:
    signed = VALID / "sc_meteo_alert_signed.xml"
    sources = seychelles_sources(tmp_path, embedded_certificate(signed), "pinned")
    report = ingest(world, signed.read_bytes(), sources)
    assert report.outcome is Outcome.IMPORTED and report.signature == "intact, pinned signer"


@pytest.mark.corpus
def test_an_unpinned_signer_is_refused_when_the_source_pins(world: Engine,
                                                            tmp_path: Path) -> None:
    sources = seychelles_sources(tmp_path, stranger_certificate(), "pinned")
    before = dump(world)
    with pytest.raises(InvalidInput, match=r"signed by CN=www\.meteo\.sc, who is not among "
                       r"source 'seychelles''s pinned certificates \(trust = \"pinned\"\)"):
        ingest(world, (VALID / "sc_meteo_alert_signed.xml").read_bytes(), sources)
    assert dump(world) == before


@pytest.mark.corpus
def test_an_unpinned_signer_is_noted_when_the_source_trusts_any(world: Engine,
                                                                tmp_path: Path) -> None:
    sources = seychelles_sources(tmp_path, stranger_certificate(), "any")
    report = ingest(world, (VALID / "sc_meteo_alert_signed.xml").read_bytes(), sources)
    assert report.signature == "intact, signer not pinned"
    assert any("accepted because trust = \"any\"" in n for n in report.notes)


@pytest.mark.corpus
def test_an_expired_certificate_is_a_warning(world: Engine, sources: Sources) -> None:
    report = ingest(world, (VALID / "sc_meteo_alert_signed.xml").read_bytes(), sources,
                    now=datetime(2025, 1, 1, tzinfo=UTC))
    assert report.outcome is Outcome.STORED_EXPIRED
    assert report.signature == "intact, signer not checked, certificate expired"
    assert any("CN=www.meteo.sc expired on 2024-09-30" in w for w in report.warnings)


def test_an_unsigned_alert_is_refused_where_a_signature_is_required(
        world: Engine, tmp_path: Path) -> None:
    sources = seychelles_sources(tmp_path, stranger_certificate(), "any")
    unsigned = alert("U1", sender="info@meteo.gov.sc")
    with pytest.raises(InvalidInput, match="not signed, and source 'seychelles' requires"):
        ingest(world, unsigned, sources)


@pytest.mark.corpus
def test_a_named_source_and_an_iso_8859_1_document(world: Engine, tmp_path: Path) -> None:
    path = tmp_path / "usgs.toml"
    path.write_text(textwrap.dedent("""\
        [[source]]
        name = "usgs"
        senders = ["*.usgs.gov"]
        scheme = "meteoalarm"
        map = "severity"
        areas = "fixed"
        fixed_areas = ["US"]
        [source.levels]
        Unknown = "yellow"
        """), encoding="utf-8")
    data = (VALID / "us_usgs_earthquake_iso8859-1_signed.xml").read_bytes()
    report = import_document(world, data, "usgs", read_sources(path), now=sent_of(data),
                             source_name="usgs")
    assert report.outcome is Outcome.IMPORTED and report.signature == "intact, signer not checked"
    assert any("is not among source 'usgs''s senders" in n for n in report.notes)
    assert any("SHA-1" in w for w in report.warnings)
    [d] = report.declared
    assert d.texts["en"].headline == "EQ 4.6 Usulután, Usulután, El Salvador - PRELIMINARY REPORT"
    with world.connect() as conn:
        document = conn.execute(select(t.cap_messages.c.document)).scalar_one()
    assert "á" in document and document.encode("iso-8859-1") == data


# --- reading over HTTP -------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes, dict[str, str]]]] = {}

    def do_GET(self) -> None:
        status, body, headers = self.routes.get(self.path, (404, b"not here", {}))
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.corpus
def test_reading_over_http(world: Engine, sources: Sources, server: str) -> None:
    at = (VALID / "at_geosphere_thunderstorm_update_de_en.xml").read_bytes()
    _Handler.routes = {
        "/at.xml": (200, at, {"Content-Type": "application/cap+xml"}),
        "/moved": (302, b"", {"Location": "/at.xml"}),
        "/loop": (302, b"", {"Location": "/loop"}),
        "/big.xml": (200, b"<alert>" + b" " * MAX_BYTES + b"</alert>", {}),
    }
    data, label = read_location(f"{server}/moved", allow_private=True)
    assert data == at and label == f"{server}/moved"
    report = import_document(world, data, label, sources, now=sent_of(at))
    assert report.outcome is Outcome.IMPORTED
    with world.connect() as conn:
        audit = conn.execute(select(t.audit_log.c.details).where(
            t.audit_log.c.action == "cap.imported")).scalar_one()
    assert audit["from"] == f"{server}/moved"
    with pytest.raises(InvalidInput, match=rf"{server}/missing: the server answered 404"):
        read_location(f"{server}/missing", allow_private=True)
    with pytest.raises(InvalidInput, match=rf"{server}/loop: more than 3 redirects"):
        read_location(f"{server}/loop", allow_private=True)
    big, label = read_location(f"{server}/big.xml", allow_private=True)
    assert len(big) == MAX_BYTES + 1
    with pytest.raises(InvalidInput, match=rf"{server}/big.xml: the document is larger than "
                       "the 1 MiB"):
        import_document(world, big, label, sources, now=sent_of(at))
    with pytest.raises(InvalidInput, match=r"http://127\.0\.0\.1:9/x\.xml: cannot be fetched"):
        read_location("http://127.0.0.1:9/x.xml", allow_private=True)
    with pytest.raises(InvalidInput, match="only http and https"):
        read_location("ftp://example.org/x.xml", allow_private=True)


# --- the command line --------------------------------------------------------------------

runner = CliRunner()


def cli(url: str, *args: str, stdin: bytes | None = None) -> Any:
    return runner.invoke(app, ["ingest", *args], input=stdin,
                         env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200",
                              "TOCSIN_SOURCES": ""})


@pytest.mark.corpus
def test_cli_imports_and_reports(world: Engine, db_url: str, sources_file: Path,
                                 tmp_path: Path) -> None:
    now = datetime.now(UTC)
    path = tmp_path / "alert.xml"
    path.write_bytes(alert("CLI1", sent=now - timedelta(minutes=1),
                           expires=now + timedelta(days=1)))
    result = cli(db_url, str(path), "--sources", str(sources_file), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "imported" and report["source"] == "geosphere-austria"
    assert report["identifier"] == "CLI1" and report["msg_type"] == "Alert"
    [declared] = report["declarations"]
    assert declared["level"] == "yellow" and declared["areas"] == ["AT108"]
    assert report["signature"] == "unsigned" and report["warnings"] == []

    again = cli(db_url, str(path), "--sources", str(sources_file))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("duplicate Alert cap@zamg.ac.at,CLI1 from source "
                                   "'geosphere-austria'")

    piped = cli(db_url, "-", "--sources", str(sources_file),
                stdin=(VALID / "be_kmi_irm_update_4_languages.xml").read_bytes())
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.startswith("stored-expired Update kmi-irm,2.49.0.0.56.0.BE.")
    assert "expired at 2024-07-12T12:00:00Z: stored, no level declared" in piped.stdout


@pytest.mark.corpus
def test_cli_uses_the_sources_setting_and_a_named_source(world: Engine, db_url: str,
                                                         sources_file: Path) -> None:
    at = str(VALID / "at_geosphere_thunderstorm_update_de_en.xml")
    result = runner.invoke(app, ["ingest", at, "--source", "kmi-irm"],
                           env={"TOCSIN_DATABASE_URL": db_url,
                                "TOCSIN_SOURCES": str(sources_file)})
    assert result.exit_code == 0, result.output
    assert "imported under it because it was named" in result.stdout
    unknown = runner.invoke(app, ["ingest", at, "--source", "kmi"],
                            env={"TOCSIN_DATABASE_URL": db_url,
                                 "TOCSIN_SOURCES": str(sources_file)})
    assert unknown.exit_code == 2 and "source 'kmi' is not known" in unknown.stderr


@pytest.mark.corpus
def test_cli_refusals_exit_2(world: Engine, db_url: str, sources_file: Path) -> None:
    before = dump(world)
    result = cli(db_url, str(INVALID / "sc_bad_digest.xml"), "--sources", str(sources_file),
                 "--json")
    assert result.exit_code == 2
    refusal = json.loads(result.stdout)
    assert refusal["outcome"] == "refused" and refusal["mapping"] is False
    assert refusal["sender"] == "info@meteo.gov.sc"
    assert "digest" in refusal["problem"] and refusal["fix"]
    plain = cli(db_url, str(VALID / "cn_baoding_thunder_update_zh_en.xml"))
    assert plain.exit_code == 2
    assert "refused Update Baoding_Meteorological_Observatory," in plain.stderr
    assert "no sources file is configured: set TOCSIN_SOURCES" in plain.stderr
    missing = cli(db_url, str(VALID / "nothing.xml"), "--sources", str(sources_file))
    assert missing.exit_code == 2 and "nothing.xml: no such file" in missing.stderr
    assert dump(world) == before


SCHEME = 'scheme = "meteoalarm"'
BAD_SOURCES = [
    (SCHEME, SCHEME + '\ncolour = "red"', "source[1].colour: is not a known key"),
    ('map = "awareness_level"', 'map = "headline"',
     "source[1].map: 'headline' is not a kind of level mapping"),
    (SCHEME, SCHEME + '\ncertificates = ["certs/none.pem"]',
     "source[1].certificates[0]: file"),
    ('areas = "geocode:EMMA_ID"', 'areas = "geocode:"',
     "source[1].areas: 'geocode:' is not a way to find areas"),
    (SCHEME, SCHEME + '\ntrust = "pinned"',
     "source[1].certificates: is empty, but trust = \"pinned\""),
    (SCHEME, SCHEME + '\nfixed_areas = ["AT"]',
     "source[1].fixed_areas: is only used with areas = \"fixed\""),
    (SOURCES_TOML, "", "source: is missing: the file names no source"),
    (SOURCES_TOML, "[[sources]]\n", "sources: is not a known key"),
]


@pytest.mark.corpus
@pytest.mark.parametrize(("old", "new", "message"), BAD_SOURCES)
def test_cli_bad_sources_files_name_the_key(world: Engine, db_url: str, tmp_path: Path,
                                            old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SOURCES_TOML.replace(old, new, 1), encoding="utf-8")
    result = cli(db_url, str(VALID / "at_geosphere_thunderstorm_update_de_en.xml"),
                 "--sources", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}: {message}" in result.stderr


STORE_MISTAKES = [
    ('scheme = "meteoalarm"', 'scheme = "meteo"', "source[1].scheme: scheme 'meteo' is not "
                                                  "known"),
    ('"2; yellow; Moderate" = "yellow"', '"2; yellow; Moderate" = "amber"',
     "source[1].levels.\"2; yellow; Moderate\": 'amber' is not a level of scheme 'meteoalarm'"),
    ('fixed_areas = ["SC"]', 'fixed_areas = ["SCX"]', "source[6].fixed_areas: area 'SCX' is "
                                                      "not known"),
]


@pytest.mark.parametrize(("old", "new", "message"), STORE_MISTAKES)
def test_sources_naming_what_the_store_lacks_are_refused(
        world: Engine, tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "store.toml"
    path.write_text(SOURCES_TOML.replace(old, new, 1), encoding="utf-8")
    before = dump(world)
    with pytest.raises(InvalidInput) as refusal:
        ingest(world, alert("S1"), read_sources(path))
    assert refusal.value.message.startswith(f"{path}: {message}")
    assert dump(world) == before
