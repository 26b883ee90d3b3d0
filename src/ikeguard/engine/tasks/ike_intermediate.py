"""IKE_INTERMEDIATE (RFC 9242) carrying RFC 9370 additional key exchanges after IKE_SA_INIT.

IKE_SA_INIT negotiates ADDKE1..7 next to the (EC)DH group; each one that is not NONE is run, in transform
type order, in its own IKE_INTERMEDIATE exchange (message IDs 1..n, IKE_AUTH then uses n+1): the initiator
sends a KE payload of that method (for ML-KEM its encapsulation key), the responder answers with its KE
(the ciphertext). Both messages are protected with the keys in force, then both sides update every key
(RFC 9370 §2.2.2, :func:`ikeguard.engine.keys.additional_ke_update`).

Every IKE_INTERMEDIATE message is bound into the AUTH payloads (RFC 9242 §3.3.2):
IntAuth_iN = prf(SK_pi, IntAuth_i(N-1) | A | P) for the initiator's messages and likewise with SK_pr for the
responder's, with the SK_p of the exchange's own keys, A|P the message as if unfragmented
(``engine.message``); the signed octets of both AUTH payloads end with IntAuth_iN | IntAuth_rN | IKE_AUTH_MID.

Written by hand: no maintained Python library implements IKEv2 exchanges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName
from ikeguard.crypto.dh import KeyExchange, new_key_exchange
from ikeguard.crypto.errors import CryptoError, UnsupportedTransform
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.intermediate import IntermediateState
from ikeguard.engine.keys import additional_ke_update
from ikeguard.engine.message import sent_int_auth
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.base import Status, Task, TaskFailed
from ikeguard.wire.iana import ExchangeType, KeId, NotifyType, name_of
from ikeguard.wire.payloads import KePayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

__all__ = ["IkeIntermediateTask", "int_auth_octets"]


def _chain(sa: IkeSa, state: IntermediateState, *, from_initiator: bool, ap: bytes) -> None:
    assert sa.crypto is not None
    keys = sa.crypto.keys
    state.chain(sa.crypto.prf_id, keys.sk_pi if from_initiator else keys.sk_pr,
                from_initiator=from_initiator, ap=ap)


def int_auth_octets(sa: IkeSa) -> bytes:
    """What RFC 9242 §3.3.2 appends to both AUTH payloads' signed octets: IntAuth_iN | IntAuth_rN |
    IKE_AUTH_MID (the first IKE_AUTH request's Message ID, right after the n IKE_INTERMEDIATE exchanges);
    empty when no IKE_INTERMEDIATE exchange took place."""
    state = sa.intermediate
    if state is None or state.done == 0:
        return b""
    return state.int_auth_i + state.int_auth_r + (state.done + 1).to_bytes(4, "big")


def _update_keys(sa: IkeSa, shared: bytes) -> None:
    assert sa.crypto is not None and sa.proposal is not None
    sa.crypto = additional_ke_update(
        sa.crypto, sa.proposal, shared, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r, sa.initiator,
        sa.ctx.random,
    )


class IkeIntermediateTask(Task):
    """One IKE_INTERMEDIATE exchange carrying the next additional key exchange (both roles)."""

    exchange = ExchangeType.IKE_INTERMEDIATE

    def __init__(self, method: int = 0) -> None:
        self.method = method
        self.ke: KeyExchange | None = None
        self.request: OutMessage | None = None
        self.response: OutMessage | None = None
        self.shared = b""

    def __repr__(self) -> str:
        return f"IkeIntermediateTask({name_of(KeId, self.method)})"

    # ------------------------------------------------------------------ initiator
    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.ke is None:
            self.ke = new_key_exchange(self.method, sa.ctx.random)
        msg.add(KePayload(self.method, self.ke.public_value))
        self.request = msg

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        state = sa.intermediate
        assert state is not None and self.ke is not None and self.request is not None
        error = msg.error_notify()
        if error is not None:
            name = name_of(NotifyType, int(error.notify_type))
            raise TaskFailed(f"peer refused IKE_INTERMEDIATE ({name_of(KeId, self.method)}) with {name}",
                             EventName.IKE_FAILED)
        ke = msg.get(KePayload)
        if ke is None or int(ke.group) != self.method:
            got = "no KE payload" if ke is None else f"KE {name_of(KeId, int(ke.group))}"
            raise TaskFailed(f"IKE_INTERMEDIATE response with {got}, expected {name_of(KeId, self.method)}",
                             EventName.IKE_FAILED)
        try:
            shared = self.ke.shared_secret(ke.data)
        except CryptoError as exc:
            raise TaskFailed(f"peer's additional key exchange value rejected: {exc}",
                             EventName.IKE_FAILED) from None
        assert sa.crypto is not None
        _chain(sa, state, from_initiator=True, ap=sent_int_auth(
            self.request, sa.spi_i, sa.spi_r, initiator=True))
        _chain(sa, state, from_initiator=False, ap=msg.int_auth_ap)
        _update_keys(sa, shared)
        state.done += 1
        self.ke = None
        return Status.DONE

    # ------------------------------------------------------------------ responder
    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        state = sa.intermediate
        if sa.state is not IkeState.HALF_OPEN or state is None or state.complete:
            raise RemoteProtocolError("IKE_INTERMEDIATE not expected now (no additional key exchange left)",
                                      NotifyType.INVALID_SYNTAX, event=EventName.IKE_FAILED)
        self.method = state.methods[state.done]
        ke = msg.get(KePayload)
        if ke is None or int(ke.group) != self.method:
            got = "no KE payload" if ke is None else f"KE {name_of(KeId, int(ke.group))}"
            raise RemoteProtocolError(
                f"IKE_INTERMEDIATE request with {got}, expected {name_of(KeId, self.method)}",
                NotifyType.INVALID_SYNTAX, event=EventName.IKE_FAILED)
        try:
            self.ke = new_key_exchange(self.method, sa.ctx.random)
            _, self.shared = self.ke.respond(ke.data)
        except (CryptoError, UnsupportedTransform) as exc:
            raise RemoteProtocolError(f"peer's additional key exchange value rejected: {exc}",
                                      NotifyType.INVALID_SYNTAX, event=EventName.IKE_FAILED) from None
        _chain(sa, state, from_initiator=True, ap=msg.int_auth_ap)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        assert self.ke is not None
        msg.add(KePayload(self.method, self.ke.public_value))
        self.response = msg

    def completed(self, sa: IkeSa) -> None:
        """The response is encoded and sent with the old keys: chain it, then update the keys."""
        state = sa.intermediate
        if self.response is None or state is None or sa.crypto is None:
            return
        _chain(sa, state, from_initiator=False, ap=sent_int_auth(
            self.response, sa.spi_i, sa.spi_r, initiator=False))
        _update_keys(sa, self.shared)
        self.shared = b""
        self.ke = None
        state.done += 1

    def aborted(self, sa: IkeSa, reason: str) -> None:
        self.shared = b""
        self.ke = None
