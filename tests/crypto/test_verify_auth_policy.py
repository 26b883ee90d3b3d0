"""Issue 13 S5 at the crypto layer: ``verify_auth`` refuses a scheme outside ``allowed`` and a method 14
hash that was not announced (RFC 7427 §4) before verifying; strongSwan-style scheme names round-trip."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ikeguard.crypto.errors import UnsupportedSignatureAlgorithm
from ikeguard.crypto.signatures import SignatureScheme, scheme_by_name, sign_auth, verify_auth
from ikeguard.wire.iana import AuthMethod, HashAlgorithm

OCTETS = b"signed octets of an IKE_AUTH exchange"


def test_scheme_names_are_strongswans() -> None:
    assert scheme_by_name("rsa/pss-sha384") is SignatureScheme.RSA_PSS_SHA384
    assert scheme_by_name("rsa-sha384") is SignatureScheme.RSA_PKCS1_SHA384
    assert scheme_by_name("ECDSA-SHA256") is SignatureScheme.ECDSA_SHA256
    assert all(scheme_by_name(s.token) is s for s in SignatureScheme)
    with pytest.raises(ValueError, match="known:"):
        scheme_by_name("pubkey-sha384")


def test_scheme_outside_the_allowed_set_is_refused_whatever_the_method() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    allowed = {SignatureScheme.ECDSA_SHA384, SignatureScheme.RSA_PSS_SHA384}
    m14 = sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, SignatureScheme.ECDSA_SHA256)
    m9 = sign_auth(key, OCTETS, AuthMethod.ECDSA_SHA256_P256)
    plain = verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, m14, OCTETS)
    assert plain is SignatureScheme.ECDSA_SHA256
    for method, data in ((AuthMethod.DIGITAL_SIGNATURE, m14), (AuthMethod.ECDSA_SHA256_P256, m9)):
        with pytest.raises(UnsupportedSignatureAlgorithm, match=r"ecdsa-sha256 .* not allowed by policy"):
            verify_auth(key.public_key(), int(method), data, OCTETS, allowed=allowed)


def test_pkcs1v15_refused_where_only_pss_is_allowed() -> None:
    key = rsa.generate_private_key(65537, 2048)
    data = sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, SignatureScheme.RSA_PKCS1_SHA384)
    with pytest.raises(UnsupportedSignatureAlgorithm, match="rsa-sha384"):
        verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS,
                    allowed={SignatureScheme.RSA_PSS_SHA384})
    pss = sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, SignatureScheme.RSA_PSS_SHA384)
    assert verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, pss, OCTETS,
                       allowed={SignatureScheme.RSA_PSS_SHA384}) is SignatureScheme.RSA_PSS_SHA384


def test_method_14_hash_must_have_been_announced() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    data = sign_auth(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, SignatureScheme.ECDSA_SHA512)
    with pytest.raises(UnsupportedSignatureAlgorithm, match=r"did not announce .*RFC 7427 §4"):
        verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS,
                    announced=(HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384))
    assert verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS,
                       announced=(HashAlgorithm.SHA2_512,)) is SignatureScheme.ECDSA_SHA512
    # RFC 4754 methods fix their hash; the announcement is about method 14 only
    m10 = sign_auth(key, OCTETS, AuthMethod.ECDSA_SHA384_P384)
    assert verify_auth(key.public_key(), AuthMethod.ECDSA_SHA384_P384, m10, OCTETS,
                       announced=(HashAlgorithm.SHA2_256,)) is SignatureScheme.ECDSA_SHA384
