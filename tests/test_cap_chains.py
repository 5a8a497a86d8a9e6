"""Issue 15, defect 3: only a CA can vouch for a CAP signer, and only signed content is read.

A pinned CA vouches for a signer through a chain that `cryptography`'s verifier accepts under
tocsin's policy (`tocsin.cap.trust`). Every way such a chain can fail is built here with real
certificates, and each must leave the signature intact but untrusted, saying why. Then the
ways a signed alert can be wrapped (unsigned content beside the signed, references to other
elements, several signatures) go through `import_document`, which must import only what the
trusted signature covers, or nothing. Last, an independent verifier (Debian's xmlsec1) checks
tocsin's signatures; without xmlsec1 that test is skipped, unless TOCSIN_REQUIRE_XMLSEC=1 (as
in CI), which makes its absence an error.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from lxml import etree
from sqlalchemy import Engine
from tests.helpers import dump
from tests.test_cap_tamper import SENDER, SOURCE, T0, canonical, document, level_at

from tocsin.cap.sign import CapSigner, SignatureVerdict, sign_cap, verify_cap
from tocsin.domain.errors import InvalidInput
from tocsin.ingest.sources import Sources, read_sources
from tocsin.service.importing import ImportReport, Outcome, import_document, receive

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS = f"{{{DS_NS}}}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = f"{DS_NS}enveloped-signature"
NOW = T0 + timedelta(minutes=1)
"""When the alert of T0 is verified and imported."""
START = T0 - timedelta(days=30)

Usage = tuple[str, ...] | None | Literal["by role"]
USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


# --- certificates ------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    key: Any
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)


def issue(name: str, issuer: Issued | None = None, *, ca: bool | None = False,
          path_length: int | None = None, usage: Usage = "by role", start: datetime = START,
          days: int = 365, identifiers: bool = True,
          purposes: Sequence[x509.ObjectIdentifier] = ()) -> Issued:
    """A certificate for `name`, self-signed unless an `issuer` is given. `ca=None` leaves
    BasicConstraints out, `usage=None` KeyUsage; by role, a CA may sign certificates and CRLs
    and anyone else digital signatures. `identifiers` adds the key identifiers real CAs add."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string(name)
    signing_key, issuer_name = (issuer.key, issuer.cert.subject) if issuer else (key, subject)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + timedelta(days=days)))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                                        critical=True)
    if usage == "by role":
        usage = ("key_cert_sign", "crl_sign") if ca else ("digital_signature",)
    if usage is not None:
        flags = {flag: flag in usage for flag in USAGE_FLAGS}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(purposes)), critical=False)
    if identifiers:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False)
    return Issued(key, builder.sign(signing_key, hashes.SHA256()))


@dataclass(frozen=True)
class Case:
    """A signer, the certificates its signature carries after its own, and what is pinned."""

    signer: Issued
    carried: tuple[Issued, ...]
    pinned: tuple[Issued, ...]

    def sign(self, data: bytes, at: datetime = T0) -> bytes:
        return sign_cap(data, CapSigner("desk", self.signer.key, self.signer.cert,
                                        tuple(c.cert for c in self.carried)), at=at)

    def verify(self, data: bytes, at: datetime = NOW) -> SignatureVerdict:
        return verify_cap(data, pinned=[p.pem for p in self.pinned], at=at)


MINISTRY = "CN=Ministry of Emergencies,O=Forged,C=KZ"


def good() -> Case:
    """Root (pinned) -> intermediate (carried) -> the signer."""
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650, start=T0 - timedelta(days=900))
    intermediate = issue("CN=Alerting CA,C=KZ", root, ca=True, path_length=0, days=1825,
                         start=T0 - timedelta(days=400))
    return Case(issue("CN=Alerts desk,O=Committee,C=KZ", intermediate), (intermediate,), (root,))


def non_ca_intermediate() -> Case:
    # The reproduction of issue 15: a signer's certificate (cA=false), issued by the pinned
    # CA, issues another in the name of a ministry.
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    desk = issue("CN=Alerts desk,O=Committee,C=KZ", root,
                 usage=("digital_signature", "key_cert_sign"))
    return Case(issue(MINISTRY, desk), (desk,), (root,))


def intermediate_without_basic_constraints() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    desk = issue("CN=Alerts desk,O=Committee,C=KZ", root, ca=None,
                 usage=("digital_signature", "key_cert_sign"))
    return Case(issue(MINISTRY, desk), (desk,), (root,))


