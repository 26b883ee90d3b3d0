"""Issue 20 step 1: an IKE SA exported from one engine (the active node) and restored into a fresh
IkeManager (the standby that took over) continues without renegotiation: same IKE and ESP SPIs and keys,
message IDs carried over, ESP sequence numbers jumped ahead, then DPD, a Child SA rekey and an IKE SA rekey
started by either side succeed (engine/ha_state.py, engine/ha_restore.py)."""

from __future__ import annotations

import pytest

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.events import Direction, IkeSaStateChanged, InstallChildSa
from ikeguard.engine.ha_state import EspSequence, RecordError, record_from_json, record_to_json
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.delete import DpdTask
from ikeguard.wire.iana import ExchangeType
from tests.engine.harness import FAST, Network, Side, child, mirror, pair, psk_conn
from tests.engine.test_rekey import assert_consistent

MARGIN = 1000


def up(**kw: object) -> tuple[Network, list]:  # type: ignore[type-arg]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), **kw)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), **kw)
    net = pair([a], [b])
    net.initiate(children=["net"])
    net.run()
    return net, [b]


def take_over(net: Network, b_conns: list, esp: dict[int, EspSequence] | None = None) -> IkeManager:  # type: ignore[type-arg]
    """Export b's state through the JSON wire form into a fresh manager that replaces b on the network."""
    records = net.b.manager.export_state(net.now, esp)
    assert len(records) == 1
    wire = record_to_json(records[0])
    standby = IkeManager(b_conns, FAST, random=DeterministicRandom(77))
    standby.restore(record_from_json(wire), net.now, seq_margin=MARGIN)
    net.b = Side("b", standby, net.b.endpoint)  # the old node is gone (SIGKILL): nothing of it remains
    return standby


def exchanges(side: Side, start: int = 0) -> list[ExchangeType]:
    from ikeguard.engine.events import SendDatagram
    from ikeguard.wire.header import decode_header

    out = []
    for e in side.events[start:]:
        if isinstance(e, SendDatagram) and len(e.data) >= 28:
            header = decode_header(e.data)[0]
            out.append(ExchangeType(int(header.exchange_type)))
    return out


def test_restored_sa_keeps_spis_keys_and_jumps_sequence_numbers() -> None:
    net, b_conns = up()
    (old,) = net.b.manager.ike_sas()
    c_old = next(iter(old.children.values()))
    ids = (old.window.next_request_id, old.window.expected_peer_id)
    standby = take_over(net, b_conns, {c_old.spi_in: EspSequence(seq_out=5000, replay_top=4000)})
    (sa,) = standby.ike_sas()
    assert (sa.spi_i, sa.spi_r, sa.state) == (old.spi_i, old.spi_r, IkeState.ESTABLISHED)
    assert old.peer.redirect and sa.peer.redirect  # REDIRECT_SUPPORTED kept: vici redirect after takeover
    # message IDs carried over: the liveness check the takeover sends uses the replicated next ID
    assert sa.window.in_flight is not None
    assert (sa.window.in_flight.message_id, sa.window.expected_peer_id) == ids
    (c,) = sa.children.values()
    assert (c.spi_in, c.spi_out, c.local_ts, c.remote_ts) == (c_old.spi_in, c_old.spi_out, c_old.local_ts,
                                                              c_old.remote_ts)
    installs = {e.direction: e.sa for e in standby.events() if isinstance(e, InstallChildSa)}
    # the peer still holds the keys negotiated with the old node: ours must equal its counterparts
    a_installs = {(e.direction, e.sa.spi): e.sa for e in net.a.installs()}
    assert installs[Direction.OUTBOUND].encr_key == a_installs[(Direction.INBOUND, c.spi_out)].encr_key
    assert installs[Direction.INBOUND].encr_key == a_installs[(Direction.OUTBOUND, c.spi_in)].encr_key
    assert installs[Direction.OUTBOUND].seq_out == 5000 + MARGIN  # never reuse a number the old node sent
    assert installs[Direction.INBOUND].replay_top == 4000


