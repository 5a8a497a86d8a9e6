"""XML-DSig for CAP alerts: `sign_cap` adds one enveloped signature, `verify_cap` checks every
signature an alert carries and says how far each one can be trusted.

Verification separates three questions that receivers too often merge: does the signature
still hold over the alert (`intact`), is the signer one we pinned (`trusted`), and has the
certificate lapsed since (`expired`, a warning: archives keep old alerts). Real feeds bend the
standard in two known ways, so a signature that fails as received is tried once more with
(a) the alert's other signatures left out (Canada's NAAD signs each copy without the others)
and (b) the whitespace between elements removed (alerts re-indented after signing); when
only such a reading holds, the verdict says so in its warnings.

A verdict that holds carries the alert as signed (`SignatureVerdict.verified`): the canonical
bytes signxml digested, without comments or anything else outside the signature. Importers read
those bytes, never the document as received.
"""

from __future__ import annotations

import base64
import binascii
import copy
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadCryptoSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import InvalidCertificate, InvalidDigest, SignXMLException
from signxml.exceptions import InvalidInput as SignXMLInvalidInput
from signxml.exceptions import InvalidSignature as SignXMLInvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from tocsin.cap.trust import Trust, pinned_key, spki, subject, vouched_for
from tocsin.cap.xml import parse
from tocsin.domain.errors import Conflict, InvalidInput

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS_SIGNATURE = f"{{{DS_NS}}}Signature"
_DS = {"ds": DS_NS}
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

Certificate = bytes | str | x509.Certificate
"""A pinned certificate: PEM bytes or text (one or more certificates), or a parsed one."""


class SigningError(Conflict):
    """A key is configured but cannot sign: the document must not go out unsigned."""


@dataclass(frozen=True)
class CapSigner:
    """The private key and X.509 certificate (leaf first, then any chain) CAP alerts are
    signed with."""

    key_id: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class SignatureCheck:
    """One <ds:Signature>: `position` counts from 1 in document order; `label` is its Id."""

    position: int
    label: str | None
    intact: bool
    trusted: bool | None
    expired: bool
    signer: str | None
    not_after: datetime | None
    algorithm: str | None
    problem: str | None
    warnings: tuple[str, ...] = ()
    verified: bytes | None = field(default=None, repr=False)
    """When intact: the alert as this signature signed it (see SignatureVerdict.verified)."""
    distrust: str | None = None
    """When it holds but `trusted` is False: why no pinned certificate vouches for the signer."""

    @property
    def name(self) -> str:
        return f"signature {self.position}" + (f" ({self.label!r})" if self.label else "")


@dataclass(frozen=True)
class SignatureVerdict:
    """What `verify_cap` found. `intact` only if every signature holds; `trusted` is None when
    nothing was pinned, else whether an intact signature is by a pinned signer (or one a
    pinned CA vouches for: see `tocsin.cap.trust`); `expired` is a warning, not a failure;
    `problem` says what failed, and `distrust` why an intact alert's signer is not trusted.

    `verified`, only when intact: the alert as the accepted signature signed it (the first
    intact signature by a trusted signer, else the first one), as the canonical UTF-8 bytes the
    digest was computed over. Signatures that cover different alerts make the verdict fail."""

    signed: bool
    intact: bool
    trusted: bool | None
    expired: bool
    signer: str | None
    problem: str | None
    warnings: tuple[str, ...]
    signatures: tuple[SignatureCheck, ...]
    verified: bytes | None = field(default=None, repr=False)
    distrust: str | None = None


