"""Test PKI built with ``cryptography`` directly (until ``ikeguard.tools.certfactory`` lands)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PrivateKey = CertificateIssuerPrivateKeyTypes


@cache
def make_key(kind: str = "ec256", index: int = 0) -> PrivateKey:
    """A cached private key: ec224|ec256|ec384, rsaNNNN, ed25519; a new index gives a distinct key."""
    del index
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec224":
        return ec.generate_private_key(ec.SECP224R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def dn(text: str) -> x509.Name:
    """x509.Name from 'CN=x, O=y' (RFC 4514 order reversed as written)."""
    return x509.Name.from_rfc4514_string(text.replace(", ", ","))


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey


def _sign_args(key: PrivateKey, digest: hashes.HashAlgorithm | None, pss: bool) -> dict[str, object]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": None}
    args: dict[str, object] = {"algorithm": digest or hashes.SHA256()}
    if pss and isinstance(key, rsa.RSAPrivateKey):
        args["rsa_padding"] = padding.PSS(padding.MGF1(digest or hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    return args


_SERIAL = iter(range(0x1000, 0x10000000))

DEFAULT_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
DEFAULT_LEAF_USAGE = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


def issue(
    subject: str,
    issuer: Issued | None = None,
    *,
    key: PrivateKey | None = None,
    ca: bool = False,
    path_length: int | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    dns: Sequence[str] = (),
    emails: Sequence[str] = (),
    ips: Sequence[str] = (),
    dirnames: Sequence[str] = (),
    ekus: Sequence[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = False,
    key_usage: x509.KeyUsage | str | None = "default",
    digest: hashes.HashAlgorithm | None = None,
    pss: bool = False,
    basic_constraints: bool = True,
    extra: Iterable[tuple[x509.ExtensionType, bool]] = (),
    signing_key: PrivateKey | None = None,
    crl_uris: Sequence[str] = (),
    ocsp_uris: Sequence[str] = (),
    policies: Sequence[str] | None = None,
    issuer_name: str | None = None,
    serial: int | None = None,
) -> Issued:
    """Issue one certificate (self-signed when ``issuer`` is None) with the given properties."""
    key = key or make_key()
    name = dn(subject)
    issuer_dn = dn(issuer_name) if issuer_name is not None else issuer.cert.subject if issuer else name
    signer = signing_key or (issuer.key if issuer else key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_dn)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else next(_SERIAL))
        .not_valid_before(not_before or NOW - timedelta(days=30))
        .not_valid_after(not_after or NOW + timedelta(days=365))
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if key_usage == "default":
        key_usage = DEFAULT_CA_USAGE if ca else DEFAULT_LEAF_USAGE
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, critical=True)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.RFC822Name(e) for e in emails]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.DirectoryName(dn(d)) for d in dirnames]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=eku_critical)
    if crl_uris:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in crl_uris
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    if ocsp_uris:
        descs = [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
            )
            for u in ocsp_uris
        ]
        builder = builder.add_extension(x509.AuthorityInformationAccess(descs), critical=False)
    if policies is not None:
        infos = [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies]
        builder = builder.add_extension(x509.CertificatePolicies(infos), critical=False)
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(signer, **_sign_args(signer, digest, pss))  # type: ignore[arg-type]
    return Issued(cert, key)


@dataclass(frozen=True)
class Pki:
    """Root -> intermediate -> leaf, the usual IKE deployment."""

    root: Issued
    intermediate: Issued
    leaf: Issued


def standard_pki(kind: str = "ec256", *, pss: bool = False, **leaf_args: object) -> Pki:
    """A three-level PKI whose keys are all of ``kind``; ``leaf_args`` go to the leaf's ``issue``."""
    root = issue("CN=Test Root, O=ikeguard", key=make_key(kind, 1), ca=True, pss=pss)
    inter = issue("CN=Test Intermediate, O=ikeguard", root, key=make_key(kind, 2), ca=True, pss=pss)
    args: dict[str, object] = {"dns": ["gw.example.net"], "key": make_key(kind, 3), "pss": pss}
    args.update(leaf_args)
    leaf = issue("CN=gw.example.net, O=ikeguard", inter, **args)  # type: ignore[arg-type]
    return Pki(root, inter, leaf)


def make_crl(
    issuer: Issued,
    revoked: Sequence[int] = (),
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    signing_key: PrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from ``issuer`` revoking ``revoked`` serials."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or NOW - timedelta(hours=1))
        .next_update(next_update or NOW + timedelta(days=1))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - timedelta(days=1))
            .build()
        )
    signer = signing_key or issuer.key
    return builder.sign(signer, **_sign_args(signer, None, False))  # type: ignore[arg-type]


def make_ocsp_response(
    cert: x509.Certificate,
    issuer: Issued,
    *,
    revoked: bool = False,
    responder: Issued | None = None,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
) -> bytes:
    """A DER OCSP response for ``cert``, signed by ``issuer`` or a delegated ``responder``."""
    status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
    signer = responder or issuer
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer.cert,
            algorithm=hashes.SHA1(),
            cert_status=status,
            this_update=this_update or NOW - timedelta(minutes=5),
            next_update=next_update or NOW + timedelta(hours=1),
            revocation_time=NOW - timedelta(days=1) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    )
    if responder is not None:
        builder = builder.certificates([responder.cert])
    key = signer.key
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    from cryptography.hazmat.primitives.serialization import Encoding

    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


OCSP_SIGNING = ExtendedKeyUsageOID.OCSP_SIGNING
IPSEC_IKE = ExtendedKeyUsageOID.IPSEC_IKE
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CN = NameOID.COMMON_NAME
