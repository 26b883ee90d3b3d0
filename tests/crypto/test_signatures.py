"""AUTH signatures (RFC 7427 method 14, RFC 4754 methods 9-11, RSA method 1) and hash negotiation data."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto import pss_params
from ikeguard.crypto import signatures as sig
from ikeguard.crypto.errors import SignatureInvalid, UnsupportedSignatureAlgorithm
from ikeguard.crypto.signatures import SignatureScheme as S
from ikeguard.wire.iana import AuthMethod, HashAlgorithm

OCTETS = b"RealMessage1 | NonceRData | MACedIDForI" * 3


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(65537, 2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
    }


KEY_FOR = {"rsa": "rsa", "ec": "p384", "ed25519": "ed25519", "ed448": "ed448"}
SIGNABLE = [s for s in S if s is not S.RSA_PKCS1_SHA1]


@pytest.mark.parametrize("scheme", SIGNABLE, ids=lambda s: s.name)
def test_method14_round_trip_and_tamper(keys: dict[str, Any], scheme: S) -> None:
    key = keys[KEY_FOR[scheme.info.key_type]]
    auth = sig.sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, scheme)
    aid = scheme.info.algorithm_identifier
    assert auth[0] == len(aid) and auth[1 : 1 + len(aid)] == aid
    assert sig.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, auth, OCTETS) is scheme
    with pytest.raises(SignatureInvalid):
        sig.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, auth, OCTETS + b"x")
    flipped = auth[:-1] + bytes([auth[-1] ^ 1])
    with pytest.raises(SignatureInvalid):
        sig.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, flipped, OCTETS)
    with pytest.raises(UnsupportedSignatureAlgorithm, match="policy"):
        sig.verify_auth(key.public_key(), 14, auth, OCTETS, allowed=[s for s in S if s is not scheme])


def test_ecdsa_method14_signature_is_der_and_verifies_independently(keys: dict[str, Any]) -> None:
    """RFC 7427 §3: ECDSA-Sig-Value DER; checked with cryptography directly, not through our verify."""
    key = keys["p256"]
    auth = sig.sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, S.ECDSA_SHA256)
    der = auth[1 + auth[0] :]
    assert der[0] == 0x30 and der[1] == len(der) - 2
    key.public_key().verify(der, OCTETS, ec.ECDSA(hashes.SHA256()))


def test_signatures_made_by_cryptography_verify_through_ours(keys: dict[str, Any]) -> None:
    rsa_key, ec_key, ed_key = keys["rsa"], keys["p521"], keys["ed25519"]
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    cases = [
        (rsa_key, S.RSA_PSS_SHA384, rsa_key.sign(OCTETS, pss, hashes.SHA384())),
        (rsa_key, S.RSA_PKCS1_SHA256, rsa_key.sign(OCTETS, padding.PKCS1v15(), hashes.SHA256())),
        (ec_key, S.ECDSA_SHA512, ec_key.sign(OCTETS, ec.ECDSA(hashes.SHA512()))),
        (ed_key, S.ED25519, ed_key.sign(OCTETS)),
    ]
    for key, scheme, raw in cases:
        aid = scheme.info.algorithm_identifier
        auth = bytes([len(aid)]) + aid + raw
        assert sig.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, auth, OCTETS) is scheme


def _cert_der(key: Any, algorithm: hashes.HashAlgorithm | None, rsa_padding: Any = None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aid")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    cert = builder.sign(key, algorithm, rsa_padding=rsa_padding)
    return cert.public_bytes(encoding=serialization.Encoding.DER)


def _tlv_end(der: bytes, offset: int) -> tuple[int, int]:
    """(start of contents, end) of the DER TLV at ``offset``."""
    length, pos = der[offset + 1], offset + 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(der[pos : pos + n], "big"), pos + n
    return pos, pos + length


def _signature_algorithm(cert_der: bytes) -> bytes:
    """The signatureAlgorithm of Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, sig }."""
    contents, _ = _tlv_end(cert_der, 0)
    _, tbs_end = _tlv_end(cert_der, contents)
    _, alg_end = _tlv_end(cert_der, tbs_end)
    return cert_der[tbs_end:alg_end]


def test_algorithm_identifiers_match_what_cryptography_writes_in_certificates(keys: dict[str, Any]) -> None:
    """Our RFC 7427 Appendix A constants equal the DER signatureAlgorithm cryptography/OpenSSL emits."""
    pss = {
        h: padding.PSS(mgf=padding.MGF1(h()), salt_length=h().digest_size)
        for h in (hashes.SHA256, hashes.SHA384, hashes.SHA512)
    }
    expectations = [
        (S.RSA_PKCS1_SHA256, keys["rsa"], hashes.SHA256(), None),
        (S.RSA_PKCS1_SHA384, keys["rsa"], hashes.SHA384(), None),
        (S.RSA_PKCS1_SHA512, keys["rsa"], hashes.SHA512(), None),
        (S.RSA_PSS_SHA256, keys["rsa"], hashes.SHA256(), pss[hashes.SHA256]),
        (S.RSA_PSS_SHA384, keys["rsa"], hashes.SHA384(), pss[hashes.SHA384]),
        (S.RSA_PSS_SHA512, keys["rsa"], hashes.SHA512(), pss[hashes.SHA512]),
        (S.ECDSA_SHA256, keys["p256"], hashes.SHA256(), None),
        (S.ECDSA_SHA384, keys["p256"], hashes.SHA384(), None),
        (S.ECDSA_SHA512, keys["p256"], hashes.SHA512(), None),
        (S.ED25519, keys["ed25519"], None, None),
        (S.ED448, keys["ed448"], None, None),
    ]
    for scheme, key, algorithm, rsa_padding in expectations:
        der = _cert_der(key, algorithm, rsa_padding)
        assert _signature_algorithm(der) == scheme.info.algorithm_identifier, scheme.name


@pytest.mark.parametrize(
    ("method", "key_name", "width"),
    [(AuthMethod.ECDSA_SHA256_P256, "p256", 32), (AuthMethod.ECDSA_SHA384_P384, "p384", 48),
     (AuthMethod.ECDSA_SHA512_P521, "p521", 66)],
)  # fmt: skip
def test_rfc4754_raw_r_s(keys: dict[str, Any], method: AuthMethod, key_name: str, width: int) -> None:
    key = keys[key_name]
    auth = sig.sign_auth(key, OCTETS, method)
    assert len(auth) == 2 * width  # r || s, not DER
    assert sig.verify_auth(key.public_key(), method, auth, OCTETS).info.key_type == "ec"
    with pytest.raises(SignatureInvalid):
        sig.verify_auth(key.public_key(), method, auth[:-1] + bytes([auth[-1] ^ 1]), OCTETS)
    with pytest.raises(SignatureInvalid, match="octets"):
        sig.verify_auth(key.public_key(), method, auth[:-1], OCTETS)
    other = keys["p256" if key_name != "p256" else "p384"]
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.sign_auth(other, OCTETS, method)
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.verify_auth(other.public_key(), method, auth, OCTETS)


def test_rfc4754_r_s_from_an_independent_signature(keys: dict[str, Any]) -> None:
    key = keys["p256"]
    r, s = decode_dss_signature(key.sign(OCTETS, ec.ECDSA(hashes.SHA256())))
    auth = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    sig.verify_auth(key.public_key(), AuthMethod.ECDSA_SHA256_P256, auth, OCTETS)


def test_rsa_sha1_needs_the_flag(keys: dict[str, Any]) -> None:
    key = keys["rsa"]
    raw = key.sign(OCTETS, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(UnsupportedSignatureAlgorithm, match="SHA-1"):
        sig.verify_auth(key.public_key(), AuthMethod.RSA_SIG, raw, OCTETS)
    assert (
        sig.verify_auth(key.public_key(), AuthMethod.RSA_SIG, raw, OCTETS, allow_sha1=True)
        is S.RSA_PKCS1_SHA1
    )
    aid = sig.AID_SHA1_WITH_RSA
    with pytest.raises(UnsupportedSignatureAlgorithm, match="SHA-1"):
        sig.verify_auth(key.public_key(), 14, bytes([len(aid)]) + aid + raw, OCTETS)
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, S.RSA_PKCS1_SHA1)


def test_malformed_and_mismatched_auth_data(keys: dict[str, Any]) -> None:
    pub = keys["p256"].public_key()
    for bad in (b"", b"\x20" + b"\x00" * 5):
        with pytest.raises(SignatureInvalid):
            sig.verify_auth(pub, 14, bad, OCTETS)
    with pytest.raises(UnsupportedSignatureAlgorithm, match="AlgorithmIdentifier"):
        sig.verify_auth(pub, 14, b"\x03\x30\x01\x00" + b"sig", OCTETS)
    rsa_auth = sig.sign_auth(keys["rsa"], OCTETS, 14, S.RSA_PSS_SHA256)
    with pytest.raises(UnsupportedSignatureAlgorithm, match="key"):
        sig.verify_auth(pub, 14, rsa_auth, OCTETS)  # RSA AlgorithmIdentifier against an EC key
    aid = S.ECDSA_SHA256.info.algorithm_identifier
    with pytest.raises(SignatureInvalid):  # a DER that does not parse
        sig.verify_auth(pub, 14, bytes([len(aid)]) + aid + b"\x30\x02\x00", OCTETS)
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.verify_auth(pub, AuthMethod.PSK, b"x", OCTETS)


def test_signature_hash_algorithms_notify_data() -> None:
    data = sig.encode_signature_hash_algorithms([HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, 5, 0x1234])
    assert data == bytes.fromhex("0002000300051234")
    assert sig.decode_signature_hash_algorithms(data) == (
        HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.IDENTITY, 0x1234,
    )  # fmt: skip
    assert sig.decode_signature_hash_algorithms(b"") == ()
    with pytest.raises(ValueError, match="multiple of 2"):
        sig.decode_signature_hash_algorithms(b"\x00\x02\x00")


def test_wireshark_capture_signature_hash_algorithms_decode() -> None:
    """The real peer's notify in the Wireshark CCM capture: SHA-1, SHA2-256, SHA2-384, SHA2-512."""
    assert sig.decode_signature_hash_algorithms(bytes.fromhex("0001000200030004")) == (
        HashAlgorithm.SHA1, HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512,
    )  # fmt: skip


