"""Signature verification over ``cryptography`` (RSA PKCS#1 v1.5, RSASSA-PSS, ECDSA, Ed25519, Ed448)
and the profile's algorithm and key-size rules (RFC 8247 §3, RFC 5280 §4.1.1.2)."""

from __future__ import annotations

from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes, PublicKeyTypes
from cryptography.x509.oid import SignatureAlgorithmOID

from ikeguard.pki.validation_policy import ValidationPolicy

_EDDSA = (SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448)
Signed: TypeAlias = x509.Certificate | x509.CertificateRevocationList


def key_type(key: PublicKeyTypes) -> str:
    """Profile name of a public key's type: rsa, ecdsa, ed25519, ed448 or other."""
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    return "other"


def key_problem(key: PublicKeyTypes, policy: ValidationPolicy) -> str | None:
    """Why a public key is too weak for the profile, or None (RSA modulus / EC curve size)."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < policy.min_rsa_bits:
        return f"RSA key of {key.key_size} bits, at least {policy.min_rsa_bits} required"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < policy.min_ec_bits:
        return (f"EC key on {key.curve.name} ({key.curve.key_size} bits), "
                f"at least {policy.min_ec_bits} required")
    return None


def _tbs(obj: Signed) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.tbs_certificate_bytes
    return obj.tbs_certlist_bytes


def algorithm_problem(obj: Signed, signer: PublicKeyTypes, policy: ValidationPolicy) -> str | None:
    """Why the signature algorithm of ``obj`` (signed by ``signer``) is forbidden, or None."""
    kind = key_type(signer)
    if kind not in policy.key_types:
        return f"signed with a {kind} key, allowed: {', '.join(sorted(policy.key_types))}"
    if kind in ("ed25519", "ed448"):
        return None
    try:
        digest = obj.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"unsupported signature algorithm {obj.signature_algorithm_oid.dotted_string}"
    if digest is None or digest.name not in policy.signature_hashes:
        name = "none" if digest is None else digest.name
        return f"signature hash {name}, allowed: {', '.join(sorted(policy.signature_hashes))}"
    pss = obj.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    if kind == "rsa" and policy.rsa_pss_only and not pss:
        return "RSA PKCS#1 v1.5 signature, the profile requires RSASSA-PSS"
    return None


def signature_valid(obj: Signed, signer: PublicKeyTypes) -> bool:
    """Whether ``obj``'s signature verifies with ``signer`` (parameters from its signature algorithm)."""
    try:
        params = obj.signature_algorithm_parameters
        tbs = _tbs(obj)
        if isinstance(signer, rsa.RSAPublicKey):
            digest = obj.signature_hash_algorithm
            if not isinstance(params, padding.PSS | padding.PKCS1v15) or digest is None:
                return False
            signer.verify(obj.signature, tbs, params, digest)
        elif isinstance(signer, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            signer.verify(obj.signature, tbs, params)
        elif isinstance(signer, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            if obj.signature_algorithm_oid not in _EDDSA:
                return False
            signer.verify(obj.signature, tbs)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def verify_raw(signer: CertificateIssuerPublicKeyTypes, signature: bytes, data: bytes,
               digest: hashes.HashAlgorithm | None) -> bool:
    """Verify a detached signature (OCSP responses): PKCS#1 v1.5 for RSA, ECDSA, Ed25519/Ed448."""
    try:
        if isinstance(signer, rsa.RSAPublicKey) and digest is not None:
            signer.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(signer, ec.EllipticCurvePublicKey) and digest is not None:
            signer.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(signer, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and digest is None:
            signer.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
