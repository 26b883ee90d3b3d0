"""SK payload protection: RFC 7634 IKEv2 example, real Wireshark AES-CCM-12 frames, round trips, tampering."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto import keymat, registry, sk
from ikeguard.crypto.errors import IntegrityError, IvExhausted, MalformedCiphertext
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.crypto.registry import EncrAlgorithm, IntegAlgorithm
from ikeguard.wire.iana import EncrId, IntegId, PrfId
from tests.crypto.vectorfiles import hx, load


class FixedRandom:
    """A RandomSource that replays given octets (to reproduce a published IV)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def bytes(self, n: int) -> bytes:
        out, self._data = self._data[:n], self._data[n:]
        assert len(out) == n
        return out


def test_rfc7634_ikev2_sk_example_opens_and_reseals_byte_for_byte() -> None:
    v = load("esp/rfc7634-chacha20-poly1305.json")["ikev2_example"]
    encr = registry.encr(EncrId.CHACHA20_POLY1305)
    aad, iv, body = hx(v["aad"]), hx(v["iv"]), hx(v["iv"]) + hx(v["ciphertext_and_tag"])
    inner = hx(v["plaintext"])[:-1]  # the vector's plaintext ends with pad length 00
    opener = sk.AeadSkProtector(encr, hx(v["sk_e"]), DeterministicRandom(0))
    assert opener.open(aad, body) == inner
    sealer = sk.AeadSkProtector(encr, hx(v["sk_e"]), FixedRandom(iv))
    assert sealer.overhead(len(inner)) == len(body) - len(inner)
    assert sealer.seal(aad, inner) == body
    assert len(aad) + len(body) == 69  # the example's IKE header length


WIRESHARK = load("ikev2-sk/wireshark-aes128ccm12-informational.json")
SK_FRAMES = [f for f in WIRESHARK["frames"] if "expected_plaintext" in f]


@pytest.mark.parametrize("frame", SK_FRAMES, ids=lambda f: f"frame{f['n']}")
def test_wireshark_aes128ccm12_informational(frame: dict[str, Any]) -> None:
    ike = hx(frame["ether_frame"])[42:]
    assert ike[16] == 46  # next payload SK
    response = bool(ike[19] & 0x20)
    key = hx(WIRESHARK["sk_er"] if response else WIRESHARK["sk_ei"])
    sk_len = struct.unpack("!H", ike[30:32])[0]
    aad, body = ike[:32], ike[32 : 28 + sk_len]
    encr = registry.encr(EncrId.AES_CCM_12, 128)
    protector = sk.AeadSkProtector(encr, key, DeterministicRandom(0))
    expected = hx(frame["expected_plaintext"])
    plaintext = protector.open(aad, body)
    pad_len = len(body) - encr.iv_len - encr.icv_len - 1 - len(plaintext)
    assert expected[-1] == pad_len and expected[: len(plaintext)] == plaintext
    if pad_len == 0:  # re-seal with the captured IV: byte-identical to what the real peer sent
        assert sk.AeadSkProtector(encr, key, FixedRandom(body[:8])).seal(aad, plaintext) == body
    tampered = body[:-1] + bytes([body[-1] ^ 0x80])
    with pytest.raises(IntegrityError):
        protector.open(aad, tampered)
    with pytest.raises(IntegrityError):  # the header is authenticated too
        protector.open(aad[:-1] + bytes([aad[-1] ^ 1]), body)


AEADS = [e for e in registry.ENCR.values() if e.aead]
CBCS = [e for e in registry.ENCR.values() if not e.aead]
INTEGS = list(registry.INTEG.values())


def _protector_pair(encr: EncrAlgorithm, integ: IntegAlgorithm | None, seed: int) -> tuple[Any, Any]:
    rng = DeterministicRandom(seed)
    keys = keymat.derive_ike_keys(
        PrfId.HMAC_SHA2_256,
        rng.bytes(32),
        rng.bytes(32),
        rng.bytes(32),
        rng.bytes(8),
        rng.bytes(8),
        encr.keymat_len,
        integ.key_len if integ else 0,
    )
    out_i, in_i = sk.make_sk_protectors(encr, integ, keys, initiator=True, rng=rng)
    out_r, in_r = sk.make_sk_protectors(encr, integ, keys, initiator=False, rng=rng)
    assert repr(keys).count("octets") == 7 and keys.sk_ei.hex() not in repr(keys)
    return (out_i, in_r), (out_r, in_i)


COMBOS = [(e, None) for e in AEADS] + [(e, i) for e in CBCS for i in INTEGS]


