"""A small VPN CA (``ikeguard pki``): a root (or subordinate) CA whose key may live in a PKCS#11 token, device
certificates (default 24 h, RFC 5280 profile as RFC 4945 §5.1 wants it for IKE), revocation and CRLs.

``cryptography`` builds every certificate and CRL (its encoders, its extension types). Its builders sign only
with keys of its own backend, so for a token key (``crypto/pkcs11_key.py``) the to-be-signed part is made with
a throwaway key of the same type (the same AlgorithmIdentifier), then signed by the token through the key's
``sign`` and the signature put in place with ``asn1crypto``: the CA key never leaves the token. No other
library does this (python-pkcs11 signs, it does not build certificates).

The inventory is SQLite (``ca.db`` beside ``ca.pem``); ``serial`` is the hex serial number.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from asn1crypto import crl as a_crl
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ObjectIdentifier

from ikeguard.crypto.signatures import PrivateKey, PublicKey

__all__ = ["REASONS", "CaError", "CertRecord", "CertificateAuthority", "parse_dn"]

IPSEC_IKE = ObjectIdentifier("1.3.6.1.5.5.7.3.17")  # id-kp-ipsecIKE (RFC 4945 §5.1.3.12)
REASONS = {r.name: r for r in x509.ReasonFlags if r not in (x509.ReasonFlags.unspecified,
                                                              x509.ReasonFlags.remove_from_crl)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certs (
    serial TEXT PRIMARY KEY, subject TEXT NOT NULL, sans TEXT NOT NULL, key_type TEXT NOT NULL,
    not_before TEXT NOT NULL, not_after TEXT NOT NULL, revoked_at TEXT, reason TEXT, pem BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CaError(Exception):
    """A CA operation that cannot be done; the message is one line."""


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate in the inventory (``ikeguard pki list``)."""

    serial: str
    subject: str
    sans: str
    key_type: str
    not_before: str
    not_after: str
    revoked_at: str | None
    reason: str | None

    def status(self, now: dt.datetime) -> str:
        """``revoked``, ``expired`` or ``valid``."""
        if self.revoked_at:
            return "revoked"
        return "expired" if dt.datetime.fromisoformat(self.not_after) <= now else "valid"


def parse_dn(text: str) -> x509.Name:
    """A DN as strongSwan's ``pki --dn`` and ikeguard identities write it (``C=US, O=Example, CN=gw``)."""
    try:
        return x509.Name.from_rfc4514_string(",".join(reversed([p.strip() for p in text.split(",")])))
    except ValueError as exc:
        raise CaError(f"not a distinguished name: {text!r} ({exc})") from None


def key_type(key: PublicKey | PrivateKey) -> str:
    """``ecdsa-p384``, ``rsa-3072``, ``ed25519``...: for the inventory."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ecdsa-p{key.curve.key_size}"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"rsa-{key.key_size}"
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey) else "ed448"


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def _stand_in(key: PrivateKey) -> Any:
    """A throwaway key of the CA key's type: same signature AlgorithmIdentifier in what it makes."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ec.generate_private_key(type(key.curve)())
    if isinstance(key, rsa.RSAPrivateKey):
        return rsa.generate_private_key(65537, 2048)
    return ed25519.Ed25519PrivateKey.generate() if isinstance(key, ed25519.Ed25519PrivateKey) \
        else ed448.Ed448PrivateKey.generate()


