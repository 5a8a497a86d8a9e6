"""Issue 15: a signed CAP alert must not be altered while its signature still holds.

XML-DSig canonicalisation drops comments, while lxml's `.text` stops at the first comment or
processing instruction, so `<identifier>KZ-00<!-- -->01</identifier>` verifies as the signed
"KZ-0001" but would read as "KZ-00". Every text field tocsin reads is split here by a comment,
a processing instruction and a CDATA section, in signed and unsigned alerts, and sent through
every door: `receive`, `import_document`, `tocsin cap check` and `tocsin ingest`. Comments and
processing instructions are refused by name; a CDATA split reads, and verifies, the same as the
text it splits.
"""

from __future__ import annotations

import base64
import json
import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from sqlalchemy import Engine, select
from tests.helpers import dump
from typer.testing import CliRunner

from tocsin.cap.read import read_alert
from tocsin.cap.sign import CapSigner, sign_cap, verify_cap
from tocsin.cap.xml import parse
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput
from tocsin.ingest.sources import Sources, read_sources
from tocsin.service import queries
from tocsin.service.importing import Outcome, Received, import_alert, import_document, receive
from tocsin.store import tables as t

SENDER = "alerts@kz.example"
T0 = datetime(2030, 7, 12, 12, tzinfo=UTC)
EARLIER = f"{SENDER},KZ-2030-0000,2030-07-11T12:00:00-00:00"
runner = CliRunner()

# Each field tocsin reads, as (test id, element, value when the element name is not unique).
FIELDS: list[tuple[str, str, str | None]] = [
    ("identifier", "identifier", None), ("sender", "sender", None), ("sent", "sent", None),
    ("status", "status", None), ("msgType", "msgType", None), ("scope", "scope", None),
    ("references", "references", None), ("note", "note", None),
    ("info-language", "language", None), ("category", "category", None),
    ("event", "event", None), ("urgency", "urgency", None), ("severity", "severity", None),
    ("certainty", "certainty", None), ("eventCode-valueName", "valueName", "SAME"),
    ("eventCode-value", "value", "CEM"), ("parameter-valueName", "valueName", "LEVEL"),
    ("parameter-value", "value", "critical"), ("effective", "effective", None),
    ("onset", "onset", None), ("expires", "expires", None),
    ("senderName", "senderName", None), ("headline", "headline", None),
    ("description", "description", None), ("instruction", "instruction", None),
    ("web", "web", None), ("areaDesc", "areaDesc", None),
    ("geocode-valueName", "valueName", "ISO3166-2"), ("geocode-value", "value", "KZ-31"),
]
FIELD_IDS = [name for name, _, _ in FIELDS]
SPLITS = {"comment": ("<!-- -->", "a comment"),
          "pi": ("<?tocsin split?>", "a processing instruction")}


def cap_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S-00:00")


