"""The SA payload decoder's memo of transform lists: same results, errors keep their offsets, bounded."""

from __future__ import annotations

import pytest

from ikeguard.wire import sa as sa_module
from ikeguard.wire.errors import ParseError
from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import Transform


def _payload(spi: bytes, encr_id: int = EncrId.AES_CBC) -> SaPayload:
    transforms = (
        Transform(TransformType.ENCR, encr_id, 256),
        Transform(TransformType.PRF, PrfId.HMAC_SHA2_384),
        Transform(TransformType.INTEG, IntegId.HMAC_SHA2_384_192),
        Transform(TransformType.KE, KeId.ECP_384),
    )
    return SaPayload((Proposal(1, ProtocolId.IKE, spi, transforms),))


def test_repeated_offers_decode_to_equal_payloads_with_their_own_spis() -> None:
    first, second = _payload(b"\x01" * 8), _payload(b"\x02" * 8)
    decoded = [SaPayload.decode_body(p.encode_body(), 32, False) for p in (first, second, first)]
    assert decoded == [first, second, first]
    assert decoded[0].proposals[0].spi == b"\x01" * 8 and decoded[1].proposals[0].spi == b"\x02" * 8


def test_a_malformed_list_raises_at_its_offset_every_time() -> None:
    body = bytearray(_payload(b"").encode_body())
    body[8] = 1  # first transform's 'last' marker: neither 0 nor 3
    for offset in (32, 100):
        with pytest.raises(ParseError) as info:
            SaPayload.decode_body(bytes(body), offset, False)
        assert info.value.offset == offset + 8


def test_the_memo_stays_bounded_when_a_peer_varies_its_offers() -> None:
    for key_bits in range(sa_module._MEMO_ENTRIES + 50):
        transforms = (Transform(TransformType.ENCR, EncrId.AES_CBC, key_bits),)
        payload = SaPayload((Proposal(1, ProtocolId.ESP, b"\x00" * 4, transforms),))
        assert SaPayload.decode_body(payload.encode_body(), 0, False) == payload
    assert len(sa_module._transforms_memo) <= sa_module._MEMO_ENTRIES
