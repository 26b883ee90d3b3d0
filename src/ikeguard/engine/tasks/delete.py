"""INFORMATIONAL exchanges: DELETE of Child and IKE SAs, liveness checks, and the responder side that answers
them (RFC 7296 §1.4, §2.4, §3.11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.collisions import Collision, Resolution, handle_collision
from ikeguard.engine.states import CHILD_LIVE, ChildState, ChildTrigger, IkeState, IkeTrigger
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, NotifyType, ProtocolId
from ikeguard.wire.payloads import DeletePayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


def delete_ike_payload() -> DeletePayload:
    """Delete payload for the IKE SA itself (no SPIs, §3.11)."""
    return DeletePayload(ProtocolId.IKE)


class DeleteIkeTask(Task):
    """We close the IKE SA (and with it every Child SA)."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        msg.add(delete_ike_payload())
        if sa.state is not IkeState.DELETING:
            sa.transition(IkeTrigger.START_DELETE, self.reason)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        return Status.DONE

    def completed(self, sa: IkeSa) -> None:
        """Answer received: the SA is gone on both ends."""
        sa.close(self.reason)

    def aborted(self, sa: IkeSa, reason: str) -> None:
        sa.close(f"{self.reason} (peer did not confirm: {reason})", failure=True)


class DeleteChildTask(Task):
    """We delete one Child SA; the peer answers with the SPI of its half (§1.4.1)."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, child: ChildSa, reason: str) -> None:
        self.child = child
        self.reason = reason

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        msg.add(DeletePayload(ProtocolId.ESP, (self.child.spi_in.to_bytes(4, "big"),)))
        if self.child.state in CHILD_LIVE:
            sa.child_transition(self.child, ChildTrigger.START_DELETE, self.reason)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        sa.remove_child(self.child, self.reason)
        return Status.DONE

    def aborted(self, sa: IkeSa, reason: str) -> None:
        sa.remove_child(self.child, self.reason)


class DeleteSpiTask(Task):
    """Delete a Child SA only the peer installed (we refused its answer): DELETE with our would-be SPI."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, spi_in: int) -> None:
        self.spi_in = spi_in

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        msg.add(DeletePayload(ProtocolId.ESP, (self.spi_in.to_bytes(4, "big"),)))


def watches_nat_mapping(sa: IkeSa) -> bool:
    """A MOBIKE initiator behind a NAT: the side that must notice a changed NAT mapping (RFC 4555 §3.5)."""
    return sa.initiator and sa.peer.mobike and sa.nat_local and sa.peer_natt


class DpdTask(Task):
    """An empty INFORMATIONAL request: is the peer alive? (§1.4, dpd_delay). A MOBIKE initiator behind a
    NAT adds NAT-D notifies and moves the SA (UPDATE_SA_ADDRESSES) when the answer shows that the NAT maps
    it differently now (RFC 4555 §3.5; the peer only follows such a change on UPDATE_SA_ADDRESSES)."""

    exchange = ExchangeType.INFORMATIONAL

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        if watches_nat_mapping(sa):
            from ikeguard.engine.tasks.natd import add_natd

            add_natd(sa, msg, sa.spi_r)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        sa.timers.pop(Timer.DPD_DEADLINE, None)
        if watches_nat_mapping(sa):
            from ikeguard.engine.tasks.mobike import MobikeUpdateTask
            from ikeguard.engine.tasks.natd import mapping_changed

            if mapping_changed(sa, msg):
                sa.queue_exchange([MobikeUpdateTask()], front=True)
            elif sa.natd_mapping is None:
                sa.natd_mapping = b""  # the peer answers without NAT-D: nothing to learn, stop asking
        return Status.DONE


class InformationalResponder(Task):
    """Answers the peer's INFORMATIONAL: DELETEs (returning our halves), liveness checks, status notifies."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.delete_ike = False
        self.our_spis: list[bytes] = []
        self.children: list[ChildSa] = []
        self.natd = False
        self.auth_failed = False

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        # RFC 7296 §2.21.2: an initiator that refuses our authentication says so in a separate INFORMATIONAL;
        # AUTHENTICATION_FAILED deletes the IKE SA without a Delete payload
        self.auth_failed = msg.notify(NotifyType.AUTHENTICATION_FAILED) is not None
        # NAT-D in a liveness check: a MOBIKE initiator behind a NAT asks how we see it (RFC 4555 §3.5)
        self.natd = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP) is not None and sa.peer_natt
        for payload in msg.get_all(DeletePayload):
            if payload.protocol == ProtocolId.IKE:
                self.delete_ike = True
            elif payload.protocol == ProtocolId.ESP:
                # One dict lookup per SPI the peer names: a Delete can name ~16k of them (RFC 7296 §3.11)
                ours: dict[bytes, ChildSa] = {}
                for candidate in sa.children.values():
                    ours.setdefault(candidate.spi_out.to_bytes(4, "big"), candidate)
                for raw in payload.spis:
                    child = ours.get(raw)
                    if child is None or child in self.children:
                        continue
                    self.children.append(child)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.delete_ike or self.auth_failed:
            return  # empty response (§1.4.1)
        if self.natd:
            from ikeguard.engine.tasks.natd import add_natd_for

            add_natd_for(sa, msg, *(sa.reply_to or (sa.local, sa.remote)))
        spis = []
        for child in self.children:
            if (
                child.state is ChildState.DELETING
                and handle_collision(Collision.CHILD_DELETE) is Resolution.ANSWER_WITHOUT_SPI
            ):
                continue  # both ends deleted it at once: it is gone (§1.4.1)
            spis.append(child.spi_in.to_bytes(4, "big"))
        if spis:
            msg.add(DeletePayload(ProtocolId.ESP, tuple(spis)))

    def completed(self, sa: IkeSa) -> None:
        """After the answer went out: remove what the peer deleted."""
        if self.auth_failed:
            reason = "peer refused our authentication (AUTHENTICATION_FAILED, RFC 7296 §2.21.2)"
            sa.audit(EventName.AUTH_FAILURE, Outcome.FAILURE, reason)
            sa.close(reason, failure=True)
            return
        if self.delete_ike:
            peer_new = sa.peer_rekey
            if (
                sa.children
                and peer_new is not None
                and peer_new.state is IkeState.ESTABLISHED
                and handle_collision(Collision.IKE_DELETE_AFTER_PEER_WON) is Resolution.MOVE_CHILDREN
            ):
                # The peer won a simultaneous IKE rekey and deleted the old SA before our own rekey
                # completed: the Child SAs live on in its new IKE SA (§2.8.2).
                from ikeguard.engine.tasks.ike_rekey import adopt

                adopt(sa, peer_new)
            sa.close("rekeyed" if sa.rekeyed_by is not None else "deleted by peer")
            return
        for child in self.children:
            sa.remove_child(child, "rekeyed" if child.state is ChildState.REKEYED else "deleted by peer")