def document(identifier: str = "KZ-2030-0001", *, sent: datetime = T0,
             msg_type: str = "Alert", references: str = EARLIER) -> bytes:
    """A signed-to-be alert of Kazakhstan's counter-terrorism centre: critical in KZ-31,
    every text field tocsin reads filled in, each on a line of its own."""
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
          <identifier>{identifier}</identifier>
          <sender>{SENDER}</sender>
          <sent>{cap_time(sent)}</sent>
          <status>Actual</status>
          <msgType>{msg_type}</msgType>
          <scope>Public</scope>
          <note>Issued by the counter-terrorism centre.</note>
          <references>{references}</references>
          <info>
            <language>en-US</language>
            <category>Security</category>
            <event>Terrorism threat</event>
            <urgency>Immediate</urgency>
            <severity>Extreme</severity>
            <certainty>Likely</certainty>
            <eventCode>
              <valueName>SAME</valueName>
              <value>CEM</value>
            </eventCode>
            <effective>{cap_time(sent)}</effective>
            <onset>{cap_time(sent)}</onset>
            <expires>{cap_time(sent + timedelta(days=7))}</expires>
            <senderName>National Counter-Terrorism Committee</senderName>
            <headline>Critical terrorism threat level in Zhambyl Region</headline>
            <description>Stay indoors. Do not go to crowded places.</description>
            <instruction>Follow the instructions of the police.</instruction>
            <web>https://kz.example/alerts/KZ-2030-0001</web>
            <parameter>
              <valueName>LEVEL</valueName>
              <value>critical</value>
            </parameter>
            <area>
              <areaDesc>Zhambyl Region</areaDesc>
              <geocode>
                <valueName>ISO3166-2</valueName>
                <value>KZ-31</value>
              </geocode>
            </area>
          </info>
        </alert>
        """).encode()


@dataclass(frozen=True)
class Split:
    data: bytes
    tag: str
    line: int


def split(data: bytes, field: str, how: str) -> Split:
    """`data` with the text of `field` split in the middle by a comment, a processing
    instruction ('pi') or a CDATA section ('cdata')."""
    _, tag, value = next(f for f in FIELDS if f[0] == field)
    pattern = f"<{tag}>{re.escape(value) if value else '[^<]+'}</{tag}>".encode()
    [found] = re.findall(pattern, data)
    text = found[len(tag) + 2:-len(tag) - 3].decode()
    cut = len(text) // 2
    if how == "cdata":
        middle = f"{text[:cut]}<![CDATA[{text[cut:]}]]>"
    else:
        middle = text[:cut] + SPLITS[how][0] + text[cut:]
    changed = data.replace(found, f"<{tag}>{middle}</{tag}>".encode())
    return Split(changed, tag, data[:data.index(found)].count(b"\n") + 1)


def refusal(where: Split, how: str, label: str) -> str:
    return (f"{label}: line {where.line}: {SPLITS[how][1]} inside <{where.tag}>: CAP elements "
            "hold plain text (remove it)")


@dataclass(frozen=True)
class Authority:
    signer: CapSigner
    pem: bytes
    signed_sources: Path
    unsigned_sources: Path

    def sign(self, data: bytes, at: datetime = T0) -> bytes:
        return sign_cap(data, self.signer, at=at)

    def sources(self, signed: bool) -> Sources:
        return read_sources(self.signed_sources if signed else self.unsigned_sources)


SOURCE = """\
[[source]]
name = "kz-ctc"
senders = ["{sender}"]
scheme = "kz-terror"
map = "parameter:LEVEL"
areas = "geocode:ISO3166-2"
{signature}
[source.levels]
critical = "critical"
"""


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """An ECDSA key and certificate (valid 2020-2040), and two sources files for its sender:
    one that pins the certificate and requires a signature, one that takes unsigned alerts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=Counter-Terrorism Centre")
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
                   .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
                   .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tamper")
    pem = certificate.public_bytes(Encoding.PEM)
    (folder / "ctc.pem").write_bytes(pem)
    signed = folder / "signed.toml"
    signed.write_text(SOURCE.format(sender=SENDER, signature='require_signature = true\n'
                                    'trust = "pinned"\ncertificates = ["ctc.pem"]'))
    unsigned = folder / "unsigned.toml"
    unsigned.write_text(SOURCE.format(sender=SENDER, signature=""))
    return Authority(CapSigner("ctc", key, certificate), pem, signed, unsigned)


@pytest.fixture(scope="module")
def originals(authority: Authority) -> dict[bool, bytes]:
    """The alert of T0, unsigned (False) and signed (True)."""
    return {False: document(), True: authority.sign(document())}


def canonical(data: bytes) -> bytes:
    """The exclusive C14N the signature's digest is computed over (comments dropped)."""
    out: bytes = etree.tostring(etree.fromstring(data), method="c14n", exclusive=True,
                                with_comments=False)
    return out


def level_at(engine: Engine, code: str, when: datetime) -> str | None:
    [status] = queries.load_world(engine).status(when, area=code, scheme="kz-terror")
    level = status.effective.level
    return None if level is None or status.effective.is_baseline else level.key


# --- the reproduction --------------------------------------------------------------------