@pytest.mark.parametrize(("encr", "integ"), COMBOS, ids=lambda x: x.name if x else "aead")
@settings(max_examples=15, deadline=None)
@given(aad=st.binary(min_size=32, max_size=40), plaintext=st.binary(max_size=300))
def test_seal_open_round_trip_and_tamper(
    encr: EncrAlgorithm, integ: IntegAlgorithm | None, aad: bytes, plaintext: bytes
) -> None:
    (i_to_r, r_from_i), (r_to_i, i_from_r) = _protector_pair(encr, integ, 7)
    body = i_to_r.seal(aad, plaintext)
    assert len(body) == len(plaintext) + i_to_r.overhead(len(plaintext))
    assert r_from_i.open(aad, body) == plaintext
    assert i_from_r.open(aad, r_to_i.seal(aad, plaintext)) == plaintext
    with pytest.raises(IntegrityError):  # a direction's key never opens the other direction
        i_from_r.open(aad, body)
    if not encr.aead:
        assert (len(body) - encr.iv_len - integ.icv_len) % encr.block_size == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("encr", "integ"), [(registry.encr(20, 256), None), (registry.encr(12, 128), registry.integ(12))]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_is_detected(
    encr: EncrAlgorithm, integ: IntegAlgorithm | None, data: Any
) -> None:
    (sender, receiver), _ = _protector_pair(encr, integ, 3)
    aad = b"A" * 32
    body = sender.seal(aad, data.draw(st.binary(max_size=64)))
    message = bytearray(aad + body)
    bit = data.draw(st.integers(0, len(message) * 8 - 1))
    message[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        receiver.open(bytes(message[:32]), bytes(message[32:]))


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=120))
def test_garbage_bodies_raise_only_typed_errors(body: bytes) -> None:
    for encr, integ in ((registry.encr(20, 128), None), (registry.encr(12, 256), registry.integ(14))):
        (_, receiver), _ = _protector_pair(encr, integ, 1)
        with pytest.raises((IntegrityError, MalformedCiphertext)):
            receiver.open(b"H" * 32, body)


def test_bad_padding_and_alignment_are_malformed() -> None:
    encr, integ = registry.encr(EncrId.AES_CBC, 128), registry.integ(IntegId.HMAC_SHA2_256_128)
    key_e, key_a = bytes(range(16)), bytes(range(32))
    receiver = sk.CbcHmacSkProtector(encr, integ, key_e, key_a, DeterministicRandom(0))
    aad, iv = b"H" * 32, bytes(16)
    # pad length 200 in a one-block plaintext, correctly authenticated
    ct = encr.encrypt(key_e, iv, bytes(15) + bytes([200]))
    with pytest.raises(MalformedCiphertext, match="pad length"):
        receiver.open(aad, iv + ct + integ.compute(key_a, aad + iv + ct))
    ct = encr.encrypt(key_e, iv, bytes(32))[:20]  # not block aligned but authenticated
    with pytest.raises(MalformedCiphertext, match="multiple"):
        receiver.open(aad, iv + ct + integ.compute(key_a, aad + iv + ct))
    with pytest.raises(MalformedCiphertext, match="shorter"):
        receiver.open(aad, bytes(40))


def test_aead_ivs_never_repeat_and_run_out() -> None:
    encr = registry.encr(EncrId.AES_GCM_16, 128)
    sender = sk.AeadSkProtector(encr, bytes(20), FixedRandom(b"\xff" * 7 + b"\xfe"))
    ivs = {sender.seal(b"", b"x")[:8] for _ in range(4)}
    assert len(ivs) == 4  # wraps around 2^64 without repeating
    sender._ivs_left = 1
    sender.seal(b"", b"x")
    with pytest.raises(IvExhausted):
        sender.seal(b"", b"x")


def test_cbc_ivs_come_from_the_injected_source() -> None:
    encr, integ = registry.encr(EncrId.AES_CBC, 256), registry.integ(IntegId.HMAC_SHA2_512_256)
    a = sk.CbcHmacSkProtector(encr, integ, bytes(32), bytes(64), DeterministicRandom(9))
    b = sk.CbcHmacSkProtector(encr, integ, bytes(32), bytes(64), DeterministicRandom(9))
    first, second = a.seal(b"h", b"payload"), a.seal(b"h", b"payload")
    assert first[:16] != second[:16]
    assert b.seal(b"h", b"payload") == first


def test_wipe_disarms_protectors_and_repr_hides_keys() -> None:
    encr = registry.encr(EncrId.AES_GCM_16, 256)
    (sender, receiver), _ = _protector_pair(encr, None, 5)
    body = sender.seal(b"H" * 32, b"secret")
    assert repr(sender) == "AeadSkProtector(aes256gcm16)"
    keys = keymat.derive_ike_keys(
        PrfId.HMAC_SHA2_256, b"s" * 32, b"n" * 16, b"m" * 16, b"i" * 8, b"r" * 8, encr.keymat_len, 0
    )
    out, _ = sk.make_sk_protectors(encr, None, keys, initiator=True)
    keys.wipe()
    assert not any(keys.sk_ei) and not any(keys.sk_d)
    assert receiver.open(b"H" * 32, body) == b"secret"
    assert out.key == bytes(encr.keymat_len)  # the protector shares the wiped buffer


def test_aead_with_integ_or_cbc_without_is_refused() -> None:
    keys = keymat.IkeKeys()
    with pytest.raises(ValueError, match="INTEG"):
        sk.make_sk_protector(
            registry.encr(20, 128), registry.integ(12), bytes(20), bytes(32), DeterministicRandom()
        )
    with pytest.raises(ValueError, match="INTEG"):
        sk.make_sk_protector(registry.encr(12, 128), None, bytes(16), b"", DeterministicRandom())
    assert (
        repr(keys)
        == "IkeKeys("
        + ", ".join(f"{n}=<0 octets>" for n in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"))
        + ")"
    )
