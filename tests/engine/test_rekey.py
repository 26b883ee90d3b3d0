"""CREATE_CHILD_SA: new Child SA, Child SA rekey (with and without PFS), IKE SA rekey, and the
simultaneous-rekey/delete collision matrix of RFC 7296 §2.8.1/§2.8.2 over every delivery interleaving
(modelled on strongSwan's child_rekey/ike_rekey suites): afterwards both ends agree and no SA is lost."""

from __future__ import annotations

import itertools

import pytest

from ikeguard.engine.events import DeleteChildSa, Direction
from ikeguard.engine.states import ChildState, IkeState
from tests.engine.harness import Network, child, mirror, pair, psk_conn


def up(seed: int = 1, proposals: tuple[str, ...] = ("aes256gcm16-ecp256",), extra: bool = False) -> Network:
    c = child(proposals=proposals)
    children = (c, child("web", ("10.1.1.0/24",), ("10.2.1.0/24",), proposals)) if extra else (c,)
    a = psk_conn("tunnel", "a.example.net", "b.example.net", children)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", tuple(mirror(x) for x in children))
    net = pair([a], [b], seed=seed)
    net.initiate(children=["net"])
    net.run()
    return net


def live(side) -> set[tuple[Direction, int]]:  # type: ignore[no-untyped-def]
    state: set[tuple[Direction, int]] = set()
    for e in side.events:
        if hasattr(e, "sa") and hasattr(e, "direction") and e.__class__.__name__ == "InstallChildSa":
            state.add((e.direction, e.sa.spi))
        elif isinstance(e, DeleteChildSa):
            state.discard((e.direction, e.spi))
    return state


def assert_consistent(net: Network, children: int = 1) -> None:
    """Both ends: one IKE SA, the same Child SAs, data plane = engine view, outbound keys = peer inbound."""
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert a_sa.state is IkeState.ESTABLISHED and b_sa.state is IkeState.ESTABLISHED
    assert (a_sa.spi_i, a_sa.spi_r) == (b_sa.spi_i, b_sa.spi_r)
    a_pairs = {(c.spi_in, c.spi_out) for c in a_sa.children.values()}
    b_pairs = {(c.spi_out, c.spi_in) for c in b_sa.children.values()}
    assert a_pairs == b_pairs and len(a_pairs) == children
    assert all(c.state is ChildState.INSTALLED for c in [*a_sa.children.values(), *b_sa.children.values()])
    for side, sa in ((net.a, a_sa), (net.b, b_sa)):
        expected = {(Direction.INBOUND, c.spi_in) for c in sa.children.values()} | {
            (Direction.OUTBOUND, c.spi_out) for c in sa.children.values()
        }
        assert live(side) == expected
    keys = {}
    for side in (net.a, net.b):
        for e in side.installs():
            keys[(side.name, e.direction, e.sa.spi)] = e.sa.encr_key
    for c in a_sa.children.values():
        assert keys[("a", Direction.OUTBOUND, c.spi_out)] == keys[("b", Direction.INBOUND, c.spi_out)]
        assert keys[("a", Direction.INBOUND, c.spi_in)] == keys[("b", Direction.OUTBOUND, c.spi_in)]


def only_child(net: Network, side: str):  # type: ignore[no-untyped-def]
    sa = (net.a if side == "a" else net.b).manager.ike_sas()[0]
    return sa, next(iter(sa.children.values()))


def test_create_additional_child_sa() -> None:
    net = up(extra=True)
    sa = net.a.manager.ike_sas()[0]
    net.a.manager.create_child(sa.uniqueid, "web", net.now)
    net.run()
    assert_consistent(net, children=2)
    assert sorted(c.name for c in sa.children.values()) == ["net", "web"]


