"""Signing: the key store and `tocsin keys`, detached Ed25519 signatures over public documents,
XML-DSig over CAP alerts (ours and real ones from the shared corpus)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from tests.conftest import CORPUS, require_corpus
from tests.test_cap import SENDER, declare
from typer.testing import CliRunner

from tocsin import settings
from tocsin.cap.alert import MsgType, cap_alert
from tocsin.cap.sign import CapSigner, SigningError, verify_cap
from tocsin.cap.sign import sign_cap as sign_cap_at
from tocsin.cli.main import app
from tocsin.demo import kazakhstan_areas_file
from tocsin.domain.area import AreaTree
from tocsin.domain.errors import InvalidInput
from tocsin.domain.scheme import Scheme
from tocsin.ingest.areas import read_areas_csv
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file
from tocsin.service import keys, queries
from tocsin.store.database import connect

CAP = CORPUS / "cap"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
runner = CliRunner()


def sign_cap(xml: bytes, signer: CapSigner) -> bytes:
    return sign_cap_at(xml, signer, at=NOW)


def corpus(name: str) -> bytes:
    path = CAP / name
    require_corpus()
    return path.read_bytes()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "keys"
    monkeypatch.setenv("TOCSIN_KEYS_DIR", str(folder))
    return folder


@pytest.fixture
def keys_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database for `tocsin keys` to write its audit entries to."""
    monkeypatch.setenv("TOCSIN_DATABASE_URL", db_url)
    return db_url


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    assert "PRIVATE KEY" not in result.output
    return json.loads(result.stdout)


# --- the key store -----------------------------------------------------------------------

def test_the_store_creates_rotates_and_retires_keys_with_private_modes(store: Path) -> None:
    first = keys.create_document_key(store, now=NOW)
    second = keys.create_document_key(store, now=NOW + timedelta(days=1))
    assert mode(store) == 0o700
    for name in (f"document-{first.id}.key.pem", f"document-{second.id}.key.pem",
                 "manifest.json"):
        assert mode(store / name) == 0o600, name
    assert not list(store.glob(".*.tmp"))
    manifest = json.loads((store / "manifest.json").read_text())
    assert [(e["id"], e["state"]) for e in manifest["keys"]] == [
        (first.id, "retired"), (second.id, "active")]
    raw = base64.b64decode(second.public_key or "")
    assert second.id == hashlib.sha256(raw).hexdigest()[:16] and len(raw) == 32

    signer = keys.document_signer(store)
    assert signer is not None and signer.key_id == second.id
    keys.activate(store, first.id, now=NOW)
    assert {k.id: k.state for k in keys.list_keys(store)} == {
        first.id: keys.KeyState.ACTIVE, second.id: keys.KeyState.RETIRED}
    keys.retire(store, first.id)
    assert keys.document_signer(store) is None
    assert [k.state for k in keys.list_keys(store)] == [keys.KeyState.RETIRED] * 2


def test_no_store_means_no_signer(store: Path) -> None:
    assert keys.list_keys(store) == []
    assert keys.document_signer(store) is None and keys.cap_signer(store) is None
    assert keys.public_keys_document(store) == {"keys": []}


def test_a_configured_key_that_cannot_be_used_is_an_error(store: Path) -> None:
    info = keys.create_document_key(store, now=NOW)
    path = store / f"document-{info.id}.key.pem"
    path.chmod(0o644)
    with pytest.raises(keys.KeyUnusable, match=r"others \(mode 0644\).*chmod 600"):
        keys.document_signer(store)
    path.chmod(0o600)
    store.chmod(0o755)
    with pytest.raises(keys.KeyUnusable, match=r"key folder .* \(mode 0755\).*chmod 700"):
        keys.document_signer(store)
    store.chmod(0o700)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    with pytest.raises(keys.KeyUnusable, match="is not a readable PEM private key"):
        keys.document_signer(store)
    path.unlink()
    with pytest.raises(keys.KeyUnusable, match=r"private key file .* is missing"):
        keys.document_signer(store)


def test_a_cap_key_whose_certificate_is_lost_cannot_sign(store: Path) -> None:
    info = keys.create_cap_key(store, subject="CN=Alerts", days=30, algorithm="ecdsa", now=NOW)
    (store / f"cap-{info.id}.cert.pem").unlink()
    with pytest.raises(keys.KeyUnusable, match=r"certificate .* cannot be read"):
        keys.cap_signer(store)


