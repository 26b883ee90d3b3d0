"""Malformed input gets a precise, typed ParseError; critical bit handling (RFC 7296 §2.5)."""

from __future__ import annotations

import pytest

from ikeguard.wire.errors import (
    FieldError,
    LengthError,
    ParseError,
    TruncatedError,
    UnsupportedCriticalPayload,
    UnsupportedVersion,
)
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, KeId, NotifyType, PayloadType, ProtocolId
from ikeguard.wire.message import Message, encode_message, parse_message
from ikeguard.wire.payloads import KePayload, NoncePayload, NotifyPayload, SkPayload, UnknownPayload
from ikeguard.wire.proposal_string import parse_proposal
from ikeguard.wire.sa import Proposal, SaPayload

HEADER = IkeHeader(b"\xaa" * 8, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlags.INITIATOR, 0)


def _init_request() -> bytes:
    spec = parse_proposal("aes256gcm16-prfsha384-ecp384", ProtocolId.IKE)
    return encode_message(
        Message(
            HEADER,
            (
                SaPayload((Proposal.from_spec(1, spec),)),
                KePayload(KeId.ECP_384, b"\x04" * 96),
                NoncePayload(b"n" * 32),
            ),
        )
    )


def _chain(*payloads: tuple[int, int, bytes]) -> bytes:
    """Raw message from (type, flags, body) triples: lets tests write what our encoder would refuse."""
    body = b""
    for i, (_ptype, flags, data) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        body += bytes([nxt, flags]) + (4 + len(data)).to_bytes(2, "big") + data
    first = payloads[0][0] if payloads else 0
    return HEADER.encode(first, HEADER_LEN + len(body)) + body


def test_unknown_critical_payload_raises_with_its_type_and_offset() -> None:
    nonce = (PayloadType.NONCE, 0, b"n" * 16)
    data = _chain(nonce, (222, 0x80, b"secret"))
    with pytest.raises(UnsupportedCriticalPayload) as err:
        parse_message(data)
    assert err.value.payload_type == 222
    assert err.value.offset == HEADER_LEN + 20
    assert err.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD


def test_unknown_non_critical_payload_is_kept_and_re_encoded() -> None:
    data = _chain(
        (PayloadType.NONCE, 0, b"n" * 16), (222, 0, b"opaque"), (PayloadType.NOTIFY, 0, b"\x00\x00\x40\x00")
    )
    msg = parse_message(data)
    assert msg.payloads[1] == UnknownPayload(222, b"opaque")
    assert (
        isinstance(msg.payloads[2], NotifyPayload)
        and msg.payloads[2].notify_type == NotifyType.INITIAL_CONTACT
    )
    assert encode_message(msg) == data


def test_known_payload_with_critical_bit_is_parsed_and_flag_kept() -> None:
    data = _chain((PayloadType.NONCE, 0x80, b"n" * 16))
    msg = parse_message(data)
    assert msg.payloads == (NoncePayload(b"n" * 16, critical=True),)
    assert encode_message(msg) == data


def test_reserved_generic_header_bits_are_ignored() -> None:
    data = _chain((PayloadType.NONCE, 0x7F, b"n" * 16))
    assert parse_message(data).payloads == (NoncePayload(b"n" * 16),)


@pytest.mark.parametrize(
    ("mutate", "error", "offset"),
    [
        (lambda d: d[:20], TruncatedError, 0),
        (lambda d: d[:17] + b"\x10" + d[18:], UnsupportedVersion, 17),
        (lambda d: d[:24] + (27).to_bytes(4, "big") + d[28:], LengthError, 24),
        (lambda d: d[:24] + (len(d) + 1).to_bytes(4, "big") + d[28:], TruncatedError, 24),
        (lambda d: d + b"\x00", LengthError, 24),
        (lambda d: d[:30] + b"\x00\x03" + d[32:], LengthError, 30),  # SA payload length 3 < 4
        (lambda d: d[:30] + b"\xff\xff" + d[32:], TruncatedError, 30),  # SA payload length past the end
    ],
)
def test_broken_header_and_lengths_name_the_offset(mutate, error, offset) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as err:
        parse_message(mutate(_init_request()))
    assert err.value.offset == offset
    assert isinstance(err.value, ParseError) and isinstance(err.value, ValueError)


