"""Certificate validation for IKE: RFC 5280 path validation, revocation (CRL/OCSP) and identity matching."""

from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.fetch import DeferredFetcher, Fetcher, FetchError, FetchNeeded, FetchRequest
from ikeguard.pki.identity import certificate_identities, identity_in_certificate
from ikeguard.pki.loading import load_certificates, load_crl
from ikeguard.pki.reasons import (
    ReasonCode,
    RevocationState,
    RevocationStatus,
    ValidationFailure,
    ValidationResult,
)
from ikeguard.pki.revocation import NoRevocation, RevocationChecker, RevocationSource
from ikeguard.pki.trust import AuthoritySpec, Trust, build_trust
from ikeguard.pki.validation import validate_chain
from ikeguard.pki.validation_policy import RevocationMode, ValidationPolicy

__all__ = [
    "AuthoritySpec",
    "ConnectionTrust",
    "DeferredFetcher",
    "FetchError",
    "FetchNeeded",
    "FetchRequest",
    "Fetcher",
    "NoRevocation",
    "PkiValidator",
    "ReasonCode",
    "RevocationChecker",
    "RevocationMode",
    "RevocationSource",
    "RevocationState",
    "RevocationStatus",
    "Trust",
    "UrllibFetcher",
    "ValidationFailure",
    "ValidationPolicy",
    "ValidationResult",
    "build_trust",
    "certificate_identities",
    "identity_in_certificate",
    "load_certificates",
    "load_crl",
    "validate_chain",
]


def __getattr__(name: str) -> object:
    """``UrllibFetcher`` on first use only: importing ``ikeguard.pki`` (as the engine does) loads no network
    code (tests/engine/test_sans_io.py)."""
    if name == "UrllibFetcher":
        from ikeguard.pki.http_fetch import UrllibFetcher

        return UrllibFetcher
    raise AttributeError(name)
