"""Typed outcomes of certificate validation: machine reason codes, the audit event each maps to, messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509


class ReasonCode(StrEnum):
    """Why a certificate was refused; stable names used in audit records (docs/reference.md)."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_SIGNATURE = "bad_signature"
    NOT_A_CA = "not_a_ca"
    REVOKED = "revoked"
    KEY_USAGE = "key_usage"
    EKU = "eku"
    POLICY = "policy"
    PATH_LENGTH = "path_length"
    NAME_CONSTRAINTS = "name_constraints"
    UNKNOWN_CRITICAL_EXTENSION = "unknown_critical_extension"
    SIGNATURE_ALGORITHM_FORBIDDEN = "signature_algorithm_forbidden"
    KEY_TOO_SMALL = "key_too_small"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    NAME_MISMATCH = "name_mismatch"
    MALFORMED = "malformed"

    @property
    def audit_event(self) -> str:
        """Audit event: unknown revocation status is `revocation.failed`, the rest `cert.rejected`."""
        return "revocation.failed" if self is ReasonCode.REVOCATION_UNAVAILABLE else "cert.rejected"


def describe(cert: x509.Certificate) -> str:
    """A short human label for a certificate: subject and serial in hex."""
    return f"'{cert.subject.rfc4514_string()}' (serial {cert.serial_number:x})"


@dataclass(frozen=True)
class ValidationFailure:
    """One refusal: reason code, a message naming the certificate, its subject/serial/issuer."""

    reason: ReasonCode
    message: str
    subject: str = ""
    serial: str = ""
    issuer: str = ""

    @property
    def audit_event(self) -> str:
        """`cert.rejected` or `revocation.failed`."""
        return self.reason.audit_event

    @classmethod
    def about(cls, reason: ReasonCode, cert: x509.Certificate, detail: str) -> ValidationFailure:
        """A failure for ``cert`` with ``detail`` prefixed by the certificate's subject and serial."""
        return cls(
            reason=reason,
            message=f"certificate {describe(cert)}: {detail}",
            subject=cert.subject.rfc4514_string(),
            serial=f"{cert.serial_number:x}",
            issuer=cert.issuer.rfc4514_string(),
        )


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of ``validate_chain``: the validated path (leaf first, anchor last) or the failure.

    ``notes`` records what was accepted without proof (e.g. revocation status unknown under ``relaxed``)
    so the caller can put it in the audit record.
    """

    path: tuple[x509.Certificate, ...] = ()
    failure: ValidationFailure | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def expires_at(self) -> datetime | None:
        """When the first certificate of the path expires: an SA authenticated by it must not outlive it."""
        return min((c.not_valid_after_utc for c in self.path), default=None)

    @property
    def ok(self) -> bool:
        """True when the leaf chains to an anchor and passed every check."""
        return self.failure is None and bool(self.path)


ISSUED_AHEAD_TOLERANCE = timedelta(minutes=5)
"""How far in our future a CRL's thisUpdate or an OCSP answer's thisUpdate may lie and still be used: the
issuer's clock may run ahead of ours, and an OCSP answer produced during our own request is stamped after the
time we validate at (RFC 5019 §4: clients allow for clock skew; OpenSSL's OCSP_check_validity allows 5 minutes
by default). Only the start: an expired nextUpdate is never extended by it."""


class RevocationState(StrEnum):
    """What revocation checking found out about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RevocationStatus:
    """Status of one certificate and its evidence; ``uri_failed``: a CRL/OCSP URI gave no answer."""

    state: RevocationState
    source: str = ""
    detail: str = ""
    uri_failed: bool = False
