"""ID payload data (RFC 7296 §3.5) <-> identities in the contract's text syntax (``policy.identity``).

Our ID payload is built from the configured text (a DN from its RFC 4514 form or the certificate subject);
a received ID becomes a *literal* identity (``policy.identity.parse_peer_identity``): configured patterns
match it, it never is one. ``*`` or ``%any`` in a peer's ID are text (strongSwan's identification_t
matches wildcards on the configured side only). Its text (``IkeSa.remote_id``: audit, ``unique``,
INITIAL_CONTACT, the certificate check) reads back as the same kind, so no consumer can mistake an
ID_FQDN for a DN, an address or a pattern.
"""

from __future__ import annotations

import hashlib
import ipaddress

from cryptography import x509

from ikeguard.policy.identity import Identity, IdentityKind, parse_identity, parse_peer_identity
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


_KIND_OF_TYPE = {
    IdType.FQDN: IdentityKind.FQDN,
    IdType.RFC822_ADDR: IdentityKind.RFC822,
    IdType.IPV4_ADDR: IdentityKind.IPV4,
    IdType.IPV6_ADDR: IdentityKind.IPV6,
    IdType.KEY_ID: IdentityKind.KEY_ID,
    IdType.DER_ASN1_DN: IdentityKind.DN,
}


def received_identity(id_type: int, data: bytes, cert: x509.Certificate | None = None) -> Identity:
    """The literal identity of a received ID payload (RFC 7296 §3.5); ValueError when unusable.

    Refused: data that does not fit its type, and names whose text would read as another kind (an ID_FQDN
    "CN=x", "192.0.2.1", "a@b" or "@name"), since the text is what audit records and the certificate
    check see.
    """
    text = identity_text(id_type, data, cert)
    ident = parse_peer_identity(text)
    expected = _KIND_OF_TYPE.get(IdType(id_type))
    if ident.kind is not expected or (expected in (IdentityKind.FQDN, IdentityKind.RFC822)
                                      and text.startswith("@")):
        raise ValueError(f"ID type {IdType(id_type).name} data {text!r} would read as another identity type")
    return ident


def identity_text(id_type: int, data: bytes, cert: x509.Certificate | None = None) -> str:
    """Text form of a received identity; raises ValueError for data that does not fit its type."""
    if id_type == IdType.FQDN:
        text = data.decode("ascii")
        parse_peer_identity(text)
        return text
    if id_type == IdType.RFC822_ADDR:
        text = data.decode("ascii")
        if "@" not in text:
            raise ValueError("RFC 822 identity without '@'")
        parse_peer_identity(text)
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


def peer_identity(remote_id: str, eap_identity: str = "") -> str:
    """Who the peer is for INITIAL_CONTACT and ``unique``: the user of the last round when EAP
    authenticated one (several users may share a device certificate, as strongSwan keys on the EAP
    identity), else the authenticated IKE identity."""
    return f"{remote_id} (user {eap_identity})" if eap_identity else remote_id


def peer_key(remote_id: str, eap_identity: str = "") -> str:
    """:func:`peer_identity` as a name that crosses an audit record unchanged: the 128-bit BLAKE2b of its
    UTF-8, in hex (an identifier, not a secret: hashlib's BLAKE2b as in ``retransmit``). Identities in audit
    records are made printable (control characters escaped, key-material look-alikes redacted, long values
    cut), so another worker process finding the peer's IKE SAs by the recorded text would miss an identity
    with a control character, and could take one peer's escaped identity for another's literal one."""
    text = peer_identity(remote_id, eap_identity).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).hexdigest()
