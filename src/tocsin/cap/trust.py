"""Whether a pinned CA vouches for a CAP signer's certificate: tocsin's trust policy for
certificate chains, in one place. Path building and validation are `cryptography`'s
(`cryptography.x509.verification`, its client-certificate verifier); this module sets the
policy, chooses the time, and says in words why a chain fails.

The policy, and why:

- A signer whose own key is pinned is trusted as it is, without a chain or dates (whoever
  pinned it chose exactly that key). Any other signer needs a chain from its certificate (the
  first one the signature carries), through the others the signature carries, to a pinned
  certificate, with at most 8 intermediates. A pinned certificate that issues one must itself
  be a CA: pinning a signer's own certificate does not let its key vouch for others.
- Every CA in the chain, the pinned one included: BasicConstraints present, critical, cA=true,
  and every pathLenConstraint respected; KeyUsage, when present, allows keyCertSign. (RFC 5280
  lets a certificate omit KeyUsage, meaning any use; BasicConstraints still decides who is a
  CA.) The signer's certificate: not a CA; KeyUsage, when present, allows digitalSignature
  (XML-DSig is a digital signature) and not keyCertSign.
- Dates: every certificate of the chain valid at one instant at which the alert can have been
  signed, between its own <sent> time (as signed) and its verification. XML-DSig records no
  signing time; the alert is written before it is signed; archives verify old alerts, so a
  signature made while its chain was valid stays trusted (`verify_cap` warns that a
  certificate has expired since); and relays sign after <sent> (the WMO samples of Seychelles
  and Togo were signed with certificates issued weeks after their <sent>). Without a <sent>
  (or with one after verification), the instant is the verification itself.
- Kept from the library's Web PKI profile: X.509 v3, certificates signed with RSA (PKCS#1 v1.5
  or PSS) or ECDSA over SHA-256/384/512 (not SHA-1, whose collisions are practical), issuing
  RSA keys of at least 2048 bits, serial numbers of 1 to 20 octets, no unknown critical
  extension.
- Relaxed from that profile, which requires what real CAP signing certificates lack:
  subjectAltName and authorityKeyIdentifier may be absent from the signer's certificate, and
  ExtendedKeyUsage is checked on no certificate. CAP has no key purpose of its own, and the
  signers in the wild (Pelmorex for NAAD, Environment Canada, the WMO's alert hub) sign with
  TLS server certificates whose EKU is serverAuth, some without the clientAuth the library's
  client profile would demand.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from lxml import etree

MAX_INTERMEDIATES = 8
"""The longest chain tocsin builds, not counting the signer's certificate and the pinned one."""

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(frozen=True)
class Trust:
    """Whether an intact signature's signer is trusted and, when not, why not (`distrust`)."""

    trusted: bool
    distrust: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    """When a pinned CA vouches for the signer: signer first, the pinned certificate last."""


@dataclass(frozen=True)
class SigningWindow:
    """When the signature can have been made: from `earliest` to `latest`, both included."""

    earliest: datetime
    latest: datetime

    def __str__(self) -> str:
        if self.earliest == self.latest:
            return f"at the time of verification ({_when(self.latest)})"
        return (f"at any time between the alert's sent time ({_when(self.earliest)}) and its "
                f"verification ({_when(self.latest)})")


def signing_window(signed: bytes | None, verified_at: datetime) -> SigningWindow:
    """From the <sent> time of the alert as `signed` (the bytes its signature covers) to
    `verified_at`; only `verified_at` when <sent> is missing, unreadable or later."""
    sent = _sent(signed)
    if sent is None or sent > verified_at:
        return SigningWindow(verified_at, verified_at)
    return SigningWindow(sent, verified_at)


