"""Child SA rekeying with CREATE_CHILD_SA + REKEY_SA (RFC 7296 §1.3.3) and simultaneous-rekey collisions
(§2.8.1), resolved by engine/collisions.py: the exchange holding the lowest of the four nonces is redundant
and its initiator deletes the SA it created; the other initiator deletes the old SA. No SA is lost in any
ordering."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.collisions import Collision, Resolution, handle_collision
from ikeguard.engine.commands import delete_child
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.states import CHILD_LIVE, CHILD_REPLACEABLE, ChildState, ChildTrigger
from ikeguard.engine.tasks.base import Status
from ikeguard.engine.tasks.child_create import ChildCreateTask
from ikeguard.engine.timers import Timer, child_timer
from ikeguard.wire.iana import ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

REKEY_RETRY_DELAY = 15.0


def _finish_old(sa: IkeSa, old: ChildSa, new: ChildSa) -> None:
    if old.state in CHILD_REPLACEABLE:
        sa.child_transition(old, ChildTrigger.REKEY_DONE, f"rekeyed by Child SA {new.uniqueid}")
    sa.audit(
        EventName.CHILD_REKEYED,
        Outcome.SUCCESS,
        child=new.name,
        proposal=new.proposal_text,
        old_spi_in=f"{old.spi_in:08x}",
        new_spi_in=f"{new.spi_in:08x}",
    )


class ChildRekeyTask(ChildCreateTask):
    """Initiator of a Child SA rekey."""

    def __init__(self, old: ChildSa) -> None:
        super().__init__(old.settings, ExchangeType.CREATE_CHILD_SA, rekeyed=old)
        self.old = old

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        super().build_i(sa, msg)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        status = super().process_i(sa, msg)
        if status is Status.RETRY:
            return status
        old, new = self.old, self.child
        if new is None or new.uniqueid not in sa.children:
            if old.state is ChildState.REKEYING:
                sa.child_transition(old, ChildTrigger.REKEY_ABORTED, self.failed_reason)
                sa.timers[child_timer(Timer.CHILD_REKEY, old.uniqueid)] = sa.now + REKEY_RETRY_DELAY
            return Status.DONE
        ours = (self.nonce, self.peer_nonce)
        if old.peer_rekey is not None and old.peer_rekey.uniqueid in sa.children:
            # Collision: the peer rekeyed the same SA while ours was in flight.
            resolution = handle_collision(Collision.CHILD_REKEY, ours=ours, theirs=old.peer_rekey_nonces)
            if resolution is Resolution.OURS_REDUNDANT:
                delete_child(sa, new, "redundant after simultaneous rekey (RFC 7296 §2.8.1)")
                _finish_old(sa, old, old.peer_rekey)
                return Status.DONE
            _finish_old(sa, old, new)
            delete_child(sa, old, "rekeyed")
            return Status.DONE
        if old.state is ChildState.DELETED:
            return Status.DONE
        old.replaced_by, old.our_rekey_nonces = new, ours
        _finish_old(sa, old, new)
        delete_child(sa, old, "rekeyed")
        return Status.DONE

    def aborted(self, sa: IkeSa, reason: str) -> None:
        if self.old.state is ChildState.REKEYING:
            sa.child_transition(self.old, ChildTrigger.REKEY_ABORTED, reason)


class ChildRekeyResponder(ChildCreateTask):
    """Responder of a Child SA rekey; notes a collision with our own rekey of the same SA."""

    def __init__(self, peer_spi: int) -> None:
        super().__init__(None, ExchangeType.CREATE_CHILD_SA)
        self.peer_spi = peer_spi
        self.old: ChildSa | None = None

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        if self.followup is not None:  # IKE_FOLLOWUP_KE continuing this rekey (RFC 9370 §2.2.4)
            ChildCreateTask.process_r(self, sa, msg)
            return
        old = sa.find_child_by_spi(self.peer_spi, inbound=False)
        if old is None or old.state not in CHILD_LIVE:
            raise RemoteProtocolError(
                f"rekey of unknown Child SA {self.peer_spi:08x}", NotifyType.CHILD_SA_NOT_FOUND, b""
            )
        self.old = old
        self.rekeyed = old
        super().process_r(sa, msg)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        super().build_r(sa, msg)
        old, new = self.old, self.child
        if old is None or new is None or new.uniqueid not in sa.children:
            return
        theirs = (self.peer_nonce, self.nonce)
        ours_in_flight = old.state is ChildState.REKEYING
        ours_done = old.replaced_by is not None and old.replaced_by.uniqueid in sa.children
        if ours_in_flight or ours_done:
            resolution = handle_collision(Collision.CHILD_REKEY, ours=old.our_rekey_nonces, theirs=theirs,
                                          ours_complete=not ours_in_flight)
            if resolution is Resolution.DECIDE_LATER:
                old.peer_rekey, old.peer_rekey_nonces = new, theirs  # decided when our rekey completes
                return
            if resolution is Resolution.OURS_REDUNDANT and old.replaced_by is not None:
                delete_child(sa, old.replaced_by, "redundant after simultaneous rekey (RFC 7296 §2.8.1)")
            return
        _finish_old(sa, old, new)
