"""Reading certificates and CRLs from PEM or DER bytes with a typed error."""

from __future__ import annotations

from cryptography import x509


class PkiLoadError(ValueError):
    """Bytes that are not a certificate/CRL in PEM or DER."""


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM data (one or several) or one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise PkiLoadError(f"not a certificate in PEM or DER: {exc}") from exc


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """One CRL in PEM or DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise PkiLoadError(f"not a CRL in PEM or DER: {exc}") from exc