def path_length_of_the_root() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, path_length=0, days=3650)
    intermediate = issue("CN=Alerting CA,C=KZ", root, ca=True)
    return Case(issue("CN=Alerts desk,C=KZ", intermediate), (intermediate,), (root,))


def path_length_of_an_intermediate() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    intermediate = issue("CN=Alerting CA,C=KZ", root, ca=True, path_length=0)
    regional = issue("CN=Regional CA,C=KZ", intermediate, ca=True)
    return Case(issue("CN=Alerts desk,C=KZ", regional), (regional, intermediate), (root,))


def signer_without_digital_signature() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    return Case(issue("CN=Mail gateway,C=KZ", root, usage=("key_encipherment",)), (), (root,))


def ca_without_key_cert_sign() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    intermediate = issue("CN=Alerting CA,C=KZ", root, ca=True,
                         usage=("digital_signature", "crl_sign"))
    return Case(issue("CN=Alerts desk,C=KZ", intermediate), (intermediate,), (root,))


def intermediate_expired_at_signing() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650, start=T0 - timedelta(days=900))
    old = issue("CN=Old alerting CA,C=KZ", root, ca=True, start=T0 - timedelta(days=400),
                days=100)
    return Case(issue("CN=Alerts desk,C=KZ", old), (old,), (root,))


def unrelated_ca_of_the_same_name() -> Case:
    real = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    impostor = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    return Case(issue("CN=Alerts desk,C=KZ", real), (), (impostor,))


def unrelated_ca() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    other = issue("CN=Another country's CA,C=XX", ca=True, days=3650)
    return Case(issue("CN=Alerts desk,C=KZ", root), (), (other,))


def intermediate_left_out() -> Case:
    case = good()
    return Case(case.signer, (), case.pinned)


def self_signed_signer_presented_as_a_ca() -> Case:
    # What `tocsin keys create cap` makes: pinned so that its own key is trusted; its key
    # must not vouch for anyone else.
    desk = issue("CN=Alerts desk,O=Committee,C=KZ", usage=("digital_signature",
                                                           "content_commitment"))
    return Case(issue(MINISTRY, desk), (), (desk,))


def bare_self_signed_signer_presented_as_a_ca() -> Case:
    desk = issue("CN=Alerts desk,O=Committee,C=KZ", ca=None, usage=None, identifiers=False)
    return Case(issue(MINISTRY, desk), (), (desk,))


def ca_as_signer() -> Case:
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650)
    return Case(issue("CN=Alerts desk,C=KZ", root, ca=True,
                      usage=("digital_signature", "key_cert_sign")), (), (root,))


UNTRUSTED: list[tuple[Any, str]] = [
    (non_ca_intermediate, "a certificate in it issued another but is not a CA "
                          "(BasicConstraints cA=false)"),
    (intermediate_without_basic_constraints, "a certificate in it issued another but has no "
                                             "BasicConstraints, so it is not a CA"),
    (path_length_of_the_root, "it is longer than a CA in it allows (BasicConstraints "
                              "pathLenConstraint)"),
    (path_length_of_an_intermediate, "it is longer than a CA in it allows"),
    (signer_without_digital_signature, "the KeyUsage of CN=Mail gateway,C=KZ does not allow "
                                       "digitalSignature, so its key may not sign alerts"),
    (ca_without_key_cert_sign, "CN=Alerting CA,C=KZ is a CA whose KeyUsage does not allow "
                               "keyCertSign, so it may not issue certificates"),
    (intermediate_expired_at_signing,
     f"CN=Old alerting CA,C=KZ is valid from {T0 - timedelta(days=400):%Y-%m-%d %H:%M} UTC to "
     f"{T0 - timedelta(days=300):%Y-%m-%d %H:%M} UTC, not at any time between the alert's sent "
     f"time ({T0:%Y-%m-%d %H:%M} UTC) and its verification ({NOW:%Y-%m-%d %H:%M} UTC)"),
    (unrelated_ca_of_the_same_name, "a certificate named as its issuer did not sign it"),
    (unrelated_ca, "no pinned certificate, nor any the signature carries, issued it"),
    (intermediate_left_out, "no pinned certificate, nor any the signature carries, issued it"),
    (self_signed_signer_presented_as_a_ca, "issued another but is not a CA"),
    (bare_self_signed_signer_presented_as_a_ca, "issued another but has no BasicConstraints"),
    (ca_as_signer, "the signer's own certificate is a CA certificate"),
]