def test_hash_selection(keys: dict[str, Any]) -> None:
    ours = [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY]
    assert sig.select_hash(keys["p384"], ours, {2, 3, 4}) is HashAlgorithm.SHA2_384  # curve's own hash
    assert sig.select_hash(keys["p384"], ours, {2}) is HashAlgorithm.SHA2_256
    assert sig.select_hash(keys["rsa"], ours, {1, 3, 4}) is HashAlgorithm.SHA2_384  # our order, never SHA-1
    assert sig.select_hash(keys["ed25519"], ours, {2, 5}) is HashAlgorithm.IDENTITY
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.select_hash(keys["ed25519"], ours, {2, 3})
    with pytest.raises(UnsupportedSignatureAlgorithm):
        sig.select_hash(keys["rsa"], ours, {1})
    assert sig.scheme_for(keys["rsa"], HashAlgorithm.SHA2_256) is S.RSA_PSS_SHA256
    assert sig.scheme_for(keys["rsa"], HashAlgorithm.SHA2_256, rsa_pss=False) is S.RSA_PKCS1_SHA256
    assert sig.scheme_for(keys["p521"].public_key(), HashAlgorithm.SHA2_512) is S.ECDSA_SHA512


def _der(tag: int, content: bytes) -> bytes:
    assert len(content) < 128
    return bytes([tag, len(content)]) + content


