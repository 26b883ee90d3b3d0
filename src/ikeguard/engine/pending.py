"""An IKE_AUTH exchange waiting for a revocation fetch (docs/pki.md, "Revocation fetching") or for a RADIUS
round of an EAP conversation (docs/remote-access.md): the same wait, another question.

The validator never does network I/O; when it lacks a CRL or OCSP answer, ``verify_peer`` raises
``ValidationPending`` and the SA parks the message here: no answer is sent, the message ID window does not
move, the peer's retransmits of that request (RFC 7296 §2.1) are absorbed instead of validated again, and a
``RevocationFetch`` output asks the service for the fetch. The answer comes back as an input
(``IkeManager.revocation_fetched``), or the ``revocation`` timer fires first and the fetch counts as failed;
either way the validator gets the outcome and the parked message is processed again from the start, so the
revocation policy (strict / ifuri / relaxed) decides as for any failed fetch.

A RADIUS round parks the same way with a ``RadiusRound`` output; its answer (``IkeManager.radius_answered``)
or the ``radius`` deadline (answered as UNREACHABLE) is left in ``sa.relay_answer`` for the EAP code and the
parked message is processed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ikeguard.engine.context import EngineContext
from ikeguard.engine.eap_relay import EapRelayAnswer, EapRelayRequest, RelayOutcome
from ikeguard.engine.events import (
    EngineEvent,
    RadiusRound,
    RevocationFetch,
    SignAnswer,
    SignatureJob,
    SignRequest,
)
from ikeguard.engine.message import InMessage
from ikeguard.engine.states import IkeState
from ikeguard.engine.timers import Timer
from ikeguard.engine.validator import FetchRequest, answer_fetch

TIMER = Timer.REVOCATION
RADIUS_TIMER = Timer.RADIUS


@dataclass(frozen=True)
class PendingValidation:
    """The message whose processing waits for ``request`` (a peer's request, or the response to ours)."""

    token: int
    request: FetchRequest | EapRelayRequest | SignRequest
    response: bool
    data: bytes
    exchange: int
    message_id: int
    msg: InMessage | None  # None: no message waits, our next request does (initiator's signature)


class WaitingSa(Protocol):
    """What this module needs of an IKE SA (``engine.ike_sa.IkeSa`` implements it), defined here below the
    SA, so the SA imports this module and not the other way round."""

    pending: PendingValidation | None
    relay_answer: EapRelayAnswer | None
    pending_serial: int
    sign_answer: SignAnswer | None
    timers: dict[str, float]
    @property
    def now(self) -> float: ...
    uniqueid: int
    state: IkeState
    ctx: EngineContext

    def emit(self, event: EngineEvent) -> None: ...

    def trace_drop(self, reason: str) -> None: ...

    def process_request(self, data: bytes, exchange: int, message_id: int, msg: InMessage) -> None: ...

    def process_response(self, msg: InMessage, exchange: int) -> None: ...

    def start_next(self) -> None: ...


def park(sa: WaitingSa, request: FetchRequest | EapRelayRequest | SignRequest, *, response: bool, data: bytes,
         exchange: int, message_id: int, msg: InMessage | None, server: str = "") -> None:
    """Wait for ``request``: remember the message, ask the service, arm the deadline."""
    sa.pending_serial += 1  # every wait of this SA (fetches, RADIUS rounds) gets a fresh token
    token = sa.uniqueid * 1000 + sa.pending_serial
    sa.pending = PendingValidation(token, request, response, data, exchange, message_id, msg)
    if response:
        sa.timers.pop(Timer.RETRANSMIT, None)  # we hold the answer: nothing to retransmit while validating
    if isinstance(request, SignRequest):  # the service always answers (a failed signature is an answer)
        sa.emit(SignatureJob(sa.uniqueid, token, request))
        return
    if isinstance(request, EapRelayRequest):
        sa.timers[RADIUS_TIMER] = sa.now + sa.ctx.settings.radius_timeout
        sa.emit(RadiusRound(sa.uniqueid, token, request, server))
        return
    sa.timers[TIMER] = sa.now + sa.ctx.settings.revocation_timeout
    sa.emit(RevocationFetch(sa.uniqueid, token, request))


def absorbs_request(sa: WaitingSa, message_id: int) -> bool:
    """True (and traced) for a retransmit of the peer's request whose validation is pending."""
    pending = sa.pending
    if pending is None or pending.response or message_id != pending.message_id:
        return False
    if isinstance(pending.request, SignRequest):
        sa.trace_drop(f"retransmitted request {message_id} while our signature is made")
    elif isinstance(pending.request, EapRelayRequest):
        sa.trace_drop(f"retransmitted request {message_id} while EAP waits for RADIUS "
                      f"(user {pending.request.user_name})")
    else:
        sa.trace_drop(f"retransmitted request {message_id} while certificate validation waits for "
                      f"{pending.request.uri}")
    return True


def absorbs_response(sa: WaitingSa) -> bool:
    """True for a duplicate of the response we are still validating."""
    return sa.pending is not None and sa.pending.response


def answered(sa: WaitingSa, token: int, body: bytes | None) -> None:
    """The fetch for ``token`` finished (``body`` None: failed or timed out): validate the parked message
    again. A late answer (SA closed, deleted or already answered) is ignored."""
    pending = sa.pending
    if pending is None or pending.token != token or sa.state is IkeState.CLOSED:
        return
    if isinstance(pending.request, EapRelayRequest | SignRequest):
        return
    sa.pending = None
    sa.timers.pop(TIMER, None)
    answer_fetch(sa.ctx.validator, pending.request, body)
    _resume(sa, pending)


def relay_answered(sa: WaitingSa, token: int, answer: EapRelayAnswer) -> None:
    """The RADIUS round for ``token`` ended: the EAP code reads ``answer`` when the parked message runs
    again. A late answer (SA closed, round timed out) is ignored."""
    pending = sa.pending
    if (pending is None or pending.token != token or sa.state is IkeState.CLOSED
            or not isinstance(pending.request, EapRelayRequest)):
        return
    sa.pending = None
    sa.timers.pop(RADIUS_TIMER, None)
    sa.relay_answer = answer
    _resume(sa, pending)


def signature_made(sa: WaitingSa, token: int, answer: SignAnswer) -> None:
    """The worker made (or failed to make) our signature for ``token``: the parked IKE_AUTH request runs
    again and ``_our_auth`` takes the answer. A late answer (SA closed) is ignored."""
    pending = sa.pending
    if (pending is None or pending.token != token or sa.state is IkeState.CLOSED
            or not isinstance(pending.request, SignRequest)):
        return
    sa.pending = None
    sa.sign_answer = answer
    _resume(sa, pending)


def _resume(sa: WaitingSa, pending: PendingValidation) -> None:
    if pending.msg is None:  # the initiator's IKE_AUTH request waited for our signature: send it now
        sa.start_next()
    elif pending.response:
        sa.process_response(pending.msg, pending.exchange)
    else:
        sa.process_request(pending.data, pending.exchange, pending.message_id, pending.msg)


def timed_out(sa: WaitingSa) -> None:
    """The ``revocation`` deadline passed without an answer: the fetch counts as failed."""
    if sa.pending is not None:
        answered(sa, sa.pending.token, None)


def relay_timed_out(sa: WaitingSa) -> None:
    """The ``radius`` deadline passed without an answer from the service: the servers count as unreachable."""
    pending = sa.pending
    if pending is not None and isinstance(pending.request, EapRelayRequest):
        answer = EapRelayAnswer(RelayOutcome.UNREACHABLE,
                                reason=f"no RADIUS answer within {sa.ctx.settings.radius_timeout:g}s")
        relay_answered(sa, pending.token, answer)

