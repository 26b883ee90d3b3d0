"""A signature over an evidence pack's manifest with an operator's key: a PEM private key file or a key in a
PKCS#11 token (RFC 7512 URI, as ``local.key`` takes it; the key never leaves the token). Written next to the
trail's seal as ``manifest.sig.json`` with the signer's public key (SubjectPublicKeyInfo) and its SHA-256, so
the pack verifies offline and an auditor can pin the signer (``evidence verify --signer SHA256``).

ECDSA keys sign with SHA-256 (RFC 5758 / FIPS 186-5), RSA keys with RSASSA-PSS and SHA-256 (RFC 8017 §8.1),
Ed25519 as it is (RFC 8032).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ikeguard.crypto.pkcs11_key import TokenError, is_pkcs11_uri, open_token_key, safe_uri_text

SIGNATURE = "manifest.sig.json"


class SigningError(ValueError):
    """The key cannot be used to sign (unreadable, unsupported type, token failure)."""


def _load(ref: str, base: Path) -> Any:
    if is_pkcs11_uri(ref):
        try:
            return open_token_key(ref, base=base)
        except TokenError as exc:
            raise SigningError(f"{safe_uri_text(ref)}: {exc}") from exc
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not a readable unencrypted PEM private key "
                           f"({type(exc).__name__})") from exc


def spki(public_key: Any) -> bytes:
    """DER SubjectPublicKeyInfo."""
    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def sign_manifest(manifest: bytes, ref: str, base: Path) -> dict[str, str]:
    """``manifest.sig.json`` content: algorithm, signer public key and its SHA-256, signature."""
    key = _load(ref, base)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm, signature = "ecdsa-sha256", key.sign(manifest, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        algorithm = "rsassa-pss-sha256"
        signature = key.sign(manifest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm, signature = "ed25519", key.sign(manifest)
    else:
        raise SigningError(f"unsupported key type {type(key).__name__} (ECDSA, RSA or Ed25519)")
    der = spki(key.public_key())
    return {"method": "signature", "algorithm": algorithm,
            "signer_spki_sha256": hashlib.sha256(der).hexdigest(), "signer_public_key": der.hex(),
            "signature": bytes(signature).hex(),
            "key": "pkcs11 token key" if is_pkcs11_uri(ref) else "PEM key file"}


def check_signature(manifest: bytes, sig: dict[str, Any]) -> str | None:
    """None when ``sig`` is a valid signature of ``manifest`` by the public key it names; else why not."""
    try:
        der = bytes.fromhex(str(sig["signer_public_key"]))
        signature = bytes.fromhex(str(sig["signature"]))
        public = serialization.load_der_public_key(der)
        algorithm = str(sig["algorithm"])
    except (KeyError, ValueError, TypeError) as exc:
        return f"unreadable ({exc})"
    if hashlib.sha256(der).hexdigest() != sig.get("signer_spki_sha256"):
        return "the signer's key does not match its SHA-256"
    try:
        if algorithm == "ecdsa-sha256" and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, manifest, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "rsassa-pss-sha256" and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, manifest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                          hashes.SHA256())
        elif algorithm == "ed25519" and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, manifest)
        else:
            return f"algorithm {algorithm} does not fit the signer's key"
    except InvalidSignature:
        return "signature invalid (manifest changed after signing, or another key)"
    return None