def test_tocsin_keys_through_the_command_line(store: Path, keys_db: str) -> None:
    document = cli_json("keys", "create", "document")
    cap = cli_json("keys", "create", "cap", "--subject", "CN=Alerts,O=Authority,C=KZ",
                   "--days", "30", "--algorithm", "ecdsa")
    assert (document["kind"], document["algorithm"], document["state"]) == (
        "document", "ed25519", "active")
    assert (cap["kind"], cap["algorithm"], cap["subject"]) == (
        "cap", "ecdsa-p256", "CN=Alerts,O=Authority,C=KZ")
    listed = cli_json("keys", "list")
    assert [k["id"] for k in listed] == [document["id"], cap["id"]]
    public = cli_json("keys", "public")
    assert public["keys"][0]["id"] == document["id"]
    assert set(public["keys"][0]) == {"id", "algorithm", "public_key", "state", "created"}

    pem = cli("keys", "public", "cap")
    assert pem.exit_code == 0 and pem.stdout.startswith("-----BEGIN CERTIFICATE-----")
    certificate = x509.load_pem_x509_certificate(pem.stdout.encode())
    assert certificate.subject.rfc4514_string() == "CN=Alerts,O=Authority,C=KZ"
    assert cli_json("keys", "public", "cap")["certificate_pem"] == pem.stdout

    assert cli_json("keys", "retire", document["id"])["state"] == "retired"
    assert cli_json("keys", "activate", document["id"])["state"] == "active"
    for args in (("keys", "list"), ("keys", "create", "document")):
        result = cli(*args)
        assert result.exit_code == 0 and "PRIVATE KEY" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("keys", "create", "secret"), "key kind 'secret' is not known (use one of document, cap)"),
    (("keys", "create", "cap"), "--subject is missing"),
    (("keys", "create", "cap", "--subject", "Alerts"), "is not a distinguished name"),
    (("keys", "create", "cap", "--subject", "O=Authority"), "has no CN"),
    (("keys", "create", "cap", "--subject", "CN=A", "--days", "0"), "--days 0 is out of range"),
    (("keys", "create", "cap", "--subject", "CN=A", "--algorithm", "dsa"),
     "--algorithm 'dsa' is not known (use one of rsa, ecdsa)"),
    (("keys", "create", "document", "--days", "3"), "--days only apply to cap keys"),
    (("keys", "activate", "0123"), "there is no key store"),
    (("keys", "public", "cap"), "no CAP key is active"),
    (("keys", "import", "cap", "--key", "/nowhere/k.pem", "--cert", "/nowhere/c.pem"),
     "--key /nowhere/k.pem: No such file or directory"),
])
def test_bad_input_exits_2_naming_the_problem_and_the_fix(
        store: Path, keys_db: str, args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_every_change_to_the_key_store_is_audited_and_a_refused_one_is_not(
        store: Path, keys_db: str) -> None:
    engine = connect(keys_db)
    try:
        first = cli_json("keys", "create", "document")
        second = cli_json("keys", "create", "cap", "--subject", "CN=Alerts", "--days", "30",
                          "--algorithm", "ecdsa")
        third = cli_json("keys", "create", "document")
        assert cli_json("keys", "activate", first["id"])["state"] == "active"
        assert cli_json("keys", "retire", first["id"])["state"] == "retired"
        assert cli("keys", "activate", "0123").exit_code == 2
        entries = queries.audit_tail(engine, 5)
        assert [(e.action, e.subject, e.details["retired"]) for e in entries] == [
            ("key.created", first["id"], []), ("key.created", second["id"], []),
            ("key.created", third["id"], [first["id"]]),
            ("key.activated", first["id"], [third["id"]]), ("key.retired", first["id"], [])]
        assert {e.actor.partition(":")[0] for e in entries} == {"local-operator"}
        assert entries[1].details["subject"] == "CN=Alerts"
        assert queries.verify_audit(engine).ok
    finally:
        engine.dispose()


def test_an_unknown_key_id_suggests_the_known_ones(store: Path, keys_db: str) -> None:
    made = keys.create_document_key(store, now=NOW)
    result = cli("keys", "retire", made.id[:-1] + "x")
    assert result.exit_code == 2
    assert f"did you mean '{made.id}'?" in " ".join(result.stderr.split())


def write_pem(folder: Path, key: Any, certificate: x509.Certificate, name: str = "signer"
              ) -> tuple[Path, Path]:
    key_path, cert_path = folder / f"{name}.key.pem", folder / f"{name}.cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_import_takes_a_matching_pair_and_refuses_a_mismatched_one(
        store: Path, keys_db: str, tmp_path: Path) -> None:
    key, certificate = make_certificate("CN=Imported", days=365)
    key_path, cert_path = write_pem(tmp_path, key, certificate)
    imported = cli_json("keys", "import", "cap", "--key", str(key_path), "--cert", str(cert_path))
    assert imported["subject"] == "CN=Imported" and imported["algorithm"] == "rsa-3072"
    assert imported["id"] == certificate.fingerprint(hashes.SHA256()).hex()[:16]
    assert mode(store / f"cap-{imported['id']}.key.pem") == 0o600

    other = ec.generate_private_key(ec.SECP256R1())
    other_path, _ = write_pem(tmp_path, other, certificate, "other")
    result = cli("keys", "import", "cap", "--key", str(other_path), "--cert", str(cert_path))
    assert result.exit_code == 2
    assert "the key does not match the certificate" in " ".join(result.stderr.split())
    assert [k["id"] for k in cli_json("keys", "list")] == [imported["id"]]

    again = cli("keys", "import", "cap", "--key", str(key_path), "--cert", str(cert_path))
    assert again.exit_code == 2 and "is in the store already" in again.stderr


