"""OCSP responses stapled by the peer in IKE (RFC 4806 §3.2: CERT payloads of encoding 14, "OCSP Content").

``StapledRevocation`` wraps a connection's ``RevocationSource`` for one validation: a stapled response that
covers the certificate is verified exactly like a fetched one (``pki.ocsp.evaluate_response``: signed by the
issuer or a delegated id-kp-OCSPSigning responder the issuer certified, thisUpdate/nextUpdate within the
clock skew; no nonce, RFC 4806 §3.2 has none) and decides GOOD or REVOKED; a missing, unusable or "unknown"
staple falls back to the connection's CRL files, OCSP and CRL URIs, so the revocation policy
(strict/ifuri/relaxed) is unchanged. ``used`` and ``problems`` say afterwards what the staples did, for the
audit record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from cryptography import x509

from ikeguard.pki.ocsp import OcspUnusable, evaluate_response
from ikeguard.pki.reasons import RevocationState, RevocationStatus
from ikeguard.pki.revocation import RevocationSource

MAX_STAPLES = 4  # responses looked at per IKE_AUTH (one per certificate of a short chain)
MAX_STAPLE_BYTES = 16 * 1024  # an OCSP response is small (RFC 4806 §1); larger ones are not parsed
STAPLED_SOURCE = "OCSP response stapled by the peer (RFC 4806)"


class StapledRevocation:
    """A ``RevocationSource``: the peer's stapled OCSP responses first, then ``fallback``."""

    def __init__(self, staples: Sequence[bytes], fallback: RevocationSource) -> None:
        self.staples = tuple(s for s in staples[:MAX_STAPLES] if 0 < len(s) <= MAX_STAPLE_BYTES)
        self.dropped = len(staples) - len(self.staples)
        self.fallback = fallback
        self.used: RevocationState | None = None  # GOOD/REVOKED when a staple decided the leaf's status
        self.problems: list[str] = []

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, *, now: datetime) -> RevocationStatus:
        """A stapled answer for ``cert`` when one verifies and decides, else the fallback's (with why)."""
        skew = getattr(self.fallback, "clock_skew", timedelta(0))
        notes: list[str] = []
        for der in self.staples:
            try:
                answer = evaluate_response(der, cert, issuer, now=now, skew=skew)
            except OcspUnusable as exc:
                if "does not cover" not in str(exc):
                    notes.append(f"stapled OCSP response unusable: {exc}")
                continue
            if answer.state is RevocationState.UNKNOWN:
                notes.append("stapled OCSP response: the responder does not know the certificate")
                continue
            if self.used is None:
                self.used = answer.state
            return RevocationStatus(answer.state, source=STAPLED_SOURCE)
        self.problems += notes
        status = self.fallback.status(cert, issuer, now=now)
        if notes and status.state is RevocationState.UNKNOWN:
            return replace(status, detail="; ".join([*notes, status.detail]))
        return status

    def summary(self) -> str:
        """What the staples did: ``good``, ``revoked``, ``unusable: ...`` or ``not covering``."""
        if self.used is not None:
            return self.used.value
        if self.problems:
            return "unusable: " + "; ".join(self.problems)[:300]
        return "not covering the certificate"
