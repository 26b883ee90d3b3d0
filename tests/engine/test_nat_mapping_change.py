"""A NAT in front of a MOBIKE initiator re-maps it (new public port): found with NAT-D in a liveness check
and followed with UPDATE_SA_ADDRESSES (RFC 4555 §3.5); answers go back to where a request came from
(RFC 7296 §2.11). Found against strongSwan through a real NAT (tests/interop/test_ikeguard_nat.py)."""

from __future__ import annotations

from ikeguard.engine.events import Endpoint, SendDatagram
from ikeguard.engine.states import IkeState
from ikeguard.wire.iana import NotifyType
from tests.engine.harness import A_ADDR, NAT_PUBLIC, Network, child, mirror, pair, psk_conn


def _nat_pair(b_dpd: float = 7.0, **a_kw: object) -> Network:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), dpd_delay=5.0, **a_kw)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), dpd_delay=b_dpd)
    net = pair([a], [b], nat_a=True)
    net.initiate()
    net.run()
    return net


def _remap(net: Network, offset: int) -> None:
    """The NAT forgets its mappings and maps a's ports to ``offset + port`` from now on."""
    net.nat = lambda ep: Endpoint(NAT_PUBLIC, offset + ep.port) if ep.address == A_ADDR else ep  # type: ignore[method-assign]
    net.unnat = lambda ep: (Endpoint(A_ADDR, ep.port - offset) if ep.address == NAT_PUBLIC  # type: ignore[method-assign]
                            and ep.port - offset in (500, 4500) else Endpoint(ep.address, 1))
    # whatever b still sends to the old mapping is lost at the NAT
    net.filter = lambda d, side: ([] if side == "b" and d.remote.address == NAT_PUBLIC
                                  and d.remote.port - offset not in (500, 4500) else [d])


def test_mobike_initiator_behind_nat_follows_a_mapping_change() -> None:
    net = _nat_pair()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.peer.mobike and a_sa.nat_local and b_sa.remote == Endpoint(NAT_PUBLIC, 44500)
    net.advance(6)  # a's first DPD learns how the NAT maps 4500 (no change yet: nothing moves)
    assert b_sa.remote == Endpoint(NAT_PUBLIC, 44500) and not net.a.audits("ike.address_changed")

    _remap(net, 50000)
    net.advance(6)  # a's next DPD leaves through the new mapping; b answers there, with NAT-D
    assert b_sa.remote == Endpoint(NAT_PUBLIC, 54500), "b did not follow UPDATE_SA_ADDRESSES"
    moved = net.b.audits("ike.address_changed")
    assert moved and "54500" in moved[-1].reason
    assert a_sa.natd_mapping is not None

    net.advance(30)  # both sides keep checking liveness through the new mapping: the SA survives
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert not net.a.audits("dpd.timeout") and not net.b.audits("dpd.timeout")


def test_response_goes_to_the_request_source_even_when_the_sa_stays() -> None:
    """Without UPDATE_SA_ADDRESSES a MOBIKE responder keeps the SA's address, yet answers the request's
    source: otherwise the initiator would never see the answer (RFC 7296 §2.11)."""
    net = _nat_pair(mobike=True)
    b_sa = net.b.manager.ike_sas()[0]
    net.advance(6)
    _remap(net, 50000)
    before = len(net.b.events)
    net.advance(6)
    answers = [e for e in net.b.events[before:] if isinstance(e, SendDatagram)]
    assert answers and all(e.remote == Endpoint(NAT_PUBLIC, 54500) for e in answers[:1])
    assert b_sa.state is IkeState.ESTABLISHED


def _notifies(data: bytes, protector: object) -> set[int]:
    from ikeguard.engine.message import decode_message

    msg = decode_message(data, protector, None)  # type: ignore[arg-type]
    return {int(n.notify_type) for n in msg.notifies()}


def test_natd_in_liveness_checks_only_with_mobike_behind_a_nat() -> None:
    for mobike in (True, False):
        net = _nat_pair(mobike=mobike)
        a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
        assert a_sa.crypto is not None and b_sa.crypto is not None
        a_before, b_before = len(net.a.events), len(net.b.events)
        net.advance(6)
        dpd = next(e for e in net.a.events[a_before:] if isinstance(e, SendDatagram))
        answer = next(e for e in net.b.events[b_before:] if isinstance(e, SendDatagram))
        natd = {int(NotifyType.NAT_DETECTION_SOURCE_IP), int(NotifyType.NAT_DETECTION_DESTINATION_IP)}
        expected = natd if mobike else set()
        assert _notifies(dpd.data, b_sa.crypto.inbound) & natd == expected
        assert _notifies(answer.data, a_sa.crypto.inbound) & natd == expected


def test_mapping_is_learnt_even_while_the_peers_checks_keep_us_busy() -> None:
    """b checks liveness more often than a (a is never idle), yet a's first check learns the mapping, so a
    later change is noticed once b's requests stop arriving."""
    net = _nat_pair(b_dpd=2.0)
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    net.advance(6)
    assert a_sa.natd_mapping  # learnt from b's NAT-D answer to a's first check
    _remap(net, 50000)
    net.advance(12)
    assert b_sa.remote == Endpoint(NAT_PUBLIC, 54500)
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED and not net.b.audits("dpd.timeout")
