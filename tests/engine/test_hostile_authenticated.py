"""A rogue but authenticated peer: random payload sets, correctly encrypted with the IKE SA's keys, as
CREATE_CHILD_SA and INFORMATIONAL requests. The engine answers (or drops) without raising, the answer
decrypts, and the IKE SA stays consistent."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto.dh import new_key_exchange
from ikeguard.engine.events import SendDatagram
from ikeguard.engine.message import decode_message
from ikeguard.engine.states import IkeState
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, NotifyType, ProtocolId, TransformType
from ikeguard.wire.payloads import DeletePayload, KePayload, NoncePayload, NotifyPayload
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.sk import encode_encrypted_message
from ikeguard.wire.transforms import Transform
from ikeguard.wire.ts import TrafficSelector, TsiPayload, TsrPayload
from tests.engine.harness import esp, ike, psk_pair

GOOD_ESP = esp("aes256gcm16-ecp256")[0]
GOOD_IKE = ike("aes256gcm16-prfsha256-ecp256")[0]

transforms = st.builds(
    Transform,
    st.sampled_from(
        [TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE, TransformType.ESN]
    ),
    st.sampled_from([0, 1, 12, 14, 19, 20, 31, 65535]),
    st.sampled_from([None, 128, 256]),
)
proposals = st.one_of(
    st.builds(Proposal.from_spec, st.integers(1, 3), st.just(GOOD_ESP), st.binary(min_size=0, max_size=8)),
    st.builds(Proposal.from_spec, st.integers(1, 3), st.just(GOOD_IKE), st.binary(min_size=0, max_size=8)),
    st.builds(
        Proposal,
        st.integers(0, 255),
        st.sampled_from([1, 3, 9]),
        st.binary(max_size=8),
        st.lists(transforms, max_size=6).map(tuple),
    ),
)
addresses = st.sampled_from(
    ["10.1.0.0", "10.1.0.255", "10.2.0.0", "10.2.0.255", "0.0.0.0", "255.255.255.255"]
)
selectors = st.builds(
    lambda a, b, p, s, e: TrafficSelector(
        ipaddress.ip_address(min(a, b, key=ipaddress.ip_address.__call__)),
        ipaddress.ip_address(max(a, b, key=ipaddress.ip_address.__call__)),
        p,
        s,
        e,
    ),
    addresses,
    addresses,
    st.sampled_from([0, 6, 17]),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
payload = st.one_of(
    st.builds(lambda ps: SaPayload(tuple(ps)), st.lists(proposals, min_size=1, max_size=2)),
    st.builds(KePayload, st.sampled_from([19, 20, 31]), st.binary(min_size=0, max_size=70)),
    st.just(KePayload(19, new_key_exchange(19).public_value)),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=40)),
    st.builds(lambda s: TsiPayload(tuple(s)), st.lists(selectors, max_size=2)),
    st.builds(lambda s: TsrPayload(tuple(s)), st.lists(selectors, max_size=2)),
    st.builds(
        NotifyPayload,
        st.sampled_from(list(NotifyType)),
        st.binary(max_size=12),
        st.sampled_from([0, ProtocolId.ESP]),
        st.sampled_from([b"", b"\0\0\0\1"]),
    ),
    st.builds(
        lambda p, spis: DeletePayload(p, tuple(spis)),
        st.sampled_from([ProtocolId.ESP]),
        st.lists(st.binary(min_size=4, max_size=4), max_size=3),
    ),
    st.just(DeletePayload(ProtocolId.IKE)),
)


@settings(max_examples=int(__import__("os").environ.get("ENGINE_FUZZ_EXAMPLES", "200")), deadline=None)
@given(
    st.sampled_from([ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL]),
    st.lists(payload, max_size=6),
    st.booleans(),
)
def test_rogue_authenticated_requests(exchange: ExchangeType, payloads: list, real_spi: bool) -> None:  # type: ignore[type-arg]
    net = psk_pair()
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.crypto is not None
    if real_spi:  # aim at the real Child SA
        spi = next(iter(a_sa.children.values())).spi_in.to_bytes(4, "big")
        payloads = [NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, spi), *payloads]
    header = IkeHeader(a_sa.spi_i, a_sa.spi_r, exchange, HeaderFlags.INITIATOR, b_sa.window.expected_peer_id)
    try:
        data = encode_encrypted_message(header, payloads, a_sa.crypto.outbound)
    except ValueError:
        return
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(data, net.b.endpoint, net.a.endpoint, net.now)
    out = list(net.b.manager.ctx.outputs)[mark:]
    for event in out:
        if isinstance(event, SendDatagram) and b_sa.crypto is not None and b_sa.state is not IkeState.CLOSED:
            answer = decode_message(event.data, a_sa.crypto.inbound, None)
            assert answer.response
    assert b_sa.state in (IkeState.ESTABLISHED, IkeState.CLOSED, IkeState.DELETING, IkeState.REKEYED)
    net.collect()
    net.in_flight.clear()
    net.advance(400)  # timers after the hostile request must not raise either
