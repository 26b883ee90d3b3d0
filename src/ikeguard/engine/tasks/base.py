"""The task contract: ``build_i``/``process_i`` for the exchange initiator, ``process_r``/``build_r`` for the
responder. An exchange is a list of tasks; the IKE SA runs them in order (strongSwan's task_manager)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName
from ikeguard.wire.iana import ExchangeType

if TYPE_CHECKING:
    from ikeguard.engine.events import SignRequest
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


class Status(Enum):
    """What a task says after processing a response."""

    DONE = "done"
    RETRY = "retry"  # initiator: send this exchange again (COOKIE, INVALID_KE_PAYLOAD)
    IGNORE = "ignore"  # initiator: discard this response, the request stays in flight (RFC 5685 §3)
    MORE = "more"  # initiator: this task sends another request of the same exchange (EAP, RFC 7296 §2.16)


class TaskFailed(Exception):
    """The exchange failed for a reason the IKE SA cannot survive (initiator side), with the audit reason."""

    def __init__(self, reason: str, event: EventName = EventName.IKE_DOWN) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


class Task:
    """Base class with no-op hooks; subclasses override what their payloads need."""

    exchange: ExchangeType = ExchangeType.INFORMATIONAL
    fixed_message_id: int | None = None  # a request sent outside the window (RFC 6311 sync: 0)
    max_attempts: int | None = None  # retransmits before an optional exchange is given up (the SA stays)

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        """Add our payloads to the request."""

    def signature_first(self, sa: IkeSa) -> SignRequest | None:
        """A signature ``build_i`` needs and that must be made off the event loop (a token key): the SA
        has the service make it before it sends this request (``engine.pending``). None: build at once."""
        return None

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        """Consume the response; raise TaskFailed when the IKE SA must go."""
        return Status.DONE

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        """Consume the request; raise RemoteProtocolError to answer with just an error notify."""

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        """Add our payloads to the response."""

    def aborted(self, sa: IkeSa, reason: str) -> None:
        """The exchange will not complete (timeout, IKE SA closing): release what the task holds."""
