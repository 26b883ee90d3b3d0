"""Base class of every payload dataclass (RFC 7296 §3.2 generic payload header)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Payload:
    """A payload body; the generic header (next payload, critical bit, length) is written by the chain codec.

    ``critical`` is the received C bit (RFC 7296 §2.5: ignored for payload types we know, sent as given).
    """

    payload_type: ClassVar[int] = 0
    critical: bool = field(default=False, kw_only=True)

    @property
    def type(self) -> int:
        """The payload type written in the previous payload's Next Payload field."""
        return self.payload_type

    def encode_body(self) -> bytes:
        """Octets after the 4-octet generic payload header."""
        raise NotImplementedError
