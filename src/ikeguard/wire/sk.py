"""Encrypted messages: the SK payload (RFC 7296 §3.14) and SKF fragments (RFC 7383), over an SkProtector.

The wire/crypto contract: ``aad`` is every octet before the IV — the IKE header with its final Length, the
SK/SKF generic payload header and, for SKF, Fragment Number and Total Fragments (RFC 7383 §2.5). For
CBC+HMAC the protector computes the ICV over aad || IV || ciphertext; for AEAD, ``aad`` is the associated
data (RFC 5282 §5.1). ``ikeguard.crypto.sk`` implements the protocol; this module never imports crypto.
Errors of ``protector.open`` (bad ICV, bad padding) propagate unchanged: the engine drops such messages
silently (§2.21.2), while a :class:`ParseError` from the decrypted chain is answered with INVALID_SYNTAX.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ikeguard.wire.errors import FieldError
from ikeguard.wire.header import HEADER_LEN, IkeHeader
from ikeguard.wire.iana import PayloadType
from ikeguard.wire.message import (
    GENERIC_HEADER_LEN,
    Message,
    Screen,
    decode_payloads,
    encode_payloads,
    parse_message,
)
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import SkfPayload, SkPayload

_GENERIC = struct.Struct("!BBH")
_SKF_FIELDS = struct.Struct("!HH")
SKF_HEADER_LEN = GENERIC_HEADER_LEN + _SKF_FIELDS.size


class SkProtector(Protocol):
    """Encrypts and authenticates one direction of an IKE SA (implemented by ``ikeguard.crypto.sk``)."""

    def overhead(self, plaintext_len: int) -> int:
        """Octets added to ``plaintext_len``: IV + padding + pad-length octet + ICV."""
        ...

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """IV || ciphertext (including padding and pad length) || ICV."""
        ...

    def open(self, aad: bytes, body: bytes) -> bytes:
        """Verify and decrypt IV || ct || ICV; returns the inner payload octets, padding removed."""
        ...


def _generic_header(next_type: int, length: int) -> bytes:
    return _GENERIC.pack(next_type, 0, length)


def encode_encrypted_message(
    header: IkeHeader, inner_payloads: Iterable[Payload], protector: SkProtector
) -> bytes:
    """Build ``HDR, SK {inner_payloads}``: encode the inner chain, seal it, write all lengths first."""
    first, plaintext = encode_payloads(inner_payloads)
    body_len = len(plaintext) + protector.overhead(len(plaintext))
    sk_len = GENERIC_HEADER_LEN + body_len
    if HEADER_LEN + sk_len > 0xFFFFFFFF or sk_len > 0xFFFF:
        raise ValueError("encrypted payload longer than 65535 octets: fragment the message (RFC 7383)")
    aad = header.encode(PayloadType.SK, HEADER_LEN + sk_len) + _generic_header(first, sk_len)
    body = protector.seal(aad, plaintext)
    if len(body) != body_len:
        raise ValueError(f"protector sealed {len(body)} octets, announced {body_len}")
    return aad + body


def decode_encrypted_message(
    data: bytes, protector: SkProtector, *, outer: Message | None = None, screen: Screen | None = None
) -> Message:
    """Parse ``data`` and open its SK payload: the result has ``inner`` set to the decrypted payloads.

    ``outer`` is ``parse_message(data)`` when the caller already has it; ``screen`` sees the decrypted
    chain's payload types before any of its bodies is decoded. Raises ``ParseError`` for malformed outer or
    inner structure, FieldError when there is no SK payload, and whatever ``protector.open`` raises when
    authentication fails.
    """
    data = bytes(data)
    message = outer if outer is not None else parse_message(data)
    sk = message.sk
    if sk is None:
        raise FieldError("message has no SK payload", HEADER_LEN)
    sk_start = len(data) - len(sk.body) - GENERIC_HEADER_LEN
    plaintext = protector.open(data[: sk_start + GENERIC_HEADER_LEN], sk.body)
    # Offsets of inner payload errors count from the start of the plaintext, placed after the IV.
    inner = decode_payloads(
        plaintext, sk.first_inner, sk_start + GENERIC_HEADER_LEN, inner=True, screen=screen
    )
    return Message(message.header, message.payloads, inner, plaintext)


@dataclass(frozen=True, slots=True)
class Fragment:
    """One opened SKF fragment (RFC 7383 §2.5): its place, the first inner payload type and the plaintext."""

    header: IkeHeader
    number: int
    total: int
    first_payload: int
    plaintext: bytes = field(repr=False)


def encode_fragments(
    header: IkeHeader, inner_payloads: Iterable[Payload], protector: SkProtector, max_fragment_size: int
) -> list[bytes]:
    """Split ``HDR, SK {inner}`` into SKF messages of at most ``max_fragment_size`` octets (RFC 7383 §2.5).

    ``max_fragment_size`` is the IKE message size (UDP payload without the non-ESP marker). Every fragment
    carries the same header (Message ID) with Next Payload = SKF; fragment 1 names the first inner payload.
    """
    first, plaintext = encode_payloads(inner_payloads)
    fixed = HEADER_LEN + SKF_HEADER_LEN
    chunk = _largest_chunk(max_fragment_size - fixed, protector)
    if chunk < 1:
        raise ValueError(f"max_fragment_size {max_fragment_size} leaves no room for data")
    chunks = [plaintext[i : i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    total = len(chunks)
    if total > 0xFFFF:
        raise ValueError("message needs more than 65535 fragments")
    out: list[bytes] = []
    for number, piece in enumerate(chunks, start=1):
        body_len = len(piece) + protector.overhead(len(piece))
        skf_len = SKF_HEADER_LEN + body_len
        aad = (
            header.encode(PayloadType.SKF, HEADER_LEN + skf_len)
            + _generic_header(first if number == 1 else 0, skf_len)
            + _SKF_FIELDS.pack(number, total)
        )
        body = protector.seal(aad, piece)
        if len(body) != body_len:
            raise ValueError(f"protector sealed {len(body)} octets, announced {body_len}")
        out.append(aad + body)
    return out


def _largest_chunk(room: int, protector: SkProtector) -> int:
    """Largest plaintext length n with n + overhead(n) <= room (overhead grows with block padding)."""
    low, high = 0, max(room, 0)
    while low < high:
        mid = (low + high + 1) // 2
        if mid + protector.overhead(mid) <= room:
            low = mid
        else:
            high = mid - 1
    return low


def open_fragment(data: bytes, protector: SkProtector, *, outer: Message | None = None) -> Fragment:
    """Parse one SKF message (unless ``outer`` is its parse already) and open it; raises ParseError, or the
    protector's error on a bad ICV."""
    data = bytes(data)
    message = outer if outer is not None else parse_message(data)
    last = message.payloads[-1] if message.payloads else None
    if not isinstance(last, SkfPayload):
        raise FieldError("message has no SKF payload", HEADER_LEN)
    body_start = len(data) - len(last.body)
    plaintext = protector.open(data[:body_start], last.body)
    return Fragment(message.header, last.number, last.total, last.first_inner, plaintext)


