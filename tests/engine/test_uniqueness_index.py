"""The manager's (connection, remote identity) index that INITIAL_CONTACT and ``unique`` use instead of a
scan over every IKE SA: SAs made by an IKE rekey are in it, closed SAs leave it, other identities are not
touched (RFC 7296 §2.4, §2.18)."""

from __future__ import annotations

from ikeguard.engine.identity import peer_key
from ikeguard.engine.states import IkeState
from tests.engine.harness import child, mirror, pair, psk_conn


def _net(b_unique: str):  # type: ignore[no-untyped-def]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), unique="never")
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), unique=b_unique)
    net = pair([a], [b])
    net.initiate()
    net.run()
    return net


def test_replace_finds_the_sa_an_ike_rekey_created() -> None:
    net = _net("replace")
    (old,) = net.b.manager.ike_sas()
    net.b.manager.rekey_ike(old.uniqueid, net.now)
    net.run()
    (rekeyed,) = net.b.manager.ike_sas()
    assert rekeyed is not old and rekeyed.state is IkeState.ESTABLISHED
    net.initiate()  # a second IKE SA of the same identity supersedes the rekeyed one
    net.run()
    (only,) = net.b.manager.ike_sas()
    assert only is not rekeyed and rekeyed.state is IkeState.CLOSED
    assert "unique=replace" in rekeyed.close_reason


def test_keep_after_rekey_refuses_the_second_sa() -> None:
    net = _net("keep")
    (old,) = net.b.manager.ike_sas()
    net.a.manager.rekey_ike(net.a.manager.ike_sas()[0].uniqueid, net.now)
    net.run()
    (rekeyed,) = net.b.manager.ike_sas()
    assert rekeyed is not old
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == [rekeyed]


def test_other_identity_is_not_replaced_and_closed_sas_leave_the_index() -> None:
    c = child()
    b = psk_conn("tunnel", "b.example.net", "%any", (mirror(c),), unique="replace")
    a1 = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), unique="never")
    a2 = psk_conn("tunnel", "c.example.net", "b.example.net", (c,), unique="never")
    net = pair([a1], [b])
    net.initiate()
    net.run()
    (first,) = net.b.manager.ike_sas()
    net.a.manager = pair([a2], [], seed=91).a.manager
    net.initiate()
    net.run()
    assert first.state is IkeState.ESTABLISHED and len(net.b.manager.ike_sas()) == 2
    for sa in net.b.manager.ike_sas():
        net.b.manager.terminate_ike(sa.uniqueid, net.now)
    net.run()
    net.advance(60)
    assert net.b.manager.ike_sas() == [] and net.b.manager.retained() == 0


def test_keep_does_not_keep_an_sa_being_deleted() -> None:
    """``unique = keep`` keeps an established IKE SA, not one whose DELETE is in flight (here lost, as to a
    crashed peer): the new IKE SA from the same identity stays up."""
    net = _net("keep")
    (old,) = net.b.manager.ike_sas()
    net.filter = lambda dgram, sender: [] if sender == "b" else [dgram]  # b's DELETE never arrives
    net.b.manager.terminate_ike(old.uniqueid, net.now, "operator")
    net.run()
    assert old.state is IkeState.DELETING
    net.filter = None
    net.initiate()  # a still holds its side of the old SA: no INITIAL_CONTACT, keep decides
    net.run()
    (new,) = [sa for sa in net.b.manager.ike_sas() if sa is not old]
    assert new.state is IkeState.ESTABLISHED, new.close_reason


def test_unique_no_without_initial_contact_reads_no_peer_group(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With ``unique = no`` and no INITIAL_CONTACT nothing acts on a peer's other SAs, so a setup does not
    look at them: many users sharing one identity (a group PSK, EAP behind one IKE identity) cost each new
    IKE SA nothing per SA already up (it was a scan of the identity's SAs per setup)."""
    net = _net("no")
    looked: list[str] = []
    original = type(net.b.manager)._established_with_peer

    def counting(self, conn, key, before=None):  # type: ignore[no-untyped-def]
        looked.append(key)
        return original(self, conn, key, before)

    monkeypatch.setattr(type(net.b.manager), "_established_with_peer", counting)
    for _ in range(5):
        net.initiate()
        net.run()
    assert len(net.b.manager.ike_sas()) == 6 and looked == []
    net2 = _net("replace")
    monkeypatch.setattr(type(net2.b.manager), "_established_with_peer", counting)
    net2.initiate()
    net2.run()
    assert len(net2.b.manager.ike_sas()) == 1 and set(looked) == {peer_key("a.example.net")}  # replace looks
