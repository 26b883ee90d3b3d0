"""A Child SA rekey refused because the peer does not do PFS says so in the initiator's audit reason
(found against strongSwan: an ESP proposal without a group answers a rekey with KE by NO_PROPOSAL_CHOSEN)."""

from __future__ import annotations

from ikeguard.engine.states import ChildState
from tests.engine.harness import child, mirror, pair, psk_conn


def test_rekey_refused_by_a_peer_without_pfs_names_the_pfs_mismatch() -> None:
    ours = child(proposals=("aes256gcm16-ecp384",))
    theirs = child(proposals=("aes256gcm16",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (ours,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(theirs),))
    net = pair([a], [b])
    net.initiate()
    net.run()  # IKE_AUTH carries no KE: the child comes up without PFS
    sa = net.a.manager.ike_sas()[0]
    old = next(iter(sa.children.values()))
    net.a.manager.rekey_child(sa.uniqueid, old.uniqueid, net.now)
    net.run()
    (failure,) = net.a.audits("child.failed")
    assert failure.reason == (
        "PFS mismatch for net: peer refused the rekey with NO_PROPOSAL_CHOSEN; we require key exchange "
        "ECP_384 (PFS), the peer's ESP proposals likely have none"
    )
    assert next(iter(sa.children.values())) is old and old.state is ChildState.INSTALLED  # old SA kept
