"""X.509 test PKI on `cryptography`: root CA, intermediates, leaves, CRLs and PEM files (the demo; tests too).

In the installed product because `ikeguard demo` makes its throwaway PKI with it.

Covers what IKEv2 certificate tests need (RFC 7296 §3.6, RFC 4945 profile for IKE certificates, RFC 5280):
key kinds ECDSA P-256/P-384/P-521, RSA-2048/3072/4096, Ed25519; subject DN; SANs (DNS, IP, email); any
validity window (also expired / not yet valid); key usage; EKU (none, ipsecIKE per RFC 4945 §5.1.3.12,
serverAuth, ...); path length; signature hash (SHA-1 too, for negative tests); an unknown critical extension;
CRLs with revoked serials. Private keys never appear in repr() and are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "EKU_IPSEC_IKE",
    "CertFactoryError",
    "CertificateAuthority",
    "HashKind",
    "IssuedCertificate",
    "KeyKind",
    "KeyUsageSet",
    "PemPaths",
    "PrivateKey",
    "generate_key",
    "make_name",
    "strongswan_dn",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_SignHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

EKU_IPSEC_IKE = ObjectIdentifier("1.3.6.1.5.5.7.3.17")  # id-kp-ipsecIKE, RFC 4945 §5.1.3.12
UNKNOWN_CRITICAL_OID = ObjectIdentifier("1.3.6.1.4.1.55555.77.1")  # private arc, never understood by anyone
_EKU_NAMES: dict[str, ObjectIdentifier] = {
    "ipsecIKE": EKU_IPSEC_IKE,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}


class CertFactoryError(ValueError):
    """Bad parameters for a certificate, key or CRL."""


class KeyKind(enum.StrEnum):
    """Key algorithms the factory can generate."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ECDSA_P521 = "ecdsa-p521"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"


class HashKind(enum.StrEnum):
    """Signature hash; ``DEFAULT`` picks by key (SHA-256 for P-256/RSA, SHA-384 P-384, SHA-512 P-521)."""

    DEFAULT = "default"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


@dataclass(frozen=True)
class KeyUsageSet:
    """RFC 5280 §4.2.1.3 key usage bits to set (critical)."""

    digital_signature: bool = True
    content_commitment: bool = False
    key_encipherment: bool = False
    key_agreement: bool = False
    key_cert_sign: bool = False
    crl_sign: bool = False

    def extension(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=self.digital_signature,
            content_commitment=self.content_commitment,
            key_encipherment=self.key_encipherment,
            data_encipherment=False,
            key_agreement=self.key_agreement,
            key_cert_sign=self.key_cert_sign,
            crl_sign=self.crl_sign,
            encipher_only=False,
            decipher_only=False,
        )


CA_KEY_USAGE = KeyUsageSet(digital_signature=True, key_cert_sign=True, crl_sign=True)
LEAF_KEY_USAGE = KeyUsageSet(digital_signature=True)


def generate_key(kind: KeyKind | str) -> PrivateKey:
    """Generate a fresh private key of the given kind."""
    kind = KeyKind(kind)
    if kind is KeyKind.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    curves: dict[KeyKind, ec.EllipticCurve] = {
        KeyKind.ECDSA_P256: ec.SECP256R1(),
        KeyKind.ECDSA_P384: ec.SECP384R1(),
        KeyKind.ECDSA_P521: ec.SECP521R1(),
    }
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    bits = {KeyKind.RSA_2048: 2048, KeyKind.RSA_3072: 3072, KeyKind.RSA_4096: 4096}[kind]
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _hash_for(key: PrivateKey, choice: HashKind) -> _SignHash | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if choice not in (HashKind.DEFAULT, HashKind.SHA512):
            raise CertFactoryError("Ed25519 signs with its own hash (RFC 8410); choose hash=DEFAULT")
        return None
    if choice is HashKind.DEFAULT:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            by_size: dict[int, _SignHash] = {256: hashes.SHA256(), 384: hashes.SHA384()}
            return by_size.get(key.curve.key_size, hashes.SHA512())
        return hashes.SHA256()
    table: dict[HashKind, _SignHash] = {
        HashKind.SHA256: hashes.SHA256(),
        HashKind.SHA384: hashes.SHA384(),
        HashKind.SHA512: hashes.SHA512(),
    }
    if choice is HashKind.SHA1:
        raise CertFactoryError(
            "SHA-1 is only available for certificates (issue_leaf/intermediate hash='sha1')"
        )
    return table[choice]


