"""ESP seal/open round trips for every transform, sequence number and payload size (Hypothesis), and
tampering anywhere in a packet is caught."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.dataplane.esp import EspError, EspTransform, parse_header
from tests.dataplane.test_table import TRANSFORMS


def _transform(name: str) -> EspTransform:
    encr, bits, klen, integ, ilen = TRANSFORMS[name]
    return EspTransform(encr, bits, os.urandom(klen), integ, os.urandom(ilen))


_TRANSFORMS = {name: _transform(name) for name in TRANSFORMS}


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(TRANSFORMS)), payload=st.binary(max_size=300),
       next_header=st.integers(0, 255), seq=st.integers(1, 2**64 - 1), esn=st.booleans())
def test_round_trip(name: str, payload: bytes, next_header: int, seq: int, esn: bool) -> None:
    t = _TRANSFORMS[name]
    if not esn:
        seq &= 0xFFFFFFFF
        seq = seq or 1
    packet = t.seal(0x12345678, seq, payload, next_header, esn)
    assert parse_header(packet) == (0x12345678, seq & 0xFFFFFFFF)
    assert (len(packet) - 8 - t.iv_len - t.icv_len) % t.block == 0  # RFC 4303 §2.4 alignment
    opened = t.open(packet, seq, esn)
    assert (opened.data, opened.next_header) == (payload, next_header)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(TRANSFORMS)), data=st.data())
def test_any_flipped_bit_is_rejected(name: str, data: st.DataObject) -> None:
    t = _TRANSFORMS[name]
    packet = bytearray(t.seal(0x1001, 7, b"inner packet", 4))
    index = data.draw(st.integers(0, len(packet) - 1))
    packet[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(EspError) as err:
        t.open(bytes(packet), 7)
    assert err.value.reason in ("icv", "malformed")


def test_esn_high_bits_are_authenticated() -> None:
    t = _TRANSFORMS["aes128-sha256"]
    packet = t.seal(0x1001, (5 << 32) | 9, b"x", 4, esn=True)
    with pytest.raises(EspError, match="icv"):
        t.open(packet, (6 << 32) | 9, esn=True)
