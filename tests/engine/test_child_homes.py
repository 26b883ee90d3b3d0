"""Issue 15: a data-plane upcall names an inbound SPI; the manager finds its IKE SA through one dict
(EngineContext.child_homes) instead of scanning every IKE SA, and the index follows the Child SAs when an
IKE SA rekey moves them, and forgets them when they go."""

from __future__ import annotations

from tests.engine.harness import psk_pair


def _up():  # type: ignore[no-untyped-def]
    net = psk_pair()
    net.initiate()
    net.run()
    return net


def test_the_index_names_the_ike_sa_of_every_inbound_spi_and_follows_an_ike_rekey() -> None:
    net = _up()
    manager = net.a.manager
    (old,) = manager.ike_sas()
    (child,) = old.children.values()
    assert manager.ctx.child_homes == {child.spi_in: old.uniqueid}
    manager.rekey_ike(old.uniqueid, net.now)
    net.run()
    (new,) = manager.ike_sas()
    assert new is not old and child.uniqueid in new.children
    assert manager.ctx.child_homes == {child.spi_in: new.uniqueid}
    # the upcall reaches the Child SA in its new IKE SA: a soft limit rekeys it there
    manager.child_lifetime_reached(child.spi_in, hard=False, now=net.now)
    net.run()
    (rekeyed,) = new.children.values()
    assert rekeyed is not child and net.a.audits("child.rekeyed")
    assert manager.ctx.child_homes == {rekeyed.spi_in: new.uniqueid}


def test_unknown_spis_and_closed_sas_leave_nothing_behind() -> None:
    net = _up()
    manager = net.a.manager
    (sa,) = manager.ike_sas()
    manager.child_lifetime_reached(0x12345678, hard=True, now=net.now)  # no such SA: nothing happens
    assert len(sa.children) == 1
    manager.terminate_ike(sa.uniqueid, net.now)
    net.run()
    assert manager.ike_sas() == [] and manager.ctx.child_homes == {}
    assert net.b.manager.ctx.child_homes == {}