def test_takeover_continues_without_renegotiation_then_rekeys_and_dpd() -> None:
    net, b_conns = up(dpd_delay=30.0, dpd_timeout=10.0)
    (a_sa,) = net.a.manager.ike_sas()
    spis = (a_sa.spi_i, a_sa.spi_r)
    seen = len(net.a.events)
    standby = take_over(net, b_conns)
    net.run()  # the standby's liveness check: answered by the peer with the old keys
    assert net.b.manager is standby
    assert a_sa.state is IkeState.ESTABLISHED and net.a.manager.ike_sas() == [a_sa]
    assert exchanges(net.a, seen) == [ExchangeType.INFORMATIONAL] == exchanges(net.b)  # no IKE_SA_INIT
    assert_consistent(net)
    # the peer's DPD reaches the new node (message IDs agree)
    net.advance(31.0)
    assert net.a.manager.ike_sas() == [a_sa] and a_sa.state is IkeState.ESTABLISHED
    # Child SA rekey from each side, then IKE SA rekey from each side
    (b_sa,) = standby.ike_sas()
    net.b.manager.rekey_child(b_sa.uniqueid, next(iter(b_sa.children)), net.now)
    net.run()
    assert_consistent(net)
    net.a.manager.rekey_child(a_sa.uniqueid, next(iter(a_sa.children)), net.now)
    net.run()
    assert_consistent(net)
    net.b.manager.rekey_ike(b_sa.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    (a_new,) = net.a.manager.ike_sas()
    assert (a_new.spi_i, a_new.spi_r) != spis
    net.a.manager.rekey_ike(a_new.uniqueid, net.now)
    net.run()
    assert_consistent(net)
    net.advance(45.0)  # DPD on the rekeyed SA, both directions
    assert_consistent(net)
    assert not net.a.audits("dpd.timeout") and not net.b.audits("dpd.timeout")


def dpd(sa) -> None:  # type: ignore[no-untyped-def]
    sa.queue_exchange([DpdTask()])
    sa.start_next()


def test_peer_requests_answered_by_the_old_node_after_its_last_sync_are_skipped() -> None:
    """The peer's message ID is ahead of the replicated one (the old node answered a DPD after its last
    replication): the new node accepts the next authenticated request instead of dropping it as future."""
    net, b_conns = up()
    stale = record_to_json(net.b.manager.export_state(net.now)[0])
    (a_sa,) = net.a.manager.ike_sas()
    dpd(a_sa)
    net.run()  # answered by the old node after its last replication
    standby = IkeManager(b_conns, FAST, random=DeterministicRandom(77))
    standby.restore(record_from_json(stale), net.now)
    net.b = Side("b", standby, net.b.endpoint)
    net.run()  # the new node's own liveness check
    (sa,) = standby.ike_sas()
    assert sa.window.expected_peer_id == a_sa.window.next_request_id - 1  # one behind the peer
    dpd(a_sa)
    net.run()
    assert a_sa.window.in_flight is None and a_sa.state is IkeState.ESTABLISHED  # answered
    assert sa.window.expected_peer_id == a_sa.window.next_request_id
    assert sa.window.peer_resync == 0  # strict again once a request authenticated


def test_record_repr_and_errors_never_show_keys() -> None:
    net, b_conns = up()
    (record,) = net.b.manager.export_state(net.now)
    secrets = [bytes(record.keys.sk_ei).hex(), bytes(record.children[0].keys.encr_i).hex()]
    text = repr(record) + repr(record.children[0]) + repr(record.keys)
    assert not any(s in text for s in secrets) and record.key in repr(record)
    with pytest.raises(RecordError) as err:
        record_from_json(record_to_json(record).replace(b'"sk_d":"', b'"sk_d":"zz'))
    assert not any(s in str(err.value) for s in secrets)
    with pytest.raises(RecordError, match="version"):
        record_from_json(record_to_json(record).replace(b'"version":1', b'"version":2'))
    other = IkeManager([psk_conn("other", "b", "a", (child(),))], FAST, random=DeterministicRandom(3))
    with pytest.raises(RecordError, match="not configured"):
        other.restore(record, net.now)
    standby = IkeManager(b_conns, FAST, random=DeterministicRandom(4))
    standby.restore(record_from_json(record_to_json(record)), net.now)
    with pytest.raises(RecordError, match="already exists"):
        standby.restore(record_from_json(record_to_json(record)), net.now)
    changes = [e for e in standby.events() if isinstance(e, IkeSaStateChanged)]
    assert changes and changes[0].new is IkeState.ESTABLISHED