def sign_cap(xml: bytes, signer: CapSigner, *, at: datetime | None = None) -> bytes:
    """The alert in `xml` with an enveloped XML-DSig signature appended as the last child of
    <alert>: RSA-SHA256 or ECDSA-SHA256 by key type, SHA-256 digest, exclusive C14N, the
    certificate in KeyInfo. Serialised as is: re-indenting it afterwards breaks it.

    Refuses (InvalidInput) XML that is not a CAP alert or is signed already; raises
    SigningError when the key cannot sign: another key type, a certificate that does not
    match the key or is not valid at `at` (default now), or any failure of the signer.
    """
    root = parse(xml, "the alert to sign").getroot()
    if root.find(DS_SIGNATURE) is not None:
        raise InvalidInput("the alert is signed already",
                           "sign the unsigned alert; tocsin adds exactly one signature")
    method = _signature_method(signer)
    when = at or datetime.now(UTC)
    certificate = signer.certificate
    if spki(certificate.public_key()) != spki(signer.private_key.public_key()):
        raise SigningError(f"CAP key {signer.key_id}: the private key does not match its "
                           "certificate", "import the key together with its own certificate")
    if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
        raise SigningError(
            f"CAP key {signer.key_id}: its certificate is valid from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}, not on {when:%Y-%m-%d}",
            "create or import a current key: tocsin keys create cap --subject CN=…")
    signing = XMLSigner(method=SignatureConstructionMethod.enveloped,
                        signature_algorithm=method, digest_algorithm=DigestAlgorithm.SHA256,
                        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    try:
        signed = signing.sign(root, key=signer.private_key,
                              cert=[certificate, *signer.chain])
    except (SignXMLException, ValueError, TypeError) as error:
        raise SigningError(f"CAP key {signer.key_id}: signing failed: {error}",
                           "check the key with 'tocsin keys list'") from None
    if signed[-1].tag != DS_SIGNATURE:
        raise SigningError("the signature was not placed last in <alert>",
                           "report this: the CAP schema wants it there")
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    # Read back what is about to go out, exactly as received: never publish a broken signature.
    failure = _verify(parse(out, "the signed alert").getroot(), 0, certificate)
    if isinstance(failure, _Failure):
        raise SigningError(f"CAP key {signer.key_id}: the new signature does not verify: "
                           f"{failure.message}", "report this; nothing was published")
    return out


def _signature_method(signer: CapSigner) -> SignatureMethod:
    if isinstance(signer.private_key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    if isinstance(signer.private_key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256
    raise SigningError(f"CAP key {signer.key_id}: a {type(signer.private_key).__name__} "
                       "cannot sign CAP", "use an RSA or ECDSA P-256 key")


def verify_cap(xml: bytes, *, pinned: Sequence[Certificate] | None = None,
               at: datetime | None = None) -> SignatureVerdict:
    """Check every XML-DSig signature of the alert in `xml` (see SignatureVerdict).

    `pinned` are the certificates (or CA certificates) to trust; None leaves trust unknown.
    The signature is checked with the pinned certificate when the embedded one has its key;
    otherwise a pinned CA must vouch for the embedded chain at the signing time (the alert's
    <sent>, see `tocsin.cap.trust`). Expiry is judged at `at` (default now). Refuses
    (InvalidInput) XML that is not a CAP alert and pinned certificates that are not PEM.
    """
    root = parse(xml, "the alert").getroot()
    anchors = None if pinned is None else _load_pinned(pinned)
    found = list(root.iter(DS_SIGNATURE))
    if not found:
        return SignatureVerdict(signed=False, intact=False, trusted=None, expired=False,
                                signer=None, problem="the alert carries no XML signature",
                                warnings=(), signatures=())
    when = at or datetime.now(UTC)
    nested = [s for s in found if s.getparent() is not root]
    if nested:
        parent = etree.QName(nested[0].getparent()).localname
        return SignatureVerdict(
            signed=True, intact=False, trusted=False if anchors is not None else None,
            expired=False, signer=None, warnings=(), signatures=(),
            problem=f"structure: a ds:Signature sits inside <{parent}>; CAP allows "
                    "signatures only as the last children of <alert>")
    checks = tuple(_check(root, position, anchors, when) for position in range(len(found)))
    broken = [c for c in checks if not c.intact]
    trusted = None if anchors is None else any(c.intact and c.trusted for c in checks)
    problem = "; ".join(f"{c.name}: {c.problem}" if len(checks) > 1 else str(c.problem)
                        for c in broken) or None
    verified = None
    if not broken:
        verified = next((c for c in checks if c.trusted), checks[0]).verified
        problem = _different_content(checks)
    distrust = None if trusted is not False else "; ".join(
        f"{c.name}: {c.distrust}" if len(checks) > 1 else c.distrust
        for c in checks if c.distrust) or None
    return SignatureVerdict(
        signed=True, intact=problem is None, trusted=trusted,
        expired=any(c.expired for c in checks), signer=checks[0].signer, problem=problem,
        warnings=tuple(f"{c.name}: {w}" if len(checks) > 1 else w
                       for c in checks for w in c.warnings),
        signatures=checks, verified=verified if problem is None else None, distrust=distrust)


def _different_content(checks: Sequence[SignatureCheck]) -> str | None:
    """Which intact signatures sign another alert than the first, or None. The signatures
    themselves and the whitespace between elements are set aside: the readings above differ
    in exactly those, and neither changes what the alert says."""
    first, *others = checks
    if not others:
        return None
    reference = _content(first.verified)
    differ = [c.name for c in others if _content(c.verified) != reference]
    if not differ:
        return None
    return (f"{first.name} and {', '.join(differ)} sign different alerts; tocsin reads an "
            "alert only as its signers signed it, so it cannot choose between them")


def _content(signed: bytes | None) -> bytes | None:
    try:
        root = etree.fromstring(signed or b"", _PARSER)
    except etree.XMLSyntaxError:
        return signed
    for signature in root.findall(DS_SIGNATURE):
        _remove_keeping_tail(signature)
    out: bytes = etree.tostring(_without_indentation(root), method="c14n", exclusive=True)
    return out


def _load_pinned(pinned: Sequence[Certificate]) -> list[x509.Certificate]:
    anchors: list[x509.Certificate] = []
    for number, item in enumerate(pinned, start=1):
        if isinstance(item, x509.Certificate):
            anchors.append(item)
            continue
        text = item.encode() if isinstance(item, str) else item
        try:
            anchors.extend(x509.load_pem_x509_certificates(text))
        except ValueError as error:
            raise InvalidInput(f"pinned certificate {number} is not a PEM certificate: {error}",
                               "give PEM text starting with -----BEGIN CERTIFICATE-----") from None
    return anchors


@dataclass(frozen=True)
class _Failure:
    stage: int
    """How far the check got: 0 structure, 1 certificate, 2 signature value, 3 digest."""
    message: str


def _check(root: Any, index: int, anchors: list[x509.Certificate] | None,
           when: datetime) -> SignatureCheck:
    signature = root.findall(DS_SIGNATURE)[index]
    algorithm = signature.find("ds:SignedInfo/ds:SignatureMethod", _DS)
    method = None if algorithm is None else (algorithm.get("Algorithm") or "").rpartition("#")[2]

    def result(intact: bool, problem: str | None, cert: x509.Certificate | None = None,
               trust: Trust | None = None, notes: tuple[str, ...] = ()) -> SignatureCheck:
        trust = trust or Trust(False)
        lapsed = [c for c in trust.chain or ((cert,) if cert is not None else ())
                  if when > c.not_valid_after_utc]
        notes = (*(f"certificate {subject(c)} expired on {c.not_valid_after_utc:%Y-%m-%d}; "
                   "that does not undo a signature made while it was valid" for c in lapsed),
                 *notes)
        if trust.distrust:
            notes = (*notes, f"signer not trusted: {trust.distrust}")
        if method and "sha1" in method:
            notes = (*notes, f"{method} relies on SHA-1, which no longer resists forgery")
        return SignatureCheck(
            position=index + 1, label=signature.get("Id"), intact=intact,
            trusted=None if anchors is None else trust.trusted, expired=bool(lapsed),
            signer=subject(cert) if cert is not None else None,
            not_after=cert.not_valid_after_utc if cert is not None else None,
            algorithm=method, problem=problem, warnings=notes,
            distrust=trust.distrust if anchors is not None and intact else None)

    try:
        embedded = _embedded_certificates(signature)
    except ValueError as error:
        return result(False, f"certificate: the embedded X.509 certificate cannot be read "
                             f"({error})")
    altered = _non_canonical_base64(signature)
    cert = embedded[0] if embedded else None
    if altered:
        return result(False, altered, cert)
    candidates: list[tuple[x509.Certificate | None, bool]]
    if cert is not None:
        pin = pinned_key(cert, anchors or [])
        candidates = [(pin or cert, pin is not None)]
    else:
        candidates = [(a, True) for a in anchors or []] + [(None, False)]
    failure = _Failure(-1, "no key to check the signature with")
    for key_cert, pinned in candidates:
        outcome = _best_reading(root, index, key_cert)
        if isinstance(outcome, _Held):
            trust = (Trust(pinned) if anchors is None or pinned else
                     vouched_for(cert, embedded[1:], anchors, outcome.signed, when))
            held = result(True, None, cert or key_cert, trust, outcome.warnings)
            return replace(held, verified=outcome.signed)
        failure = max(failure, outcome, key=lambda f: f.stage)
    return result(False, failure.message, cert)


@dataclass(frozen=True)
class _Held:
    warnings: tuple[str, ...]
    signed: bytes
    """What the signature covers under the reading that held, as signxml digested it."""


def _best_reading(root: Any, index: int, cert: x509.Certificate | None) -> _Held | _Failure:
    """The first reading under which the signature holds, else the failure that got furthest
    (the earliest reading wins a tie)."""
    worst: _Failure | None = None
    for reading in _readings(root, index):
        failure = _verify(reading.root, reading.position, cert)
        if not isinstance(failure, _Failure):
            return _Held((f"holds only {reading.name}: {reading.why}",) if reading.name else (),
                         failure)
        if worst is None or failure.stage > worst.stage:
            worst = failure if not reading.name else _Failure(
                failure.stage, f"{failure.message} [read {reading.name}]")
    assert worst is not None
    return worst


@dataclass(frozen=True)
class _Reading:
    name: str
    why: str
    root: Any
    position: int


def _readings(root: Any, index: int) -> Iterator[_Reading]:
    """The alert as received, then the readings known senders need (see the module doc)."""
    yield _Reading("", "", root, index)
    alone = None
    if len(root.findall(DS_SIGNATURE)) > 1:
        alone = _without_other_signatures(root, index)
        yield _Reading("without the other signatures", "each was made over the alert "
                       "without the others (as NAAD does)", alone, 0)
    indented = "the alert was re-indented after signing"
    yield _Reading("with the whitespace between elements removed", indented,
                   _without_indentation(root), index)
    if alone is not None:
        yield _Reading("without the other signatures and the whitespace between elements",
                       indented, _without_indentation(alone), 0)


def _without_other_signatures(root: Any, keep: int) -> Any:
    copied = copy.deepcopy(root)
    for position, signature in enumerate(copied.findall(DS_SIGNATURE)):
        if position != keep:
            _remove_keeping_tail(signature)
    return copied


def _remove_keeping_tail(element: Any) -> None:
    parent, previous, tail = element.getparent(), element.getprevious(), element.tail or ""
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(element)


def _without_indentation(root: Any) -> Any:
    copied = copy.deepcopy(root)
    for element in copied.iter():
        if len(element) and element.text and not element.text.strip():
            element.text = None
        for child in element:
            if child.tail and not child.tail.strip():
                child.tail = None
    return copied


def _verify(root: Any, position: int, cert: x509.Certificate | None) -> _Failure | bytes:
    """The bytes the signature's whole-alert Reference covers, as signxml digested them (after
    its transforms: no signature, no comments), or why it does not hold."""
    config: dict[str, Any] = {
        "require_x509": cert is not None,
        "expect_references": True,
        "signature_methods": frozenset(m for m in SignatureMethod if "HMAC" not in m.name),
        "digest_algorithms": frozenset(DigestAlgorithm),
    }
    if cert is not None and "verification_time" in _CONFIG_FIELDS:
        # Judge the signature inside the certificate's validity: expiry is reported apart.
        config["verification_time"] = cert.not_valid_before_utc
    verifier = _Verifier(position)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            results = verifier.verify(root, x509_cert=cert, validate_schema=False,
                                      expect_config=SignatureConfiguration(**config))
    except InvalidDigest:
        return _Failure(3, "digest: the alert no longer matches the signed DigestValue: "
                           "it was changed after signing")
    except InvalidCertificate as error:
        return _Failure(1, f"certificate: {error}")
    except (SignXMLInvalidSignature, BadCryptoSignature) as error:
        detail = str(error).strip().rstrip(":")
        detail = "" if detail in ("", "Signature verification failed") else f" ({detail})"
        return _Failure(2, "signature value: the SignatureValue does not verify over SignedInfo "
                           f"with the signer's key{detail}: SignedInfo or the value was altered")
    except (SignXMLInvalidInput, SignXMLException, etree.LxmlError, ValueError, TypeError,
            KeyError, IndexError) as error:
        return _Failure(0, f"structure: {error}")
    signature = root.findall(DS_SIGNATURE)[position]
    references = signature.findall("ds:SignedInfo/ds:Reference", _DS)
    # signxml answers one result per Reference, in SignedInfo's order.
    answers = results if isinstance(results, list) else [results]
    if len(answers) != len(references):
        return _Failure(0, "structure: the References verified are not the ones SignedInfo "
                           "lists, so what the signature covers is unknown")
    whole = {answer.signed_data for r, answer in zip(references, answers, strict=True)
             if r.get("URI") == "" and _ENVELOPED in _transforms(r)}
    if not whole:
        return _Failure(0, "structure: no Reference with URI=\"\" and the enveloped-signature "
                           "transform: the signature does not cover the whole alert")
    if len(whole) > 1:
        return _Failure(0, "structure: its References to the whole alert cover different "
                           "bytes, so what it signs is ambiguous")
    signed: bytes = whole.pop()
    return signed


_CONFIG_FIELDS = {f.name for f in fields(SignatureConfiguration)}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _transforms(reference: Any) -> list[str]:
    return [t.get("Algorithm") or "" for t in reference.findall("ds:Transforms/ds:Transform", _DS)]


class _Verifier(XMLVerifier):
    """signxml's verifier, pointed at one signature of several, with canonicalisation that
    survives an lxml quirk: C14N of an element that is not the document root writes a
    spurious xmlns="" on its grandchildren when a default namespace is in scope, which breaks
    every signature whose SignedInfo uses the default namespace (NAAD, USGS)."""

    def __init__(self, position: int) -> None:
        super().__init__()
        self._position = position

    def _get_signature(self, root: Any) -> Any:
        if root.tag == DS_SIGNATURE:
            return root
        found = root.findall(DS_SIGNATURE)
        if self._position >= len(found):
            raise SignXMLInvalidInput(f"no signature number {self._position + 1} in the alert")
        return found[self._position]

    def _c14n(self, nodes: Any, algorithm: CanonicalizationMethod,
              inclusive_ns_prefixes: Any = None) -> bytes:
        items = nodes if isinstance(nodes, list) else [nodes]
        standalone = [etree.fromstring(etree.tostring(n), _PARSER)
                      if isinstance(n, etree._Element) and n.getparent() is not None else n
                      for n in items]
        out: bytes = super()._c14n(standalone, algorithm=algorithm,
                                   inclusive_ns_prefixes=inclusive_ns_prefixes)
        return out


def _embedded_certificates(signature: Any) -> list[x509.Certificate]:
    """The X509Certificates of the signature, signer first; ValueError says which is unreadable."""
    out = []
    for element in signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _DS):
        der = _strict_base64(element.text)
        if der is None:
            raise ValueError("its base64 is broken or not canonical: it was altered")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            out.append(x509.load_der_x509_certificate(der))
    return out


def _strict_base64(text: str | None) -> bytes | None:
    """The bytes of canonical base64 text (whitespace aside), else None. Canonical matters: a
    letter whose spare bits were changed decodes to the same bytes, so such an edit slips past
    the cryptography; the XML-DSig schema refuses that text, and so does tocsin."""
    compact = "".join((text or "").split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except binascii.Error:
        return None
    return raw if base64.b64encode(raw).decode() == compact else None


def _non_canonical_base64(signature: Any) -> str | None:
    values = [("signature value: the SignatureValue", signature.find("ds:SignatureValue", _DS))]
    values += [(f"digest: the DigestValue of reference {n}", element) for n, element in
               enumerate(signature.findall("ds:SignedInfo/ds:Reference/ds:DigestValue", _DS),
                         start=1)]
    for what, element in values:
        if element is not None and _strict_base64(element.text) is None:
            return f"{what} is not canonical base64: it was altered after signing"
    return None