@pytest.fixture(scope="module")
def alert() -> bytes:
    return document()


# --- verify_cap: chains --------------------------------------------------------------------

def test_a_good_chain_is_trusted(alert: bytes) -> None:
    case = good()
    verdict = case.verify(case.sign(alert))
    assert (verdict.intact, verdict.trusted, verdict.expired) == (True, True, False)
    assert verdict.signer == "CN=Alerts desk,O=Committee,C=KZ"
    assert verdict.problem is None and verdict.distrust is None and verdict.warnings == ()
    # Pinning the intermediate instead of the root is as good: a pinned CA need not be a root.
    assert verify_cap(case.sign(alert), pinned=[case.carried[0].pem], at=NOW).trusted


@pytest.mark.parametrize(("build", "why"), UNTRUSTED,
                         ids=[build.__name__ for build, _ in UNTRUSTED])
def test_every_broken_chain_is_intact_but_untrusted_and_says_why(
        alert: bytes, build: Any, why: str) -> None:
    case = build()
    verdict = case.verify(case.sign(alert))
    assert verdict.signed and verdict.intact and verdict.problem is None
    assert verdict.trusted is False
    assert verdict.distrust is not None and verdict.distrust.startswith(
        "no pinned CA vouches for its certificate: "), verdict.distrust
    assert why in verdict.distrust, verdict.distrust
    assert f"signer not trusted: {verdict.distrust}" in verdict.warnings
    assert verify_cap(case.sign(alert), at=NOW).distrust is None, "nothing pinned, nothing said"


def test_the_reason_names_the_chain_it_looked_at(alert: bytes) -> None:
    case = non_ca_intermediate()
    verdict = case.verify(case.sign(alert))
    assert verdict.distrust is not None and verdict.distrust.endswith(
        f"[the chain by issuer names: {MINISTRY} <- CN=Alerts desk,O=Committee,C=KZ <- "
        "CN=National Root CA,C=KZ (pinned)]")


def test_a_pinned_signer_is_trusted_by_its_key_alone(alert: bytes) -> None:
    desk = self_signed_signer_presented_as_a_ca().pinned[0]
    verdict = Case(desk, (), (desk,)).verify(Case(desk, (), ()).sign(alert))
    assert verdict.intact and verdict.trusted and verdict.distrust is None


def test_what_real_cap_signing_certificates_lack_is_not_required(alert: bytes) -> None:
    # TLS server certificates (serverAuth only, as Environment Canada's), no subjectAltName,
    # no key identifiers, no KeyUsage at all on the signer or on the CA (RFC 5280: any use).
    root = issue("CN=National Root CA,C=KZ", ca=True, usage=None, identifiers=False, days=3650)
    for signer in (issue("CN=alerts.example.kz", root, identifiers=False,
                         usage=("digital_signature", "key_encipherment"),
                         purposes=[ExtendedKeyUsageOID.SERVER_AUTH]),
                   issue("CN=Alerts desk,C=KZ", root, usage=None, identifiers=False)):
        case = Case(signer, (), (root,))
        verdict = case.verify(case.sign(alert))
        assert verdict.trusted, verdict.distrust


def test_an_old_alert_stays_trusted_when_its_chain_has_expired_since(alert: bytes) -> None:
    case = good()
    later = T0 + timedelta(days=2000)
    verdict = case.verify(case.sign(alert), at=later)
    assert (verdict.intact, verdict.trusted, verdict.expired) == (True, True, True)
    assert [w.split(" expired on ")[0] for w in verdict.warnings] == [
        "certificate CN=Alerts desk,O=Committee,C=KZ", "certificate CN=Alerting CA,C=KZ"]


def test_a_relay_may_sign_after_the_alert_was_sent(alert: bytes) -> None:
    # The signer's certificate was issued after <sent>: the alert was signed later, by a relay
    # (as the WMO samples of Seychelles and Togo were).
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650, start=T0 - timedelta(days=900))
    relay = issue("CN=Relay,C=KZ", root, start=T0 + timedelta(days=10))
    case = Case(relay, (), (root,))
    signed = case.sign(alert, at=T0 + timedelta(days=11))
    assert case.verify(signed, at=T0 + timedelta(days=11)).trusted
    # … but not when the signer's certificate was never valid between <sent> and verification.
    verdict = case.verify(signed, at=T0 + timedelta(days=5))
    assert verdict.trusted is False and verdict.distrust is not None
    assert "CN=Relay,C=KZ is valid from" in verdict.distrust


