"""IKE messages: header plus payload chain (RFC 7296 §3.1-§3.2), parsed to and built from dataclasses.

:func:`parse_message` leaves an SK/SKF payload opaque; ``wire.sk`` decrypts it. Rules enforced here:
strict lengths (header Length = datagram, each payload length inside its parent), the SK or SKF payload is
the last one (§3.14, RFC 7383 §2.5), unknown payload types are kept unless critical (§2.5).

Hostile input costs bounded work: a chain is first walked header by header (:func:`scan_payloads`, at most
:data:`MAX_CHAIN_PAYLOADS` payloads), an optional ``screen`` then sees the payload types before any body is
decoded (``wire.rules`` refuses payloads the exchange does not allow), and every body decoder bounds what its
own counts may cost (``wire.payloads``, ``wire.sa``, ``wire.ts``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ikeguard.wire.errors import FieldError, LengthError, TruncatedError, UnsupportedCriticalPayload
from ikeguard.wire.header import HEADER_LEN, IkeHeader, decode_header
from ikeguard.wire.iana import NotifyType, PayloadType
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.ts import TsiPayload, TsrPayload

_GENERIC = struct.Struct("!BBH")
GENERIC_HEADER_LEN = 4
_CRITICAL = 0x80

P = TypeVar("P", bound=Payload)

_Decoder = Callable[[bytes, int, bool], Payload]
DECODERS: dict[int, _Decoder] = {
    PayloadType.SA: SaPayload.decode_body,
    PayloadType.KE: KePayload.decode_body,
    PayloadType.IDI: IdiPayload.decode_body,
    PayloadType.IDR: IdrPayload.decode_body,
    PayloadType.CERT: CertPayload.decode_body,
    PayloadType.CERTREQ: CertReqPayload.decode_body,
    PayloadType.AUTH: AuthPayload.decode_body,
    PayloadType.NONCE: NoncePayload.decode_body,
    PayloadType.NOTIFY: NotifyPayload.decode_body,
    PayloadType.DELETE: DeletePayload.decode_body,
    PayloadType.VENDOR_ID: VendorIdPayload.decode_body,
    PayloadType.TSI: TsiPayload.decode_body,
    PayloadType.TSR: TsrPayload.decode_body,
    PayloadType.CP: CpPayload.decode_body,
    PayloadType.EAP: EapPayload.decode_body,
}
"""Payload types this codec interprets (SK and SKF are handled by the chain walker)."""

_ENCRYPTED_TYPES = frozenset({int(PayloadType.SK), int(PayloadType.SKF)})
_NONE = int(PayloadType.NONE)
_SK = int(PayloadType.SK)

MAX_CHAIN_PAYLOADS = 128
"""Most payloads one chain (the message's, or the decrypted one) may hold, unknown ones included. RFC 7296
sets no limit; the most a peer needs is about 60 (strongSwan accepts at most 20 Notify, 20 Vendor ID,
20 Delete and 8 CERT payloads and one of most others): each further payload would only cost parsing work."""

Screen = Callable[[Sequence[int]], None]
"""Sees the payload types of a chain after its headers were walked and before any body is decoded; raises a
``ParseError`` to refuse the chain (``wire.rules.PayloadScreen`` checks them against the exchange's rules)."""


@dataclass(frozen=True, slots=True)
class RawPayload:
    """One payload of a walked chain, body not yet decoded (RFC 7296 §3.2 generic header fields)."""

    type: int
    critical: bool
    next_type: int
    offset: int
    """Where the body starts in the message (for error offsets)."""
    body: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed or to-be-built IKE message.

    ``payloads`` is the top-level chain as on the wire (an encrypted message ends with an :class:`SkPayload`
    or :class:`SkfPayload`). ``inner`` holds the decrypted payloads of the SK payload once ``wire.sk`` opened
    it, else ``None``.
    """

    header: IkeHeader
    payloads: tuple[Payload, ...]
    inner: tuple[Payload, ...] | None = None
    # the decrypted inner chain's octets (reassembled for SKF): RFC 9242 §3.3.2 IntAuth_P
    plaintext: bytes = field(default=b"", repr=False, compare=False)

    @property
    def is_encrypted(self) -> bool:
        """True when the last payload is SK or SKF."""
        return bool(self.payloads) and self.payloads[-1].type in _ENCRYPTED_TYPES

    @property
    def sk(self) -> SkPayload | None:
        """The SK payload, when present."""
        last = self.payloads[-1] if self.payloads else None
        return last if isinstance(last, SkPayload) else None

    @property
    def content(self) -> tuple[Payload, ...]:
        """What the exchange carries: unencrypted payloads before SK, then the decrypted ones (if opened)."""
        outer = tuple(p for p in self.payloads if p.type not in _ENCRYPTED_TYPES)
        return outer + (self.inner or ())

    def get(self, cls: type[P]) -> P | None:
        """First payload of class ``cls`` in :attr:`content`."""
        for p in self.content:
            if isinstance(p, cls):
                return p
        return None

    def get_all(self, cls: type[P]) -> tuple[P, ...]:
        """Every payload of class ``cls`` in :attr:`content`, in order."""
        return tuple(p for p in self.content if isinstance(p, cls))

    def notify(self, notify_type: NotifyType | int) -> NotifyPayload | None:
        """First Notify payload of ``notify_type`` in :attr:`content`."""
        for p in self.content:
            if isinstance(p, NotifyPayload) and p.notify_type == notify_type:
                return p
        return None


def _next_field(payload: Payload, following: Payload | None) -> int:
    if isinstance(payload, SkPayload | SkfPayload):
        return payload.first_inner
    return following.type if following is not None else 0


def encode_payloads(payloads: Iterable[Payload]) -> tuple[int, bytes]:
    """Encode a chain: (type of the first payload or 0, octets with every generic header filled in)."""
    items = tuple(payloads)
    out = bytearray()
    for i, payload in enumerate(items):
        if payload.type in _ENCRYPTED_TYPES and i != len(items) - 1:
            raise ValueError("an SK/SKF payload must be the last payload (RFC 7296 §3.14)")
        body = payload.encode_body()
        length = GENERIC_HEADER_LEN + len(body)
        if length > 0xFFFF:
            raise ValueError(f"payload {payload.type} longer than 65535 octets")
        following = items[i + 1] if i + 1 < len(items) else None
        flags = _CRITICAL if payload.critical else 0
        out += _GENERIC.pack(_next_field(payload, following), flags, length)
        out += body
    return (items[0].type if items else 0), bytes(out)


def scan_payloads(
    data: bytes, first_type: int, offset: int = 0, *, inner: bool = False
) -> tuple[RawPayload, ...]:
    """Walk a chain's generic headers without decoding a body: lengths inside ``data``, SK/SKF last (and not
    inside an encrypted chain), no unknown critical payload (§2.5), at most :data:`MAX_CHAIN_PAYLOADS`.

    ``offset`` is where ``data`` sits in the message. Raises a ``ParseError`` subclass.
    """
    raw: list[RawPayload] = []
    ptype = first_type
    pos = 0
    while ptype != _NONE:
        at = offset + pos
        if len(raw) == MAX_CHAIN_PAYLOADS:
            raise FieldError(f"more than {MAX_CHAIN_PAYLOADS} payloads in one chain", at, ptype)
        if len(data) - pos < GENERIC_HEADER_LEN:
            raise TruncatedError(f"payload header of type {ptype} cut short", at, ptype)
        next_type, flags, length = _GENERIC.unpack_from(data, pos)
        if length < GENERIC_HEADER_LEN:
            raise LengthError(f"payload length {length} is smaller than its header", at + 2, ptype)
        if pos + length > len(data):
            raise TruncatedError(
                f"payload length {length} exceeds the {len(data) - pos} octets left", at + 2, ptype
            )
        critical = bool(flags & _CRITICAL)
        body = data[pos + GENERIC_HEADER_LEN : pos + length]
        pos += length
        if ptype in _ENCRYPTED_TYPES:
            if inner:
                raise FieldError("SK/SKF payload inside an encrypted payload", at, ptype)
            if pos != len(data):
                raise FieldError("SK/SKF payload is not the last payload", at, ptype)
            raw.append(RawPayload(ptype, critical, next_type, at + GENERIC_HEADER_LEN, body))
            return tuple(raw)
        if critical and ptype not in DECODERS:
            raise UnsupportedCriticalPayload(ptype, at)
        raw.append(RawPayload(ptype, critical, next_type, at + GENERIC_HEADER_LEN, body))
        ptype = next_type
    if pos != len(data):
        raise LengthError(f"{len(data) - pos} octets after the last payload", offset + pos)
    return tuple(raw)


def decode_scanned(raw: Sequence[RawPayload]) -> tuple[Payload, ...]:
    """Decode the bodies of a walked chain (see :func:`scan_payloads`)."""
    payloads: list[Payload] = []
    for item in raw:
        ptype = item.type
        if ptype in _ENCRYPTED_TYPES:
            cls = SkPayload if ptype == _SK else SkfPayload
            payloads.append(cls.decode_body(item.body, item.offset, item.critical, item.next_type))
            continue
        decoder = DECODERS.get(ptype)
        if decoder is not None:
            payloads.append(decoder(item.body, item.offset, item.critical))
        else:
            payloads.append(UnknownPayload(ptype, item.body, critical=False))
    return tuple(payloads)


def decode_payloads(
    data: bytes, first_type: int, offset: int = 0, *, inner: bool = False, screen: Screen | None = None
) -> tuple[Payload, ...]:
    """Parse a payload chain starting with ``first_type``; ``offset`` is where ``data`` sits in the message.

    ``inner`` marks a decrypted chain, where SK/SKF are not allowed. ``screen`` sees the payload types before
    any body is decoded. Raises a ``ParseError`` subclass.
    """
    raw = scan_payloads(data, first_type, offset, inner=inner)
    if screen is not None:
        screen(tuple(item.type for item in raw))
    return decode_scanned(raw)


def parse_message(data: bytes, *, screen: Screen | None = None) -> Message:
    """Parse one IKE message (without the RFC 3948 non-ESP marker); SK content stays opaque.

    ``screen`` sees the payload types before any body is decoded (see :data:`Screen`).
    """
    data = bytes(data)
    header, first, _length = decode_header(data)
    payloads = decode_payloads(data[HEADER_LEN:], first, HEADER_LEN, screen=screen)
    return Message(header, payloads)


def encode_message(message: Message) -> bytes:
    """Build the datagram for ``message.header`` and ``message.payloads`` (an SK payload is sent as is).

    To encrypt, use ``wire.sk.encode_encrypted_message`` instead.
    """
    first, body = encode_payloads(message.payloads)
    length = HEADER_LEN + len(body)
    return message.header.encode(first, length) + body