def _raw_sign(key: PrivateKey, data: bytes) -> bytes:
    digest = _hash_for(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert digest is not None
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        assert digest is not None
        return key.sign(data, padding.PKCS1v15(), digest)
    return key.sign(data)


def _sign(builder: Any, key: PrivateKey, loader: type) -> Any:
    """``builder.sign`` with ``key``; a key outside cryptography's backend (a token) signs the TBS itself."""
    digest = _hash_for(key)
    if not getattr(key, "off_loop", False):  # a key of cryptography's own backend
        return builder.sign(key, digest)
    draft = builder.sign(_stand_in(key), digest)
    if loader is x509.Certificate:
        cert = a_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
        cert["signature_value"] = _raw_sign(key, cert["tbs_certificate"].dump())
        return x509.load_der_x509_certificate(cert.dump())
    if loader is x509.CertificateSigningRequest:
        request = a_csr.CertificationRequest.load(draft.public_bytes(serialization.Encoding.DER))
        info = request["certification_request_info"]  # a CSR carries the signer's key: put ours in
        info["subject_pk_info"] = a_keys.PublicKeyInfo.load(key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        request["signature"] = _raw_sign(key, info.dump(force=True))
        return x509.load_der_x509_csr(request.dump())
    crl = a_crl.CertificateList.load(draft.public_bytes(serialization.Encoding.DER))
    crl["signature"] = _raw_sign(key, crl["tbs_cert_list"].dump())
    return x509.load_der_x509_crl(crl.dump())


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(text))
    except ValueError:
        pass
    if "@" in text:
        return x509.RFC822Name(text)
    if "=" in text:
        return x509.DirectoryName(parse_dn(text))
    return x509.DNSName(text)


class CertificateAuthority:
    """The CA in ``directory`` (``ca.pem``, ``ca.db``) with its private key (a file key or a token key)."""

    def __init__(self, directory: Path, key: PrivateKey | None = None) -> None:
        self.directory = directory
        self.key = key
        self.cert_path = directory / "ca.pem"
        self.db_path = directory / "ca.db"

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path)
        try:
            db.executescript(_SCHEMA)
            with db:
                yield db
        finally:
            db.close()

    @property
    def cert(self) -> x509.Certificate:
        """The CA certificate."""
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except FileNotFoundError:
            raise CaError(f"no CA in {self.directory} (run `ikeguard pki init` first)") from None

    def meta(self, name: str, default: str = "") -> str:
        """A setting of the CA (``key``: its private key reference; ``crl_number``)."""
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, db: sqlite3.Connection, name: str, value: str) -> None:
        db.execute("INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                   (name, value, value))

    def _need_key(self) -> PrivateKey:
        if self.key is None:
            raise CaError("the CA's private key is not open")
        return self.key

    def init(self, dn: str, key_ref: str, *, now: dt.datetime, lifetime: dt.timedelta,
             path_length: int | None = 0) -> x509.Certificate:
        """A self-signed root for ``dn`` (RFC 5280 §4.2.1.9 cA, keyCertSign + cRLSign)."""
        if self.cert_path.exists():
            raise CaError(f"{self.cert_path} exists: this directory already has a CA")
        key = self._need_key()
        name = parse_dn(dn)
        public = key.public_key()
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + lifetime)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
        cert: x509.Certificate = _sign(builder, key, x509.Certificate)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        with self._db() as db:
            self._set_meta(db, "key", key_ref)
            self._set_meta(db, "crl_number", "0")
        return cert

    def request(self, dn: str, key_ref: str, *,
                path_length: int | None = 0) -> x509.CertificateSigningRequest:
        """A subordinate CA: the PKCS#10 request (RFC 2986) for the enterprise root to sign, asking for cA and
        keyCertSign + cRLSign; ``install`` then takes the certificate it issued."""
        if self.cert_path.exists():
            raise CaError(f"{self.cert_path} exists: this directory already has a CA")
        key = self._need_key()
        builder = (x509.CertificateSigningRequestBuilder().subject_name(parse_dn(dn))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True))
        request: x509.CertificateSigningRequest = _sign(builder, key, x509.CertificateSigningRequest)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._db() as db:
            self._set_meta(db, "key", key_ref)
            self._set_meta(db, "crl_number", "0")
        return request

    def install(self, cert: x509.Certificate, chain: Sequence[x509.Certificate] = ()) -> None:
        """Take the subordinate CA certificate the enterprise root issued for our ``request`` (its key must be
        ours, and it must be a CA that may sign certificates and CRLs); ``ca.pem`` then holds it (and the
        chain above it, which devices' peers need)."""
        if self.cert_path.exists():
            raise CaError(f"{self.cert_path} exists: this directory already has a CA")
        key = self._need_key()
        der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(*der) != key.public_key().public_bytes(*der):
            raise CaError("this certificate is not for the CA's key (not the answer to our request)")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CaError("this certificate is not a CA certificate (basicConstraints cA)")
        self.cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                            for c in (cert, *chain)))

    def issue(self, subject: str | x509.Name, public_key: PublicKey, sans: Sequence[str], *, now: dt.datetime,
              lifetime: dt.timedelta, crl_uris: Sequence[str] = (), ocsp_uris: Sequence[str] = (),
              server: bool = False, ocsp_signing: bool = False) -> x509.Certificate:
        """A device (end-entity) certificate: digitalSignature, EKU ipsecIKE (plus serverAuth/clientAuth for
        the peers that want those), the SANs the connection's identity needs; never beyond the CA's end.
        ``ocsp_signing``: a delegated OCSP responder instead (RFC 6960 §4.2.2.2: EKU OCSPSigning, and
        id-pkix-ocsp-nocheck, §4.2.2.2.1)."""
        key, ca = self._need_key(), self.cert
        not_after = min(now + lifetime, ca.not_valid_after_utc)
        ekus = [IPSEC_IKE, ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
        if ocsp_signing:
            ekus = [ExtendedKeyUsageOID.OCSP_SIGNING]
        name = parse_dn(subject) if isinstance(subject, str) else subject
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                                  critical=False))
        if ocsp_signing:
            builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(s) for s in sans]),
                                            critical=False)
        if crl_uris:
            points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
                      for u in crl_uris]
            builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
        if ocsp_uris:
            access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                             x509.UniformResourceIdentifier(u)) for u in ocsp_uris]
            builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
        cert: x509.Certificate = _sign(builder, key, x509.Certificate)
        with self._db() as db:
            db.execute("INSERT INTO certs VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                       (format(cert.serial_number, "x"), cert.subject.rfc4514_string(), ",".join(sans),
                        key_type(public_key), cert.not_valid_before_utc.isoformat(),
                        cert.not_valid_after_utc.isoformat(), cert.public_bytes(serialization.Encoding.PEM)))
        return cert

    def revoke(self, serial: str, *, now: dt.datetime, reason: str | None = None) -> CertRecord:
        """Mark ``serial`` revoked (RFC 5280 §5.3.1 reason); the next CRL lists it."""
        if reason is not None and reason not in REASONS:
            raise CaError(f"unknown reason {reason!r} (one of {', '.join(REASONS)})")
        serial = serial.lower().removeprefix("0x").replace(":", "").lstrip("0") or "0"
        with self._db() as db:
            changed = db.execute("UPDATE certs SET revoked_at = ?, reason = ? WHERE serial = ? AND "
                                 "revoked_at IS NULL", (now.isoformat(), reason, serial)).rowcount
        record = next((r for r in self.records() if r.serial == serial), None)
        if record is None:
            raise CaError(f"no certificate with serial {serial} was issued by this CA")
        if not changed:
            raise CaError(f"certificate {serial} was already revoked at {record.revoked_at}")
        return record

    def crl(self, *, now: dt.datetime, next_update: dt.timedelta) -> x509.CertificateRevocationList:
        """A CRL of every revoked, not yet expired certificate (RFC 5280 §5), with a new CRL number."""
        key, ca = self._need_key(), self.cert
        with self._db() as db:
            number = int(self.meta("crl_number", "0")) + 1
            self._set_meta(db, "crl_number", str(number))
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
                   .next_update(now + next_update)
                   .add_extension(x509.CRLNumber(number), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                                  critical=False))
        for record in self.records():
            if record.revoked_at is None or dt.datetime.fromisoformat(record.not_after) <= now:
                continue
            entry = (x509.RevokedCertificateBuilder().serial_number(int(record.serial, 16))
                     .revocation_date(dt.datetime.fromisoformat(record.revoked_at)))
            if record.reason:
                entry = entry.add_extension(x509.CRLReason(REASONS[record.reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        signed: x509.CertificateRevocationList = _sign(builder, key, x509.CertificateRevocationList)
        return signed

    def lookup(self, serial: int) -> tuple[CertRecord, x509.Certificate] | None:
        """The inventory entry and certificate of ``serial`` (None: not issued by this CA)."""
        with self._db() as db:
            row = db.execute("SELECT serial, subject, sans, key_type, not_before, not_after, revoked_at, "
                             "reason, pem FROM certs WHERE serial = ?", (format(serial, "x"),)).fetchone()
        if row is None:
            return None
        return CertRecord(*row[:8]), x509.load_pem_x509_certificate(bytes(row[8]))

    def records(self) -> list[CertRecord]:
        """Every certificate issued, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT serial, subject, sans, key_type, not_before, not_after, revoked_at, "
                              "reason FROM certs ORDER BY not_before, serial").fetchall()
        return [CertRecord(*row) for row in rows]