def test_the_sent_time_judged_is_the_signed_one(alert: bytes) -> None:
    # A chain valid at 2030-07-12 only; the alert claims to be sent then, and is verified two
    # years later, when the chain has expired. A <sent> changed outside what the signature
    # covers does not count: changing <sent> at all breaks the signature.
    case = good()
    signed = case.sign(alert)
    later = T0 + timedelta(days=2000)
    assert case.verify(signed, at=later).trusted
    moved = signed.replace(f"<sent>{T0:%Y-%m-%dT%H:%M:%S}".encode(),
                           f"<sent>{T0 - timedelta(days=1):%Y-%m-%dT%H:%M:%S}".encode(), 1)
    assert moved != signed and not case.verify(moved, at=later).intact


# --- import_document: chains ---------------------------------------------------------------

def sources_pinning(folder: Path, pinned: Sequence[Issued]) -> Sources:
    names = []
    for number, cert in enumerate(pinned):
        (folder / f"pinned-{number}.pem").write_bytes(cert.pem)
        names.append(f'"pinned-{number}.pem"')
    path = folder / "sources.toml"
    path.write_text(SOURCE.format(sender=SENDER, signature='require_signature = true\n'
                                  f'trust = "pinned"\ncertificates = [{", ".join(names)}]'))
    return read_sources(path)


def test_import_takes_an_alert_a_pinned_ca_vouches_for(engine: Engine, alert: bytes,
                                                       tmp_path: Path) -> None:
    case = good()
    report = import_document(engine, case.sign(alert), "alert.xml",
                             sources_pinning(tmp_path, case.pinned), now=NOW)
    assert report.outcome is Outcome.IMPORTED and report.signature == "intact, pinned signer"
    assert level_at(engine, "KZ-31", NOW) == "critical"


def test_import_refuses_a_signer_vouched_for_by_a_non_ca(engine: Engine, alert: bytes,
                                                         tmp_path: Path) -> None:
    case = non_ca_intermediate()
    before = dump(engine)
    with pytest.raises(InvalidInput) as refused:
        import_document(engine, case.sign(alert), "alert.xml",
                        sources_pinning(tmp_path, case.pinned), now=NOW)
    assert refused.value.problem.startswith(
        f"alert.xml: the alert is signed by {MINISTRY}, who is not among source 'kz-ctc''s "
        "pinned certificates (trust = \"pinned\"): no pinned CA vouches for its certificate: "
        "a certificate in it issued another but is not a CA (BasicConstraints cA=false)")
    assert dump(engine) == before


# --- import_document: signature wrapping ---------------------------------------------------

FORGED_INFO = """\
<info xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <language>en-US</language>
  <category>Security</category>
  <event>Terrorism threat</event>
  <urgency>Immediate</urgency>
  <severity>Extreme</severity>
  <certainty>Likely</certainty>
  <expires>{expires}</expires>
  <headline>Forged: critical threat level in Almaty</headline>
  <description>Leave the city.</description>
  <parameter><valueName>LEVEL</valueName><value>critical</value></parameter>
  <area>
    <areaDesc>Almaty</areaDesc>
    <geocode><valueName>ISO3166-2</valueName><value>KZ-75</value></geocode>
  </area>
</info>"""