def _pss_aid(
    hash_oid: bytes, salt: int | None, null: bool = True, mgf_hash_oid: bytes | None = None
) -> bytes:
    def hash_aid(oid: bytes) -> bytes:
        return _der(0x30, oid + (b"\x05\x00" if null else b""))

    params = _der(0xA0, hash_aid(hash_oid))
    params += _der(0xA1, _der(0x30, pss_params.OID_MGF1 + hash_aid(mgf_hash_oid or hash_oid)))
    if salt is not None:
        params += _der(0xA2, _der(0x02, bytes([salt])))
    return _der(0x30, pss_params.OID_RSASSA_PSS + _der(0x30, params))


SHA256_OID = bytes.fromhex("0609608648016503040201")
SHA384_OID = bytes.fromhex("0609608648016503040202")


def test_pss_parameters_other_encodings_are_understood(keys: dict[str, Any]) -> None:
    """Peers may omit the NULL parameters or use another salt length; the signature must still verify."""
    key = keys["rsa"]
    assert _pss_aid(SHA256_OID, 32) == sig.AID_RSA_PSS_SHA256  # the builder agrees with the RFC constant
    for aid, h, salt in [
        (_pss_aid(SHA256_OID, 32, null=False), hashes.SHA256(), 32),
        (_pss_aid(SHA384_OID, 20), hashes.SHA384(), 20),
        (_pss_aid(SHA256_OID, None), hashes.SHA256(), 20),  # DEFAULT salt length 20
    ]:
        raw = key.sign(OCTETS, padding.PSS(mgf=padding.MGF1(h), salt_length=salt), h)
        auth = bytes([len(aid)]) + aid + raw
        scheme = sig.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, auth, OCTETS)
        parsed = pss_params.parse_pss_algorithm_identifier(aid)
        assert parsed is not None and scheme.info.pss and scheme.info.hash == parsed[0]


def test_pss_parameters_from_a_cryptography_certificate(keys: dict[str, Any]) -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=20)
    aid = _signature_algorithm(_cert_der(keys["rsa"], hashes.SHA512(), pss))
    assert pss_params.parse_pss_algorithm_identifier(aid) == (HashAlgorithm.SHA2_512, 20)


def test_pss_parameters_refused() -> None:
    assert (
        pss_params.parse_pss_algorithm_identifier(_pss_aid(SHA256_OID, 32, mgf_hash_oid=SHA384_OID)) is None
    )
    sha1 = bytes.fromhex("06052b0e03021a")
    assert pss_params.parse_pss_algorithm_identifier(_pss_aid(sha1, 20)) is None
    assert pss_params.parse_pss_algorithm_identifier(sig.AID_ECDSA_SHA256) is None
    empty_params = bytes.fromhex("300d06092a864886f70d01010a3000")  # RFC 7427 A.4.1: SHA-1 defaults
    assert pss_params.parse_pss_algorithm_identifier(empty_params) is None


@settings(max_examples=300)
@given(data=st.binary(max_size=80), cut=st.integers(0, 67))
def test_pss_parser_never_raises(data: bytes, cut: int) -> None:
    pss_params.parse_pss_algorithm_identifier(data)
    pss_params.parse_pss_algorithm_identifier(sig.AID_RSA_PSS_SHA256[:cut] + data)
