"""Message IDs, the request/response windows and the retransmission schedule (RFC 7296 §2.1-§2.3).

Window size 1 in each direction (we never send SET_WINDOW_SIZE). The schedule follows strongSwan's:
``timeout * base**n`` with an optional downward jitter and cap, ``tries`` retransmissions, then give up.
"""

from __future__ import annotations

import hashlib
from dataclasses import InitVar, dataclass, field

from ikeguard.wire.iana import ExchangeType


@dataclass(frozen=True)
class RetransmitPolicy:
    """``retransmit_tries/timeout/base`` of the config, plus jitter (percent) and a per-try cap (0 = none)."""

    tries: int = 5
    timeout: float = 4.0
    base: float = 1.8
    jitter_percent: float = 0.0
    limit: float = 0.0

    def delay(self, attempt: int, fraction: float) -> float:
        """Seconds to wait after send number ``attempt`` (0 = first send); ``fraction`` in [0,1) = jitter."""
        value = self.timeout * self.base**attempt
        if self.limit > 0:
            value = min(value, self.limit)
        if self.jitter_percent > 0:
            value -= value * self.jitter_percent / 100.0 * fraction
        return value


@dataclass
class OutgoingRequest:
    """A request we sent and whose response we wait for; ``packets`` are resent verbatim on timeout."""

    message_id: int
    exchange: ExchangeType
    packets: list[bytes] = field(repr=False)
    sent_at: float
    next_retransmit_at: float
    attempt: int = 0


def _digest(request: bytes) -> bytes:
    return hashlib.blake2b(request, digest_size=16).digest()


@dataclass(slots=True)
class CachedResponse:
    """The last response we sent, replayed when its request arrives again (RFC 7296 §2.1). Of the request only
    a 128-bit BLAKE2b digest is kept (issue 22, memory per SA): a retransmission is the same octets, so the
    digests are equal; a different request with the same ID matches only by a hash collision, and then gets
    the response it could have had by replaying the original request anyway."""

    message_id: int
    request: InitVar[bytes]
    packets: list[bytes] = field(repr=False)
    request_digest: bytes = field(init=False, repr=False)

    def __post_init__(self, request: bytes) -> None:
        self.request_digest = _digest(request)

    def answers(self, raw: bytes) -> bool:
        """True when ``raw`` is the request this response answered (a retransmission)."""
        return _digest(raw) == self.request_digest


class MessageIdWindow:
    """Tracks our next request ID and the peer's next expected request ID (window size 1, RFC 7296 §2.3)."""

    # one per IKE SA (issue 22, memory per SA)
    __slots__ = ("cached", "expected_peer_id", "in_flight", "next_request_id", "peer_resync")

    def __init__(self) -> None:
        self.next_request_id = 0
        self.expected_peer_id = 0
        self.in_flight: OutgoingRequest | None = None
        self.cached: CachedResponse | None = None
        # An SA taken over from another node (engine/ha_restore): the peer may have sent requests the old
        # node answered after its last replication, so its next request ID can be ahead of ours. Up to
        # ``peer_resync`` IDs ahead count as new until one authenticated request arrived ("a safe skip of
        # the window": we have no cached answer to replay for the skipped ones anyway).
        self.peer_resync = 0

    def can_send(self) -> bool:
        """True when no request of ours is outstanding."""
        return self.in_flight is None

    def allocate_id(self) -> int:
        """Take the next message ID for a request of ours."""
        mid = self.next_request_id
        self.next_request_id += 1
        return mid

    def classify_request(self, message_id: int, raw: bytes) -> str:
        """``new`` (process), ``retransmit`` (replay cached answer), ``stale`` or ``future`` (drop)."""
        if message_id == self.expected_peer_id:
            return "new"
        if self.cached is not None and message_id == self.cached.message_id:
            return "retransmit" if self.cached.answers(raw) else "stale"
        if self.expected_peer_id < message_id < self.expected_peer_id + self.peer_resync:
            return "new"
        return "stale" if message_id < self.expected_peer_id else "future"

    def mid_sync_answer(self, m1: int, p1: int) -> tuple[int, int] | None:
        """A peer cluster's RFC 6311 synchronisation (§5.1): ``None`` (drop it) when its next request ID
        ``m1`` is below the one we expect, else (P2, M2), our next request ID and the one we expect from it
        now, both taken over."""
        if m1 < self.expected_peer_id:
            return None
        p2 = max(p1, self.next_request_id)
        self.expected_peer_id, self.next_request_id = m1, p2
        return p2, m1

    def response_matches(self, message_id: int) -> bool:
        """True when ``message_id`` answers our outstanding request."""
        return self.in_flight is not None and self.in_flight.message_id == message_id
