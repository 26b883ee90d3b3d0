"""Structurally valid but hostile IKE_SA_INIT requests (random proposals, KE groups and values, nonces,
notifies) against a responder: it answers with an RFC 7296 notify or a proper response, never raises,
and keeps no state for a refused request."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto.dh import new_key_exchange
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.events import Endpoint, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, NotifyType, TransformType
from ikeguard.wire.message import Message, encode_message, parse_message
from ikeguard.wire.payloads import KePayload, NoncePayload, NotifyPayload
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import Transform
from tests.engine.harness import FAST, child, ike, psk_conn

ME = Endpoint(ipaddress.ip_address("198.51.100.1"), 500)
PEER = Endpoint(ipaddress.ip_address("203.0.113.9"), 500)

transforms = st.builds(
    Transform,
    st.sampled_from(
        [TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE, TransformType.ESN, 9]
    ),
    st.sampled_from([0, 1, 2, 3, 5, 12, 14, 19, 20, 20, 21, 28, 31, 1026, 65535]),
    st.sampled_from([None, 128, 256, 7]),
)
GOOD = Proposal.from_spec(1, ike("aes256gcm16-prfsha256-ecp256")[0])
proposals = st.one_of(
    st.just(GOOD),
    st.builds(
        Proposal,
        st.integers(0, 255),
        st.sampled_from([1, 1, 1, 3, 7]),
        st.binary(max_size=8),
        st.lists(transforms, max_size=8).map(tuple),
    ),
)
ke_payloads = st.one_of(
    st.just(KePayload(19, new_key_exchange(19).public_value)),
    st.builds(
        KePayload,
        st.sampled_from([19, 20, 21, 31, 14, 0, 999]),
        st.one_of(st.binary(max_size=140), st.just(b"\x00" * 64), st.just(b"\xff" * 96)),
    ),
)
notifies = st.builds(NotifyPayload, st.sampled_from(list(NotifyType)), st.binary(max_size=40))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(proposals, min_size=0, max_size=3),
    st.one_of(st.none(), ke_payloads),
    st.one_of(st.none(), st.binary(min_size=16, max_size=256)),
    st.lists(notifies, max_size=4),
    st.binary(min_size=8, max_size=8),
)
def test_hostile_ike_sa_init(
    props: list[Proposal], ke: KePayload | None, nonce: bytes | None, extra: list[NotifyPayload], spi: bytes
) -> None:
    gw = IkeManager(
        [psk_conn("tunnel", "b.example.net", "a.example.net", (child(),))],
        FAST,
        random=DeterministicRandom(3),
    )
    payloads: list = [SaPayload(tuple(props))] if props else []  # type: ignore[type-arg]
    payloads += [ke] if ke is not None else []
    payloads += [NoncePayload(nonce)] if nonce is not None else []
    payloads += extra
    header = IkeHeader(spi, b"\0" * 8, ExchangeType.IKE_SA_INIT, HeaderFlags.INITIATOR, 0)
    try:
        data = encode_message(Message(header, tuple(payloads)))
    except ValueError:
        return  # not encodable (e.g. a bad nonce length): nothing to send
    gw.receive_datagram(data, ME, PEER, 0.0)
    gw.receive_datagram(data, ME, PEER, 0.5)  # a retransmission
    for event in gw.events():
        if isinstance(event, SendDatagram):
            reply = parse_message(event.data)
            assert reply.header.is_response and reply.header.spi_i == spi
            errors = [
                p for p in reply.payloads if isinstance(p, NotifyPayload) and int(p.notify_type) < 16384
            ]
            if errors:  # refused: no state kept
                assert gw.half_open_count() == 0
                assert errors[0].notify_type in (
                    NotifyType.NO_PROPOSAL_CHOSEN,
                    NotifyType.INVALID_KE_PAYLOAD,
                    NotifyType.INVALID_SYNTAX,
                )
    assert gw.half_open_count() <= 1