@pytest.mark.parametrize(
    ("side", "proposals"),
    [("a", ("aes256gcm16-ecp256",)), ("b", ("aes256gcm16",)), ("a", ("aes128gcm16-x25519",))],
)
def test_child_rekey(side: str, proposals: tuple[str, ...]) -> None:
    net = up(proposals=proposals)
    sa, old = only_child(net, side)
    (net.a if side == "a" else net.b).manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    _, new = only_child(net, side)
    assert new.spi_in != old.spi_in
    assert (net.a if side == "a" else net.b).audits("child.rekeyed")
    assert not any(e.event == "child.down" and e.reason != "rekeyed" for e in net.a.audits("child.down"))


def test_child_rekey_by_timer_with_pfs() -> None:
    net = up()
    _sa, old = only_child(net, "a")
    net.advance(3600 + 1)  # rekey_time default 1h, rand_time jitter only earlier
    assert_consistent(net)
    assert only_child(net, "a")[1].spi_in != old.spi_in


def test_pfs_mismatch_at_rekey_is_reported() -> None:
    c_a = child(proposals=("aes256gcm16-ecp256",))
    c_b = child(proposals=("aes256gcm16-ecp384",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c_a,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c_b),))
    net = pair([a], [b])
    net.initiate()
    net.run()  # IKE_AUTH carries no KE: the child comes up
    sa, old = only_child(net, "a")
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    failure = net.a.audits("child.failed")
    assert failure and "NO_PROPOSAL_CHOSEN" in failure[0].reason
    rejected = net.b.audits("proposal.rejected")
    assert rejected[0].reason == "PFS mismatch for net: peer offered key exchange ECP_256, we require ECP_384"
    assert only_child(net, "a")[1] is old and old.state is ChildState.INSTALLED  # old SA kept