def test_a_cancelled_signed_alert_replayed_with_a_comment_is_refused(
        engine: Engine, authority: Authority) -> None:
    sources = authority.sources(signed=True)
    alert = authority.sign(document("KZ-2030-0001"))
    cancel = authority.sign(document("KZ-2030-0002", sent=T0 + timedelta(hours=1),
                                     msg_type="Cancel",
                                     references=f"{SENDER},KZ-2030-0001,{cap_time(T0)}"))
    first = import_document(engine, alert, "alert.xml", sources, now=T0 + timedelta(minutes=1))
    assert first.signature == "intact, pinned signer"
    assert level_at(engine, "KZ-31", T0 + timedelta(minutes=2)) == "critical"
    ended = import_document(engine, cancel, "cancel.xml", sources,
                            now=T0 + timedelta(hours=1, minutes=1))
    assert ended.cancelled == (first.declared[0].id,)
    later = T0 + timedelta(hours=2)
    assert level_at(engine, "KZ-31", later) is None

    replay = alert.replace(b"<identifier>KZ-2030-0001</identifier>",
                           b"<identifier>KZ-2030-00<!-- -->01</identifier>")
    # The signature alone cannot tell: the canonical form it covers drops the comment.
    assert canonical(replay) == canonical(alert)
    before = dump(engine)
    with pytest.raises(InvalidInput) as refused:
        import_document(engine, replay, "replay.xml", sources, now=later)
    assert refused.value.message == (
        "replay.xml: line 3: a comment inside <identifier>: CAP elements hold plain text "
        "(remove it)")
    assert dump(engine) == before
    assert level_at(engine, "KZ-31", later) is None


def test_the_replay_is_refused_by_tocsin_ingest(engine: Engine, db_url: str,
                                                 authority: Authority) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    alert = authority.sign(document("KZ-NOW-0001", sent=now - timedelta(minutes=2)), at=now)
    cancel = authority.sign(document("KZ-NOW-0002", sent=now - timedelta(minutes=1),
                                     msg_type="Cancel", references=f"{SENDER},KZ-NOW-0001,"
                                     f"{cap_time(now - timedelta(minutes=2))}"), at=now)
    for data in (alert, cancel):
        result = ingest(db_url, authority, data, signed=True)
        assert result.exit_code == 0, result.output
    assert level_at(engine, "KZ-31", datetime.now(UTC)) is None
    before = dump(engine)
    replay = alert.replace(b"<identifier>KZ-NOW-0001</identifier>",
                           b"<identifier>KZ-NOW-00<!-- -->01</identifier>")
    result = ingest(db_url, authority, replay, signed=True)
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["problem"] == (
        "standard input: line 3: a comment inside <identifier>: CAP elements hold plain text")
    assert dump(engine) == before
    assert level_at(engine, "KZ-31", datetime.now(UTC)) is None


# --- receive: the hardened reader every door shares ---------------------------------------

@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("field", FIELD_IDS)
def test_receive_refuses_comments_and_pis_and_reads_cdata_whole(
        originals: dict[bool, bytes], authority: Authority, field: str, signed: bool) -> None:
    data = originals[signed]
    for how in sorted(SPLITS):
        where = split(data, field, how)
        with pytest.raises(InvalidInput) as refused:
            receive(where.data, "alert.xml")
        assert refused.value.message == refusal(where, how, "alert.xml")
    cdata = split(data, field, "cdata").data
    assert receive(cdata, "alert.xml").alert == receive(data, "alert.xml").alert
    if signed:
        # Canonicalisation merges CDATA into text too: the split alert is the signed one.
        verdict = verify_cap(cdata, pinned=[authority.pem], at=T0)
        assert verdict.intact and verdict.trusted
        assert verdict.verified == verify_cap(data, pinned=[authority.pem], at=T0).verified


# --- import_document ---------------------------------------------------------------------

@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("field", FIELD_IDS)
def test_import_refuses_comments_and_pis_and_reads_cdata_whole(
        engine: Engine, authority: Authority, originals: dict[bool, bytes], field: str,
        signed: bool) -> None:
    sources = authority.sources(signed)
    data = originals[signed]
    now = T0 + timedelta(minutes=1)
    before = dump(engine)
    for how in sorted(SPLITS):
        where = split(data, field, how)
        with pytest.raises(InvalidInput) as refused:
            import_document(engine, where.data, "alert.xml", sources, now=now)
        assert refused.value.message == refusal(where, how, "alert.xml")
        assert dump(engine) == before
    cdata = split(data, field, "cdata").data
    report = import_document(engine, cdata, "alert.xml", sources, now=now)
    assert report.outcome is Outcome.IMPORTED
    assert report.alert == receive(data, "plain").alert
    assert report.signature == ("intact, pinned signer" if signed else "unsigned")
    [declared] = report.declared
    assert (declared.level, declared.areas) == ("critical", ("KZ-31",))
    assert declared.texts["en"].description == "Stay indoors. Do not go to crowded places."
    with engine.connect() as conn:
        stored = conn.execute(select(t.cap_messages.c.identifier,
                                     t.cap_messages.c.document)).one()
    assert stored.identifier == "KZ-2030-0001" and stored.document.encode() == cdata