# -- SHA-1 signatures: `cryptography` no longer signs with SHA-1, so negative-test certificates are made by
# -- signing a SHA-256 certificate's TBS again with SHA-1 and splicing the DER by hand (RFC 5280 §4.1).
_SHA1_ALGID_RSA = bytes.fromhex("300d06092a864886f70d0101050500")  # sha1WithRSAEncryption, NULL params
_SHA1_ALGID_ECDSA = bytes.fromhex("300906072a8648ce3d0401")  # ecdsa-with-SHA1


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of element) of the DER element at `pos`."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _der_seq(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return b"\x30" + _der_len(len(body)) + body


def _resign_sha1(cert: x509.Certificate, issuer_key: PrivateKey) -> x509.Certificate:
    """The same certificate signed with SHA-1 (RSA PKCS#1 v1.5 or ECDSA) for negative tests."""
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        algid = _SHA1_ALGID_RSA
    elif isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        algid = _SHA1_ALGID_ECDSA
    else:
        raise CertFactoryError("SHA-1 signatures need an RSA or ECDSA issuer key")
    tbs = cert.tbs_certificate_bytes
    _, body, _ = _der_tlv(tbs, 0)
    pos = body
    parts: list[bytes] = []
    index = 0
    while pos < len(tbs):
        tag, _, end = _der_tlv(tbs, pos)
        element = tbs[pos:end]
        # TBSCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, ...
        if index == (2 if parts and parts[0][0] == 0xA0 else 1) and tag == 0x30:
            element = algid
        parts.append(element)
        index += 1
        pos = end
    new_tbs = _der_seq(*parts)
    sha1 = hashes.SHA1()  # noqa: S303 - deliberately weak, negative tests only
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        signature = issuer_key.sign(new_tbs, padding.PKCS1v15(), sha1)
    else:
        signature = issuer_key.sign(new_tbs, ec.ECDSA(sha1))
    bit_string = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    return x509.load_der_x509_certificate(_der_seq(new_tbs, algid, bit_string))


def make_name(subject: str | x509.Name) -> x509.Name:
    """A DN from an x509.Name, an RFC 4514 string (``CN=gw,O=Lab``) or a bare common name."""
    if isinstance(subject, x509.Name):
        return subject
    if "=" not in subject:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    try:
        return x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise CertFactoryError(f"bad distinguished name {subject!r}: {exc}") from exc


def strongswan_dn(name: x509.Name) -> str:
    """The DN as strongSwan/swanctl writes identities: ASN.1 order, ``C=CH, O=Lab, CN=gw``."""
    return ", ".join(rdn.rfc4514_string() for rdn in name.rdns)


