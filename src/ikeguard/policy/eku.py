"""The one rule for a peer or own end-entity certificate's extendedKeyUsage in IKE (RFC 4945 §5.1.3.12).

Used by the path validator (``ikeguard.pki.validation``, the peer's certificate at IKE_AUTH) and by the
``cert_usage`` check (our own certificates, as peers will judge them), so both say the same about the same
certificate. It lives here, beside ``policy.identity``, because ``ikeguard.pki`` already builds on this
package and ``policy`` must not import ``pki`` (which pulls in the engine).

RFC 4945 §5.1.3.12: CAs SHOULD NOT put an EKU in IKE certificates at all; "Conforming IKE implementations
are not required to support EKU"; one that does not support it must still reject a certificate whose EKU
extension is *critical* (RFC 5280 §4.2: a critical extension restricts the key to the purposes listed);
one that does support it accepts an EKU only if it contains id-kp-ipsecIKE or anyExtendedKeyUsage.
RFC 5280 §4.2.1.12: a non-critical EKU is advisory. strongSwan, libreswan and Windows accept the usual
``serverAuth, clientAuth`` certificates, so the default mode follows that reading:

``relaxed`` (default)
    no EKU, or one containing ipsecIKE / anyExtendedKeyUsage / iKEIntermediate: accepted. A *critical* EKU
    without them: refused (the CA restricted the key to other purposes). A non-critical EKU naming
    serverAuth or clientAuth: accepted (advisory; what Windows clients demand and enterprise CAs issue). A
    non-critical EKU naming only unrelated purposes (codeSigning, emailProtection...): refused, as RFC 5280
    §4.2.1.12 lets an application require a fitting purpose (libreswan refuses these too).
``strict``
    RFC 4945 §5.1.3.12's logic for implementations that support EKU: any EKU must contain ipsecIKE,
    anyExtendedKeyUsage (or iKEIntermediate), whatever its criticality.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

IPSEC_IKE = "1.3.6.1.5.5.7.3.17"  # id-kp-ipsecIKE, RFC 4945 §5.1.3.12
ANY_EKU = "2.5.29.37.0"  # anyExtendedKeyUsage, RFC 5280 §4.2.1.12
IKE_INTERMEDIATE = "1.3.6.1.5.5.8.2.2"  # draft-ietf-ipsec-pki-req; strongSwan: pki --flag ikeIntermediate
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"

IKE_EKUS: frozenset[str] = frozenset({IPSEC_IKE, ANY_EKU, IKE_INTERMEDIATE})
TLS_EKUS: frozenset[str] = frozenset({SERVER_AUTH, CLIENT_AUTH})

NAMES: dict[str, str] = {
    IPSEC_IKE: "ipsecIKE",
    ANY_EKU: "anyExtendedKeyUsage",
    IKE_INTERMEDIATE: "ikeIntermediate",
    SERVER_AUTH: "serverAuth",
    CLIENT_AUTH: "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.5": "ipsecEndSystem",
    "1.3.6.1.5.5.7.3.6": "ipsecTunnel",
    "1.3.6.1.5.5.7.3.7": "ipsecUser",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
}


class EkuMode(StrEnum):
    """``connections.NAME.remote.eku``: how a peer certificate's extendedKeyUsage is judged."""

    RELAXED = "relaxed"
    STRICT = "strict"


def describe_ekus(oids: Iterable[str]) -> str:
    """``[serverAuth, clientAuth]``: known purposes by name, others as dotted OIDs, in a stable order."""
    return "[" + ", ".join(sorted(NAMES.get(o, o) for o in oids)) + "]"


def eku_problem(present: Iterable[str] | None, *, critical: bool, mode: EkuMode) -> str | None:
    """Why an end-entity certificate with these EKU OIDs (``None``: no EKU extension) may not authenticate
    an IKE peer under ``mode``, or None when it may (RFC 4945 §5.1.3.12, RFC 5280 §4.2.1.12)."""
    if present is None:
        return None
    oids = frozenset(present)
    if oids & IKE_EKUS:
        return None
    marked = "critical" if critical else "non-critical"
    listed = describe_ekus(oids)
    if mode is EkuMode.STRICT:
        return (f"{marked} extendedKeyUsage {listed} has neither ipsecIKE nor anyExtendedKeyUsage, which "
                "RFC 4945 §5.1.3.12 requires of any EKU (remote.eku = \"strict\")")
    if critical:
        return (f"critical extendedKeyUsage {listed} has neither ipsecIKE nor anyExtendedKeyUsage: the CA "
                "restricted the key to other purposes, so IKE must reject it (RFC 4945 §5.1.3.12, "
                "RFC 5280 §4.2.1.12)")
    if oids & TLS_EKUS:
        return None
    return (f"extendedKeyUsage {listed} names only purposes unrelated to IKE (expected ipsecIKE, "
            "serverAuth or clientAuth; RFC 4945 §5.1.3.12, RFC 5280 §4.2.1.12)")