def assemble_fragments(fragments: Sequence[Fragment], *, screen: Screen | None = None) -> Message:
    """Reassemble opened fragments (any order) into one message with ``inner`` set (RFC 7383 §2.6).

    Every fragment 1..Total must be present exactly once with the same Total and Message ID. ``screen``
    sees the reassembled chain's payload types before any body is decoded.
    """
    if not fragments:
        raise FieldError("no fragments", 0)
    total = fragments[0].total
    by_number = {f.number: f for f in fragments}
    message_id = fragments[0].header.message_id
    if any(f.total != total or f.header.message_id != message_id for f in fragments):
        raise FieldError(
            "fragments disagree on Total Fragments or Message ID", HEADER_LEN + GENERIC_HEADER_LEN
        )
    if sorted(by_number) != list(range(1, total + 1)) or len(fragments) != total:
        raise FieldError(f"have fragments {sorted(by_number)} of {total}", HEADER_LEN + GENERIC_HEADER_LEN)
    plaintext = b"".join(by_number[n].plaintext for n in range(1, total + 1))
    first = by_number[1]
    inner = decode_payloads(plaintext, first.first_payload, 0, inner=True, screen=screen)
    # Reassembled, the message is what an SK message would have been (RFC 7383 §2.6); the body is gone.
    return Message(first.header, (SkPayload(first.first_payload, b""),), inner, plaintext)