def _general_name(
    san: str | x509.GeneralName | ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> x509.GeneralName:
    """SAN from ``dns:x``, ``ip:x``, ``email:x`` or an untagged value (IP if it parses, email if it has @)."""
    if isinstance(san, x509.GeneralName):
        return san
    if isinstance(san, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return x509.IPAddress(san)
    tag, _, value = san.partition(":")
    if tag in ("dns", "ip", "email") and value:
        if tag == "dns":
            return x509.DNSName(value)
        if tag == "email":
            return x509.RFC822Name(value)
        return x509.IPAddress(ipaddress.ip_address(value))
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        pass
    return x509.RFC822Name(san) if "@" in san else x509.DNSName(san)


def _eku_oids(eku: Iterable[str | ObjectIdentifier]) -> list[ObjectIdentifier]:
    out: list[ObjectIdentifier] = []
    for item in eku:
        if isinstance(item, ObjectIdentifier):
            out.append(item)
        elif item in _EKU_NAMES:
            out.append(_EKU_NAMES[item])
        else:
            raise CertFactoryError(
                f"unknown EKU {item!r}; known: {sorted(_EKU_NAMES)} or an ObjectIdentifier"
            )
    return out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PemPaths:
    """Where write_pem() put the files."""

    cert: Path
    key: Path
    chain: Path | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate, its private key (never in repr) and the issuing chain (issuer first, root last)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM (what strongSwan's private/ folder and ikeguard load)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def write_pem(self, directory: str | os.PathLike[str], name: str) -> PemPaths:
        """Write ``name.crt``, ``name.key`` (0600) and, when there is a chain, ``name-chain.crt``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = d / f"{name}.crt", d / f"{name}.key"
        cert_path.write_bytes(self.cert_pem())
        _write_private(key_path, self.key_pem())
        chain_path = None
        if self.chain:
            chain_path = d / f"{name}-chain.crt"
            chain_path.write_bytes(self.chain_pem())
        return PemPaths(cert_path, key_path, chain_path)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class CertificateAuthority:
    """A CA (root or intermediate) that issues intermediates, leaves and CRLs."""

    def __init__(self, issued: IssuedCertificate) -> None:
        self.issued = issued
        self._revoked: dict[int, dt.datetime] = {}

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.issued.cert.subject.rfc4514_string()!r})"

    @property
    def cert(self) -> x509.Certificate:
        return self.issued.cert

    @property
    def key(self) -> PrivateKey:
        return self.issued.key

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate followed by its own issuers (root last)."""
        return (self.issued.cert, *self.issued.chain)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @classmethod
    def create_root(
        cls,
        name: str | x509.Name = "CN=ikeguard test root CA,O=ikeguard test",
        key_kind: KeyKind | str = KeyKind.ECDSA_P384,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        path_length: int | None = None,
        hash: HashKind | str = HashKind.DEFAULT,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """Self-signed root CA (basicConstraints CA:TRUE critical, keyCertSign+cRLSign)."""
        key = generate_key(key_kind)
        subject = make_name(name)
        now = now or _utcnow()
        builder = cls._base_builder(
            subject,
            subject,
            key.public_key(),
            key.public_key(),
            not_before or now - dt.timedelta(hours=1),
            not_after or now + dt.timedelta(days=3650),
            None,
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        builder = builder.add_extension(CA_KEY_USAGE.extension(), critical=True)
        cert = cls._sign(builder, key, HashKind(hash))
        return cls(IssuedCertificate(cert, key, ()))

    @staticmethod
    def _base_builder(
        subject: x509.Name,
        issuer: x509.Name,
        public_key: object,
        issuer_public_key: object,
        not_before: dt.datetime,
        not_after: dt.datetime,
        serial: int | None,
    ) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        return builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),  # type: ignore[arg-type]
            critical=False,
        )

    @staticmethod
    def _sign(
        builder: x509.CertificateBuilder, key: PrivateKey, hash: HashKind, rsa_pss: bool = False
    ) -> x509.Certificate:
        if hash is HashKind.SHA1:
            if rsa_pss:
                raise CertFactoryError("SHA-1 is offered with PKCS#1 v1.5 or ECDSA only")
            return _resign_sha1(CertificateAuthority._sign(builder, key, HashKind.SHA256), key)
        algorithm = _hash_for(key, hash)
        if rsa_pss:
            if not isinstance(key, rsa.RSAPrivateKey) or algorithm is None:
                raise CertFactoryError("rsa_pss needs an RSA issuer key")
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
            return builder.sign(key, algorithm, rsa_padding=pss)
        return builder.sign(key, algorithm)

    def issue_intermediate(
        self,
        name: str | x509.Name,
        key_kind: KeyKind | str = KeyKind.ECDSA_P384,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        path_length: int | None = 0,
        hash: HashKind | str = HashKind.DEFAULT,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """A subordinate CA signed by this one."""
        key = generate_key(key_kind)
        now = now or _utcnow()
        builder = self._base_builder(
            make_name(name),
            self.cert.subject,
            key.public_key(),
            self.key.public_key(),
            not_before or now - dt.timedelta(hours=1),
            not_after or now + dt.timedelta(days=1825),
            None,
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        builder = builder.add_extension(CA_KEY_USAGE.extension(), critical=True)
        cert = self._sign(builder, self.key, HashKind(hash))
        return CertificateAuthority(IssuedCertificate(cert, key, self.chain))

    def issue_leaf(
        self,
        subject: str | x509.Name,
        *,
        sans: Sequence[str | x509.GeneralName | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        key_kind: KeyKind | str = KeyKind.ECDSA_P384,
        key: PrivateKey | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_usage: KeyUsageSet | None = LEAF_KEY_USAGE,
        eku: Iterable[str | ObjectIdentifier] = (),
        hash: HashKind | str = HashKind.DEFAULT,
        rsa_pss: bool = False,
        unknown_critical_extension: bool = False,
        serial: int | None = None,
        is_ca: bool | None = False,
        now: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """An end-entity certificate. `eku=()` leaves the extension out; `key_usage=None` too.

        `is_ca=None` omits basicConstraints; `unknown_critical_extension` adds a private-OID critical
        extension a verifier must reject (RFC 5280 §4.2).
        """
        key = key or generate_key(key_kind)
        now = now or _utcnow()
        builder = self._base_builder(
            make_name(subject),
            self.cert.subject,
            key.public_key(),
            self.key.public_key(),
            not_before or now - dt.timedelta(hours=1),
            not_after or now + dt.timedelta(days=365),
            serial,
        )
        if is_ca is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        if key_usage is not None:
            builder = builder.add_extension(key_usage.extension(), critical=True)
        oids = _eku_oids(eku)
        if oids:
            builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False
            )
        if unknown_critical_extension:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(UNKNOWN_CRITICAL_OID, b"\x05\x00"), critical=True
            )
        cert = self._sign(builder, self.key, HashKind(hash), rsa_pss)
        return IssuedCertificate(cert, key, self.chain)

    def revoke(
        self, cert_or_serial: x509.Certificate | IssuedCertificate | int, when: dt.datetime | None = None
    ) -> None:
        """Remember a serial as revoked for the next crl()."""
        if isinstance(cert_or_serial, int):
            serial = cert_or_serial
        elif isinstance(cert_or_serial, x509.Certificate):
            serial = cert_or_serial.serial_number
        else:
            serial = cert_or_serial.serial
        self._revoked[serial] = when or _utcnow() - dt.timedelta(minutes=1)

    def crl(
        self,
        revoked: Iterable[x509.Certificate | IssuedCertificate | int] = (),
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        hash: HashKind | str = HashKind.DEFAULT,
        crl_number: int = 1,
        now: dt.datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL (RFC 5280 §5) listing `revoked` plus everything passed to revoke()."""
        for item in revoked:
            self.revoke(item)
        now = now or _utcnow()
        this_update = this_update or now - dt.timedelta(minutes=5)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(this_update)
            .next_update(next_update or this_update + dt.timedelta(days=7))
            .add_extension(x509.CRLNumber(crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        for serial, when in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, _hash_for(self.key, HashKind(hash)))

    def write_pem(self, directory: str | os.PathLike[str], name: str) -> PemPaths:
        """Write this CA's certificate and key (0600) as PEM."""
        return self.issued.write_pem(directory, name)

    @staticmethod
    def write_crl(
        crl: x509.CertificateRevocationList, directory: str | os.PathLike[str], name: str, der: bool = False
    ) -> Path:
        """Write a CRL as ``name.crl`` (PEM, or DER when `der`)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
        return path