def forged_info() -> Any:
    expires = (T0 + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S-00:00")
    return etree.fromstring(FORGED_INFO.format(expires=expires))


def forged_alert() -> Any:
    """Another alert of the same sender, naming Almaty (KZ-75) instead of Zhambyl (KZ-31)."""
    return etree.fromstring(document("KZ-2030-0666").replace(b"KZ-31", b"KZ-75"))


def ds_object(content: Any, identifier: str = "extra") -> Any:
    holder = etree.Element(f"{DS}Object", Id=identifier, nsmap={"ds": DS_NS})
    holder.append(content)
    return holder


def serialised(root: Any) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def standalone_c14n(element: Any) -> bytes:
    out: bytes = etree.tostring(etree.fromstring(etree.tostring(element)), method="c14n",
                                exclusive=True)
    return out


def digest(data: bytes) -> str:
    hashing = hashes.Hash(hashes.SHA256())
    hashing.update(data)
    return base64.b64encode(hashing.finalize()).decode()


def resign(root: Any, signer: RsaSigner, references: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """`root` (whose last child is a signature by `signer`) with that signature's References
    replaced by `references` (URI, transforms), each digested over what it points at, and
    SignedInfo signed again: what only the signer's own key can make."""
    signature = root[-1]
    signed_info = signature.find(f"{DS}SignedInfo")
    for old in signed_info.findall(f"{DS}Reference"):
        signed_info.remove(old)
    for uri, transforms in references:
        reference = etree.SubElement(signed_info, f"{DS}Reference", URI=uri)
        holder = etree.SubElement(reference, f"{DS}Transforms")
        for algorithm in transforms:
            etree.SubElement(holder, f"{DS}Transform", Algorithm=algorithm)
        etree.SubElement(reference, f"{DS}DigestMethod",
                         Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        if uri == "":
            unsigned = copy.deepcopy(root)
            unsigned.remove(unsigned[-1])
            covered = standalone_c14n(unsigned)
        else:
            [target] = root.xpath("//*[@Id=$id]", id=uri.removeprefix("#"))
            covered = standalone_c14n(target)
        etree.SubElement(reference, f"{DS}DigestValue").text = digest(covered)
    value = signer.key.sign(standalone_c14n(signed_info), padding.PKCS1v15(), hashes.SHA256())
    signature.find(f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    return serialised(root)


@dataclass(frozen=True)
class RsaSigner:
    """A pinned, self-signed RSA signer: XML-DSig's RSA values are plain PKCS#1 v1.5, so a
    test can sign a SignedInfo it rewrote."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def sign(self, data: bytes) -> bytes:
        return sign_cap(data, CapSigner("rsa", self.key, self.cert), at=T0)


@pytest.fixture(scope="module")
def rsa_signer() -> RsaSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name.from_rfc4514_string("CN=Counter-Terrorism Centre,C=KZ")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(START).not_valid_after(START + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return RsaSigner(key, cert)


@pytest.fixture
def pinning(tmp_path: Path, rsa_signer: RsaSigner) -> Sources:
    (tmp_path / "ctc.pem").write_bytes(rsa_signer.cert.public_bytes(Encoding.PEM))
    path = tmp_path / "sources.toml"
    path.write_text(SOURCE.format(sender=SENDER, signature='require_signature = true\n'
                                  'trust = "pinned"\ncertificates = ["ctc.pem"]'))
    return read_sources(path)


def extra_info_in_the_alert(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root.insert(len(root) - 1, forged_info())
    return serialised(root)


def extra_info_after_the_signature(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root.append(forged_info())
    return serialised(root)


def signed_alert_inside_a_forged_one(signed: bytes, signer: RsaSigner) -> bytes:
    outer = forged_alert()
    outer.find(f"{CAP}info").append(etree.fromstring(signed))
    return serialised(outer)


def signature_moved_to_a_forged_alert(signed: bytes, signer: RsaSigner) -> bytes:
    outer = forged_alert()
    outer.append(etree.fromstring(signed)[-1])
    return serialised(outer)


def compact(signed: bytes) -> Any:
    """The alert without whitespace between elements: no reading of `verify_cap` changes it,
    so the refusal names what the test is about."""
    return etree.fromstring(signed, etree.XMLParser(remove_blank_text=True))


def reference_to_an_object_only(signed: bytes, signer: RsaSigner) -> bytes:
    # The signer signs the forged alert in a ds:Object, not the alert that carries it.
    root = compact(signed)
    root[-1].append(ds_object(forged_alert()))
    return resign(compact(serialised(root)), signer, [("#extra", [EXC_C14N])])


def reference_to_an_element_in_the_alert(signed: bytes, signer: RsaSigner) -> bytes:
    root = compact(signed)
    root.find(f"{CAP}info").set("Id", "info")
    return resign(root, signer, [("#info", [EXC_C14N])])


def second_signature_over_other_content(signed: bytes, signer: RsaSigner) -> bytes:
    # The attacker changes the alert and adds a signature of their own over the change.
    attacker = issue("CN=Attacker")
    changed = document().replace(b"KZ-31", b"KZ-75")
    own = etree.fromstring(sign_cap(changed, CapSigner("x", attacker.key, attacker.cert),
                                    at=T0))
    own.insert(len(own) - 1, etree.fromstring(signed)[-1])
    return serialised(own)


def signature_inside_an_info(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root.find(f"{CAP}info").append(copy.deepcopy(root[-1]))
    return serialised(root)


CHANGED = "digest: the alert no longer matches the signed DigestValue: it was changed after signing"
NOT_WHOLE = ('structure: no Reference with URI="" and the enveloped-signature transform: the '
             "signature does not cover the whole alert")
DOES_NOT_HOLD = "alert.xml: the alert's XML signature does not hold: "
NOT_CAP = "alert.xml: not valid CAP 1.2: 1 error(s): "

# How each is refused: by `verify_cap`, and by `import_document` (whose CAP schema check may
# refuse it before the signature is looked at).
REFUSED: list[tuple[Any, str, str]] = [
    (extra_info_in_the_alert, CHANGED, DOES_NOT_HOLD + CHANGED),
    (extra_info_after_the_signature, CHANGED, DOES_NOT_HOLD + CHANGED),
    (signed_alert_inside_a_forged_one,
     "structure: a ds:Signature sits inside <alert>; CAP allows signatures only as the last "
     "children of <alert>",
     NOT_CAP + "/alert/info[1]/alert[1] [xsd] Element 'alert': This element is not expected."),
    (signature_moved_to_a_forged_alert, CHANGED, DOES_NOT_HOLD + CHANGED),
    (reference_to_an_object_only, NOT_WHOLE, DOES_NOT_HOLD + NOT_WHOLE),
    (reference_to_an_element_in_the_alert, NOT_WHOLE,
     NOT_CAP + "/alert/info[1] [xsd] Element 'info', attribute 'Id': The attribute 'Id' is not "
     "allowed."),
    (second_signature_over_other_content, f"signature 1: {CHANGED}",
     f"{DOES_NOT_HOLD}signature 1: {CHANGED}"),
    (signature_inside_an_info, "structure: a ds:Signature sits inside <info>",
     NOT_CAP + "/alert/info[1]/Signature[1]"),
]


@pytest.mark.parametrize(("wrap", "verdict_problem", "import_problem"), REFUSED,
                         ids=[wrap.__name__ for wrap, _, _ in REFUSED])
def test_unsigned_content_around_a_signed_alert_is_refused(
        engine: Engine, rsa_signer: RsaSigner, pinning: Sources, wrap: Any,
        verdict_problem: str, import_problem: str) -> None:
    data = wrap(rsa_signer.sign(document()), rsa_signer)
    verdict = verify_cap(data, pinned=[rsa_signer.cert], at=NOW)
    assert not verdict.intact and verdict.verified is None
    assert verdict.problem is not None and verdict.problem.startswith(verdict_problem), \
        verdict.problem
    before = dump(engine)
    with pytest.raises(InvalidInput) as refused:
        import_document(engine, data, "alert.xml", pinning, now=NOW)
    assert refused.value.problem.startswith(import_problem), refused.value.problem
    assert dump(engine) == before


def assert_only_the_signed_alert(report: ImportReport, engine: Engine) -> None:
    assert report.outcome is Outcome.IMPORTED and report.signature == "intact, pinned signer"
    assert report.alert == receive(document(), "unsigned").alert
    [declared] = report.declared
    assert (declared.level, declared.areas) == ("critical", ("KZ-31",))
    assert level_at(engine, "KZ-31", NOW) == "critical"
    assert level_at(engine, "KZ-75", NOW) is None


def extra_info_in_an_object(signed: bytes, signer: RsaSigner) -> bytes:
    # Inside the signature, which the enveloped-signature transform sets aside.
    root = etree.fromstring(signed)
    root[-1].append(ds_object(forged_info()))
    return serialised(root)


def second_alert_in_an_object(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root[-1].append(ds_object(forged_alert()))
    return serialised(root)


def second_alert_in_key_info(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root[-1].find(f"{DS}KeyInfo").append(forged_alert())
    return serialised(root)


def whole_alert_and_a_signed_object(signed: bytes, signer: RsaSigner) -> bytes:
    # Signed, both: the alert and a forged alert in an object. Only the alert is read.
    root = etree.fromstring(signed)
    root[-1].append(ds_object(forged_alert()))
    return resign(root, signer, [("", [ENVELOPED, EXC_C14N]), ("#extra", [EXC_C14N])])


def the_signature_twice(signed: bytes, signer: RsaSigner) -> bytes:
    root = etree.fromstring(signed)
    root.append(copy.deepcopy(root[-1]))
    return serialised(root)


def an_untrusted_second_signature_over_the_same_alert(signed: bytes, signer: RsaSigner) -> bytes:
    attacker = issue("CN=Attacker")
    root = etree.fromstring(signed)
    root.append(etree.fromstring(sign_cap(document(), CapSigner("x", attacker.key,
                                                                attacker.cert), at=T0))[-1])
    return serialised(root)


ACCEPTED = [extra_info_in_an_object, second_alert_in_an_object, second_alert_in_key_info,
            whole_alert_and_a_signed_object, the_signature_twice,
            an_untrusted_second_signature_over_the_same_alert]


@pytest.mark.parametrize("wrap", ACCEPTED, ids=[wrap.__name__ for wrap in ACCEPTED])
def test_only_the_signed_alert_is_imported(engine: Engine, rsa_signer: RsaSigner,
                                           pinning: Sources, wrap: Any) -> None:
    data = wrap(rsa_signer.sign(document()), rsa_signer)
    verdict = verify_cap(data, pinned=[rsa_signer.cert], at=NOW)
    assert verdict.intact and verdict.trusted, verdict.problem
    assert verdict.verified == canonical(document())
    report = import_document(engine, data, "alert.xml", pinning, now=NOW)
    assert_only_the_signed_alert(report, engine)


# --- an independent verifier: xmlsec1 ------------------------------------------------------

@pytest.fixture(scope="module")
def xmlsec1() -> str:
    found = shutil.which("xmlsec1")
    if found is None:
        if os.environ.get("TOCSIN_REQUIRE_XMLSEC") == "1":
            pytest.fail("TOCSIN_REQUIRE_XMLSEC=1 but xmlsec1 is not installed "
                        "(apt-get install xmlsec1)")
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1), so tocsin's CAP "
                    "signatures are not cross-checked")
    return found


@pytest.mark.parametrize("algorithm", ["rsa", "ecdsa"])
def test_xmlsec1_verifies_tocsin_s_signature_and_rejects_a_one_character_change(
        xmlsec1: str, tmp_path: Path, algorithm: str) -> None:
    # xmlsec1 checks certificates against the clock: make them current.
    now = datetime.now(UTC).replace(microsecond=0)
    root = issue("CN=National Root CA,C=KZ", ca=True, days=3650, start=now - timedelta(days=1))
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name.from_rfc4514_string("CN=Alerts desk,C=KZ")
        leaf = Issued(key, x509.CertificateBuilder().subject_name(name)
                      .issuer_name(root.cert.subject).public_key(key.public_key())
                      .serial_number(x509.random_serial_number())
                      .not_valid_before(now - timedelta(days=1))
                      .not_valid_after(now + timedelta(days=30))
                      .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                     critical=True)
                      .sign(root.key, hashes.SHA256()))
    else:
        leaf = issue("CN=Alerts desk,C=KZ", root, start=now - timedelta(days=1), days=30)
    signed = sign_cap(document(sent=now), CapSigner("desk", leaf.key, leaf.cert), at=now)
    assert verify_cap(signed, pinned=[root.pem], at=now).trusted
    (tmp_path / "ca.pem").write_bytes(root.pem)

    def xmlsec(data: bytes) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "alert.xml"
        path.write_bytes(data)
        return subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(tmp_path / "ca.pem"),
                               str(path)], capture_output=True, text=True, timeout=60,
                              check=False)

    held = xmlsec(signed)
    assert held.returncode == 0 and "OK" in held.stdout + held.stderr, held.stderr
    changed = signed.replace(b"Stay indoors.", b"Stay indoors!", 1)
    assert changed != signed
    broken = xmlsec(changed)
    assert broken.returncode != 0 and "FAIL" in broken.stdout + broken.stderr, broken.stderr
    # A certificate the trusted CA did not issue fails there too.
    (tmp_path / "ca.pem").write_bytes(issue("CN=Other CA", ca=True).pem)
    assert xmlsec(signed).returncode != 0
