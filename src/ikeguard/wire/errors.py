"""Typed parse errors of the wire codec: each carries the byte offset and a precise reason.

The engine maps them to RFC 7296 answers: :class:`UnsupportedCriticalPayload` -> UNSUPPORTED_CRITICAL_PAYLOAD
(§2.5), :class:`UnsupportedVersion` -> INVALID_MAJOR_VERSION (§2.5), any other :class:`ParseError` ->
INVALID_SYNTAX (§2.21) or a silent drop, as the exchange state prescribes.
"""

from __future__ import annotations

from ikeguard.wire.iana import NotifyType, PayloadType, name_of


class ParseError(ValueError):
    """Not a well-formed IKEv2 message; ``offset`` counts from the first octet of the IKE header."""

    notify: NotifyType = NotifyType.INVALID_SYNTAX

    def __init__(self, reason: str, offset: int, payload_type: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.payload_type = payload_type
        where = f" in {name_of(PayloadType, payload_type)} payload" if payload_type is not None else ""
        super().__init__(f"{reason}{where} at offset {offset}")


class TruncatedError(ParseError):
    """The data ends before a structure or a length field says it does."""


class LengthError(ParseError):
    """A length field is impossible: smaller than its fixed part or larger than its parent structure."""


class FieldError(ParseError):
    """A field holds a value the format forbids (e.g. address length, SPI size, nonce size, payload order)."""


class UnsupportedVersion(ParseError):
    """Major version other than 2 (RFC 7296 §2.5): answer INVALID_MAJOR_VERSION, never parse further."""

    notify = NotifyType.INVALID_MAJOR_VERSION

    def __init__(self, major: int, minor: int, offset: int = 17) -> None:
        self.major = major
        self.minor = minor
        super().__init__(f"unsupported IKE version {major}.{minor}", offset)


class UnsupportedCriticalPayload(ParseError):
    """An unknown payload type with the critical bit set (RFC 7296 §2.5): the whole message is rejected.

    ``payload_type`` is the type to put in the UNSUPPORTED_CRITICAL_PAYLOAD notification data (one octet).
    """

    notify = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int, offset: int) -> None:
        super().__init__(f"unsupported critical payload type {payload_type}", offset, payload_type)