def test_settings_put_the_keys_beside_the_default_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("TOCSIN_KEYS_DIR", raising=False)
    assert settings.read({}).keys_dir == str(tmp_path / "tocsin" / "keys")
    assert settings.read({"TOCSIN_KEYS_DIR": "/srv/keys"}).keys_dir == "/srv/keys"
    assert settings.KEYS_DIR in settings.ALL


# --- detached Ed25519 signatures ---------------------------------------------------------

def test_document_signatures_verify_and_an_altered_byte_fails(store: Path) -> None:
    old = keys.create_document_key(store, now=NOW)
    data = json.dumps({"area": "KZ-75", "level": "critical"}).encode()
    old_signer = keys.document_signer(store)
    assert old_signer is not None
    old_signature = keys.sign_document(data, old_signer)
    new = keys.create_document_key(store, now=NOW + timedelta(days=30))
    new_signer = keys.document_signer(store)
    assert new_signer is not None
    signature = keys.sign_document(data, new_signer)
    assert signature["key_id"] == new.id and signature["algorithm"] == "ed25519"
    assert len(base64.b64decode(signature["signature"])) == 64

    published = keys.public_keys_document(store)
    assert [(k["id"], k["state"]) for k in published["keys"]] == [
        (old.id, "retired"), (new.id, "active")]
    assert keys.verify_document(data, signature, published)
    assert keys.verify_document(data, old_signature, published), "retired keys still verify"
    altered = bytes([data[0] ^ 1]) + data[1:]
    assert not keys.verify_document(altered, signature, published)
    assert not keys.verify_document(data, {**signature, "key_id": "0" * 16}, published)
    assert not keys.verify_document(data, {**signature, "signature": "not base64!"}, published)


# --- XML-DSig over our CAP alerts --------------------------------------------------------

@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    path = CAP / "schema" / "CAP-v1.2.xsd"
    require_corpus()
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="module")
def alert() -> bytes:
    schemes = {s.key: s for s in (load_scheme_file(p)[0] for p in builtin_scheme_files())}
    scheme: Scheme = schemes["kz-terror"]
    tree = AreaTree.build(read_areas_csv(kazakhstan_areas_file()))
    declaration = declare(scheme, tree, areas=("KZ-75", "KZ-71"))
    return cap_alert(declaration, scheme=scheme, tree=tree, sender=SENDER,
                     sent=declaration.published_at, msg_type=MsgType.ALERT)


