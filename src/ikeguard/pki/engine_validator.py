"""The engine's ``CertificateValidator`` (``engine.validator``) backed by ``validate_chain``.

One ``ConnectionTrust`` (anchors, revocation source, policy) per connection name. The verdict's reason starts
with the machine reason code (``revoked: certificate 'CN=…' …``); ``revocation_unavailable`` belongs in a
``revocation.failed`` audit record, every other code in ``cert.rejected`` (``ReasonCode.audit_event``).
Built with a ``DeferredFetcher`` (as the service does), ``validate`` never does network I/O: a missing CRL or
OCSP answer raises ``FetchNeeded``, the engine waits for it and hands it in with ``answer_fetch``
(docs/pki.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ikeguard.pki.fetch import DeferredFetcher, FetchRequest
from ikeguard.pki.ocsp_staple import StapledRevocation
from ikeguard.pki.revocation import RevocationSource
from ikeguard.pki.validation import validate_chain
from ikeguard.pki.validation_policy import ValidationPolicy
from ikeguard.pki.verdict import CertVerdict


@dataclass(frozen=True)
class ConnectionTrust:
    """What one connection trusts and requires of its peers' certificates."""

    anchors: tuple[x509.Certificate, ...]
    revocation: RevocationSource
    policy: ValidationPolicy


def spki_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the SubjectPublicKeyInfo: a CA's entry in CERTREQ (RFC 7296 §3.7)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - the hash RFC 7296 §3.7 prescribes
    digest.update(spki)
    return digest.finalize()


class PkiValidator:
    """``engine.validator.CertificateValidator`` and ``CertificateAuthorities`` over ``validate_chain``."""

    def __init__(
        self, connections: Mapping[str, ConnectionTrust], fetcher: DeferredFetcher | None = None
    ) -> None:
        self.connections = dict(connections)
        self.fetcher = fetcher
        for name, trust in self.connections.items():
            source_fetcher = getattr(trust.revocation, "fetcher", None)
            if source_fetcher is not None and not isinstance(source_fetcher, DeferredFetcher):
                raise ValueError(
                    f"connection {name}: the engine's validator runs on the event loop and must not fetch; "
                    "build its revocation sources with a DeferredFetcher (docs/pki.md)"
                )

    def answer_fetch(self, request: FetchRequest, body: bytes | None) -> None:
        """The outcome of a fetch ``validate`` asked for (``FetchNeeded``); None: it failed or timed out."""
        if self.fetcher is not None:
            self.fetcher.answer(request, body)

    def validate(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float
    ) -> CertVerdict:
        """Validate ``chain`` (end entity first, then the peer's other CERT payloads) for ``identity``."""
        return self.validate_stapled(chain, identity, connection, now, ())

    def validate_stapled(
        self, chain: Sequence[x509.Certificate], identity: str, connection: str, now: float,
        ocsp_staples: Sequence[bytes],
    ) -> CertVerdict:
        """``validate`` with the OCSP responses the peer stapled (RFC 4806): they decide revocation status
        first, the connection's own sources when they do not (``pki.ocsp_staple``)."""
        trust = self.connections.get(connection)
        if trust is None:
            return CertVerdict(False, f"unknown_issuer: connection {connection} has no authorities")
        if not chain:
            return CertVerdict(False, "malformed: no certificate")
        stapled = StapledRevocation(ocsp_staples, trust.revocation) if ocsp_staples else None
        result = validate_chain(
            chain[0],
            chain[1:],
            trust.anchors,
            now=datetime.fromtimestamp(now, tz=UTC),
            policy=trust.policy,
            revocation=stapled or trust.revocation,
            identity=identity,
        )
        summary = stapled.summary() if stapled is not None else ""
        if result.failure is not None:
            return CertVerdict(False, f"{result.failure.reason.value}: {result.failure.message}",
                               ocsp_stapled=summary)
        return CertVerdict(True, "; ".join(result.notes), not_after=result.expires_at, ocsp_stapled=summary)

    def certreq_authorities(self, connection: str | None) -> Sequence[bytes]:
        """SPKI hashes of the anchors of ``connection`` (of all connections when None), without repeats."""
        trusts = self.connections.values() if connection is None else [self.connections.get(connection)]
        hashes_: dict[bytes, None] = {}
        for trust in trusts:
            if trust is not None:
                for anchor in trust.anchors:
                    hashes_[spki_sha1(anchor)] = None
        return list(hashes_)
