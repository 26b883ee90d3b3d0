"""Certificate requests signed by the gateway's own key (a file or a PKCS#11 token key): the PKCS#10 CSR
(RFC 2986) that ACME (``acme_client.py``) and SCEP (``scep_client.py``) send, and the short-lived self-signed
certificate SCEP's first request is signed with (RFC 8894 §2.3).

Built with ``asn1crypto`` and signed through the private key's ``sign`` method, not with ``cryptography``'s
CSR/certificate builders: those only sign with keys of their own backend, and the gateway's key may be a token
key (``crypto/pkcs11_key.py``) that never leaves the token.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from typing import cast

from asn1crypto import algos as a_algos
from asn1crypto import core as a_core
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import pem as a_pem
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from ikeguard.crypto.signatures import PrivateKey

__all__ = ["RequestError", "build_csr", "key_signature", "public_key_der", "self_signed_certificate",
           "signature_algorithm"]


class RequestError(Exception):
    """A request that cannot be built (no identifiers, a key type that cannot sign one)."""


def public_key_der(key: PrivateKey) -> bytes:
    """The key's SubjectPublicKeyInfo (DER)."""
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _general_name(identifier: str) -> a_x509.GeneralName:
    try:
        ipaddress.ip_address(identifier)
    except ValueError:
        return a_x509.GeneralName(name="dns_name", value=identifier)
    return a_x509.GeneralName(name="ip_address", value=identifier)


def signature_algorithm(key: PrivateKey) -> str:
    """The asn1crypto name of the signature algorithm ``key_signature`` uses for ``key``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "sha384_ecdsa" if key.curve.key_size >= 384 else "sha256_ecdsa"
    if isinstance(key, rsa.RSAPrivateKey):
        return "sha256_rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "ed448"
    raise RequestError(f"cannot sign a request with a {type(key).__name__}")


def key_signature(key: PrivateKey, data: bytes) -> tuple[str, bytes]:
    """``data`` signed by ``key`` (``sign`` runs on the token for a token key): the asn1crypto signature
    algorithm name and the signature. RSA: PKCS#1 v1.5 with SHA-256 (what CAs and SCEP servers accept)."""
    algorithm = signature_algorithm(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest: hashes.HashAlgorithm = hashes.SHA384() if algorithm == "sha384_ecdsa" else hashes.SHA256()
        return algorithm, key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        return algorithm, key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return algorithm, key.sign(data)


def build_csr(key: PrivateKey, identifiers: Sequence[str], *, common_name: str | None = None,
              challenge: str | None = None, pem: bool = True) -> bytes:
    """A PKCS#10 request (RFC 2986) for ``identifiers`` (subjectAltName dNSName / iPAddress), signed by
    ``key``. The subject's CN is ``common_name``, else the first DNS name; ``challenge`` is the
    challengePassword attribute (RFC 2985 §5.4.1, SCEP RFC 8894 §2.2). PEM, or DER with ``pem=False``."""
    if not identifiers:
        raise RequestError("no identifiers to request a certificate for")
    dns = [i for i in identifiers if _general_name(i).name == "dns_name"]
    cn = common_name or (dns[0] if dns else None)
    subject = a_x509.Name.build({"common_name": cn} if cn else {})
    san = a_x509.Extension({"extn_id": "subject_alt_name", "critical": False,
                            "extn_value": [_general_name(i) for i in identifiers]})
    attributes: list[dict[str, object]] = []
    if challenge is not None:
        attributes.append({"type": "challenge_password",
                           "values": [a_x509.DirectoryString(name="utf8_string", value=challenge)]})
    attributes.append({"type": "extension_request", "values": [[san]]})
    info = a_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": subject,
        "subject_pk_info": a_keys.PublicKeyInfo.load(public_key_der(key)),
        "attributes": attributes,
    })
    algorithm, signature = key_signature(key, info.dump())
    request = a_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    })
    der = request.dump()
    return cast(bytes, a_pem.armor("CERTIFICATE REQUEST", der)) if pem else der


def self_signed_certificate(key: PrivateKey, common_name: str, *,
                            lifetime: dt.timedelta = dt.timedelta(hours=1)) -> x509.Certificate:
    """A short-lived self-signed certificate for ``key``: what signs a first SCEP request (RFC 8894 §2.3,
    "the requester MUST use a self-signed certificate" before it has one from the CA)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = a_x509.Name.build({"common_name": common_name})
    algorithm = signature_algorithm(key)
    tbs = a_x509.TbsCertificate({
        "version": "v3",
        "serial_number": int.from_bytes(secrets.token_bytes(16), "big") >> 1,
        "signature": a_algos.SignedDigestAlgorithm({"algorithm": algorithm}),
        "issuer": name,
        "validity": {"not_before": a_x509.Time(name="utc_time", value=now - dt.timedelta(minutes=5)),
                     "not_after": a_x509.Time(name="utc_time", value=now + lifetime)},
        "subject": name,
        "subject_public_key_info": a_keys.PublicKeyInfo.load(public_key_der(key)),
        "extensions": [{"extn_id": "basic_constraints", "critical": True,
                        "extn_value": {"ca": False}},
                       {"extn_id": "key_usage", "critical": True,
                        "extn_value": a_x509.KeyUsage({"digital_signature", "key_encipherment"})}],
    })
    algorithm, signature = key_signature(key, tbs.dump())
    cert = a_x509.Certificate({"tbs_certificate": tbs,
                               "signature_algorithm": {"algorithm": algorithm},
                               "signature_value": a_core.OctetBitString(signature)})
    return x509.load_der_x509_certificate(cert.dump())
