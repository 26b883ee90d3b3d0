"""Lifetimes and data-plane upcalls (byte/packet limits, install failure), rekey jitter from rand_time,
INITIAL_CONTACT, the ``unique`` policy and the IKE SA limit."""

from __future__ import annotations

from dataclasses import replace

from ikeguard.engine.events import DeleteChildSa
from ikeguard.engine.states import IkeState
from tests.engine.harness import FAST, child, mirror, pair, psk_conn


def up(a_kw: dict | None = None, b_kw: dict | None = None, **pair_kw: object):  # type: ignore[type-arg,no-untyped-def]
    c = child(rekey_bytes=1000, life_bytes=2000)
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), **(a_kw or {}))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), **(b_kw or {}))
    net = pair([a], [b], **pair_kw)  # type: ignore[arg-type]
    net.initiate()
    net.run()
    return net


def test_byte_lifetimes_are_handed_to_the_data_plane_and_soft_limit_rekeys() -> None:
    net = up()
    install = net.a.installs()[0]
    assert (install.rekey_bytes, install.life_bytes) == (1000, 2000)
    sa = net.a.manager.ike_sas()[0]
    old = next(iter(sa.children.values()))
    net.a.manager.child_lifetime_reached(old.spi_in, hard=False, now=net.now)
    net.run()
    new = next(iter(sa.children.values()))
    assert new is not old and net.a.audits("child.rekeyed")


def test_hard_byte_limit_deletes_child() -> None:
    net = up()
    sa = net.a.manager.ike_sas()[0]
    old = next(iter(sa.children.values()))
    net.a.manager.child_lifetime_reached(old.spi_in, hard=True, now=net.now)
    net.run()
    assert sa.children == {} and net.b.manager.ike_sas()[0].children == {}
    assert "hard lifetime" in net.a.audits("child.down")[0].reason


def test_install_failure_deletes_child_at_peer() -> None:
    net = up()
    sa = net.b.manager.ike_sas()[0]
    kid = next(iter(sa.children))
    net.b.manager.install_failed(sa.uniqueid, kid, "xfrm: EEXIST", net.now)
    net.run()
    assert net.a.manager.ike_sas()[0].children == {}
    assert "xfrm: EEXIST" in net.b.audits("child.failed")[0].reason
    assert any(isinstance(e, DeleteChildSa) for e in net.a.events)


def test_rekey_times_spread_by_rand_time() -> None:
    times = set()
    for seed in range(1, 6):
        net = up(a_kw={"rekey_time": 3600.0, "rand_time": 600.0}, seed=seed)
        times.add(round(net.a.manager.ike_sas()[0].timers["ike_rekey"], 3))
    assert len(times) == 5 and all(3000 <= t <= 3600 for t in times)


def test_initial_contact_clears_stale_sas_of_a_rebooted_peer() -> None:
    net = up()
    first = net.b.manager.ike_sas()[0]
    # a "reboots": a fresh manager with the same configuration connects again
    fresh = pair([psk_conn("tunnel", "a.example.net", "b.example.net", (child(),))], [], seed=77).a.manager
    net.a.manager = fresh
    net.initiate()
    net.run()
    assert first.state is IkeState.CLOSED
    assert "INITIAL_CONTACT" in first.close_reason
    assert len(net.b.manager.ike_sas()) == 1


def test_unique_keep_refuses_a_second_sa() -> None:
    net = up(a_kw={"unique": "never"}, b_kw={"unique": "keep"})
    net.initiate()
    net.run()
    assert len(net.b.manager.ike_sas()) == 1 and len(net.a.manager.ike_sas()) == 1


def test_unique_replace_supersedes_the_old_sa() -> None:
    net = up(a_kw={"unique": "never"}, b_kw={"unique": "replace"})
    first = net.b.manager.ike_sas()[0]
    net.initiate()
    net.run()
    (only,) = net.b.manager.ike_sas()
    assert only is not first and first.state is IkeState.CLOSED
    assert len(net.a.manager.ike_sas()) == 1


def test_ike_sa_limit() -> None:
    net = up(b_settings=replace(FAST, max_ike_sas=1), a_kw={"unique": "never"})
    net.initiate()
    net.run()
    assert len(net.b.manager.ike_sas()) == 1
    assert any("IKE SA limit" in r for r in net.b.drops())


def test_reload_keeps_established_sas_and_applies_to_new_ones() -> None:
    net = up()
    sa = net.b.manager.ike_sas()[0]
    net.b.manager.set_connections([])  # the connection was removed from the config
    assert sa.state is IkeState.ESTABLISHED and sa.conn is not None
    net.initiate()
    net.run()
    assert len(net.b.manager.ike_sas()) == 1  # a new attempt finds no connection
    assert net.b.audits("proposal.rejected")


def test_second_sa_to_same_peer_sends_no_initial_contact() -> None:
    net = up()
    net.initiate()
    net.run()
    assert len(net.b.manager.ike_sas()) == 2  # unique=no: both live, the first was not cleared
