"""An IKE_AUTH exchange waiting for a revocation fetch (docs/pki.md, "Revocation fetching").

The validator never does network I/O; when it lacks a CRL or OCSP answer, ``verify_peer`` raises
``ValidationPending`` and the SA parks the message here: no answer is sent, the message ID window does not
move, the peer's retransmits of that request (RFC 7296 §2.1) are absorbed instead of validated again, and a
``RevocationFetch`` output asks the service for the fetch. The answer comes back as an input
(``IkeManager.revocation_fetched``), or the ``revocation`` timer fires first and the fetch counts as failed;
either way the validator gets the outcome and the parked message is processed again from the start, so the
revocation policy (strict / ifuri / relaxed) decides as for any failed fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ikeguard.engine.context import EngineContext
from ikeguard.engine.events import EngineEvent, RevocationFetch
from ikeguard.engine.message import InMessage
from ikeguard.engine.states import IkeState
from ikeguard.engine.validator import FetchRequest, answer_fetch

TIMER = "revocation"


@dataclass(frozen=True)
class PendingValidation:
    """The message whose processing waits for ``request`` (a peer's request, or the response to ours)."""

    token: int
    request: FetchRequest
    response: bool
    data: bytes
    exchange: int
    message_id: int
    msg: InMessage


class WaitingSa(Protocol):
    """What this module needs of an IKE SA (``engine.ike_sa.IkeSa`` implements it), defined here below the
    SA, so the SA imports this module and not the other way round."""

    pending: PendingValidation | None
    timers: dict[str, float]
    now: float
    uniqueid: int
    state: IkeState
    ctx: EngineContext

    def emit(self, event: EngineEvent) -> None: ...

    def trace_drop(self, reason: str) -> None: ...

    def process_request(self, data: bytes, exchange: int, message_id: int, msg: InMessage) -> None: ...

    def process_response(self, msg: InMessage, exchange: int) -> None: ...


def park(sa: WaitingSa, request: FetchRequest, *, response: bool, data: bytes, exchange: int, message_id: int,
         msg: InMessage) -> None:
    """Wait for ``request``: remember the message, ask the service, arm the deadline."""
    token = (sa.pending.token + 1) if sa.pending is not None else sa.uniqueid * 1000 + 1
    sa.pending = PendingValidation(token, request, response, data, exchange, message_id, msg)
    if response:
        sa.timers.pop("retransmit", None)  # we hold the answer: nothing to retransmit while validating
    sa.timers[TIMER] = sa.now + sa.ctx.settings.revocation_timeout
    sa.emit(RevocationFetch(sa.uniqueid, token, request))


def absorbs_request(sa: WaitingSa, message_id: int) -> bool:
    """True (and traced) for a retransmit of the peer's request whose validation is pending."""
    pending = sa.pending
    if pending is None or pending.response or message_id != pending.message_id:
        return False
    sa.trace_drop(f"retransmitted request {message_id} while certificate validation waits for "
                  f"{pending.request.uri}")
    return True


def absorbs_response(sa: WaitingSa) -> bool:
    """True for a duplicate of the response we are still validating."""
    return sa.pending is not None and sa.pending.response


def answered(sa: WaitingSa, token: int, body: bytes | None, now: float) -> None:
    """The fetch for ``token`` finished (``body`` None: failed or timed out): validate the parked message
    again. A late answer (SA closed, deleted or already answered) is ignored."""
    pending = sa.pending
    if pending is None or pending.token != token or sa.state is IkeState.CLOSED:
        return
    sa.now = now
    sa.pending = None
    sa.timers.pop(TIMER, None)
    answer_fetch(sa.ctx.validator, pending.request, body)
    if pending.response:
        sa.process_response(pending.msg, pending.exchange)
    else:
        sa.process_request(pending.data, pending.exchange, pending.message_id, pending.msg)


def timed_out(sa: WaitingSa) -> None:
    """The ``revocation`` deadline passed without an answer: the fetch counts as failed."""
    if sa.pending is not None:
        answered(sa, sa.pending.token, None, sa.now)
