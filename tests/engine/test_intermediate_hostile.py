"""Malformed IKE_INTERMEDIATE sequences from an authentic (correctly encrypted) initiator: out of order
(IKE_AUTH before the additional key exchange, a second IKE_INTERMEDIATE after the last one), missing or
wrong KE, wrong lengths, junk payloads. The responder never raises, answers only what it can decrypt-and-
verify, keeps at most the one negotiated round, and once the half-open SA ends (refusal or timeout)
nothing of it is left."""

from __future__ import annotations

import copy
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto.dh import new_key_exchange
from ikeguard.crypto.sk import make_sk_protectors
from ikeguard.engine.events import SendDatagram
from ikeguard.engine.message import decode_message
from ikeguard.engine.states import IkeState
from ikeguard.wire.header import HeaderFlags, IkeHeader, decode_header
from ikeguard.wire.iana import ExchangeType, KeId, NotifyType
from ikeguard.wire.payloads import KePayload, NotifyPayload
from ikeguard.wire.sk import encode_encrypted_message
from tests.engine.harness import Network, child, mirror, pair, psk_conn

PQ = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"


def _half_open() -> Network:
    """Both sides after IKE_SA_INIT with ke1_mlkem768 negotiated; the initiator's IKE_INTERMEDIATE is lost."""
    c = child()
    net = pair([psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=(PQ,))],
               [psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), ike_proposals=(PQ,))])

    def drop_intermediate(d: SendDatagram, side: str) -> list[SendDatagram]:
        return [] if decode_header(d.data)[0].exchange_type == ExchangeType.IKE_INTERMEDIATE else [d]

    net.filter = drop_intermediate
    net.initiate()
    net.run()
    net.filter = None
    return net


ke_payloads = st.one_of(
    st.none(),
    st.builds(lambda n: KePayload(KeId.ML_KEM_768, bytes(n)), st.sampled_from([0, 1, 1183, 1185, 1568])),
    st.builds(lambda n: KePayload(KeId.ML_KEM_768, b"\xff" * n), st.just(1184)),  # fails the modulus check
    st.just(KePayload(KeId.ML_KEM_1024, new_key_exchange(KeId.ML_KEM_1024).public_value)),  # wrong method
    st.just(KePayload(KeId.ECP_384, new_key_exchange(KeId.ECP_384).public_value)),
    st.just("valid"),
)
steps = st.lists(
    st.tuples(st.sampled_from([ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH]), ke_payloads,
              st.booleans()),
    min_size=1, max_size=4,
)


@settings(max_examples=int(os.environ.get("ENGINE_FUZZ_EXAMPLES", "60")), deadline=None)
@given(steps)
def test_malformed_intermediate_sequences_leave_no_state(seq: list) -> None:  # type: ignore[type-arg]
    net = _half_open()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert b_sa.state is IkeState.HALF_OPEN
    assert b_sa.intermediate is not None and not b_sa.intermediate.complete
    assert a_sa.crypto is not None
    mid = b_sa.window.expected_peer_id
    sent_valid_round = False
    for exchange, ke, junk in seq:
        sent_valid_round |= exchange is ExchangeType.IKE_INTERMEDIATE and ke == "valid"
        payloads: list = []  # type: ignore[type-arg]
        if ke == "valid":
            payloads.append(KePayload(KeId.ML_KEM_768, new_key_exchange(KeId.ML_KEM_768).public_value))
        elif ke is not None:
            payloads.append(ke)
        if junk:
            payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        header = IkeHeader(a_sa.spi_i, a_sa.spi_r, exchange, HeaderFlags.INITIATOR, mid)
        data = encode_encrypted_message(header, payloads, a_sa.crypto.outbound)
        keys_before = b_sa.crypto
        mark = len(net.b.manager.ctx.outputs)
        net.b.manager.receive_datagram(data, net.b.endpoint, net.a.endpoint, net.now)
        for event in list(net.b.manager.ctx.outputs)[mark:]:
            if isinstance(event, SendDatagram):
                # an answer is protected with the keys the request was (the update follows it)
                assert keys_before is not None
                answer = decode_message(event.data, a_sa.crypto.inbound, None)
                assert answer.response and answer.message_id == mid
        if b_sa.state is IkeState.CLOSED:
            break
        if b_sa.window.expected_peer_id != mid:
            mid = b_sa.window.expected_peer_id
        assert b_sa.state is IkeState.HALF_OPEN
        assert b_sa.intermediate is not None and b_sa.intermediate.done <= 1
        if b_sa.intermediate.complete:
            assert sent_valid_round
    net.collect()
    net.in_flight.clear()
    net.advance(400)  # the half-open timeout ends whatever is left
    assert net.b.manager.ike_sas() == [] or all(sa.state is IkeState.CLOSED for sa in net.b.manager.ike_sas())
    assert b_sa.crypto is None or not any(bytes(b_sa.crypto.keys.sk_d))  # wiped


def test_ike_auth_before_the_additional_exchange_is_refused_and_closes() -> None:
    net = _half_open()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.crypto is not None
    header = IkeHeader(a_sa.spi_i, a_sa.spi_r, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    data = encode_encrypted_message(header, [NotifyPayload(NotifyType.INITIAL_CONTACT)], a_sa.crypto.outbound)
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(data, net.b.endpoint, net.a.endpoint, net.now)
    (answer,) = [e for e in list(net.b.manager.ctx.outputs)[mark:] if isinstance(e, SendDatagram)]
    notify = decode_message(answer.data, a_sa.crypto.inbound, None).error_notify()
    assert notify is not None and notify.notify_type == NotifyType.INVALID_SYNTAX
    assert b_sa.state is IkeState.CLOSED


def test_a_second_intermediate_after_the_last_round_is_refused() -> None:
    net = _half_open()
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.crypto is not None and b_sa.intermediate is not None
    header = IkeHeader(a_sa.spi_i, a_sa.spi_r, ExchangeType.IKE_INTERMEDIATE, HeaderFlags.INITIATOR, 1)
    ek = new_key_exchange(KeId.ML_KEM_768).public_value
    net.b.manager.receive_datagram(encode_encrypted_message(header, [KePayload(KeId.ML_KEM_768, ek)],
                                                            a_sa.crypto.outbound),
                                   net.b.endpoint, net.a.endpoint, net.now)
    assert b_sa.intermediate.complete and b_sa.state is IkeState.HALF_OPEN
    # the next request must use the updated keys (the initiator's side of them); an extra round is refused
    assert b_sa.crypto is not None
    keys = copy.deepcopy(b_sa.crypto.keys)  # the responder wipes its own when it closes
    initiator_out, initiator_in = make_sk_protectors(b_sa.crypto.encr, b_sa.crypto.integ, keys, True)
    header2 = IkeHeader(a_sa.spi_i, a_sa.spi_r, ExchangeType.IKE_INTERMEDIATE, HeaderFlags.INITIATOR, 2)
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(encode_encrypted_message(header2, [KePayload(KeId.ML_KEM_768, ek)],
                                                            initiator_out),
                                   net.b.endpoint, net.a.endpoint, net.now)
    (answer,) = [e for e in list(net.b.manager.ctx.outputs)[mark:] if isinstance(e, SendDatagram)]
    notify = decode_message(answer.data, initiator_in, None).error_notify()
    assert notify is not None and notify.notify_type == NotifyType.INVALID_SYNTAX
    assert b_sa.state is IkeState.CLOSED
