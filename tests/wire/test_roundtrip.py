"""parse(build(x)) == x for every payload type, headers and whole messages (Hypothesis)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import EncrId, ExchangeType, NotifyType, PayloadType, ProtocolId, TransformType
from ikeguard.wire.message import Message, decode_payloads, encode_message, encode_payloads, parse_message
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import DeletePayload, NotifyPayload, UnknownPayload
from ikeguard.wire.proposal_string import parse_proposal
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import Transform
from ikeguard.wire.ts import TrafficSelector, TsiPayload

from . import strategies as s

PER_TYPE = settings(max_examples=120, derandomize=True, deadline=None)


def _chain_roundtrip(payload: Payload) -> None:
    first, data = encode_payloads([payload])
    assert first == payload.type
    assert decode_payloads(data, first) == (payload,)
    # and once more inside a chain, between two other payloads
    chain = (NotifyPayload(NotifyType.INITIAL_CONTACT), payload, UnknownPayload(200, b"x"))
    first, data = encode_payloads(chain)
    assert decode_payloads(data, first) == chain


@pytest.mark.parametrize(
    "strategy",
    [
        s.sa_payloads,
        s.ke_payloads,
        s.idi_payloads,
        s.idr_payloads,
        s.cert_payloads,
        s.certreq_payloads,
        s.auth_payloads,
        s.nonce_payloads,
        s.notify_payloads,
        s.delete_payloads,
        s.vendor_payloads,
        s.tsi_payloads,
        s.tsr_payloads,
        s.cp_payloads,
        s.eap_payloads(),
        s.unknown_payloads,
    ],
    ids=lambda st_: repr(st_)[:40],
)
def test_every_payload_type_round_trips(strategy: st.SearchStrategy[Payload]) -> None:
    @PER_TYPE
    @given(strategy)
    def check(payload: Payload) -> None:
        _chain_roundtrip(payload)

    check()


@settings(max_examples=150, derandomize=True, deadline=None)
@given(s.sk_payloads)
def test_sk_payload_round_trips_as_last_payload(sk: Payload) -> None:
    header = IkeHeader(bytes(8), bytes(8), ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    msg = Message(header, (sk,))
    assert parse_message(encode_message(msg)) == msg


@settings(max_examples=150, derandomize=True, deadline=None)
@given(s.skf_payloads)
def test_skf_payload_round_trips_as_last_payload(skf: Payload) -> None:
    header = IkeHeader(bytes(8), bytes(8), ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    msg = Message(header, (NotifyPayload(NotifyType.COOKIE, b"c" * 8), skf))
    assert parse_message(encode_message(msg)) == msg


@settings(max_examples=300, derandomize=True, deadline=None)
@given(s.messages())
def test_whole_messages_round_trip_and_re_encode_identically(msg: Message) -> None:
    data = encode_message(msg)
    parsed = parse_message(data)
    assert parsed == msg
    assert encode_message(parsed) == data
    assert int.from_bytes(data[24:28], "big") == len(data)


def test_ipv4_and_ipv6_selectors_encode_as_rfc_7296_describes() -> None:
    v4 = TrafficSelector.from_network("192.0.2.0/24", 6, (443, 443))
    v6 = TrafficSelector.from_network("2001:db8:10::/64")
    payload = TsiPayload((v4, v6))
    body = payload.encode_body()
    assert body[:4] == b"\x02\x00\x00\x00"
    assert body[4:20] == bytes.fromhex("07 06 0010 01bb 01bb c0000200 c00002ff")
    assert body[20:24] == bytes.fromhex("08 00 0028")
    assert body[24:28] == bytes.fromhex("0000 ffff")
    assert body[28:44] == IPv6Address("2001:db8:10::").packed
    assert IPv4Address("192.0.2.255") == v4.end_addr
    first, data = encode_payloads([payload])
    assert decode_payloads(data, first) == (payload,)


def test_sa_payload_from_proposal_string_encodes_the_key_length_attribute() -> None:
    spec = parse_proposal("aes256gcm16-prfsha384-ecp384", ProtocolId.IKE)
    sa = SaPayload((Proposal.from_spec(1, spec),))
    body = sa.encode_body()
    # proposal: last, reserved, length 36, #1, IKE, SPI size 0, 3 transforms
    assert body[:8] == bytes.fromhex("00 00 0024 01 01 00 03")
    # ENCR AES-GCM-16 with Key Length 256 as a TV attribute (AF bit set, type 14)
    assert body[8:20] == bytes.fromhex("03 00 000c 01 00 0014 800e 0100")
    first, data = encode_payloads([sa])
    (parsed,) = decode_payloads(data, first)
    assert isinstance(parsed, SaPayload)
    assert parsed.proposals[0].to_spec() == spec


def test_unknown_transform_type_id_and_attribute_survive() -> None:
    t = Transform(99, 4242, None, ())
    t2 = Transform(TransformType.ENCR, EncrId.AES_CBC, 128)
    sa = SaPayload((Proposal(7, 200, b"\x01\x02", (t, t2)),))
    first, data = encode_payloads([sa])
    assert decode_payloads(data, first) == (sa,)


def test_delete_payload_for_child_sas_lists_four_octet_spis() -> None:
    d = DeletePayload(ProtocolId.ESP, (b"\x01\x02\x03\x04", b"\xaa\xbb\xcc\xdd"))
    assert d.encode_body() == bytes.fromhex("03 04 0002 01020304 aabbccdd")
    assert DeletePayload(ProtocolId.IKE).encode_body() == bytes.fromhex("01 00 0000")


def test_header_flags_and_length_are_written_by_the_encoder() -> None:
    header = IkeHeader(b"\x11" * 8, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlags.INITIATOR, 0)
    data = encode_message(Message(header, (NotifyPayload(NotifyType.COOKIE, b"abcd"),)))
    assert data[16] == PayloadType.NOTIFY
    assert data[17] == 0x20
    assert data[18] == 34 and data[19] == 0x08
    assert int.from_bytes(data[24:28], "big") == len(data) == HEADER_LEN + 4 + 8
