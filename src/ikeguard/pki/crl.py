"""Checking one certificate against one CRL (RFC 5280 §6.3, simplified: full CRLs, direct issuers only).

Delta CRLs and indirect CRLs are not used (such a CRL is "unusable", never "good"). Written by hand over
``cryptography``'s CRL parser.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from ikeguard.pki.algorithms import signature_valid
from ikeguard.pki.reasons import ISSUED_AHEAD_TOLERANCE, RevocationState


class CrlUnusable(Exception):
    """This CRL cannot decide the status of this certificate (wrong issuer, bad signature, stale, scope)."""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def crl_decides(
    crl: x509.CertificateRevocationList,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: datetime,
    skew: timedelta = timedelta(0),
) -> RevocationState:
    """GOOD or REVOKED for ``cert`` according to ``crl``; raise CrlUnusable when the CRL cannot tell."""
    if crl.issuer != cert.issuer:
        raise CrlUnusable("CRL issued by another CA")
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            raise CrlUnusable("issuer's keyUsage lacks cRLSign")  # RFC 5280 §6.3.3 (f)
    except x509.ExtensionNotFound:
        pass
    if not signature_valid(crl, issuer.public_key()):
        raise CrlUnusable("CRL signature does not verify with the issuer's key")
    if crl.last_update_utc > now + max(skew, ISSUED_AHEAD_TOLERANCE):
        raise CrlUnusable(f"CRL not valid before {crl.last_update_utc.isoformat()}")
    next_update = crl.next_update_utc
    if next_update is not None and next_update < now - skew:
        raise CrlUnusable(f"CRL expired at {next_update.isoformat()} (nextUpdate)")
    for ext in crl.extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise CrlUnusable("delta CRLs are not used")
        if ext.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            idp = ext.value
            assert isinstance(idp, x509.IssuingDistributionPoint)
            if idp.indirect_crl or idp.only_some_reasons or idp.only_contains_attribute_certs:
                raise CrlUnusable("CRL scope (indirect or partial reasons) not supported")
            if idp.only_contains_user_certs and _is_ca(cert):
                raise CrlUnusable("CRL covers end-entity certificates only")
            if idp.only_contains_ca_certs and not _is_ca(cert):
                raise CrlUnusable("CRL covers CA certificates only")
        elif ext.critical and ext.oid not in (ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER):
            raise CrlUnusable(f"unknown critical CRL extension {ext.oid.dotted_string}")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return RevocationState.GOOD
    try:
        reason = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON).value
        if isinstance(reason, x509.CRLReason) and reason.reason is x509.ReasonFlags.remove_from_crl:
            return RevocationState.GOOD
    except x509.ExtensionNotFound:
        pass
    return RevocationState.REVOKED


def crl_next_update(crl: x509.CertificateRevocationList) -> datetime | None:
    """When a cached copy of this CRL must be fetched again."""
    return crl.next_update_utc
