"""A throwaway test CA and a trust-anchor validator built on ``cryptography`` (issuer signature, validity,
identity in subjectAltName or equal to the subject DN) for the engine tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.validator import CertVerdict
from ikeguard.policy.identity import IdentityKind, parse_identity

NOT_BEFORE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()


def _key(kind: str) -> PrivateKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    raise ValueError(kind)


def ca(name: str = "Test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return _ca(name)


@lru_cache(maxsize=4)
def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikeguard tests"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def leaf(
    dns: str, kind: str = "ecdsa-p384", ca_name: str = "Test CA", not_after: dt.datetime = NOT_AFTER
) -> tuple[PrivateKey, x509.Certificate]:
    return _leaf(dns, kind, ca_name, not_after)


@lru_cache(maxsize=32)
def _leaf(dns: str, kind: str, ca_name: str, not_after: dt.datetime) -> tuple[PrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca(ca_name)
    key = _key(kind)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


class TrustAnchorValidator:
    """Accepts an end entity issued by one of ``anchors``, valid at ``now``, naming ``identity``."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        self.anchors = list(anchors)
        self.calls = 0

    def certreq_authorities(self, connection: str | None) -> list[bytes]:
        """SHA-1 of each anchor's SubjectPublicKeyInfo (RFC 7296 §3.7 mandates SHA-1 here)."""
        out = []
        for anchor in self.anchors:
            spki = anchor.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            digest = hashes.Hash(hashes.SHA1())
            digest.update(spki)
            out.append(digest.finalize())
        return out

    def validate(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float
    ) -> CertVerdict:
        self.calls += 1
        leaf_cert = chain[0]
        issuer = next((a for a in self.anchors if a.subject == leaf_cert.issuer), None)
        if issuer is None:
            return CertVerdict(False, f"issuer {leaf_cert.issuer.rfc4514_string()} is not a trust anchor")
        try:
            leaf_cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, Exception) as exc:  # InvalidSignature
            return CertVerdict(False, f"signature by {issuer.subject.rfc4514_string()} invalid: {exc!r}")
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        if not leaf_cert.not_valid_before_utc <= when <= leaf_cert.not_valid_after_utc:
            return CertVerdict(False, "certificate expired or not yet valid")
        ident = parse_identity(identity)
        if ident.kind is IdentityKind.FQDN:
            try:
                sans = leaf_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                sans = x509.SubjectAlternativeName([])
            names = [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
            if identity.lstrip("@").lower() not in names:
                return CertVerdict(False, f"identity {identity} not in subjectAltName")
        elif ident.kind is not IdentityKind.DN:
            return CertVerdict(False, f"identity type {ident.kind.value} not supported by the test validator")
        return CertVerdict(True, "", leaf_cert.not_valid_after_utc)
