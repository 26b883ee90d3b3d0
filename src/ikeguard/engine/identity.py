"""ID payload data (RFC 7296 §3.5) <-> identities in the contract's text syntax (``policy.identity``).

Our ID payload is built from the configured text (a DN from its RFC 4514 form or the certificate subject);
a received ID is rendered as text so the policy helper can match it against configured patterns.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509

from ikeguard.policy.identity import IdentityKind, parse_identity
from ikeguard.wire.iana import IdType


def identity_payload(text: str, cert: x509.Certificate | None = None) -> tuple[IdType, bytes]:
    """(ID type, data) for a configured identity; a DN equal to the cert subject uses its DER."""
    ident = parse_identity(text)
    if ident.kind is IdentityKind.ANY:
        raise ValueError("%any cannot be sent as our own identity")
    if ident.kind is IdentityKind.FQDN:
        return IdType.FQDN, text.lstrip("@").encode("ascii")
    if ident.kind is IdentityKind.RFC822:
        return IdType.RFC822_ADDR, text.encode("ascii")
    if ident.kind in (IdentityKind.IPV4, IdentityKind.IPV6):
        address = ipaddress.ip_address(text)
        return (IdType.IPV4_ADDR if address.version == 4 else IdType.IPV6_ADDR), address.packed
    if ident.kind is IdentityKind.KEY_ID:
        return IdType.KEY_ID, bytes.fromhex(ident.parts[0])
    name = x509.Name.from_rfc4514_string(text.replace(", ", ","))
    if cert is not None and _dn_equal(cert.subject, name):
        return IdType.DER_ASN1_DN, cert.subject.public_bytes()
    return IdType.DER_ASN1_DN, name.public_bytes()


def _dn_equal(a: x509.Name, b: x509.Name) -> bool:
    norm_a = sorted((attr.oid.dotted_string, str(attr.value).casefold()) for attr in a)
    norm_b = sorted((attr.oid.dotted_string, str(attr.value).casefold()) for attr in b)
    return norm_a == norm_b


def identity_text(id_type: int, data: bytes, cert: x509.Certificate | None = None) -> str:
    """Text form of a received identity; raises ValueError for data that does not fit its type."""
    if id_type == IdType.FQDN:
        text = data.decode("ascii")
        parse_identity(text)
        return text
    if id_type == IdType.RFC822_ADDR:
        text = data.decode("ascii")
        if "@" not in text:
            raise ValueError("RFC 822 identity without '@'")
        parse_identity(text)
        return text
    if id_type == IdType.IPV4_ADDR:
        return str(ipaddress.IPv4Address(data))
    if id_type == IdType.IPV6_ADDR:
        return str(ipaddress.IPv6Address(data))
    if id_type == IdType.KEY_ID:
        if not data:
            raise ValueError("empty key id")
        return "@#" + data.hex()
    if id_type == IdType.DER_ASN1_DN:
        if cert is not None and cert.subject.public_bytes() == data:
            return cert.subject.rfc4514_string()  # policy matching accepts either RDN order
        raise ValueError("a DN identity must equal the subject of the certificate that authenticates it")
    raise ValueError(f"unsupported ID type {id_type}")