def make_certificate(subject: str, *, days: int, algorithm: str = "rsa",
                     start: datetime = NOW - timedelta(days=1),
                     issuer: tuple[Any, x509.Certificate] | None = None,
                     ca: bool = False) -> tuple[Any, x509.Certificate]:
    key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=3072)
                if algorithm == "rsa" else ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name.from_rfc4514_string(subject)
    signing_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, name)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256()))
    return key, certificate


def signer_for(key: Any, certificate: x509.Certificate) -> CapSigner:
    return CapSigner("test", key, certificate)


@pytest.fixture(scope="module", params=["rsa", "ecdsa"])
def pair(request: pytest.FixtureRequest) -> tuple[Any, x509.Certificate]:
    return make_certificate(f"CN=Tocsin {request.param}", days=365, algorithm=request.param)


def test_a_signed_alert_verifies_and_still_validates_against_the_cap_schema(
        alert: bytes, pair: tuple[Any, x509.Certificate], schema: etree.XMLSchema) -> None:
    key, certificate = pair
    signed = sign_cap(alert, signer_for(key, certificate))
    root = etree.fromstring(signed)
    schema.assertValid(root)
    assert root[-1].tag == f"{DS}Signature", "the CAP schema wants the signature last"
    method = root.find(f"{DS}Signature/{DS}SignedInfo/{DS}SignatureMethod").get("Algorithm")
    assert method.endswith("rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa-sha256")
    assert root.find(f".//{DS}X509Certificate") is not None

    verdict = verify_cap(signed, pinned=[certificate.public_bytes(serialization.Encoding.PEM)],
                         at=NOW)
    assert (verdict.signed, verdict.intact, verdict.trusted, verdict.expired) == (
        True, True, True, False)
    assert verdict.signer == certificate.subject.rfc4514_string()
    assert verdict.problem is None and verdict.warnings == ()
    assert verify_cap(signed, at=NOW).trusted is None, "nothing pinned: trust is unknown"


def test_a_changed_text_breaks_the_digest(alert: bytes,
                                          pair: tuple[Any, x509.Certificate]) -> None:
    key, certificate = pair
    signed = sign_cap(alert, signer_for(key, certificate))
    assert b"<severity>Extreme</severity>" in signed
    altered = signed.replace(b"<severity>Extreme</severity>", b"<severity>Minor</severity>", 1)
    verdict = verify_cap(altered, pinned=[certificate], at=NOW)
    assert verdict.signed and not verdict.intact and not verdict.trusted
    assert verdict.problem is not None and verdict.problem.startswith("digest:")


