"""High availability: continue an IKE SA from its :class:`~ikeguard.engine.ha_state.IkeSaRecord` on the node
that took over (issue 20, docs/ha.md), without renegotiation.

What a takeover must not do is reuse a number the old node may have used after its last replication:
- ESP outbound sequence numbers (RFC 4303 §3.3.3) restart ``seq_margin`` after the replicated value, so a
  number sent by the old node since then is never sent again (strongSwan's ha plugin does the same); the
  inbound replay window (§3.4.3) restarts at the replicated highest number.
- IKE message IDs (RFC 7296 §2.3): ours continue from the replicated ``next_request_id``, which the active
  node replicates periodically; if the old node sent a request after its last replication, the peer has
  used that ID: the first exchange (a liveness probe, engine/ha_mid_sync.py ``LivenessProbe``) moves to
  the next ID until the peer answers. The
  peer's IDs may be ahead: the window accepts up to ``peer_resync`` IDs ahead until one authenticated
  request arrived. When both ends announced RFC 6311 support, the first exchange is instead its message ID
  synchronisation (engine/ha_mid_sync.py): the peer tells us the IDs it expects, so ours cannot lag (not
  under an AEAD IKE SA, see ``mid_sync_usable``).
"""

from __future__ import annotations

from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.context import EngineContext
from ikeguard.engine.events import IkeSaStateChanged
from ikeguard.engine.ha_mid_sync import LivenessProbe, MidSyncTask, mid_sync_usable
from ikeguard.engine.ha_state import IKE_TIMERS, IkeSaRecord, RecordError
from ikeguard.engine.ike_sa import ExchangeRules, IkeSa
from ikeguard.engine.keys import restored_child_sa_keys, restored_ike_sa_crypto
from ikeguard.engine.settings import ChildSettings
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.engine.tasks.child_create import install
from ikeguard.engine.timers import Timer, child_timer

DEFAULT_SEQ_MARGIN = 1 << 20  # ~11 s of 1 Gbit/s in 1400-octet packets between two replications
DEFAULT_PEER_RESYNC = 16


def restore_ike_sa(
    ctx: EngineContext,
    record: IkeSaRecord,
    now: float,
    rules: ExchangeRules,
    *,
    seq_margin: int = DEFAULT_SEQ_MARGIN,
    peer_resync: int = DEFAULT_PEER_RESYNC,
    check_liveness: bool = True,
) -> IkeSa:
    """Build the established IKE SA of ``record`` with its Child SAs and emit their InstallChildSa outputs.

    The caller registers the SA (``IkeManager.restore``). Deadlines already past fire on the next timer run
    (a rekey due during the failover starts at once). ``record`` keys are taken over (not copied)."""
    conn = ctx.connections.get(record.connection)
    if conn is None:
        raise RecordError(f"connection {record.connection!r} of IKE SA {record.key} is not configured here")
    settings = {c.name: c for c in conn.children}
    for c in record.children:
        if c.name not in settings:
            raise RecordError(f"child {c.name!r} of IKE SA {record.key} is not configured here")
    spi_local = record.spi_i if record.initiator else record.spi_r
    sa = IkeSa(ctx, initiator=record.initiator, local=record.local, remote=record.remote, spi_local=spi_local,
               conn=conn, now=now, rules=rules)
    sa.spi_i, sa.spi_r = record.spi_i, record.spi_r
    sa.proposal = record.proposal
    sa.crypto = restored_ike_sa_crypto(record.proposal, record.keys, record.initiator, ctx.random)
    sa.nonce_i, sa.nonce_r = record.nonce_i, record.nonce_r
    sa.window.next_request_id = record.next_request_id
    sa.window.expected_peer_id = record.expected_peer_id
    sa.window.peer_resync = peer_resync
    sa.local_id, sa.remote_id = record.local_id, record.remote_id
    sa.remote_cert_subject = record.remote_cert_subject
    sa.remote_cert_serial = record.remote_cert_serial
    sa.remote_cert_issuer = record.remote_cert_issuer
    sa.remote_cert_not_after = record.remote_cert_not_after
    sa.eap_identity = record.eap_identity
    sa.nat_local, sa.nat_remote, sa.peer_natt, sa.encap = (record.nat_local, record.nat_remote,
                                                           record.peer_natt, record.encap)
    sa.peer.fragmentation, sa.peer.mobike = record.fragmentation, record.mobike
    sa.peer.mid_sync = record.mid_sync
    sa.peer.redirect = record.redirect
    sa.peer.signature_hashes = record.signature_hashes
    sa.first_contact = False
    sa.established_at = record.established_at
    sa.state = IkeState.ESTABLISHED
    sa.emit(IkeSaStateChanged(sa.uniqueid, sa.name, IkeState.CREATED, IkeState.ESTABLISHED,
                              "taken over from the HA peer"))
    for name, deadline in record.timers:
        if name in IKE_TIMERS:
            sa.timers[name] = deadline
    if conn.dpd_delay > 0:
        sa.timers[Timer.DPD] = now + conn.dpd_delay
    if sa.nat_local:
        sa.timers[Timer.KEEPALIVE] = now + ctx.settings.nat_keepalive
    _restore_children(sa, record, settings, now, seq_margin)
    if check_liveness and mid_sync_usable(sa):
        sa.queue_exchange([MidSyncTask()])  # RFC 6311: the peer tells us the message IDs it expects
    elif check_liveness:
        sa.queue_exchange([LivenessProbe()])  # finds the peer's next ID if the old node used ours (see above)
    return sa


def _restore_children(sa: IkeSa, record: IkeSaRecord, settings: dict[str, ChildSettings], now: float,
                      seq_margin: int) -> None:
    for c in record.children:
        child_settings = settings[c.name]
        child = ChildSa(
            uniqueid=sa.ctx.new_uniqueid(), name=c.name, settings=child_settings, spi_in=c.spi_in,
            state=ChildState.INSTALLED, spi_out=c.spi_out, proposal=c.proposal, local_ts=c.local_ts,
            remote_ts=c.remote_ts, keys=restored_child_sa_keys(c.proposal, c.keys),
            installed_at=c.installed_at,
            rekey_at=c.rekey_at, expire_at=c.expire_at, initiator=c.initiator, mode=c.mode,
        )
        sa.add_child(child)
        install(sa, child, seq_out=c.esp.seq_out + seq_margin, replay_top=c.esp.replay_top)
        if child.rekey_at is not None:
            sa.timers[child_timer(Timer.CHILD_REKEY, child.uniqueid)] = child.rekey_at
        if child.expire_at is not None:
            sa.timers[child_timer(Timer.CHILD_EXPIRE, child.uniqueid)] = child.expire_at
