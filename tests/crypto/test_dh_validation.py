"""Peer KE data validation (named reasons), round trips per method, determinism, MODP parameters."""

from __future__ import annotations

import pytest

from ikeguard.crypto import dh
from ikeguard.crypto.dh import KeRejection
from ikeguard.crypto.errors import InvalidKeyExchange, UnsupportedTransform
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.wire.iana import KeId

FAST_METHODS = [m for m in dh.KE_METHODS if dh.KE_METHODS[m].kind != "modp"]
P25519 = 2**255 - 19
P448 = 2**448 - 2**224 - 1


def _rejected(method: int, data: bytes, reason: KeRejection) -> None:
    ours = dh.new_key_exchange(method)
    with pytest.raises(InvalidKeyExchange) as info:
        ours.shared_secret(data)
    assert reason.value in info.value.reason
    assert dh.KE_METHODS[method].method.name in info.value.reason


@pytest.mark.parametrize("method", FAST_METHODS, ids=lambda m: dh.KE_METHODS[m].name)
def test_round_trip_agrees(method: int) -> None:
    initiator = dh.new_key_exchange(method)
    responder = dh.new_key_exchange(method)
    info = dh.KE_METHODS[method]
    assert len(initiator.public_value) == info.initiator_len
    ke_data, shared = responder.respond(initiator.public_value)
    assert len(ke_data) == info.responder_len and len(shared) == info.shared_len
    assert initiator.shared_secret(ke_data) == shared
    assert dh.new_key_exchange(method).public_value != initiator.public_value  # fresh ephemeral keys


@pytest.mark.parametrize("method", FAST_METHODS, ids=lambda m: dh.KE_METHODS[m].name)
def test_injected_randomness_makes_keys_reproducible(method: int) -> None:
    a = dh.new_key_exchange(method, DeterministicRandom("ke"))
    b = dh.new_key_exchange(method, DeterministicRandom("ke"))
    c = dh.new_key_exchange(method, DeterministicRandom("other"))
    assert a.public_value == b.public_value != c.public_value


@pytest.mark.parametrize("method", list(dh.KE_METHODS), ids=lambda m: dh.KE_METHODS[m].name)
def test_wrong_length_is_rejected(method: int) -> None:
    info = dh.KE_METHODS[method]
    expected = info.responder_len if info.kind == "kem" else info.initiator_len
    for bad in (expected - 1, expected + 1, 0):
        _rejected(method, b"\x01" * bad, KeRejection.WRONG_LENGTH)


@pytest.mark.parametrize("method", [KeId.ECP_256, KeId.ECP_384, KeId.ECP_521, KeId.ECP_224, KeId.ECP_192])
def test_ecp_off_curve_and_identity(method: KeId) -> None:
    valid = dh.new_key_exchange(method).public_value
    off_curve = valid[:-1] + bytes([valid[-1] ^ 1])  # y changed by one bit: not on the curve
    _rejected(method, off_curve, KeRejection.OFF_CURVE)
    _rejected(method, bytes(len(valid)), KeRejection.IDENTITY)  # the point at infinity's usual encoding
    n = len(valid) // 2
    _rejected(method, b"\xff" * n + valid[n:], KeRejection.OFF_CURVE)  # x >= p


# RFC 7748 §6.1 / RFC 8031 §2.3: u-coordinates of small order (and their non-canonical forms) give an
# all-zero shared secret and must be refused.
X25519_LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (P25519 - 1).to_bytes(32, "little"),
    P25519.to_bytes(32, "little"),
    (P25519 + 1).to_bytes(32, "little"),
]
X448_LOW_ORDER = [
    bytes(56),
    (1).to_bytes(56, "little"),
    (P448 - 1).to_bytes(56, "little"),
    P448.to_bytes(56, "little"),
    (P448 + 1).to_bytes(56, "little"),
]


@pytest.mark.parametrize("point", X25519_LOW_ORDER, ids=lambda p: p.hex()[:8])
def test_x25519_low_order_points(point: bytes) -> None:
    _rejected(KeId.CURVE25519, point, KeRejection.LOW_ORDER)


@pytest.mark.parametrize("point", X448_LOW_ORDER, ids=lambda p: p.hex()[:8])
def test_x448_low_order_points(point: bytes) -> None:
    _rejected(KeId.CURVE448, point, KeRejection.LOW_ORDER)


def test_modp_2048_round_trip_and_range_checks() -> None:
    method = KeId.MODP_2048
    assert dh.KE_METHODS[method].legacy
    a, b = dh.new_key_exchange(method), dh.new_key_exchange(method)
    ke_data, shared = b.respond(a.public_value)
    assert a.shared_secret(ke_data) == shared and len(shared) == 256
    p = dh.MODP_PRIMES[method]
    for y in (0, 1, p - 1, p, 2**2048 - 1):
        _rejected(method, y.to_bytes(256, "big"), KeRejection.OUT_OF_RANGE)


@pytest.mark.slow
@pytest.mark.parametrize("method", [KeId.MODP_3072, KeId.MODP_4096])
def test_modp_large_groups_round_trip(method: KeId) -> None:
    a, b = dh.new_key_exchange(method), dh.new_key_exchange(method)
    ke_data, shared = b.respond(a.public_value)
    assert a.shared_secret(ke_data) == shared


def _pi_floor(bits: int) -> int:
    """floor(2^bits * pi) by Machin's formula with guard bits (integer arithmetic only)."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total, term, k, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // k)
            term //= x * x
            k += 2
            sign = -sign
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


@pytest.mark.parametrize(
    ("method", "bits", "offset"),
    [(KeId.MODP_2048, 2048, 124476), (KeId.MODP_3072, 3072, 1690314), (KeId.MODP_4096, 4096, 240904)],
)
def test_modp_primes_follow_the_rfc3526_definition(method: KeId, bits: int, offset: int) -> None:
    """p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) pi) + offset) (RFC 3526 §3-5)."""
    expected = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_floor(bits - 130) + offset)
    assert dh.MODP_PRIMES[method] == expected


def test_modp_does_not_leak_the_deprecation_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = dh.new_key_exchange(KeId.MODP_2048)
        a.shared_secret(dh.new_key_exchange(KeId.MODP_2048).public_value)


def test_unknown_method_is_a_typed_error() -> None:
    for method in (KeId.MODP_1024, KeId.BRAINPOOL_P256R1, 4242):
        with pytest.raises(UnsupportedTransform):
            dh.new_key_exchange(method)


@pytest.mark.skipif(not dh.mlkem_available(), reason="this cryptography/OpenSSL has no ML-KEM")
def test_mlkem768_roles_and_rejection() -> None:
    initiator = dh.new_key_exchange(KeId.ML_KEM_768)
    responder = dh.new_key_exchange(KeId.ML_KEM_768)
    ciphertext, shared = responder.respond(initiator.public_value)
    assert len(ciphertext) == 1088 and responder.public_value == ciphertext
    assert initiator.shared_secret(ciphertext) == shared
    with pytest.raises(InvalidKeyExchange, match="wrong length"):
        dh.new_key_exchange(KeId.ML_KEM_768).respond(b"\x00" * 1183)
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert initiator.shared_secret(tampered) != shared  # implicit rejection: a different, useless key


def test_repr_shows_no_key_material() -> None:
    ke = dh.new_key_exchange(KeId.CURVE25519)
    assert repr(ke) == "MontgomeryKeyExchange(CURVE25519)"
    assert ke.public_value.hex() not in repr(ke)
