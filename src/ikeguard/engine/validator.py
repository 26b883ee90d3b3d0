"""The certificate/identity acceptance decision, delegated to a validator the engine is given.

The engine checks the AUTH signature with the key of the certificate the validator accepted; whether the
chain, its revocation state and the identity binding (subjectAltName / subject DN) are acceptable is the
validator's call (the service supplies the full RFC 5280 one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography import x509

from ikeguard.pki.fetch import FetchNeeded, FetchRequest
from ikeguard.pki.verdict import CertVerdict

__all__ = [
    "CertVerdict", "CertificateAuthorities", "CertificateValidator", "FetchNeeded", "FetchRequest",
    "RejectAllValidator", "answer_fetch", "certreq_data", "validate_peer",
]


class CertificateValidator(Protocol):
    """Decides whether ``chain`` (end entity first) is trusted and binds ``identity`` at time ``now``.

    ``validate`` never does network I/O: when it needs a CRL or OCSP answer it does not have, it raises
    ``FetchNeeded``; the engine then emits ``RevocationFetch``, waits, hands the answer to the validator's
    optional ``answer_fetch(request, body)`` and calls ``validate`` again (docs/pki.md)."""

    def validate(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float
    ) -> CertVerdict: ...


class CertificateAuthorities(Protocol):
    """Optional validator extension: the trust anchors to announce in CERTREQ (RFC 7296 §3.7), as SHA-1
    hashes of their SubjectPublicKeyInfo. A validator without it makes us send an empty CERTREQ."""

    def certreq_authorities(self, connection: str | None) -> Sequence[bytes]: ...


def certreq_data(validator: object, connection: str | None) -> bytes:
    """CERTREQ Certification Authority field: concatenated 20-octet SPKI hashes (may be empty)."""
    source = getattr(validator, "certreq_authorities", None)
    if source is None:
        return b""
    hashes = [bytes(h) for h in source(connection) if len(bytes(h)) == 20]
    return b"".join(hashes)


def validate_peer(
    validator: CertificateValidator, chain: Sequence[x509.Certificate], identity: str, connection: str,
    now: float, ocsp_staples: Sequence[bytes] = (),
) -> CertVerdict:
    """``validator.validate``; with OCSP responses the peer stapled (RFC 4806 §3.2) its optional
    ``validate_stapled(..., ocsp_staples)`` when it has one (a validator without it ignores them)."""
    stapled = getattr(validator, "validate_stapled", None)
    if ocsp_staples and stapled is not None:
        verdict: CertVerdict = stapled(chain, identity, connection, now, ocsp_staples)
        return verdict
    return validator.validate(chain, identity, connection, now)


def answer_fetch(validator: object, request: FetchRequest, body: bytes | None) -> None:
    """Hand a fetched body (None: failed or timed out) to a validator that asked for it."""
    answer = getattr(validator, "answer_fetch", None)
    if answer is not None:
        answer(request, body)


class RejectAllValidator:
    """Validator for PSK-only engines: every certificate is refused."""

    def validate(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float
    ) -> CertVerdict:
        """Refuse: no trust anchors configured."""
        return CertVerdict(False, "no certificate validator configured")
