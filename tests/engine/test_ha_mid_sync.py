"""Issue 20, RFC 6311 message ID synchronisation (engine/ha_mid_sync.py), ikeguard against ikeguard in memory:
the old node sent a request after its last replication, so the replicated next message ID is one the peer
already answered. Without synchronisation the new node's next request reuses that ID and the peer drops it
(a retransmission with other content, RFC 7296 §2.1): the liveness probe then moves to the next ID; with
both ends announcing
IKEV2_MESSAGE_ID_SYNC_SUPPORTED the new node's first exchange is the message ID 0 synchronisation, after
which requests from both sides pass. A single gateway (no HA) announces nothing."""

from __future__ import annotations

from dataclasses import replace

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.events import SendDatagram
from ikeguard.engine.ha_state import record_from_json, record_to_json
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.delete import DpdTask
from ikeguard.wire.header import decode_header
from tests.engine.harness import FAST, Network, Side, child, mirror, pair, psk_conn
from tests.engine.test_rekey import assert_consistent

HA = replace(FAST, ha_mid_sync=True)
CBC = ("aes256-sha256-prfsha256-ecp256",)  # under an AEAD IKE SA the sync is not used (mid_sync_usable)


def up(settings: object = HA, proposals: tuple[str, ...] = CBC) -> tuple[Network, list]:  # type: ignore[type-arg]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=proposals)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), ike_proposals=proposals)
    net = pair([a], [b], settings=settings)  # type: ignore[arg-type]
    net.initiate(children=["net"])
    net.run()
    return net, [b]


def dpd(sa) -> None:  # type: ignore[no-untyped-def]
    sa.queue_exchange([DpdTask()])
    sa.start_next()


def stale_takeover(net: Network, b_conns: list, settings: object) -> IkeManager:  # type: ignore[type-arg]
    """b replicates, then sends one more request (answered by a), then dies; a new node restores the stale
    record and replaces b on the network."""
    stale = record_to_json(net.b.manager.export_state(net.now)[0])
    (old,) = net.b.manager.ike_sas()
    dpd(old)
    net.run()
    standby = IkeManager(b_conns, settings, random=DeterministicRandom(77))  # type: ignore[arg-type]
    standby.restore(record_from_json(stale), net.now)
    net.b = Side("b", standby, net.b.endpoint)
    return standby


def message_ids(side: Side, start: int = 0) -> list[tuple[int, bool]]:
    out = []
    for e in side.events[start:]:
        if isinstance(e, SendDatagram) and len(e.data) >= 28:
            header = decode_header(e.data)[0]
            out.append((header.message_id, bool(header.flags & 0x20)))
    return out


def test_both_announce_support_only_in_an_ha_pair() -> None:
    net, _ = up()
    assert net.a.manager.ike_sas()[0].peer.mid_sync and net.b.manager.ike_sas()[0].peer.mid_sync
    (record,) = net.b.manager.export_state(net.now)
    assert record.mid_sync and record_from_json(record_to_json(record)).mid_sync
    single, _ = up(FAST)
    assert not single.a.manager.ike_sas()[0].peer.mid_sync and not single.b.manager.ike_sas()[0].peer.mid_sync
    mixed_a = psk_conn("tunnel", "a.example.net", "b.example.net", (child(),))
    mixed_b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(child()),))
    mixed = pair([mixed_a], [mixed_b], settings=HA, b_settings=FAST)
    mixed.initiate(children=["net"])
    mixed.run()
    assert not mixed.a.manager.ike_sas()[0].peer.mid_sync  # the other end did not announce it
    assert not mixed.b.manager.ike_sas()[0].peer.mid_sync


def test_without_sync_a_lagging_message_id_is_probed_forward() -> None:
    """The peer drops the new node's first request (its ID was used by the old node after the last
    replication); the next probe takes the next ID and is answered: the SA survives."""
    net, b_conns = up(FAST)
    standby = stale_takeover(net, b_conns, FAST)
    _no_sync_under_aead()
    (a_sa,) = net.a.manager.ike_sas()
    start = len(net.b.events)
    net.run()
    (sa,) = standby.ike_sas()
    assert sa.window.in_flight is not None and sa.window.in_flight.message_id < a_sa.window.expected_peer_id
    net.advance(10.0)
    assert sa.state is IkeState.ESTABLISHED and sa.window.in_flight is None
    sent = [mid for mid, response in message_ids(net.b, start) if not response]
    assert sent[:2] == [sent[0], sent[0] + 1]  # the probe moved one ID on
    assert sa.window.next_request_id == a_sa.window.expected_peer_id
    dpd(sa)
    dpd(a_sa)
    net.run()
    assert sa.window.in_flight is None and a_sa.window.in_flight is None
    assert_consistent(net)


