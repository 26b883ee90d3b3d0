"""Engine error types: our own misuse versus a peer's protocol violation (h11's split).

Neither ever crosses the engine boundary from a datagram: a ``RemoteProtocolError`` raised inside a task is
turned into the notify RFC 7296 prescribes (or a silent drop) plus an event.
"""

from __future__ import annotations

from typing import Any

from ikeguard.audit.events import EventName
from ikeguard.engine.eap_relay import EapRelayRequest
from ikeguard.pki.fetch import FetchRequest
from ikeguard.wire.iana import NotifyType


class EngineError(Exception):
    """Base class of engine errors."""


class LocalProtocolError(EngineError):
    """The caller (service, test) used the engine wrongly, e.g. an unknown connection or bad transition."""


class RemoteProtocolError(EngineError):
    """The peer sent something RFC 7296 forbids; carries the notify to answer with (None = drop silently)."""

    def __init__(
        self, reason: str, notify: NotifyType | None = None, data: bytes = b"", event: EventName | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify
        self.data = data
        self.event = event  # audit event name for the failure (default: ike.failed / ike.down)


class ValidationPending(EngineError):
    """Certificate validation needs a revocation fetch first (``engine.pending``): the exchange waits."""

    def __init__(self, request: Any) -> None:  # FetchRequest, or events.SignRequest (our signature)
        what = request.uri if isinstance(request, FetchRequest) else "our signature (token key)"
        super().__init__(f"IKE_AUTH waits for {what}")
        self.request: Any = request


class RelayPending(EngineError):
    """An EAP message must go to RADIUS first (``engine.pending``): the exchange waits for the round."""

    def __init__(self, request: EapRelayRequest, server: str = "") -> None:
        super().__init__(f"EAP conversation of {request.user_name} waits for RADIUS")
        self.request = request
        self.server = server
