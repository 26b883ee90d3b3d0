"""OCSP (RFC 6960) over ``cryptography.x509.ocsp``: request building and response verification.

The response must be signed by the certificate's issuer or by a delegated responder certificate that the
issuer signed for id-kp-OCSPSigning (RFC 6960 §4.2.2.2). RSA responses must use PKCS#1 v1.5 here
(``cryptography`` does not expose PSS parameters of OCSP responses). No nonce: responses are cached until
nextUpdate, so freshness comes from thisUpdate/nextUpdate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from ikeguard.pki.algorithms import signature_valid, verify_raw
from ikeguard.pki.reasons import ISSUED_AHEAD_TOLERANCE, RevocationState


class OcspUnusable(Exception):
    """The response cannot decide the status (error status, wrong certificate, bad signature, stale)."""


@dataclass(frozen=True)
class OcspAnswer:
    """A verified single response: GOOD/REVOKED/UNKNOWN and until when it may be cached."""

    state: RevocationState
    next_update: datetime | None


def build_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """DER OCSPRequest for one certificate; CertID with SHA-1 as responders universally support."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


def _responder_key(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime
) -> x509.Certificate:
    issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    if response.responder_key_hash == issuer_key_hash or response.responder_name == issuer.subject:
        return issuer
    for candidate in response.certificates:
        key_hash = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
        if response.responder_key_hash not in (None, key_hash) or (
            response.responder_name is not None and response.responder_name != candidate.subject
        ):
            continue
        if candidate.issuer != issuer.subject or not signature_valid(candidate, issuer.public_key()):
            raise OcspUnusable("delegated responder certificate not issued by the certificate's issuer")
        try:
            usages = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = x509.ExtendedKeyUsage([])
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
            raise OcspUnusable("delegated responder certificate lacks id-kp-OCSPSigning")
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            raise OcspUnusable("delegated responder certificate outside its validity")
        return candidate
    raise OcspUnusable("response signed by an unknown responder")


def evaluate_response(
    der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: datetime,
    skew: timedelta = timedelta(0),
) -> OcspAnswer:
    """Verify an OCSP response for ``cert`` and return its answer; raise OcspUnusable otherwise."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise OcspUnusable(f"malformed OCSP response: {exc}") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspUnusable(f"responder answered {response.response_status.name}")
    signer = _responder_key(response, issuer, now)
    if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
        raise OcspUnusable("RSASSA-PSS signed OCSP responses are not supported")
    signer_key = signer.public_key()
    if not isinstance(signer_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        raise OcspUnusable("responder key type not supported")
    if not verify_raw(signer_key, response.signature, response.tbs_response_bytes,
                      response.signature_hash_algorithm):
        raise OcspUnusable("OCSP response signature does not verify")
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
        if (single.issuer_key_hash, single.issuer_name_hash) != (expected.issuer_key_hash,
                                                                  expected.issuer_name_hash):
            continue
        if single.this_update_utc > now + max(skew, ISSUED_AHEAD_TOLERANCE):
            raise OcspUnusable("OCSP response thisUpdate lies in the future")
        if single.next_update_utc is not None and single.next_update_utc < now - skew:
            raise OcspUnusable("OCSP response expired (nextUpdate)")
        state = {
            ocsp.OCSPCertStatus.GOOD: RevocationState.GOOD,
            ocsp.OCSPCertStatus.REVOKED: RevocationState.REVOKED,
        }.get(single.certificate_status, RevocationState.UNKNOWN)
        return OcspAnswer(state, single.next_update_utc)
    raise OcspUnusable("response does not cover this certificate")
