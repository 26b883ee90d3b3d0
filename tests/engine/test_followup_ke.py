"""RFC 9370 §2.2.4: CREATE_CHILD_SA with additional key exchanges in IKE_FOLLOWUP_KE, between two in-memory
engines: a new Child SA and Child SA rekeys with ``ke1_mlkem768`` PFS started by either side, the exchanges
and message IDs on the wire, nothing installed before the last follow-up, and an unknown link refused with
STATE_NOT_FOUND."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.engine.events import SendDatagram
from ikeguard.engine.message import decode_message
from ikeguard.wire.header import HeaderFlags, IkeHeader, decode_header
from ikeguard.wire.iana import ExchangeType, KeId, NotifyType
from ikeguard.wire.payloads import KePayload, NotifyPayload
from ikeguard.wire.sk import encode_encrypted_message
from tests.engine.test_rekey import assert_consistent, only_child, up

PQ_ESP = ("aes256gcm16-ecp256-ke1_mlkem768",)


def _exchanges(net, since: int = 0) -> list[tuple[str, str, int, bool]]:  # type: ignore[no-untyped-def]
    out = []
    for side in (net.a, net.b):
        for e in side.events[since:]:
            if isinstance(e, SendDatagram):
                h = decode_header(e.data)[0]
                out.append((side.name, ExchangeType(int(h.exchange_type)).name, h.message_id, h.is_response))
    return out


@pytest.mark.parametrize("side", ["a", "b"])
def test_child_rekey_with_ml_kem_followup(side: str) -> None:
    net = up(proposals=PQ_ESP)
    assert_consistent(net)
    sa, old = only_child(net, side)
    starter = net.a if side == "a" else net.b
    mark = len(starter.events)
    starter.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    _, new = only_child(net, side)
    assert new.spi_in != old.spi_in and new.proposal_text == PQ_ESP[0]
    sent = [(n, m) for s, n, m, r in _exchanges(net) if s == side and not r]
    i = max(k for k, (n, _) in enumerate(sent) if n == "CREATE_CHILD_SA")
    assert [n for n, _ in sent[i:]] == ["CREATE_CHILD_SA", "IKE_FOLLOWUP_KE", "INFORMATIONAL"]  # then Delete
    assert sent[i + 1][1] == sent[i][1] + 1  # consecutive message IDs
    assert starter.audits("child.rekeyed")
    assert len(starter.events) > mark


def test_new_child_sa_with_followup() -> None:
    net = up(proposals=PQ_ESP, extra=True)
    sa = net.a.manager.ike_sas()[0]
    mark = len(net.a.events)
    net.a.manager.create_child(sa.uniqueid, "web", net.now)
    net.run()
    assert_consistent(net, children=2)  # both ends derived the same keys from SK(0) | SK(1)
    assert [n for s, n, _, r in _exchanges(net, mark) if s == "a" and not r] == ["CREATE_CHILD_SA",
                                                                              "IKE_FOLLOWUP_KE"]


def test_responder_installs_nothing_before_the_last_followup_and_refuses_unknown_links() -> None:
    net = up(proposals=PQ_ESP)
    sa, old = only_child(net, "a")
    b_sa = net.b.manager.ike_sas()[0]

    def drop_followup(d: SendDatagram, side: str) -> list[SendDatagram]:
        return [] if decode_header(d.data)[0].exchange_type == ExchangeType.IKE_FOLLOWUP_KE else [d]

    net.filter = drop_followup
    installs = len(net.b.installs())
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    assert len(net.b.installs()) == installs and len(b_sa.followups) == 1
    # a follow-up naming another link: STATE_NOT_FOUND, the pending one stays
    a_crypto = sa.crypto
    assert a_crypto is not None
    header = IkeHeader(sa.spi_i, sa.spi_r, ExchangeType.IKE_FOLLOWUP_KE, HeaderFlags.INITIATOR,
                       b_sa.window.expected_peer_id)
    data = encode_encrypted_message(header, [KePayload(KeId.ML_KEM_768, b"\0" * 1184),
                                             NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, b"nolink!!")],
                                    a_crypto.outbound)
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(data, net.b.endpoint, net.a.endpoint, net.now)
    (answer,) = [e for e in list(net.b.manager.ctx.outputs)[mark:] if isinstance(e, SendDatagram)]
    notify = decode_message(answer.data, a_crypto.inbound, None).error_notify()
    assert notify is not None and notify.notify_type == NotifyType.STATE_NOT_FOUND
    assert len(b_sa.followups) == 1 and len(net.b.installs()) == installs


@pytest.mark.parametrize("side", ["a", "b"])
def test_ike_rekey_with_ml_kem_followup(side: str) -> None:
    from ikeguard.engine.states import IkeState
    from tests.engine.harness import child, mirror, pair, psk_conn

    ike_pq = ("aes256gcm16-prfsha384-ecp384-ke1_mlkem768",)
    c = child(proposals=PQ_ESP)
    net = pair([psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=ike_pq)],
               [psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), ike_proposals=ike_pq)])
    net.initiate()
    net.run()
    starter = net.a if side == "a" else net.b
    (old,) = starter.manager.ike_sas()
    mark = len(starter.events)
    starter.manager.rekey_ike(old.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    (a_new,), (b_new,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_new.state is IkeState.ESTABLISHED and (a_new.spi_i, a_new.spi_r) != (old.spi_i, old.spi_r)
    assert a_new.crypto is not None and b_new.crypto is not None
    assert bytes(a_new.crypto.keys.sk_d) == bytes(b_new.crypto.keys.sk_d)
    assert a_new.proposal_text == ike_pq[0]
    sent = [n for s, n, _, r in _exchanges(net, 0) if s == side and not r]
    i = max(k for k, n in enumerate(sent) if n == "CREATE_CHILD_SA")
    assert sent[i:i + 2] == ["CREATE_CHILD_SA", "IKE_FOLLOWUP_KE"]
    assert len(starter.events) > mark
    # the rekeyed SA still rekeys its Child SA with ML-KEM follow-ups
    sa, ch = only_child(net, side)
    starter.manager.rekey_child(sa.uniqueid, ch.uniqueid, net.now)
    net.run()
    assert_consistent(net)


followup_payloads = st.lists(st.one_of(
    st.builds(lambda n: KePayload(KeId.ML_KEM_768, bytes(n)), st.sampled_from([0, 1183, 1184, 1568])),
    st.just(KePayload(KeId.ML_KEM_768, b"\xff" * 1184)),  # fails the FIPS 203 modulus check
    st.just(KePayload(KeId.ECP_256, b"\x01" * 64)),
    st.builds(lambda d: NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, d), st.binary(max_size=12)),
    st.just("link"),
), max_size=3)


@settings(max_examples=int(os.environ.get("ENGINE_FUZZ_EXAMPLES", "60")), deadline=None)
@given(st.lists(followup_payloads, min_size=1, max_size=3))
def test_malformed_followups_install_nothing_and_leak_nothing(requests: list) -> None:  # type: ignore[type-arg]
    """Authentic IKE_FOLLOWUP_KE requests with wrong, missing or short KE, unknown or real links: no
    exception, every answer decrypts, nothing is installed unless a valid KE names the real link, pending
    links stay bounded, and the IKE SA stays established."""
    from ikeguard.engine.tasks.followup_ke import MAX_PENDING

    net = up(proposals=PQ_ESP)
    sa, old = only_child(net, "a")
    b_sa = net.b.manager.ike_sas()[0]
    net.filter = lambda d, side: ([] if decode_header(d.data)[0].exchange_type == ExchangeType.IKE_FOLLOWUP_KE
                                  else [d])
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    net.filter = None
    (link,) = b_sa.followups
    installs = len(net.b.installs())
    sent_valid = False
    assert sa.crypto is not None
    for payloads in requests:
        real = NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, link)
        wire = [real if p == "link" else p for p in payloads]
        header = IkeHeader(sa.spi_i, sa.spi_r, ExchangeType.IKE_FOLLOWUP_KE, HeaderFlags.INITIATOR,
                           b_sa.window.expected_peer_id)
        mark = len(net.b.manager.ctx.outputs)
        net.b.manager.receive_datagram(encode_encrypted_message(header, wire, sa.crypto.outbound),
                                       net.b.endpoint, net.a.endpoint, net.now)
        for event in list(net.b.manager.ctx.outputs)[mark:]:
            if isinstance(event, SendDatagram):
                assert decode_message(event.data, sa.crypto.inbound, None).response
        assert len(b_sa.followups) <= MAX_PENDING
        kes = [p for p in wire if isinstance(p, KePayload)]
        sent_valid |= ("link" in payloads and bool(kes) and int(kes[0].group) == KeId.ML_KEM_768
                       and kes[0].data == bytes(1184))  # an all-zero ek passes the FIPS 203 checks
        if len(net.b.installs()) != installs:
            assert sent_valid  # only a well-formed KE under the real link completes the rekey
            assert link not in b_sa.followups
    assert b_sa.state.value == "established"
    net.collect()
    net.in_flight.clear()
    net.advance(400)