# --- the command line --------------------------------------------------------------------

def ingest(url: str, authority: Authority, data: bytes, *, signed: bool) -> Any:
    sources = authority.signed_sources if signed else authority.unsigned_sources
    return runner.invoke(app, ["ingest", "-", "--sources", str(sources), "--json"],
                         input=data, env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200",
                                          "TOCSIN_SOURCES": ""})


@pytest.fixture(scope="module")
def current(authority: Authority) -> dict[bool, bytes]:
    """The alert sent a minute ago (the command line reads the wall clock), unsigned and
    signed."""
    now = datetime.now(UTC).replace(microsecond=0)
    data = document(sent=now - timedelta(minutes=1))
    return {False: data, True: authority.sign(data, at=now)}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("field", FIELD_IDS)
def test_tocsin_ingest_refuses_comments_and_pis_and_reads_cdata_whole(
        engine: Engine, db_url: str, authority: Authority, current: dict[bool, bytes],
        field: str, signed: bool) -> None:
    data = current[signed]
    before = dump(engine)
    for how in sorted(SPLITS):
        where = split(data, field, how)
        result = ingest(db_url, authority, where.data, signed=signed)
        assert result.exit_code == 2, result.output
        refused = json.loads(result.stdout)
        assert refused["outcome"] == "refused" and refused["fix"] == "remove it"
        assert refused["problem"] == refusal(where, how, "standard input").removesuffix(
            " (remove it)")
        assert dump(engine) == before
    result = ingest(db_url, authority, split(data, field, "cdata").data, signed=signed)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["outcome"], report["identifier"], report["sender"]) == (
        "imported", "KZ-2030-0001", SENDER)
    assert report["signature"] == ("intact, pinned signer" if signed else "unsigned")
    [declared] = report["declarations"]
    assert (declared["level"], declared["areas"]) == ("critical", ["KZ-31"])


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("field", FIELD_IDS)
def test_tocsin_cap_check_refuses_comments_and_pis_and_passes_cdata(
        originals: dict[bool, bytes], field: str, signed: bool) -> None:
    data = originals[signed]
    for how in sorted(SPLITS):
        where = split(data, field, how)
        result = runner.invoke(app, ["cap", "check", "-", "--json"], input=where.data,
                               env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert refusal(where, how, "standard input") in " ".join(result.stderr.split())
    result = runner.invoke(app, ["cap", "check", "-", "--json"],
                           input=split(data, field, "cdata").data, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["errors"] == 0


# --- what the signature covers -------------------------------------------------------------

DS = "{http://www.w3.org/2000/09/xmldsig#}"
BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"


def test_the_verdict_carries_the_alert_as_signed(authority: Authority,
                                                 originals: dict[bool, bytes]) -> None:
    verdict = verify_cap(originals[True], pinned=[authority.pem], at=T0)
    assert verdict.intact and verdict.trusted
    assert verdict.verified == canonical(originals[False])
    assert verdict.signatures[0].verified == verdict.verified
    assert verify_cap(originals[False]).verified is None


def test_a_comment_only_between_elements_is_allowed_and_not_part_of_what_is_read(
        authority: Authority, originals: dict[bool, bytes]) -> None:
    # The whitespace around stays as signed: only the comment is new.
    signed = originals[True].replace(b"\n    <category>", b"\n    <!-- between --><category>")
    assert signed != originals[True]
    verdict = verify_cap(signed, pinned=[authority.pem], at=T0)
    assert verdict.intact and verdict.verified == canonical(originals[False])
    assert b"between" not in (verdict.verified or b"")
    assert receive(signed, "alert.xml").alert == receive(originals[True], "alert.xml").alert


def test_verification_itself_refuses_a_comment_inside_a_text(
        authority: Authority, originals: dict[bool, bytes]) -> None:
    where = split(originals[True], "description", "comment")
    with pytest.raises(InvalidInput, match=r"^the alert: line 27: a comment inside "
                       r"<description>: CAP elements hold plain text \(remove it\)$"):
        verify_cap(where.data, pinned=[authority.pem], at=T0)


def rsa_authority() -> tuple[CapSigner, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name.from_rfc4514_string("CN=Second signer")
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
                   .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
                   .sign(key, hashes.SHA256()))
    return CapSigner("second", key, certificate), certificate.public_bytes(Encoding.PEM)


def with_text(data: bytes, text: str) -> bytes:
    """`data` with `text` as the alert's own text, before its first child."""
    root = etree.fromstring(data)
    root.text = f"\n  {text}\n  "
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def covering_base64_text(signed: bytes, signer: CapSigner, covered: bytes) -> Any:
    """The signature of `signed`, rewritten (and signed again) so that its whole-document
    Reference covers the base64 text of the alert, which holds `covered`: XML-DSig's base64
    transform, which signxml applies. Only the signer can make this; it shows that what a
    signature covers need not be the document tocsin reads."""
    signature = etree.fromstring(signed).find(f"{DS}Signature")
    reference = signature.find(f"{DS}SignedInfo/{DS}Reference")
    transforms = reference.find(f"{DS}Transforms")
    for transform in list(transforms):
        transforms.remove(transform)
    for algorithm in ("http://www.w3.org/2000/09/xmldsig#enveloped-signature", BASE64):
        etree.SubElement(transforms, f"{DS}Transform", Algorithm=algorithm)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(covered)
    reference.find(f"{DS}DigestValue").text = base64.b64encode(digest.finalize()).decode()
    signed_info = etree.fromstring(etree.tostring(signature.find(f"{DS}SignedInfo")))
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True)
    assert isinstance(signer.private_key, rsa.RSAPrivateKey)
    value = signer.private_key.sign(c14n, padding.PKCS1v15(), hashes.SHA256())
    signature.find(f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    return signature


def test_import_reads_only_what_was_signed(engine: Engine, authority: Authority,
                                           tmp_path: Path) -> None:
    signer, pem = rsa_authority()
    other = canonical(document("KZ-2030-0009").replace(b"Stay indoors.", b"Go out."))
    carrier = with_text(document(), base64.b64encode(other).decode())
    signed = sign_cap(carrier, signer, at=T0)
    root = etree.fromstring(signed)
    root.replace(root.find(f"{DS}Signature"), covering_base64_text(signed, signer, other))
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    verdict = verify_cap(data, pinned=[pem], at=T0)
    assert verdict.intact and verdict.trusted and verdict.verified == other

    (tmp_path / "second.pem").write_bytes(pem)
    path = tmp_path / "sources.toml"
    path.write_text(SOURCE.format(sender=SENDER, signature='require_signature = true\n'
                                  'trust = "pinned"\ncertificates = ["second.pem"]'))
    tree = parse(data, "alert.xml")  # the CAP checks would refuse the text: read it anyway
    received = Received(data, "alert.xml", tree, read_alert(tree, "alert.xml"))
    before = dump(engine)
    with pytest.raises(InvalidInput) as refused:
        import_alert(engine, received, read_sources(path), now=T0 + timedelta(minutes=1))
    assert refused.value.problem == (
        "alert.xml: the alert reads otherwise than what its signature covers (identifier, "
        "infos): something outside the signed content changes it")
    assert dump(engine) == before


def test_signatures_over_different_alerts_make_the_verdict_fail(authority: Authority) -> None:
    signer, pem = rsa_authority()
    other = canonical(document("KZ-2030-0009"))
    carrier = with_text(document(), base64.b64encode(other).decode())
    root = etree.fromstring(authority.sign(carrier))
    root.append(covering_base64_text(sign_cap(carrier, signer, at=T0), signer, other))
    verdict = verify_cap(etree.tostring(root), pinned=[authority.pem, pem], at=T0)
    first, second = verdict.signatures
    assert first.intact and second.intact and second.verified == other
    assert first.verified == canonical(carrier)
    assert not verdict.intact and verdict.verified is None
    assert verdict.problem == ("signature 1 and signature 2 sign different alerts; tocsin "
                               "reads an alert only as its signers signed it, so it cannot "
                               "choose between them")


def test_signatures_over_the_same_alert_agree(authority: Authority) -> None:
    signer, pem = rsa_authority()
    plain = document()
    first = etree.fromstring(authority.sign(plain))
    second = etree.fromstring(sign_cap(plain, signer, at=T0)).find(f"{DS}Signature")
    first.append(second)
    verdict = verify_cap(etree.tostring(first), pinned=[pem], at=T0)
    assert verdict.intact and verdict.trusted
    # The second is the trusted one; both hold only without the other, over the same alert.
    assert verdict.verified == canonical(plain)
    assert [s.trusted for s in verdict.signatures] == [False, True]