def test_sa_internal_lengths_are_checked() -> None:
    data = bytearray(_init_request())
    # proposal length (offset 32+2) one too large: exceeds the SA payload
    data[34:36] = (int.from_bytes(data[34:36], "big") + 1).to_bytes(2, "big")
    with pytest.raises(LengthError) as err:
        parse_message(bytes(data))
    assert err.value.payload_type == PayloadType.SA and err.value.offset == 34
    data = bytearray(_init_request())
    data[39] = 4  # proposal announces 4 transforms, holds 3
    with pytest.raises(FieldError, match="announces 4 transforms"):
        parse_message(bytes(data))
    data = bytearray(_init_request())
    data[32] = 2  # "more proposals follow" on the last one
    with pytest.raises(FieldError, match="'last' field"):
        parse_message(bytes(data))


@pytest.mark.parametrize(
    ("ptype", "body", "error", "message"),
    [
        (PayloadType.NONCE, b"n" * 15, FieldError, "nonce of 15 octets"),
        (PayloadType.NONCE, b"n" * 257, FieldError, "nonce of 257 octets"),
        (PayloadType.KE, b"\x00\x13\x00", TruncatedError, "KE payload needs 4"),
        (PayloadType.NOTIFY, b"\x00\x08\x40\x00\x01", LengthError, "SPI size 8"),
        (PayloadType.DELETE, b"\x03\x04\x00\x02\x00\x00\x00\x01", LengthError, "2 SPIs of 4 octets"),
        (PayloadType.TSI, b"\x01\x00\x00\x00\x07\x00\x00\x0c" + bytes(8), FieldError, "must be 16 octets"),
        (
            PayloadType.TSI,
            b"\x02\x00\x00\x00\x07\x00\x00\x10" + bytes(12),
            TruncatedError,
            "2 selectors announced",
        ),
        (PayloadType.TSR, b"\x00\x00\x00\x00\x00", LengthError, "1 octets after"),
        (PayloadType.EAP, b"\x01\x01\x00\x09abcd", LengthError, "EAP length 9"),
        (PayloadType.CP, b"\x01\x00\x00\x00\x00\x01\x00\x04\x0a", LengthError, "CP attribute length 4"),
        (PayloadType.SKF, b"\x00\x00\x00\x01", FieldError, "fragment 0 of 1"),
        (PayloadType.SKF, b"\x00\x03\x00\x02", FieldError, "fragment 3 of 2"),
        (PayloadType.AUTH, b"\x02\x00", TruncatedError, "AUTH payload needs 4"),
    ],
)
def test_payload_body_errors_are_precise(
    ptype: int, body: bytes, error: type[ParseError], message: str
) -> None:
    with pytest.raises(error, match=message) as err:
        parse_message(_chain((ptype, 0, body)))
    assert err.value.payload_type == ptype
    assert err.value.offset >= HEADER_LEN


def test_sk_must_be_last_and_not_nested() -> None:
    data = _chain((PayloadType.SK, 0, b"body"), (PayloadType.NONCE, 0, b"n" * 16))
    with pytest.raises(FieldError, match="not the last"):
        parse_message(data)
    msg = parse_message(_chain((PayloadType.NONCE, 0, b"n" * 16), (PayloadType.SK, 0, b"body")))
    assert msg.sk == SkPayload(0, b"body") and msg.is_encrypted
    with pytest.raises(ValueError, match="last payload"):
        encode_message(Message(HEADER, (SkPayload(0, b""), NoncePayload(b"n" * 16))))


def test_building_impossible_values_is_refused_early() -> None:
    with pytest.raises(ValueError):
        IkeHeader(b"short", bytes(8), ExchangeType.IKE_AUTH, HeaderFlags.NONE, 0)
    with pytest.raises(ValueError):
        NoncePayload(b"x" * 8)
    with pytest.raises(ValueError):
        NotifyPayload(70000)
    with pytest.raises(ValueError):
        encode_message(Message(HEADER, (NotifyPayload(NotifyType.COOKIE, b"x" * 70000),)))


def test_parse_error_message_names_payload_and_offset() -> None:
    with pytest.raises(ParseError) as err:
        parse_message(_chain((PayloadType.NONCE, 0, b"n" * 3)))
    assert str(err.value) == "nonce of 3 octets (must be 16..256) in NONCE payload at offset 32"
