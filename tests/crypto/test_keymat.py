"""AUTH octets, PSK AUTH, NAT-D hashes, key containers and injectable randomness (RFC 7296 §2.15, §2.23)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto import keymat
from ikeguard.crypto.random import DeterministicRandom, RandomSource, SystemRandom
from ikeguard.wire.iana import PrfId

SPI_I, SPI_R = bytes.fromhex("ea684d21597afd36"), bytes.fromhex("d9fe2ab22dac23ac")


def test_natd_hash_from_the_wireshark_capture() -> None:
    """IKE_SA_INIT request of the Wireshark CCM capture: 192.168.1.2:500 -> 192.168.1.14:500, responder SPI 0.

    The notify data values are the ones the real peer sent (frame 1 of ikev2-sk/wireshark-...json).
    """
    zero = bytes(8)
    assert (
        keymat.natd_hash(SPI_I, zero, "192.168.1.2", 500).hex() == "949c9db5739d75a974a49c184618369b34b7f942"
    )
    assert (
        keymat.natd_hash(SPI_I, zero, "192.168.1.14", 500).hex() == "3e721b46be07d53111425d7f80d2c6e220c6072e"
    )


@settings(max_examples=50)
@given(ip=st.ip_addresses(), port=st.integers(0, 65535))
def test_natd_hash_is_sha1_of_spis_address_and_port(ip: object, port: int) -> None:
    packed = ip.packed  # type: ignore[attr-defined]
    expected = hashlib.sha1(SPI_I + SPI_R + packed + port.to_bytes(2, "big")).digest()
    assert keymat.natd_hash(SPI_I, SPI_R, str(ip), port) == expected
    assert keymat.natd_hash(SPI_I, SPI_R, packed, port) == expected


def test_natd_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        keymat.natd_hash(SPI_I, SPI_R, b"\x01\x02\x03", 500)
    with pytest.raises(ValueError):
        keymat.natd_hash(SPI_I, SPI_R, "192.0.2.1", 70000)


def test_psk_auth_matches_rfc7296_formula_with_stdlib_hmac() -> None:
    secret, octets = b"correct horse battery staple", b"signed octets" * 10
    pad = hmac.new(secret, b"Key Pad for IKEv2", hashlib.sha384).digest()
    expected = hmac.new(pad, octets, hashlib.sha384).digest()
    assert keymat.psk_auth(PrfId.HMAC_SHA2_384, secret, octets) == expected
    assert keymat.psk_auth(PrfId.HMAC_SHA2_384, secret + b"!", octets) != expected


def test_auth_signed_octets_layout() -> None:
    message, nonce, sk_p, id_body = b"M" * 300, b"N" * 32, b"K" * 32, b"\x02\x00\x00\x00gw.example.net"
    octets = keymat.auth_signed_octets(message, nonce, PrfId.HMAC_SHA2_256, sk_p, id_body)
    maced = hmac.new(sk_p, id_body, hashlib.sha256).digest()
    assert octets == message + nonce + maced


def test_xcbc_skeyseed_uses_half_of_each_nonce() -> None:
    """RFC 7296 §2.14: a fixed-key PRF takes the first 64 bits of Ni and of Nr."""
    ni, nr, gir = bytes(range(32)), bytes(range(100, 132)), b"g" * 32
    assert keymat.derive_skeyseed(PrfId.AES128_XCBC, ni, nr, gir) == keymat.prf(
        PrfId.AES128_XCBC, ni[:8] + nr[:8], gir
    )


def test_ike_keys_sizes_wipe_and_repr() -> None:
    keys = keymat.derive_ike_keys(PrfId.HMAC_SHA2_384, b"s" * 48, b"n" * 32, b"m" * 32, SPI_I, SPI_R, 36, 0)
    parts = (keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr)
    assert [len(k) for k in parts] == [48, 0, 0, 36, 36, 48, 48]
    assert keys.sk_ei != keys.sk_er
    text = repr(keys)
    assert "sk_ei=<36 octets>" in text and keys.sk_d.hex()[:16] not in text and "bytearray" not in text
    keys.wipe()
    assert not any(keys.sk_d + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr)
    with pytest.raises(ValueError, match="SPI"):
        keymat.derive_ike_keys(PrfId.HMAC_SHA2_256, b"s", b"n", b"m", b"short", SPI_R, 16, 16)


def test_child_keymat_split_order() -> None:
    km = keymat.derive_child_keymat(PrfId.HMAC_SHA2_256, b"d" * 32, b"n" * 32, b"m" * 32, 2 * (16 + 32))
    keys = keymat.split_child_keymat(km, 16, 32)
    assert bytes(keys.encr_i + keys.integ_i + keys.encr_r + keys.integ_r) == km
    pfs = keymat.derive_child_keymat(PrfId.HMAC_SHA2_256, b"d" * 32, b"n" * 32, b"m" * 32, 96, g_ir=b"g" * 32)
    assert pfs != km
    with pytest.raises(ValueError):
        keymat.split_child_keymat(km[:-1], 16, 32)


def test_random_sources() -> None:
    a, b = DeterministicRandom(b"s3cr3t"), DeterministicRandom(b"s3cr3t")
    assert [a.bytes(n) for n in (0, 5, 200, 3)] == [b.bytes(n) for n in (0, 5, 200, 3)]
    assert DeterministicRandom(1).bytes(16) != DeterministicRandom(2).bytes(16)
    system = SystemRandom()
    assert isinstance(system, RandomSource) and isinstance(a, RandomSource)
    assert len(system.bytes(32)) == 32 and system.bytes(16) != system.bytes(16)
    assert "s3cr3t" not in repr(a)
