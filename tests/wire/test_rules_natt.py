"""Per-exchange payload rules (RFC 7296 §1.2-1.5) and port-4500 framing (RFC 3948)."""

from __future__ import annotations

import pytest

from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import AuthMethod, ExchangeType, IdType, KeId, NotifyType, PayloadType, ProtocolId
from ikeguard.wire.message import Message, encode_message, parse_message
from ikeguard.wire.natt import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    Esp,
    Ike,
    Keepalive,
    add_non_esp_marker,
    classify_udp4500,
)
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    DeletePayload,
    IdiPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkPayload,
    UnknownPayload,
)
from ikeguard.wire.proposal_string import parse_proposal
from ikeguard.wire.rules import RULES, MessageRole, check_exchange_rules
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.ts import TrafficSelector, TsiPayload, TsrPayload

REQ, RESP = MessageRole.REQUEST, MessageRole.RESPONSE
SA = SaPayload((Proposal.from_spec(1, parse_proposal("aes256gcm16-prfsha384-ecp384", ProtocolId.IKE)),))
KE = KePayload(KeId.ECP_384, b"\x04" * 96)
NONCE = NoncePayload(b"n" * 32)
TSI = TsiPayload((TrafficSelector.from_network("198.51.100.0/24"),))
TSR = TsrPayload((TrafficSelector.from_network("203.0.113.0/24"),))


def _msg(
    exchange: ExchangeType, role: MessageRole, payloads: tuple[Payload, ...], encrypted: bool
) -> Message:
    flags = HeaderFlags.INITIATOR | (HeaderFlags.RESPONSE if role is RESP else HeaderFlags.NONE)
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, exchange, flags, 0)
    if encrypted:
        return Message(header, (SkPayload(0, b""),), payloads)
    return Message(header, payloads)


@pytest.mark.parametrize(
    ("exchange", "role", "payloads", "encrypted"),
    [
        (
            ExchangeType.IKE_SA_INIT,
            REQ,
            (SA, KE, NONCE, NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP)),
            False,
        ),
        (ExchangeType.IKE_SA_INIT, RESP, (NotifyPayload(NotifyType.COOKIE, b"c" * 16),), False),
        (ExchangeType.IKE_SA_INIT, RESP, (NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, b"\x00\x14"),), False),
        (
            ExchangeType.IKE_AUTH,
            REQ,
            (IdiPayload(IdType.FQDN, b"a"), AuthPayload(AuthMethod.PSK, b"x"), SA, TSI, TSR),
            True,
        ),
        (
            ExchangeType.IKE_AUTH,
            REQ,
            (IdiPayload(IdType.FQDN, b"a"),),
            True,
        ),  # EAP start: no AUTH yet (§2.16)
        (ExchangeType.IKE_AUTH, RESP, (NotifyPayload(NotifyType.AUTHENTICATION_FAILED),), True),
        (ExchangeType.CREATE_CHILD_SA, REQ, (SA, NONCE, KE, TSI, TSR), True),
        (
            ExchangeType.CREATE_CHILD_SA,
            REQ,
            (NotifyPayload(NotifyType.REKEY_SA), SA, NONCE, KE),
            True,
        ),  # IKE rekey
        (ExchangeType.CREATE_CHILD_SA, RESP, (NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN),), True),
        (ExchangeType.INFORMATIONAL, REQ, (), True),  # liveness check
        (ExchangeType.INFORMATIONAL, REQ, (DeletePayload(ProtocolId.IKE),), True),
        (
            ExchangeType.INFORMATIONAL,
            REQ,
            (UnknownPayload(150, b"?"),),
            True,
        ),  # unknown non-critical: skipped
    ],
)
def test_valid_exchanges_pass(
    exchange: ExchangeType, role: MessageRole, payloads: tuple[Payload, ...], encrypted: bool
) -> None:
    assert check_exchange_rules(_msg(exchange, role, payloads, encrypted), role) is None