def test_a_changed_signature_value_is_named(alert: bytes,
                                            pair: tuple[Any, x509.Certificate]) -> None:
    key, certificate = pair
    signed = sign_cap(alert, signer_for(key, certificate))
    root = etree.fromstring(signed)
    value = root.find(f"{DS}Signature/{DS}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[len(raw) // 2] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    verdict = verify_cap(etree.tostring(root), pinned=[certificate], at=NOW)
    assert not verdict.intact
    assert verdict.problem is not None and verdict.problem.startswith("signature value:")


def test_another_pinned_certificate_leaves_the_alert_intact_but_untrusted(
        alert: bytes, pair: tuple[Any, x509.Certificate]) -> None:
    key, certificate = pair
    signed = sign_cap(alert, signer_for(key, certificate))
    _, stranger = make_certificate("CN=Someone else", days=365)
    verdict = verify_cap(signed, pinned=[stranger], at=NOW)
    assert verdict.intact and verdict.trusted is False and verdict.problem is None


def test_a_signer_issued_by_a_pinned_ca_is_trusted(alert: bytes) -> None:
    ca_key, ca = make_certificate("CN=Root of trust", days=3650, ca=True)
    key, leaf = make_certificate("CN=Alerts desk", days=365, algorithm="ecdsa",
                                 issuer=(ca_key, ca))
    signed = sign_cap(alert, CapSigner("leaf", key, leaf, (ca,)))
    assert verify_cap(signed, pinned=[ca], at=NOW).trusted is True
    _, other_ca = make_certificate("CN=Root of trust", days=3650, ca=True)
    assert verify_cap(signed, pinned=[other_ca], at=NOW).trusted is False


def test_an_expired_certificate_is_a_warning_not_a_failure(alert: bytes) -> None:
    key, certificate = make_certificate("CN=Last year", days=30,
                                        start=NOW - timedelta(days=400))
    signed = sign_cap_at(alert, signer_for(key, certificate), at=NOW - timedelta(days=390))
    verdict = verify_cap(signed, pinned=[certificate], at=NOW)
    assert (verdict.intact, verdict.trusted, verdict.expired) == (True, True, True)
    assert any("expired on" in w for w in verdict.warnings)


def test_signing_refuses_what_cannot_be_signed_properly(alert: bytes) -> None:
    key, certificate = make_certificate("CN=Old", days=30, start=NOW - timedelta(days=400))
    with pytest.raises(SigningError, match=r"certificate is valid from .* not on"):
        sign_cap(alert, signer_for(key, certificate))
    key, certificate = make_certificate("CN=Mine", days=30)
    other, _ = make_certificate("CN=Theirs", days=30)
    with pytest.raises(SigningError, match="does not match its certificate"):
        sign_cap(alert, signer_for(other, certificate))
    signed = sign_cap(alert, signer_for(key, certificate))
    with pytest.raises(InvalidInput, match="signed already"):
        sign_cap(signed, signer_for(key, certificate))
    with pytest.raises(InvalidInput, match="not well-formed"):
        sign_cap(b"<alert", signer_for(key, certificate))


def test_the_store_s_cap_signer_signs(store: Path, alert: bytes) -> None:
    keys.create_cap_key(store, subject="CN=Store", days=30, algorithm="ecdsa", now=NOW)
    signer = keys.cap_signer(store)
    pem = keys.active_certificate_pem(store)
    assert signer is not None and pem is not None
    verdict = verify_cap(sign_cap(alert, signer), pinned=[pem], at=NOW)
    assert verdict.intact and verdict.trusted


# --- real signed alerts (shared corpus) --------------------------------------------------

RE_INDENTED = "holds only with the whitespace between elements removed"
WITHOUT_OTHERS = "holds only without the other signatures"


@pytest.mark.parametrize(("name", "signer"), [
    ("valid/sc_meteo_alert_signed.xml", "CN=www.meteo.sc"),
    ("valid/tg_meteo_alert_signed_fr.xml", "CN=www.anamet-togo.com"),
])
def test_wmo_samples_hold_with_an_expired_certificate(name: str, signer: str) -> None:
    verdict = verify_cap(corpus(name))
    assert (verdict.signed, verdict.intact, verdict.expired) == (True, True, True)
    assert verdict.signer == signer and verdict.trusted is None
    assert any("expired on 2024-09" in w for w in verdict.warnings)
    # Signed compact, published re-indented: as received, the signature does not hold.
    assert any(RE_INDENTED in w for w in verdict.warnings)
    assert verdict.signatures[0].algorithm == "ecdsa-sha256"


def test_pinning_the_embedded_certificate_of_a_sample_trusts_it() -> None:
    data = corpus("valid/sc_meteo_alert_signed.xml")
    text = etree.fromstring(data).find(f".//{DS}X509Certificate").text
    certificate = x509.load_der_x509_certificate(base64.b64decode(text))
    verdict = verify_cap(data, pinned=[certificate])
    assert verdict.intact and verdict.trusted and verdict.expired


@pytest.mark.parametrize(("name", "failed"), [
    ("invalid/sc_bad_digest.xml",
     "digest: the DigestValue of reference 1 is not canonical base64"),
    ("invalid/sc_bad_signature_value.xml",
     "signature value: the SignatureValue is not canonical base64"),
    ("invalid/tg_bad_signature_value.xml",
     "signature value: the SignatureValue is not canonical base64"),
    ("invalid/tg_bad_certificate.xml",
     "certificate: the embedded X.509 certificate cannot be read"),
    ("invalid/tg_missing_certainty.xml", "digest: the alert no longer matches"),
])
def test_tampered_samples_are_not_intact_and_the_failure_is_named(name: str,
                                                                  failed: str) -> None:
    verdict = verify_cap(corpus(name))
    assert verdict.signed and not verdict.intact
    assert verdict.problem is not None and verdict.problem.startswith(failed), verdict.problem


def test_naad_signs_each_copy_without_the_other_signature() -> None:
    verdict = verify_cap(corpus("valid/ca_naad_wind_warning_update_fr_en.xml"))
    assert verdict.intact and verdict.expired
    assert [(s.label, s.intact, s.algorithm) for s in verdict.signatures] == [
        ("NAADS Signature", True, "rsa-sha256"), ("Environment Canada", True, "rsa-sha256")]
    assert [s.signer for s in verdict.signatures] == [
        "CN=dss1.pelmorex.com,OU=Network Operations,O=Pelmorex Corp,L=Oakville,ST=Ontario,C=CA",
        "CN=meteo.gc.ca,O=Environment Canada,L=Gatineau,ST=Quebec,C=CA"]
    assert all(any(WITHOUT_OTHERS in w for w in s.warnings) for s in verdict.signatures)


def test_the_re_indented_2024_eccc_sample_no_longer_verifies() -> None:
    verdict = verify_cap(corpus("valid/ca_eccc_update_signed_2024.xml"))
    naads, eccc = verdict.signatures
    assert verdict.signed and not verdict.intact and verdict.expired
    # NAADS signed a compact SignedInfo: it holds once whitespace goes, but the alert's
    # digest does not, because the whitespace around the signatures was changed too.
    assert naads.problem is not None and naads.problem.startswith("digest:")
    assert eccc.problem is not None and eccc.problem.startswith("signature value:")
    assert verdict.problem is not None and "'Environment Canada'" in verdict.problem


def test_a_default_namespace_signature_verifies_as_received() -> None:
    # USGS: SignedInfo in the default namespace, inclusive C14N, a bare RSA KeyValue, SHA-1.
    verdict = verify_cap(corpus("valid/us_usgs_earthquake_iso8859-1_signed.xml"))
    assert verdict.intact and verdict.signer is None and not verdict.expired
    assert verdict.warnings == ("rsa-sha1 relies on SHA-1, which no longer resists forgery",)


def recovered_digest(signature: Any) -> bytes:
    """RSA 'decryption' of the SignatureValue with the embedded public key: the PKCS#1 v1.5
    block, whose tail is the hash the signer signed."""
    text = signature.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate").text
    numbers = x509.load_der_x509_certificate(base64.b64decode(text)).public_key().public_numbers()
    value = int.from_bytes(base64.b64decode(signature.find(f"{DS}SignatureValue").text), "big")
    block = pow(value, numbers.e, numbers.n).to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    sha256_info = bytes.fromhex("3031300d060960864801650304020105000420")
    assert block.startswith(b"\x00\x01\xff") and block[-51:-32] == sha256_info
    return block[-32:]


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.parametrize("name", ["valid/bz_nms_alert_signed_prefixed.xml",
                                  "valid/cm_alert_signed_fr.xml"])
def test_the_alert_hub_samples_were_signed_over_another_signed_info(name: str) -> None:
    data = corpus(name)
    verdict = verify_cap(data)
    assert verdict.signed and not verdict.intact and not verdict.expired
    assert verdict.problem is not None and verdict.problem.startswith("signature value:")
    signature = etree.fromstring(data).find(f"{DS}Signature")
    # A genuine RSA-SHA256 signature by the embedded (self-signed) key, but not over the
    # SignedInfo the file carries, whichever canonicalisation is used; and the Reference has
    # no URI, which signxml refuses to resolve in any case.
    signed_hash = recovered_digest(signature)
    signed_info = etree.fromstring(etree.tostring(signature.find(f"{DS}SignedInfo")))
    for exclusive in (True, False):
        c14n = etree.tostring(signed_info, method="c14n", exclusive=exclusive)
        assert hashlib.sha256(c14n).digest() != signed_hash
    assert signature.find(f"{DS}SignedInfo/{DS}Reference").get("URI") is None


@pytest.mark.parametrize("name", ["valid/oasis_01_homeland_security.xml",
                                  "valid/us_nws_update_2024.xml",
                                  "valid/de_dwd_update_warncells.xml"])
def test_unsigned_alerts_are_reported_unsigned(name: str) -> None:
    verdict = verify_cap(corpus(name))
    assert (verdict.signed, verdict.intact, verdict.signatures) == (False, False, ())
    assert verdict.problem == "the alert carries no XML signature"
