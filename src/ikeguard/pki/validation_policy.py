"""What a connection accepts from a peer certificate: algorithms, key sizes, EKU/policy OIDs, revocation mode.

Plain parameters so the compliance profiles (``ikeguard.policy``) can feed them without this package
importing the profile code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from ikeguard.policy.eku import IKE_EKUS, IKE_INTERMEDIATE, TLS_EKUS, EkuMode

__all__ = [
    "IKE_INTERMEDIATE",
    "RFC4945_LEAF_EKUS",
    "TLS_LEAF_EKUS",
    "EkuMode",
    "RevocationMode",
    "ValidationPolicy",
]


class RevocationMode(StrEnum):
    """``remote.revocation`` (swanctl semantics).

    strict: fail unless the status is known good; ifuri: fail if a CRL/OCSP URI exists but no status could be
    obtained; relaxed: fail only if revoked.
    """

    STRICT = "strict"
    IFURI = "ifuri"
    RELAXED = "relaxed"


# RFC 4945 §5.1.3.12: the EKU rule itself (relaxed/strict) is ikeguard.policy.eku.eku_problem, shared with
# `check`'s cert.usage. These sets are kept for callers that name them.
RFC4945_LEAF_EKUS: frozenset[str] = IKE_EKUS  # ipsecIKE, anyExtendedKeyUsage, iKEIntermediate
TLS_LEAF_EKUS: frozenset[str] = TLS_EKUS  # serverAuth, clientAuth: accepted non-critical in relaxed mode


@dataclass(frozen=True)
class ValidationPolicy:
    """Rules applied to every certificate of a path (see docs/pki.md for the order of checks).

    ``signature_hashes``: names as ``cryptography`` reports them (``sha256``...); Ed25519/Ed448 signatures
    carry no separate hash and are governed by ``key_types`` alone. ``key_types``: ``rsa``, ``ecdsa``,
    ``ed25519``, ``ed448`` (for the signer of each certificate and for the leaf key). ``rsa_pss_only``:
    RSA signatures must use RSASSA-PSS (RFC 8247 §3.2 prefers it). ``eku`` (``remote.eku``): how the leaf's
    extendedKeyUsage is judged (``ikeguard.policy.eku``, RFC 4945 §5.1.3.12). ``required_oids``
    (``cert_policy``): each OID must be an EKU of the leaf or a certificate policy valid for the whole path.
    """

    signature_hashes: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})
    key_types: frozenset[str] = frozenset({"rsa", "ecdsa", "ed25519", "ed448"})
    min_rsa_bits: int = 2048
    min_ec_bits: int = 256
    rsa_pss_only: bool = False
    eku: EkuMode = EkuMode.RELAXED
    required_oids: tuple[str, ...] = ()
    revocation: RevocationMode = RevocationMode.RELAXED
    max_path_length: int = 8
    clock_skew: timedelta = field(default=timedelta(0))