@pytest.mark.parametrize(
    ("exchange", "role", "payloads", "encrypted", "bad_type", "words"),
    [
        (ExchangeType.IKE_SA_INIT, REQ, (SA, NONCE), False, PayloadType.KE, "lacks the KE"),
        (
            ExchangeType.IKE_SA_INIT,
            REQ,
            (SA, KE, NONCE, IdiPayload(IdType.FQDN, b"a")),
            False,
            PayloadType.IDI,
            "not allowed",
        ),
        (ExchangeType.IKE_SA_INIT, REQ, (SA, KE, NONCE), True, PayloadType.SK, "must not be encrypted"),
        (
            ExchangeType.IKE_AUTH,
            REQ,
            (IdiPayload(IdType.FQDN, b"a"),),
            False,
            PayloadType.SK,
            "must be encrypted",
        ),
        (
            ExchangeType.IKE_AUTH,
            REQ,
            (IdiPayload(IdType.FQDN, b"a"), SA, TSI),
            True,
            PayloadType.TSR,
            "TSR is missing",
        ),
        (ExchangeType.IKE_AUTH, RESP, (SA, SA, TSI, TSR), True, PayloadType.SA, "more than one SA"),
        (ExchangeType.CREATE_CHILD_SA, REQ, (SA, KE, TSI, TSR), True, PayloadType.NONCE, "lacks the NONCE"),
        (ExchangeType.INFORMATIONAL, REQ, (SA,), True, PayloadType.SA, "not allowed in INFORMATIONAL"),
        (
            ExchangeType.IKE_FOLLOWUP_KE,
            REQ,
            (NotifyPayload(NotifyType.COOKIE),),
            True,
            PayloadType.KE,
            "lacks the KE",
        ),
    ],
)
def test_violations_name_the_payload(
    exchange: ExchangeType,
    role: MessageRole,
    payloads: tuple[Payload, ...],
    encrypted: bool,
    bad_type: int,
    words: str,
) -> None:
    violation = check_exchange_rules(_msg(exchange, role, payloads, encrypted), role)
    assert violation is not None
    assert violation.payload_type == bad_type
    assert words in violation.reason
    assert violation.notify == NotifyType.INVALID_SYNTAX
    assert violation.source.startswith("RFC")


def test_payloads_outside_sk_in_an_encrypted_exchange_are_refused() -> None:
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    msg = Message(header, (IdiPayload(IdType.FQDN, b"a"), SkPayload(PayloadType.AUTH, b"x")))
    violation = check_exchange_rules(msg, REQ)
    assert (
        violation is not None
        and violation.payload_type == PayloadType.IDI
        and "outside the SK" in violation.reason
    )


def test_role_must_match_the_response_flag_and_unknown_exchanges_are_named() -> None:
    msg = _msg(ExchangeType.INFORMATIONAL, REQ, (), True)
    violation = check_exchange_rules(msg, RESP)
    assert violation is not None and "R flag" in violation.reason
    odd = Message(IkeHeader(bytes(8), bytes(8), 99, HeaderFlags.NONE, 0), ())
    violation = check_exchange_rules(odd, REQ)
    assert violation is not None and "unknown exchange type 99" in violation.reason


def test_unopened_encrypted_message_passes_the_outer_check_only() -> None:
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.INFORMATIONAL, HeaderFlags.INITIATOR, 2)
    assert check_exchange_rules(Message(header, (SkPayload(0, b"opaque"),)), REQ) is None


def test_every_exchange_type_has_request_and_response_rules() -> None:
    for exchange in ExchangeType:
        assert (exchange, REQ) in RULES and (exchange, RESP) in RULES


# --- RFC 3948 framing --------------------------------------------------------------------------------------


def test_keepalive_ike_and_esp_are_told_apart() -> None:
    header = IkeHeader(b"\x01" * 8, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlags.INITIATOR, 0)
    ike = encode_message(Message(header, (NONCE,)))
    framed = add_non_esp_marker(ike)
    assert framed == NON_ESP_MARKER + ike
    kind = classify_udp4500(framed)
    assert isinstance(kind, Ike) and parse_message(kind.data).payloads == (NONCE,)
    assert classify_udp4500(NAT_KEEPALIVE) == Keepalive()
    esp = classify_udp4500(b"\x12\x34\x56\x78" + bytes(12))
    assert isinstance(esp, Esp) and esp.spi == 0x12345678


@pytest.mark.parametrize("datagram", [b"", b"\x00", b"\xff\xff", b"\x00\x00\x00", b"\x01\x02\x03\x04\x05"])
def test_impossible_port_4500_datagrams_are_parse_errors(datagram: bytes) -> None:
    with pytest.raises(ParseError):
        classify_udp4500(datagram)


def test_marker_needs_a_whole_ike_message() -> None:
    with pytest.raises(ValueError):
        add_non_esp_marker(b"\x00" * 10)
