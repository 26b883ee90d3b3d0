"""INFORMATIONAL: DELETE of Child and IKE SAs from either side, liveness checks (dpd_delay/dpd_timeout)."""

from __future__ import annotations

from ikeguard.engine.events import DeleteChildSa, Direction, SendDatagram
from ikeguard.engine.states import IkeState
from ikeguard.wire.message import parse_message
from tests.engine.harness import child, mirror, pair, psk_conn, psk_pair


def up(**kw: object):  # type: ignore[no-untyped-def]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), **kw)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), **kw)
    net = pair([a], [b])
    net.initiate()
    net.run()
    return net


def deletes(events: list[object]) -> set[tuple[Direction, int]]:
    return {(e.direction, e.spi) for e in events if isinstance(e, DeleteChildSa)}


def installs(side) -> set[tuple[Direction, int]]:  # type: ignore[no-untyped-def]
    return {(i.direction, i.sa.spi) for i in side.installs()}


def test_initiator_deletes_child_sa() -> None:
    net = up()
    sa = net.a.manager.ike_sas()[0]
    child_id = next(iter(sa.children))
    net.a.manager.terminate_child(sa.uniqueid, child_id, net.now)
    net.run()
    assert deletes(net.a.events) == installs(net.a) and deletes(net.b.events) == installs(net.b)
    assert net.a.manager.ike_sas()[0].children == {} and net.b.manager.ike_sas()[0].children == {}
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    assert net.b.audits("child.down")[0].reason == "deleted by peer"


def test_responder_deletes_ike_sa_and_everything_goes() -> None:
    net = up()
    net.b.manager.terminate_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    assert deletes(net.a.events) == installs(net.a) and deletes(net.b.events) == installs(net.b)
    assert net.a.audits("ike.down")[0].reason == "deleted by peer"
    assert net.b.audits("ike.down")[0].reason == "terminated by admin"
    assert net.b.audits("ike.down")[0].outcome == "success"


def test_simultaneous_child_delete() -> None:
    net = up()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    net.a.manager.terminate_child(a_sa.uniqueid, next(iter(a_sa.children)), net.now)
    net.b.manager.terminate_child(b_sa.uniqueid, next(iter(b_sa.children)), net.now)
    net.run()
    assert a_sa.children == {} and b_sa.children == {}
    assert deletes(net.a.events) == installs(net.a) and deletes(net.b.events) == installs(net.b)
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED


def test_dpd_probes_idle_peer_and_keeps_sa() -> None:
    net = up(dpd_delay=30.0)

    def requests() -> int:
        return sum(
            isinstance(e, SendDatagram) and not parse_message(e.data).header.is_response for e in net.a.events
        )

    before = requests()
    net.advance(31)
    assert requests() == before + 1  # one empty INFORMATIONAL request
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED


def test_dpd_detects_dead_peer_within_dpd_timeout() -> None:
    net = up(dpd_delay=30.0, dpd_timeout=10.0)
    net.filter = lambda d, s: []  # the peer vanished
    net.advance(30 + 10 + 1)
    assert net.a.manager.ike_sas() == []
    assert net.a.audits("dpd.timeout")
    assert net.a.audits("ike.down")[0].outcome == "failure"
    assert deletes(net.a.events) == installs(net.a)


def test_dpd_without_timeout_uses_retransmissions() -> None:
    net = up(dpd_delay=30.0)
    net.filter = lambda d, s: []
    net.advance(30 + 2 + 3.6 + 6.48 + 11.664 + 1)
    assert net.a.manager.ike_sas() == []
    assert net.a.audits("dpd.timeout")


def test_terminate_of_unknown_sa_is_local_error() -> None:
    import pytest

    from ikeguard.engine.errors import LocalProtocolError

    net = psk_pair()
    with pytest.raises(LocalProtocolError):
        net.a.manager.terminate_ike(99, 0.0)
