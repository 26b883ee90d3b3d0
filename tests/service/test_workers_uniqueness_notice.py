"""Issue 22: the notice by which one worker process tells the others of a peer's new IKE SA (INITIAL_CONTACT,
``unique``) names the peer by ``engine.identity.peer_key``, not by the identity as recorded.

An audit record's identity is made printable (a control character becomes ``\\x07``), so the recorded text
of a peer whose identity has one names no SA in another worker, and could name another peer whose literal
identity is that escape. Two engines stand for two workers; the notice is built from the real ``ike.up``
record."""

from __future__ import annotations

from ikeguard.engine.states import IkeState
from ikeguard.service.workers import uniqueness_notice
from tests.engine.harness import Network, child, mirror, pair, psk_conn

ODD = "user\x07@example.net"  # an RFC 822 identity with a BEL: accepted, recorded escaped
ESCAPED = "user\\x07@example.net"  # how the record reads, and a different peer's possible literal identity


def _worker(peer_id: str, seed: int, *, unique: str = "no") -> Network:
    """One worker holding one IKE SA of the peer ``peer_id`` (which sends INITIAL_CONTACT: first contact)."""
    c = child()
    net = pair([psk_conn("tunnel", peer_id, "gw.example.net", (c,))],
               [psk_conn("tunnel", "gw.example.net", "%any", (mirror(c),), unique=unique)], seed=seed)
    net.initiate()
    net.run()
    return net


def test_initial_contact_in_one_worker_ends_the_peers_sa_in_another_by_its_key() -> None:
    worker0 = _worker(ODD, 1)
    other_peer = _worker(ESCAPED, 3)  # a different peer whose identity is the escaped text, in worker 0 too
    (old,) = worker0.b.manager.ike_sas()
    (bystander,) = other_peer.b.manager.ike_sas()
    worker1 = _worker(ODD, 5)  # the peer rebooted and came back to worker 1 with INITIAL_CONTACT
    (up,) = worker1.b.audits("ike.up")
    assert up.remote_id == ESCAPED and up.details["initial_contact"] == "yes"

    notice = uniqueness_notice(up, lambda connection: "no")
    assert notice is not None and notice["peer"] == ESCAPED
    since = worker0.now + 1.0
    for net in (worker0, other_peer):
        ended = net.b.manager.superseded_elsewhere(notice["connection"], notice["key"], "INITIAL_CONTACT",
                                                   initial_contact=True, since=since, now=since)
        assert ended == (1 if net is worker0 else 0)
    assert old.state is IkeState.CLOSED and "INITIAL_CONTACT" in old.close_reason
    assert bystander.state is IkeState.ESTABLISHED  # the escaped text's literal owner is not touched


def test_unique_keep_finds_the_older_sa_by_the_key() -> None:
    worker0 = _worker(ODD, 1, unique="keep")
    (held,) = worker0.b.manager.ike_sas()
    worker1 = _worker(ODD, 5, unique="keep")
    (up,) = worker1.b.audits("ike.up")
    notice = uniqueness_notice(up, lambda connection: "keep")
    assert notice is not None
    kept = worker0.b.manager.kept_before(notice["connection"], notice["key"], worker0.now + 1.0)
    assert kept is held
    assert worker0.b.manager.kept_before(notice["connection"], notice["peer"], worker0.now + 1.0) is None
