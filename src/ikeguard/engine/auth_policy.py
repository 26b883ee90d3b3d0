"""Which AUTH signatures the gateway accepts and which hashes it announces (RFC 7427 §4, RFC 7296 §2.15).

A profile may carry an ``auth_signature`` rule (``params.schemes``: strongSwan-style names such as
``ecdsa-sha384`` or ``rsa/pss-sha384``; see ``crypto.signatures.scheme_by_name``). Then a peer's AUTH must
use one of those schemes, whatever AUTH method carries it (RFC 4754 methods 9/10/11 map to their ECDSA
scheme, method 1 to RSA PKCS#1 v1.5 with SHA-1), and we announce in SIGNATURE_HASH_ALGORITHMS only the
hashes those schemes use, so a method 14 signature with any other hash is one we never announced. Without
the rule every scheme but SHA-1 is accepted and SHA-256/384/512 and the identity hash are announced.
Several such rules intersect.
"""

from __future__ import annotations

from ikeguard.crypto.signatures import SignatureScheme, scheme_by_name
from ikeguard.policy.profile import Profile
from ikeguard.wire.iana import HashAlgorithm

CHECK = "auth_signature"
DEFAULT_SIGNATURE_HASHES: tuple[HashAlgorithm, ...] = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)
_MEMO = "engine.auth_policy"
_DEFAULT_SCHEMES = frozenset(s for s in SignatureScheme if s.info.hash != HashAlgorithm.SHA1)


def allowed_signature_schemes(profile: Profile) -> frozenset[SignatureScheme]:
    """The AUTH signature schemes ``profile`` accepts from a peer (without a rule: all but SHA-1)."""
    found = profile.memo.get(_MEMO, {}).get("schemes")
    if isinstance(found, frozenset):
        return found
    allowed = _DEFAULT_SCHEMES
    for rule in profile.rules_for(CHECK):
        names = rule.params.get("schemes", [])
        allowed = allowed & frozenset(scheme_by_name(str(n)) for n in names)
    profile.memo_put(_MEMO, "schemes", allowed)
    return allowed


def announced_hashes(profile: Profile) -> tuple[HashAlgorithm, ...]:
    """SIGNATURE_HASH_ALGORITHMS we send: the hashes of the allowed schemes, in our preference order."""
    used = {s.info.hash for s in allowed_signature_schemes(profile)}
    return tuple(h for h in DEFAULT_SIGNATURE_HASHES if h in used)
