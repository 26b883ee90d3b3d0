"""RFC 6311 (Protocol Support for High Availability of IKEv2/IPsec): IKE message ID synchronisation after a
takeover (issue 20, docs/ha.md).

- Support: both ends put IKEV2_MESSAGE_ID_SYNC_SUPPORTED in IKE_AUTH
  (:class:`MidSyncSupportTask`); ikeguard announces it only as a member of an HA pair
  (``EngineSettings.ha_mid_sync``), so a single gateway's IKE_AUTH is unchanged. The peer's announcement is
  part of the replicated record.
- After a takeover (engine/ha_restore.py) the cluster member sends an INFORMATIONAL request with message ID
  0 carrying IKEV2_MESSAGE_ID_SYNC (:class:`MidSyncTask`): a 4-octet nonce, M1 (EXPECTED_SEND_REQ_MESSAGE_ID,
  the ID of our next request) and P1 (EXPECTED_RECV_REQ_MESSAGE_ID, the peer's next request ID we expect).
  The peer answers with message ID 0: the same nonce, P2 (its next request ID) and M2 (the ID it expects
  from us next), each at least what we sent (§5.1). We continue with M2 and P2, so a request the old node
  sent after its last replication can no longer make the peer drop ours as a retransmission.
  The peer drops a synchronisation whose M1 is below the highest ID it saw from the cluster (§5.1), so M1 is
  the replicated value plus ``mid_margin``.
- Only when the IKE SA does not use an AEAD (:func:`mid_sync_usable`): a peer deriving AEAD IVs from the
  message ID cannot answer with ID 0 again; strongSwan destroys the IKE SA trying.
- Unanswered after one retransmission (lost, or applied by the peer but not answered), the sync is given up
  without losing the SA (:meth:`MidSyncTask.aborted`) and the takeover continues as without RFC 6311.
- Responder side: a peer cluster's request with message ID 0 outside the window is answered by
  ``IkeSa._mid_sync_request`` with ``MessageIdWindow.mid_sync_answer`` (engine/retransmit.py).

Hand-written: no maintained Python IKEv2 library implements RFC 6311; strongSwan 5.9's ``ike_mid_sync``
task is the peer behaviour this was tested against. IPSEC_REPLAY_COUNTER_SYNC is not used: outbound ESP
numbers jump ahead by a margin on takeover (engine/ha_restore.py), which needs nothing from the peer.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.tasks.delete import DpdTask
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

DEFAULT_MID_MARGIN = 16  # requests the old node may have sent since its last replication


def mid_sync_usable(sa: IkeSa) -> bool:
    """Both announced support and the IKE SA does not use an AEAD. Under AES-GCM / ChaCha20-Poly1305
    (RFC 5282, RFC 7634) a peer may derive its IVs from the message ID, as strongSwan does: it must not
    encrypt a second message with ID 0 under the same key, so it cannot answer the synchronisation, and
    strongSwan 5.9.8 then destroys the IKE SA ("encrypting encrypted payload failed, no IV or padding",
    seen in tests/interop/test_ha_failover.py). Such SAs keep the safe skip of the window instead."""
    return sa.peer.mid_sync and sa.crypto is not None and not sa.crypto.encr.aead


def _parse(data: bytes) -> tuple[bytes, int, int] | None:
    """Nonce, EXPECTED_SEND_REQ_MESSAGE_ID, EXPECTED_RECV_REQ_MESSAGE_ID (12 octets)."""
    if len(data) != 12:
        return None
    send, recv = struct.unpack_from("!II", data, 4)
    return data[:4], send, recv


class MidSyncSupportTask(Task):
    """IKEV2_MESSAGE_ID_SYNC_SUPPORTED in IKE_AUTH, both directions, when this node is part of an HA pair."""

    exchange = ExchangeType.IKE_AUTH

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.ctx.settings.ha_mid_sync:
            msg.add_notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        sa.peer.mid_sync = (sa.ctx.settings.ha_mid_sync
                            and msg.notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED) is not None)
        return Status.DONE

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        # with EAP rounds the notify comes in the first of several IKE_AUTH requests (RFC 7296 §2.16)
        announced = msg.notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED) is not None
        sa.peer.mid_sync = sa.peer.mid_sync or announced

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if sa.rounds is not None and not sa.rounds.finished:
            return
        if sa.ctx.settings.ha_mid_sync:
            msg.add_notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED)
        else:
            sa.peer.mid_sync = False  # only when both announced it


class MidSyncTask(Task):
    """Our synchronisation request after a takeover (message ID 0, see the module docstring)."""

    exchange = ExchangeType.INFORMATIONAL
    fixed_message_id = 0
    max_attempts = 1  # unanswered after one retransmission: the liveness check instead (see aborted)

    def __init__(self, margin: int = DEFAULT_MID_MARGIN) -> None:
        self.margin = margin
        self.nonce = b""
        self.sent: tuple[int, int] = (0, 0)

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        self.nonce = sa.ctx.random.bytes(4)
        m1 = sa.window.next_request_id + self.margin
        p1 = sa.window.expected_peer_id
        self.sent = (m1, p1)
        msg.add_notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, self.nonce + struct.pack("!II", m1, p1))

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        notify = msg.notify(NotifyType.IKEV2_MESSAGE_ID_SYNC)
        parsed = _parse(notify.data) if notify is not None else None
        if parsed is None or parsed[0] != self.nonce:  # not an answer to this request: the safe skip instead
            self.aborted(sa, "no matching IKEV2_MESSAGE_ID_SYNC in the answer")
            return Status.DONE
        _nonce, p2, m2 = parsed
        m1, p1 = self.sent
        # §5.1: the peer never goes below what we sent; take the higher in any case
        sa.window.next_request_id = max(m2, m1)
        sa.window.expected_peer_id = max(p2, p1)
        sa.window.peer_resync = 0
        sa.timers.pop(Timer.DPD_DEADLINE, None)
        return Status.DONE

    def aborted(self, sa: IkeSa, reason: str) -> None:
        """No (usable) answer: continue as without RFC 6311, a liveness check (with M1, below) and the peer's
        IDs accepted a little ahead (engine/ha_restore.py)."""
        if sa.state is not IkeState.ESTABLISHED:
            return
        # the peer may have applied the synchronisation and failed only to answer (strongSwan sets its IDs
        # before encrypting the answer): it then expects M1, and a peer that never saw it at most M1 - 1
        # (the margin covers what the old node sent), so M1 it is; its own next ID may be a little ahead of
        # ours, which the restored window accepts (engine/ha_restore.py)
        sa.window.next_request_id = max(sa.window.next_request_id, self.sent[0])
        sa.queue_exchange([DpdTask()], front=True)


DEFAULT_PROBES = 8


class LivenessProbe(DpdTask):
    """The first request after a takeover without RFC 6311: a liveness check with the replicated message
    ID. If the old node sent a request after its last replication, the peer already used that ID and a peer
    such as strongSwan drops ours ("received message ID 1, expected 2, ignored"; seen on 6 of 200 SAs in
    tests/interop/test_ha_many.py). Unanswered at its first retransmission time, the next probe takes the
    next ID (a peer drops requests outside its window silently, RFC 7296 §2.3), up to ``probes`` IDs ahead;
    then a plain liveness check, whose failure closes the SA as any dead peer."""

    max_attempts = 0

    def __init__(self, probes: int = DEFAULT_PROBES) -> None:
        super().__init__()
        self.probes = probes

    def aborted(self, sa: IkeSa, reason: str) -> None:
        if sa.state is not IkeState.ESTABLISHED:
            return
        sa.queue_exchange([LivenessProbe(self.probes - 1) if self.probes > 1 else DpdTask()], front=True)