def pinned_key(cert: x509.Certificate,
               pinned: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The pinned certificate with the same public key as `cert`, if any."""
    key = spki(cert.public_key())
    return next((p for p in pinned if spki(p.public_key()) == key), None)


def vouched_for(signer: x509.Certificate | None, carried: Sequence[x509.Certificate],
                pinned: Sequence[x509.Certificate], signed: bytes,
                verified_at: datetime) -> Trust:
    """Whether the `signer` of an intact signature chains to one of the `pinned` certificates,
    through those the signature `carried` besides the signer's, under the policy of the module
    doc, within the `signing_window` of the alert as `signed`."""
    if signer is None:
        return Trust(False, "the signature carries no certificate, and no pinned key verifies it")
    if not pinned:
        return Trust(False, "nothing is pinned that could vouch for it")
    window = signing_window(signed, verified_at)
    lineage = _lineage(signer, carried, pinned)
    failure = ""
    for instant in _instants(window, lineage):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                verified = _verifier(pinned, instant).verify(signer, list(carried))
        except (VerificationError, ValueError, TypeError) as error:
            failure = failure or str(error)
            continue
        return Trust(True, chain=tuple(verified.chain))
    return Trust(False, _explain(failure, lineage, pinned, window))


def _instants(window: SigningWindow, lineage: Sequence[x509.Certificate]) -> list[datetime]:
    """When to judge the chain: the first instant of the window at which every certificate
    named in `lineage` has begun, then the window's ends. Each is a time the alert can have
    been signed, so a chain that holds at any of them holds within the window."""
    begun = max([window.earliest, *(c.not_valid_before_utc for c in lineage)])
    candidates = [begun, window.earliest, window.latest]
    return [t for n, t in enumerate(candidates)
            if window.earliest <= t <= window.latest and t not in candidates[:n]]


def _verifier(pinned: Sequence[x509.Certificate], when: datetime) -> ClientVerifier:
    ca = (ExtensionPolicy.webpki_defaults_ca()
          .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
          .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None))
    signer = (ExtensionPolicy.webpki_defaults_ee()
              .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _signer_key_usage)
              .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
              .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
              .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None))
    return (PolicyBuilder().store(Store(list(pinned))).time(when)
            .max_chain_depth(MAX_INTERMEDIATES)
            .extension_policies(ca_policy=ca, ee_policy=signer)
            .build_client_verifier())


class _Refused(ValueError):
    """A refusal by one of tocsin's own extension checks; its text is the whole reason."""


def _ca_key_usage(_policy: Any, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise _Refused(f"{subject(cert)} is a CA whose KeyUsage does not allow keyCertSign, so "
                       "it may not issue certificates")


def _signer_key_usage(_policy: Any, cert: x509.Certificate,
                      usage: x509.KeyUsage | None) -> None:
    if usage is None:
        return
    if not usage.digital_signature:
        raise _Refused(f"the KeyUsage of {subject(cert)} does not allow digitalSignature, so "
                       "its key may not sign alerts")
    if usage.key_cert_sign:
        raise _Refused(f"the KeyUsage of {subject(cert)} allows keyCertSign, which a signer's "
                       "certificate must not")


# The library's reasons (cryptography 50), in this module's words; others are shown as they are.
_REASONS = {
    "basicConstraints.cA must be asserted in a CA certificate":
        "a certificate in it issued another but is not a CA (BasicConstraints cA=false)",
    "CA certificate has no basicConstraints":
        "a certificate in it issued another but has no BasicConstraints, so it is not a CA",
    "basicConstraints.cA must not be asserted in an EE certificate":
        "the signer's own certificate is a CA certificate (BasicConstraints cA=true)",
    "path length constraint violated":
        "it is longer than a CA in it allows (BasicConstraints pathLenConstraint)",
    "all candidates exhausted with no interior errors":
        "no pinned certificate, nor any the signature carries, issued it",
    "signature does not match": "a certificate named as its issuer did not sign it",
    "Forbidden signature algorithm":
        "a certificate in it is signed with an algorithm outside the policy (e.g. SHA-1)",
    "RSA key is too weak": "an issuer's RSA key is shorter than 2048 bits",
    "incorrect criticality": "a certificate marks an extension critical, or not, against "
                             "RFC 5280 (BasicConstraints must be critical in a CA)",
    "unaccounted-for critical extensions":
        "a certificate carries a critical extension tocsin does not know",
}


def _explain(raw: str, lineage: Sequence[x509.Certificate],
             pinned: Sequence[x509.Certificate], window: SigningWindow) -> str:
    detail = raw.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    detail = detail.split(" (encountered processing ")[0]
    if "Python extension validator failed: " in detail:
        reason = detail.split("Python extension validator failed: ", 1)[1]
        reason = reason.removeprefix(f"{_Refused.__name__}: ")
    elif "not valid at validation time" in detail:
        outside = [c for c in lineage if c.not_valid_after_utc < window.earliest
                   or c.not_valid_before_utc > window.latest]
        reason = "; ".join(
            f"{subject(c)} is valid from {_when(c.not_valid_before_utc)} to "
            f"{_when(c.not_valid_after_utc)}" for c in outside or lineage)
        reason += (", not " if outside else ": these never overlap ") + str(window)
    else:
        reason = next((said for key, said in _REASONS.items() if key in detail), detail)
    path = " <- ".join(subject(c) + (" (pinned)" if c in pinned else "") for c in lineage)
    return (f"no pinned CA vouches for its certificate: {reason} "
            f"[the chain by issuer names: {path}]")


def _lineage(signer: x509.Certificate, carried: Sequence[x509.Certificate],
             pinned: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The signer's certificate and, by issuer name alone, the issuers after it: what a
    message names and where dates are looked for, never what is trusted."""
    out = [signer]
    while len(out) <= MAX_INTERMEDIATES + 1 and out[-1].issuer != out[-1].subject:
        issuer = next((c for c in [*pinned, *carried]
                       if c.subject == out[-1].issuer and c not in out), None)
        if issuer is None:
            break
        out.append(issuer)
    return out


def spki(key: Any) -> bytes:
    """A public key as DER SubjectPublicKeyInfo, to compare keys."""
    out: bytes = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return out


def subject(cert: x509.Certificate) -> str:
    """The certificate's subject as RFC 4514 text."""
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "(unreadable subject)"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _sent(signed: bytes | None) -> datetime | None:
    """The <sent> time of the alert in `signed`, if it reads as a time with an offset."""
    try:
        root = etree.fromstring(signed or b"", _PARSER)
    except etree.XMLSyntaxError:
        return None
    namespace = etree.QName(root).namespace
    element = root.find(f"{{{namespace}}}sent" if namespace else "sent")
    try:
        sent = datetime.fromisoformat((element.text or "").strip())
    except (AttributeError, ValueError):
        return None
    return sent.astimezone(UTC) if sent.utcoffset() is not None else None
