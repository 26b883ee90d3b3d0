"""Which responder tasks answer a peer's request, chosen from the exchange type and its payloads
(RFC 7296 §1.3 distinguishes new Child SA, Child SA rekey and IKE SA rekey by SA protocol and REKEY_SA)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.tasks.base import Task
from ikeguard.wire.iana import ExchangeType, NotifyType, ProtocolId
from ikeguard.wire.sa import SaPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage


def responder_tasks(sa: IkeSa, msg: InMessage) -> list[Task]:
    """Tasks for a request after IKE_AUTH."""
    from ikeguard.engine.tasks.child_create import ChildCreateTask
    from ikeguard.engine.tasks.child_rekey import ChildRekeyResponder
    from ikeguard.engine.tasks.delete import InformationalResponder
    from ikeguard.engine.tasks.ike_rekey import IkeRekeyResponder

    if msg.exchange is ExchangeType.IKE_FOLLOWUP_KE:
        from ikeguard.engine.tasks.followup_ke import take_link

        if sa.state.value not in ("established", "rekeying", "rekeyed"):
            raise RemoteProtocolError("IKE_FOLLOWUP_KE while not established", NotifyType.STATE_NOT_FOUND)
        return [take_link(sa, msg)]  # the CREATE_CHILD_SA task it continues (RFC 9370 §2.2.4)
    if msg.exchange is ExchangeType.IKE_INTERMEDIATE:
        from ikeguard.engine.tasks.ike_intermediate import IkeIntermediateTask

        return [IkeIntermediateTask()]  # refuses when no additional key exchange is due (RFC 9370 §2.2.2)
    if msg.exchange is ExchangeType.INFORMATIONAL:
        if msg.notify(NotifyType.UPDATE_SA_ADDRESSES) is not None and sa.peer.mobike:
            from ikeguard.engine.tasks.mobike import MobikeUpdateResponder

            return [MobikeUpdateResponder(), InformationalResponder()]
        return [InformationalResponder()]
    if msg.exchange is ExchangeType.CREATE_CHILD_SA:
        if sa.state.value not in ("established", "rekeying", "rekeyed"):
            raise RemoteProtocolError("CREATE_CHILD_SA while not established", NotifyType.TEMPORARY_FAILURE)
        offer = msg.get(SaPayload)
        if offer is not None and offer.proposals and int(offer.proposals[0].protocol) == ProtocolId.IKE:
            return [IkeRekeyResponder()]
        if sa.state.value in ("rekeying", "rekeyed"):
            # RFC 7296 §2.25.2: no Child SA creation or rekey while the IKE SA itself is being rekeyed.
            raise RemoteProtocolError("IKE SA rekey in progress", NotifyType.TEMPORARY_FAILURE)
        rekey = msg.notify(NotifyType.REKEY_SA)
        if rekey is not None:
            return [ChildRekeyResponder(int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1)]
        if sa.ctx.new_child_refusal is not None:
            # RFC 7296 §1.3/§3.10.1: NO_ADDITIONAL_SAS = unwilling to accept more Child SAs on this IKE SA
            # (rekeys above still go through: the existing SAs are kept).
            reason = f"new Child SA refused: {sa.ctx.new_child_refusal}"
            sa.audit("child.failed", "failure", reason, child="")
            raise RemoteProtocolError(reason, NotifyType.NO_ADDITIONAL_SAS)
        return [ChildCreateTask(None, ExchangeType.CREATE_CHILD_SA)]
    raise RemoteProtocolError(f"unexpected exchange {msg.exchange.name}", NotifyType.INVALID_SYNTAX)
