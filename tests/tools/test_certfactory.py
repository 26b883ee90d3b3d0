"""The certificate factory issues what a verifier (cryptography's RFC 5280 path validation) accepts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ikeguard.tools.certfactory import (
    EKU_IPSEC_IKE,
    CertFactoryError,
    CertificateAuthority,
    HashKind,
    KeyKind,
    make_name,
    strongswan_dn,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _verify(
    root: CertificateAuthority,
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    dns: str,
    at: dt.datetime = NOW,
) -> list[x509.Certificate]:
    store = verification.Store([root.cert])
    verifier = verification.PolicyBuilder().store(store).time(at).build_server_verifier(x509.DNSName(dns))
    return verifier.verify(leaf, intermediates)


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create_root(
        "CN=Test Root,O=ikeguard test,C=CH",
        KeyKind.ECDSA_P384,
        not_before=NOW - dt.timedelta(days=365),
        now=NOW,
    )


_KIND_TYPES = {
    KeyKind.ECDSA_P256: (ec.EllipticCurvePublicKey, 256),
    KeyKind.ECDSA_P384: (ec.EllipticCurvePublicKey, 384),
    KeyKind.ECDSA_P521: (ec.EllipticCurvePublicKey, 521),
    KeyKind.RSA_2048: (rsa.RSAPublicKey, 2048),
    KeyKind.RSA_3072: (rsa.RSAPublicKey, 3072),
    KeyKind.RSA_4096: (rsa.RSAPublicKey, 4096),
    KeyKind.ED25519: (ed25519.Ed25519PublicKey, None),
}


@pytest.mark.parametrize("kind", list(KeyKind))
def test_each_key_kind_as_leaf_and_as_issuer(kind: KeyKind, root: CertificateAuthority) -> None:
    leaf = root.issue_leaf("CN=leaf", key_kind=kind, sans=["leaf.example"], eku=["serverAuth"], now=NOW)
    key_type, size = _KIND_TYPES[kind]
    public = leaf.cert.public_key()
    assert isinstance(public, key_type)
    if size is not None:
        assert public.key_size == size  # type: ignore[union-attr]
    leaf.cert.verify_directly_issued_by(root.cert)
    assert _verify(root, leaf.cert, [], "leaf.example")[-1] == root.cert
    # the same kind as an intermediate CA signs a verifiable leaf
    if kind in (KeyKind.ECDSA_P256, KeyKind.RSA_2048, KeyKind.ED25519):
        sub = root.issue_intermediate(f"CN=sub {kind}", key_kind=kind, now=NOW)
        leaf2 = sub.issue_leaf("CN=leaf2", sans=["leaf2.example"], eku=["serverAuth"], now=NOW)
        leaf2.cert.verify_directly_issued_by(sub.cert)


def test_chain_root_intermediate_leaf_verifies(root: CertificateAuthority) -> None:
    sub = root.issue_intermediate(
        "CN=Test Sub CA,O=ikeguard test", KeyKind.ECDSA_P256, path_length=0, now=NOW
    )
    leaf = sub.issue_leaf(
        "CN=gw.example",
        sans=["gw.example", "192.0.2.1", "ops@gw.example"],
        eku=["serverAuth", "ipsecIKE"],
        now=NOW,
    )
    assert leaf.chain == (sub.cert, root.cert)
    chain = _verify(root, leaf.cert, [sub.cert], "gw.example")
    assert chain == [leaf.cert, sub.cert, root.cert]
    constraints = sub.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.1")]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@gw.example"]
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, EKU_IPSEC_IKE]


def test_leaf_under_wrong_root_does_not_verify(root: CertificateAuthority) -> None:
    other = CertificateAuthority.create_root("CN=Other Root", KeyKind.ECDSA_P256, now=NOW)
    leaf = other.issue_leaf("CN=x", sans=["x.example"], eku=["serverAuth"], now=NOW)
    with pytest.raises(verification.VerificationError):
        _verify(root, leaf.cert, [], "x.example")


def test_expired_and_not_yet_valid_are_rejected(root: CertificateAuthority) -> None:
    expired = root.issue_leaf(
        "CN=old",
        sans=["old.example"],
        eku=["serverAuth"],
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    future = root.issue_leaf(
        "CN=new",
        sans=["new.example"],
        eku=["serverAuth"],
        not_before=NOW + dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=30),
    )
    assert expired.cert.not_valid_after_utc == NOW - dt.timedelta(days=1)
    assert future.cert.not_valid_before_utc == NOW + dt.timedelta(days=1)
    with pytest.raises(verification.VerificationError):
        _verify(root, expired.cert, [], "old.example")
    with pytest.raises(verification.VerificationError):
        _verify(root, future.cert, [], "new.example")
    # both are fine inside their own window
    _verify(root, expired.cert, [], "old.example", at=NOW - dt.timedelta(days=2))
    _verify(root, future.cert, [], "new.example", at=NOW + dt.timedelta(days=2))


def test_unknown_critical_extension_is_rejected_by_a_verifier(root: CertificateAuthority) -> None:
    leaf = root.issue_leaf(
        "CN=odd", sans=["odd.example"], eku=["serverAuth"], unknown_critical_extension=True, now=NOW
    )
    assert any(
        ext.critical and isinstance(ext.value, x509.UnrecognizedExtension) for ext in leaf.cert.extensions
    )
    with pytest.raises(verification.VerificationError):
        _verify(root, leaf.cert, [], "odd.example")


def test_eku_and_key_usage_options(root: CertificateAuthority) -> None:
    bare = root.issue_leaf("CN=bare", key_usage=None, eku=(), is_ca=None, now=NOW)
    assert [type(e.value) for e in bare.cert.extensions] == [
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    ]
    ike = root.issue_leaf("CN=ike", eku=["ipsecIKE"], now=NOW)
    assert list(ike.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [EKU_IPSEC_IKE]
    usage = ike.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    with pytest.raises(CertFactoryError, match="unknown EKU"):
        root.issue_leaf("CN=bad", eku=["nonsense"])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (HashKind.SHA256, hashes.SHA256),
        (HashKind.SHA384, hashes.SHA384),
        (HashKind.SHA512, hashes.SHA512),
    ],
)
def test_signature_hash_choice(choice: HashKind, expected: type, root: CertificateAuthority) -> None:
    leaf = root.issue_leaf("CN=h", hash=choice, now=NOW)
    assert isinstance(leaf.cert.signature_hash_algorithm, expected)
    leaf.cert.verify_directly_issued_by(root.cert)


@pytest.mark.parametrize("issuer_kind", [KeyKind.ECDSA_P256, KeyKind.RSA_2048])
def test_sha1_signed_certificate_for_negative_tests(issuer_kind: KeyKind) -> None:
    ca = CertificateAuthority.create_root("CN=legacy", issuer_kind, now=NOW)
    leaf = ca.issue_leaf("CN=weak", sans=["weak.example"], hash=HashKind.SHA1, now=NOW)
    assert isinstance(leaf.cert.signature_hash_algorithm, hashes.SHA1)
    public = ca.cert.public_key()
    # the signature is genuine (SHA-1 over the re-encoded TBS), so only the hash policy can reject it
    if isinstance(public, rsa.RSAPublicKey):
        from cryptography.hazmat.primitives.asymmetric import padding

        public.verify(leaf.cert.signature, leaf.cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(leaf.cert.signature, leaf.cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))
    assert leaf.cert.subject == make_name("CN=weak")
    assert leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    with pytest.raises(verification.VerificationError):
        _verify(ca, leaf.cert, [], "weak.example")


def test_crl_lists_revoked_serials(root: CertificateAuthority) -> None:
    ca = root.issue_intermediate("CN=CRL CA", now=NOW)
    keep = ca.issue_leaf("CN=keep", now=NOW)
    gone = ca.issue_leaf("CN=gone", now=NOW)
    next_update = NOW + dt.timedelta(days=2)
    crl = ca.crl([gone, 4242], this_update=NOW, next_update=next_update)
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.cert.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == next_update
    assert crl.get_revoked_certificate_by_serial_number(gone.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(4242) is not None
    assert crl.get_revoked_certificate_by_serial_number(keep.serial) is None


def test_pem_files_and_key_secrecy(root: CertificateAuthority, tmp_path: Path) -> None:
    sub = root.issue_intermediate("CN=sub", now=NOW)
    leaf = sub.issue_leaf("CN=gw", key_kind=KeyKind.ED25519, now=NOW)
    paths = leaf.write_pem(tmp_path / "out", "gw")
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert x509.load_pem_x509_certificate(paths.cert.read_bytes()) == leaf.cert
    assert x509.load_pem_x509_certificates(paths.chain.read_bytes()) == [sub.cert, root.cert]  # type: ignore[union-attr]
    key = serialization.load_pem_private_key(paths.key.read_bytes(), None)
    assert key.public_key() == leaf.cert.public_key()
    ca_paths = root.write_pem(tmp_path / "out", "root")
    assert stat.S_IMODE(ca_paths.key.stat().st_mode) == 0o600
    crl_path = CertificateAuthority.write_crl(sub.crl([leaf]), tmp_path / "out", "sub")
    assert x509.load_pem_x509_crl(crl_path.read_bytes()).get_revoked_certificate_by_serial_number(leaf.serial)
    # the key never shows in repr (RFC-free rule: secrets stay out of logs)
    raw = leaf.key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(leaf), repr(sub), str(leaf)):
        assert "key=" not in text and raw.hex() not in text and "PRIVATE" not in text


def test_names_and_strongswan_dn() -> None:
    name = make_name("CN=gw.example,O=ikeguard test,C=CH")
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw.example"
    assert strongswan_dn(name) == "C=CH, O=ikeguard test, CN=gw.example"
    assert make_name("plain") == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")])
    with pytest.raises(CertFactoryError):
        make_name("CN=ok,=broken")
    with pytest.raises(CertFactoryError):
        CertificateAuthority.create_root("CN=r", KeyKind.ED25519, hash=HashKind.SHA256)
