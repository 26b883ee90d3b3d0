"""The 28-octet IKE header (RFC 7296 §3.1).

Next Payload and Length are not fields of :class:`IkeHeader`: they follow from the payload chain and are
written by the message encoder, and checked by the decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from ikeguard.wire.errors import LengthError, TruncatedError, UnsupportedVersion
from ikeguard.wire.iana import ExchangeType, lookup

HEADER_LEN = 28
_HEADER = struct.Struct("!8s8sBBBBII")


class HeaderFlags(IntFlag):
    """RFC 7296 §3.1 flags; other bits are reserved (kept as received, sent as 0 by us)."""

    NONE = 0
    INITIATOR = 0x08
    VERSION = 0x10
    RESPONSE = 0x20


_INITIATOR, _RESPONSE = int(HeaderFlags.INITIATOR), int(HeaderFlags.RESPONSE)
_FLAGS = tuple(HeaderFlags(value) for value in range(256))  # decoded flags octet -> HeaderFlags, built once


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """IKE SA SPIs, exchange type, flags and message ID (RFC 7296 §3.1)."""

    spi_i: bytes
    spi_r: bytes
    exchange_type: ExchangeType | int
    flags: HeaderFlags
    message_id: int
    major_version: int = 2
    minor_version: int = 0

    def __post_init__(self) -> None:
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs are 8 octets")
        if not 0 <= self.message_id < 1 << 32:
            raise ValueError("message ID out of range")
        if not 0 <= int(self.exchange_type) < 256 or not 0 <= int(self.flags) < 256:
            raise ValueError("exchange type and flags are one octet")
        if not (0 <= self.major_version < 16 and 0 <= self.minor_version < 16):
            raise ValueError("version numbers are 4 bits")

    @property
    def is_initiator(self) -> bool:
        """I flag: sent by the original initiator of the IKE SA."""
        return bool(int(self.flags) & _INITIATOR)  # int arithmetic: IntFlag.__and__ builds a flag object

    @property
    def is_response(self) -> bool:
        """R flag: this message is a response."""
        return bool(int(self.flags) & _RESPONSE)

    def encode(self, next_payload: int, length: int) -> bytes:
        """The 28 header octets for a message of ``length`` octets whose first payload is ``next_payload``."""
        version = (self.major_version << 4) | self.minor_version
        return _HEADER.pack(
            self.spi_i,
            self.spi_r,
            next_payload,
            version,
            int(self.exchange_type),
            int(self.flags),
            self.message_id,
            length,
        )


def decode_header(data: bytes) -> tuple[IkeHeader, int, int]:
    """Parse the header: (header, first payload type, Length field); Length must equal ``len(data)``."""
    if len(data) < HEADER_LEN:
        raise TruncatedError(f"{len(data)} octets, shorter than the {HEADER_LEN}-octet IKE header", 0)
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(data)
    major, minor = version >> 4, version & 0x0F
    if major != 2:
        raise UnsupportedVersion(major, minor)
    if length < HEADER_LEN:
        raise LengthError(f"header Length {length} is smaller than the header", 24)
    if length > len(data):
        raise TruncatedError(f"header Length {length} exceeds the {len(data)} octets received", 24)
    if length < len(data):
        raise LengthError(f"header Length {length} leaves {len(data) - length} trailing octets", 24)
    header = IkeHeader(
        spi_i=spi_i,
        spi_r=spi_r,
        exchange_type=lookup(ExchangeType, exchange),
        flags=_FLAGS[flags],
        message_id=message_id,
        major_version=major,
        minor_version=minor,
    )
    return header, next_payload, length
