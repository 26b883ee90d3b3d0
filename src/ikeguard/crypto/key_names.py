"""The name of a certificate's public key as reports show it (``RSA-3072``, ``ECDSA secp384r1``,
``Ed25519``): one function for `check` (policy/checks/pki.py), the ``cert.validated`` audit record
(engine/tasks/ike_auth.py) the evidence pack's certificate inventory (evidence/inventory.py) and the
chain `ikeguard scan` reports (scan/authenticated.py)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa


def describe_key(cert: x509.Certificate) -> str:
    """``RSA-3072``, ``ECDSA secp384r1``, ``Ed25519``..."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__
