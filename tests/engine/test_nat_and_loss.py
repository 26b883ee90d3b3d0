"""NAT detection and the switch to port 4500; retransmission, loss, duplication and reordering."""

from __future__ import annotations

from dataclasses import replace

from ikeguard.engine.events import SendDatagram, SendNatKeepalive
from ikeguard.engine.states import IkeState
from ikeguard.wire.message import parse_message
from tests.engine.harness import A_ADDR, NAT_PUBLIC, child, mirror, pair, psk_conn, psk_pair


def _conns(**kw: object):  # type: ignore[no-untyped-def]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), **kw)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    return a, b


def test_nat_detected_moves_to_4500_and_encapsulates() -> None:
    a, b = _conns()
    net = pair([a], [b], nat_a=True)
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert a_sa.nat_local and not a_sa.nat_remote and b_sa.nat_remote and not b_sa.nat_local
    sends = [e for e in net.a.events if isinstance(e, SendDatagram)]
    assert [(s.local.port, s.remote.port) for s in sends] == [(500, 500), (4500, 4500)]
    assert (b_sa.remote.address, b_sa.remote.port) == (NAT_PUBLIC, 44500)
    assert all(i.sa.encap for i in net.a.installs() + net.b.installs())
    b_out = next(i for i in net.b.installs() if i.direction.value == "out")
    assert b_out.sa.destination.address == NAT_PUBLIC
    # the side behind the NAT sends keepalives
    net.advance(21)
    assert any(isinstance(e, SendNatKeepalive) for e in net.a.events)
    assert not any(isinstance(e, SendNatKeepalive) for e in net.b.events)


def test_encap_forces_udp_encapsulation_without_nat() -> None:
    a, b = _conns(encap=True)
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert all(i.sa.encap for i in net.a.installs() + net.b.installs())
    assert net.b.manager.ike_sas()[0].remote.port == 4500


def test_no_nat_stays_on_500_without_encapsulation() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    assert not any(i.sa.encap for i in net.a.installs())
    assert {e.local.port for e in net.a.events if isinstance(e, SendDatagram)} == {500}


def drop_first(exchange: int, side: str, count: int = 1):  # type: ignore[no-untyped-def]
    state = {"left": count}

    def f(d: SendDatagram, s: str) -> list[SendDatagram]:
        if s == side and parse_message(d.data).header.exchange_type == exchange and state["left"] > 0:
            state["left"] -= 1
            return []
        return [d]

    return f


def test_lost_request_is_retransmitted() -> None:
    net = psk_pair()
    net.filter = drop_first(35, "a")
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas()[0].state is IkeState.AUTH_SENT
    net.advance(2.1)
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED


def test_lost_response_is_answered_from_cache_without_reprocessing() -> None:
    net = psk_pair()
    net.filter = drop_first(35, "b")
    net.initiate()
    net.run()
    installs_before = len(net.b.installs())
    net.advance(2.1)
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    assert len(net.b.installs()) == installs_before == 2  # the retransmit did not create a second Child SA


def test_duplicated_datagrams_change_nothing() -> None:
    net = psk_pair()
    net.filter = lambda d, s: [d, d]
    net.initiate()
    net.run()
    assert [sa.state for sa in net.a.manager.ike_sas()] == [IkeState.ESTABLISHED]
    assert [sa.state for sa in net.b.manager.ike_sas()] == [IkeState.ESTABLISHED]
    assert len(net.a.installs()) == len(net.b.installs()) == 2


def test_reordered_late_retransmission_is_ignored() -> None:
    net = psk_pair()
    held: list[SendDatagram] = []

    def hold_first_auth(d: SendDatagram, s: str) -> list[SendDatagram]:
        if s == "a" and parse_message(d.data).header.exchange_type == 35 and not held:
            held.append(d)
            return []
        return [d]

    net.filter = hold_first_auth
    net.initiate()
    net.run()
    net.advance(2.1)  # retransmission gets through
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    net.filter = None
    net.in_flight.append(("a", held[0]))  # the original arrives late
    net.run()
    assert len(net.b.installs()) == 2 and net.b.manager.ike_sas()[0].state is IkeState.ESTABLISHED


def test_peer_unreachable_gives_up_after_retransmits() -> None:
    net = psk_pair()
    net.filter = lambda d, s: [] if s == "a" else [d]
    net.initiate()
    net.run()
    sends = lambda: sum(1 for e in net.a.events if isinstance(e, SendDatagram))  # noqa: E731
    net.advance(2 + 3.6 + 6.48 + 11.664 + 1)
    assert sends() == 4  # first send + tries=3 retransmits
    assert net.a.manager.ike_sas() == []
    assert "no response after 3 retransmits" in net.a.audits()[-1].reason


def test_retransmit_jitter_comes_from_injected_random() -> None:
    a, b = _conns()
    from tests.engine.harness import FAST

    settings = replace(FAST, retransmit=replace(FAST.retransmit, jitter_percent=50))
    times = []
    for seed in (1, 2):
        net = pair([a], [b], seed=seed, settings=settings)
        net.filter = lambda d, s: []
        net.initiate()
        net.run()
        times.append(net.a.manager.get_timer())
    assert times[0] != times[1] and all(t is not None and 1.0 <= t <= 2.0 for t in times)


def test_nat_mapping_change_is_followed_and_data_plane_told() -> None:
    from ikeguard.engine.events import UpdateSaAddresses

    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), mobike=False, dpd_delay=10.0)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), mobike=False)
    net = pair([a], [b], nat_a=True)
    net.initiate()
    net.run()
    b_sa = net.b.manager.ike_sas()[0]
    assert b_sa.remote.port == 44500
    original = net.nat
    net.nat = lambda ep: replace(original(ep), port=50123)  # type: ignore[method-assign]
    net.unnat = lambda ep: replace(ep, address=A_ADDR, port=4500) if ep.address == NAT_PUBLIC else ep  # type: ignore[method-assign]
    net.advance(11)  # a's liveness check arrives from the new mapping
    assert b_sa.remote.port == 50123
    update = [e for e in net.b.events if isinstance(e, UpdateSaAddresses)][-1]
    assert update.remote.port == 50123 and update.encap
    assert b_sa.state is IkeState.ESTABLISHED