def _no_sync_under_aead() -> None:
    """Under AES-GCM both announce support but the new node does not use it (a peer deriving its IVs from
    the message ID cannot answer with ID 0 again): the first exchange is the liveness check."""
    net, b_conns = up(proposals=("aes256gcm16-prfsha256-ecp256",))
    assert net.b.manager.ike_sas()[0].peer.mid_sync
    standby = stale_takeover(net, b_conns, HA)
    net.run()
    (sa,) = standby.ike_sas()
    assert sa.active is not None and isinstance(sa.active.tasks[0], DpdTask)  # in flight, not a sync


def test_sync_after_a_stale_takeover_then_requests_pass_both_ways() -> None:
    net, b_conns = up()
    (a_sa,) = net.a.manager.ike_sas()
    seen = len(net.a.events)
    standby = stale_takeover(net, b_conns, HA)
    (sa,) = standby.ike_sas()
    lagging = sa.window.next_request_id
    assert lagging < a_sa.window.expected_peer_id  # the replicated ID is one a already answered
    start = len(net.b.events)
    net.run()
    assert message_ids(net.b, start)[0] == (0, False)  # the synchronisation request, message ID 0
    assert (0, True) in message_ids(net.a, seen)  # answered with message ID 0
    assert sa.window.in_flight is None and sa.window.next_request_id >= a_sa.window.expected_peer_id
    assert sa.window.next_request_id == a_sa.window.expected_peer_id  # both agree on what comes next
    assert sa.window.expected_peer_id == a_sa.window.next_request_id
    dpd(sa)
    net.run()
    assert sa.window.in_flight is None and sa.state is IkeState.ESTABLISHED
    dpd(a_sa)
    net.run()
    assert a_sa.window.in_flight is None and a_sa.state is IkeState.ESTABLISHED
    net.b.manager.rekey_child(sa.uniqueid, next(iter(sa.children)), net.now)
    net.run()
    assert_consistent(net)
    net.a.manager.rekey_ike(a_sa.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    assert not net.a.audits("dpd.timeout") and not net.b.audits("dpd.timeout")


def test_sync_request_below_the_expected_id_is_dropped() -> None:
    net, _ = up()
    (a_sa,) = net.a.manager.ike_sas()
    (b_sa,) = net.b.manager.ike_sas()
    from ikeguard.engine.ha_mid_sync import MidSyncTask

    a_sa.window.expected_peer_id = 50  # a has seen more from b than b will claim
    b_sa.queue_exchange([MidSyncTask(margin=0)])
    b_sa.start_next()
    start = len(net.a.events)
    net.run(limit=2)
    assert message_ids(net.a, start) == []  # §5.1: silently dropped


def test_unanswered_sync_falls_back_to_the_liveness_check() -> None:
    """A peer that cannot answer the synchronisation (strongSwan under an AEAD IKE SA applies it, then refuses
    to encrypt a second message with ID 0): after one retransmission the new node gives it up, keeps the SA
    and sends the liveness check with the ID it announced (M1), which the peer expects now."""
    net, b_conns = up()
    (a_sa,) = net.a.manager.ike_sas()
    dpd(net.b.manager.ike_sas()[0])  # b's own next request ID is 1 now: ID 0 is only the sync's
    net.run()
    stale = record_to_json(net.b.manager.export_state(net.now)[0])
    standby = IkeManager(b_conns, HA, random=DeterministicRandom(77))
    standby.restore(record_from_json(stale), net.now)
    net.b = Side("b", standby, net.b.endpoint)

    def no_sync_answer(dgram: SendDatagram, sender: str) -> list[SendDatagram]:
        header = decode_header(dgram.data)[0]
        return [] if sender == "a" and header.message_id == 0 and header.flags & 0x20 else [dgram]

    net.filter = no_sync_answer
    start = len(net.b.events)
    net.run()
    (sa,) = standby.ike_sas()
    assert sa.window.in_flight is not None and sa.window.in_flight.message_id == 0
    net.advance(10.0)  # one retransmission, then the fallback
    assert sa.state is IkeState.ESTABLISHED and sa.window.in_flight is None
    sent = message_ids(net.b, start)
    assert sent[:2] == [(0, False), (0, False)] and (a_sa.window.expected_peer_id - 1, False) in sent
    assert a_sa.window.expected_peer_id - 1 == 1 + 16  # the announced M1: the replicated ID + the margin
    net.filter = None
    dpd(a_sa)
    dpd(sa)
    net.run()
    assert a_sa.window.in_flight is None and sa.window.in_flight is None
    assert_consistent(net)