def test_ike_rekey_moves_children() -> None:
    net = up()
    old_sa, kid = only_child(net, "a")
    net.a.manager.rekey_ike(old_sa.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    new_sa, new_kid = only_child(net, "a")
    assert new_sa is not old_sa and new_kid is kid
    assert old_sa.state is IkeState.CLOSED and (new_sa.spi_i, new_sa.spi_r) != (old_sa.spi_i, old_sa.spi_r)
    assert not any(isinstance(e, DeleteChildSa) for e in net.a.events + net.b.events)
    assert net.a.audits("ike.rekeyed") and net.b.audits("ike.rekeyed")
    # the new IKE SA works: delete the child through it
    net.a.manager.terminate_child(new_sa.uniqueid, kid.uniqueid, net.now)
    net.run()
    assert new_sa.children == {} and net.b.manager.ike_sas()[0].children == {}


def test_ike_rekey_by_responder() -> None:
    net = up()
    net.b.manager.rekey_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    net.run()
    assert_consistent(net)


# ---------------------------------------------------------------------------------------- collisions
def run_with_picks(net: Network, picks: tuple[int, ...]) -> None:
    """Deliver in-flight datagrams choosing by ``picks`` (index into the in-flight list), then drain."""
    net.collect()
    for pick in picks:
        if not net.in_flight:
            break
        sender, dgram = net.in_flight.pop(pick % len(net.in_flight))
        net.deliver(sender, dgram)
        net.collect()
    net.run()
    net.advance(60)


# every choice of which in-flight datagram goes next for the first four deliveries (2 in flight at first)
ORDERS = list(itertools.product((0, 1), (0, 1, 2), (0, 1, 2), (0, 1, 2)))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("picks", ORDERS)
def test_simultaneous_child_rekey(seed: int, picks: tuple[int, ...]) -> None:
    net = up(seed=seed)
    a_sa, a_child = only_child(net, "a")
    b_sa, b_child = only_child(net, "b")
    net.a.manager.rekey_child(a_sa.uniqueid, a_child.uniqueid, net.now)
    net.b.manager.rekey_child(b_sa.uniqueid, b_child.uniqueid, net.now)
    run_with_picks(net, picks)
    assert_consistent(net)
    assert only_child(net, "a")[1].spi_in not in (a_child.spi_in,)


def test_collision_winner_depends_on_nonces() -> None:
    winners = set()
    for seed in range(1, 9):
        net = up(seed=seed)
        a_sa, a_child = only_child(net, "a")
        b_sa, b_child = only_child(net, "b")
        net.a.manager.rekey_child(a_sa.uniqueid, a_child.uniqueid, net.now)
        net.b.manager.rekey_child(b_sa.uniqueid, b_child.uniqueid, net.now)
        run_with_picks(net, (0, 0, 0, 0))
        assert_consistent(net)
        winners.add(only_child(net, "a")[1].initiator)
    assert winners == {True, False}  # both outcomes of §2.8.1 exercised


@pytest.mark.parametrize("picks", ORDERS)
def test_rekey_collides_with_delete(picks: tuple[int, ...]) -> None:
    net = up()
    a_sa, a_child = only_child(net, "a")
    b_sa, b_child = only_child(net, "b")
    net.a.manager.rekey_child(a_sa.uniqueid, a_child.uniqueid, net.now)
    net.b.manager.terminate_child(b_sa.uniqueid, b_child.uniqueid, net.now)
    run_with_picks(net, picks)
    (a_sa,), (b_sa,) = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert {(c.spi_in, c.spi_out) for c in a_sa.children.values()} == {
        (c.spi_out, c.spi_in) for c in b_sa.children.values()
    }
    assert a_child.uniqueid not in a_sa.children
    for side, sa in ((net.a, a_sa), (net.b, b_sa)):
        assert live(side) == {(Direction.INBOUND, c.spi_in) for c in sa.children.values()} | {
            (Direction.OUTBOUND, c.spi_out) for c in sa.children.values()
        }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("picks", ORDERS)
def test_simultaneous_ike_rekey(seed: int, picks: tuple[int, ...]) -> None:
    net = up(seed=seed)
    net.a.manager.rekey_ike(net.a.manager.ike_sas()[0].uniqueid, net.now)
    net.b.manager.rekey_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    run_with_picks(net, picks)
    assert_consistent(net)
    assert not any(isinstance(e, DeleteChildSa) for e in net.a.events + net.b.events)


@pytest.mark.parametrize("picks", ORDERS)
def test_ike_rekey_collides_with_child_rekey(picks: tuple[int, ...]) -> None:
    net = up()
    a_sa, _ = only_child(net, "a")
    b_sa, b_child = only_child(net, "b")
    net.a.manager.rekey_ike(a_sa.uniqueid, net.now)
    net.b.manager.rekey_child(b_sa.uniqueid, b_child.uniqueid, net.now)
    run_with_picks(net, picks)
    assert_consistent(net)


def test_child_rekey_with_invalid_ke_retry() -> None:
    c_a = child(proposals=("aes256gcm16-ecp256-ecp384",))
    c_b = child(proposals=("aes256gcm16-ecp384",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c_a,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c_b),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    sa, old = only_child(net, "a")
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    assert only_child(net, "a")[1] is not old


def drop_first_informational(side: str):  # type: ignore[no-untyped-def]
    from ikeguard.wire.message import parse_message

    state = {"done": False}

    def f(d, s):  # type: ignore[no-untyped-def]
        header = parse_message(d.data).header
        if s == side and header.exchange_type == 37 and not header.is_response and not state["done"]:
            state["done"] = True
            return []
        return [d]

    return f


@pytest.mark.parametrize("dropper", ["a", "b"])
@pytest.mark.parametrize("picks", ORDERS[::5])
def test_simultaneous_child_rekey_with_lost_delete(dropper: str, picks: tuple[int, ...]) -> None:
    net = up(seed=2)
    a_sa, a_child = only_child(net, "a")
    b_sa, b_child = only_child(net, "b")
    net.filter = drop_first_informational(dropper)
    net.a.manager.rekey_child(a_sa.uniqueid, a_child.uniqueid, net.now)
    net.b.manager.rekey_child(b_sa.uniqueid, b_child.uniqueid, net.now)
    run_with_picks(net, picks)
    assert_consistent(net)


def test_rekey_while_peer_deletes_ike_sa() -> None:
    net = up()
    a_sa, a_child = only_child(net, "a")
    net.a.manager.rekey_child(a_sa.uniqueid, a_child.uniqueid, net.now)
    net.b.manager.terminate_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    net.run()
    net.advance(60)
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    assert live(net.a) == set() and live(net.b) == set()


def test_ike_rekey_with_invalid_ke_retry() -> None:
    c = child()
    a = psk_conn(
        "tunnel",
        "a.example.net",
        "b.example.net",
        (c,),
        ike_proposals=("aes256gcm16-prfsha384-ecp256-ecp384",),
    )
    b = psk_conn(
        "tunnel",
        "b.example.net",
        "a.example.net",
        (mirror(c),),
        ike_proposals=("aes256gcm16-prfsha384-ecp384",),
    )
    net = pair([a], [b])
    net.initiate()
    net.run()
    old = net.a.manager.ike_sas()[0]
    net.a.manager.rekey_ike(old.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    assert net.a.manager.ike_sas()[0] is not old


def test_rekey_responder_switches_outbound_when_old_sa_is_deleted() -> None:
    net = up()
    sa, old = only_child(net, "a")
    mark = len(net.b.events)
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    steps = [
        (type(e).__name__, e.direction.value)
        for e in net.b.events[mark:]
        if type(e).__name__ in ("InstallChildSa", "DeleteChildSa")
    ]
    assert steps == [
        ("InstallChildSa", "in"),
        ("InstallChildSa", "out"),
        ("DeleteChildSa", "in"),
        ("DeleteChildSa", "out"),
    ]
    # the outbound install came with the old SA's DELETE, not with the CREATE_CHILD_SA answer
    sends = [i for i, e in enumerate(net.b.events[mark:]) if type(e).__name__ == "SendDatagram"]
    out_install = next(
        i
        for i, e in enumerate(net.b.events[mark:])
        if type(e).__name__ == "InstallChildSa" and e.direction.value == "out"
    )
    assert sends[0] < out_install
    assert_consistent(net)


@pytest.mark.parametrize("picks", ORDERS[::3])
def test_ike_rekey_collides_with_ike_delete(picks: tuple[int, ...]) -> None:
    net = up()
    net.a.manager.rekey_ike(net.a.manager.ike_sas()[0].uniqueid, net.now)
    net.b.manager.terminate_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    run_with_picks(net, picks)
    net.advance(120)
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    assert live(net.a) == set() and live(net.b) == set()


@pytest.mark.parametrize("dropper", ["a", "b"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("picks", ORDERS[::5])
def test_simultaneous_ike_rekey_with_lost_delete(dropper: str, seed: int, picks: tuple[int, ...]) -> None:
    net = up(seed=seed)
    net.filter = drop_first_informational(dropper)
    net.a.manager.rekey_ike(net.a.manager.ike_sas()[0].uniqueid, net.now)
    net.b.manager.rekey_ike(net.b.manager.ike_sas()[0].uniqueid, net.now)
    run_with_picks(net, picks)
    assert_consistent(net)


@pytest.mark.parametrize("side", ["a", "b"])
def test_child_work_queued_behind_an_ike_rekey_moves_to_the_new_ike_sa(side: str) -> None:
    net = up(extra=True)
    mgr = (net.a if side == "a" else net.b).manager
    sa, old = only_child(net, side)
    mgr.rekey_ike(sa.uniqueid, net.now)
    mgr.rekey_child(sa.uniqueid, old.uniqueid, net.now)  # queued behind the IKE rekey
    mgr.create_child(sa.uniqueid, "web", net.now)
    net.run()
    assert_consistent(net, children=2)
    (new_sa,) = mgr.ike_sas()
    assert new_sa is not sa and old.uniqueid not in new_sa.children
