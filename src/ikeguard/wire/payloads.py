"""RFC 7296 §3.4-§3.16 payloads (all but SA and TS) and RFC 7383 SKF, as frozen dataclasses.

Each class knows its body layout: ``encode_body()`` and ``decode_body(body, offset, critical)``, where
``offset`` is the body's position in the message, used for precise :class:`ParseError` offsets.
Registry values that we do not know are kept as plain ``int`` (``iana.lookup``), so they survive a round trip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from ikeguard.wire.errors import FieldError, LengthError, TruncatedError
from ikeguard.wire.iana import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    IdType,
    KeId,
    NotifyType,
    PayloadType,
    ProtocolId,
    lookup,
)
from ikeguard.wire.payload_base import Payload

_U16 = struct.Struct("!H")
_KE = struct.Struct("!HH")
_NOTIFY = struct.Struct("!BBH")
_DELETE = struct.Struct("!BBH")
_SKF = struct.Struct("!HH")
_CP_ATTR = struct.Struct("!HH")

NONCE_MIN, NONCE_MAX = 16, 256  # RFC 7296 §3.9: 128 to 2048 bits
MAX_CP_ATTRIBUTES = 256
"""Most attributes one Configuration payload may carry (RFC 7296 §3.15.1 sets no limit; a request names a
few, a reply a few addresses and subnets): each further one would only cost parsing work."""
_DELETE_SPI_SIZE: dict[int, int] = {ProtocolId.IKE: 0, ProtocolId.AH: 4, ProtocolId.ESP: 4}
"""RFC 7296 §3.11: the one SPI size each protocol's Delete carries (the IKE SA's SPIs are in the header)."""
INTERPRETED_TYPES = frozenset({*range(PayloadType.SA, PayloadType.EAP + 1), PayloadType.SKF})
"""Payload types with a dataclass of their own (SA..EAP, SKF); everything else is an UnknownPayload."""


def _need(body: bytes, size: int, offset: int, ptype: int, what: str) -> None:
    if len(body) < size:
        raise TruncatedError(f"{what} needs {size} octets, got {len(body)}", offset, ptype)


@dataclass(frozen=True, slots=True)
class KePayload(Payload):
    """Key Exchange payload (§3.4): the KE method and the public value (or KEM data)."""

    payload_type: ClassVar[int] = PayloadType.KE
    group: KeId | int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= int(self.group) < 0x10000:
            raise ValueError("KE method is 16 bits")

    def encode_body(self) -> bytes:
        """Method, two reserved octets, data."""
        return _KE.pack(int(self.group), 0) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> KePayload:
        """Parse §3.4."""
        _need(body, 4, offset, cls.payload_type, "KE payload")
        group, _reserved = _KE.unpack_from(body)
        return cls(lookup(KeId, group), body[4:], critical=critical)


@dataclass(frozen=True, slots=True)
class _IdBase(Payload):
    """Identification payload body (§3.5); ``reserved`` is kept because it is part of the signed octets."""

    id_type: IdType | int
    data: bytes
    reserved: int = 0

    def __post_init__(self) -> None:
        if not 0 <= int(self.id_type) < 256 or not 0 <= self.reserved < 1 << 24:
            raise ValueError("ID type is one octet, reserved three")

    def encode_body(self) -> bytes:
        """ID type, three reserved octets, identification data (RestOfIDPayload in §2.15)."""
        return bytes([int(self.id_type)]) + self.reserved.to_bytes(3, "big") + self.data


def _decode_id(body: bytes, offset: int, ptype: int) -> tuple[IdType | int, bytes, int]:
    _need(body, 4, offset, ptype, "ID payload")
    return lookup(IdType, body[0]), body[4:], int.from_bytes(body[1:4], "big")


@dataclass(frozen=True, slots=True)
class IdiPayload(_IdBase):
    """IDi (§3.5)."""

    payload_type: ClassVar[int] = PayloadType.IDI

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> IdiPayload:
        """Parse §3.5."""
        id_type, data, reserved = _decode_id(body, offset, cls.payload_type)
        return cls(id_type, data, reserved, critical=critical)


@dataclass(frozen=True, slots=True)
class IdrPayload(_IdBase):
    """IDr (§3.5)."""

    payload_type: ClassVar[int] = PayloadType.IDR

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> IdrPayload:
        """Parse §3.5."""
        id_type, data, reserved = _decode_id(body, offset, cls.payload_type)
        return cls(id_type, data, reserved, critical=critical)


@dataclass(frozen=True, slots=True)
class CertPayload(Payload):
    """Certificate payload (§3.6): encoding and data (DER X.509 for encoding 4)."""

    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: CertEncoding | int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= int(self.encoding) < 256:
            raise ValueError("certificate encoding is one octet")

    def encode_body(self) -> bytes:
        """Encoding octet, data."""
        return bytes([int(self.encoding)]) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> CertPayload:
        """Parse §3.6."""
        _need(body, 1, offset, cls.payload_type, "CERT payload")
        return cls(lookup(CertEncoding, body[0]), body[1:], critical=critical)


@dataclass(frozen=True, slots=True)
class CertReqPayload(Payload):
    """Certificate Request payload (§3.7); for X.509 the data is concatenated SHA-1 hashes of CA keys."""

    payload_type: ClassVar[int] = PayloadType.CERTREQ
    encoding: CertEncoding | int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= int(self.encoding) < 256:
            raise ValueError("certificate encoding is one octet")

    @property
    def authorities(self) -> tuple[bytes, ...]:
        """The 20-octet SHA-1 hashes of trusted CA public keys (§3.7); a trailing partial hash is dropped."""
        return tuple(self.data[i : i + 20] for i in range(0, len(self.data) - 19, 20))

    def encode_body(self) -> bytes:
        """Encoding octet, certification authority data."""
        return bytes([int(self.encoding)]) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> CertReqPayload:
        """Parse §3.7."""
        _need(body, 1, offset, cls.payload_type, "CERTREQ payload")
        return cls(lookup(CertEncoding, body[0]), body[1:], critical=critical)


@dataclass(frozen=True, slots=True)
class AuthPayload(Payload):
    """Authentication payload (§3.8)."""

    payload_type: ClassVar[int] = PayloadType.AUTH
    method: AuthMethod | int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= int(self.method) < 256:
            raise ValueError("auth method is one octet")

    def encode_body(self) -> bytes:
        """Method, three reserved octets, authentication data."""
        return bytes([int(self.method), 0, 0, 0]) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> AuthPayload:
        """Parse §3.8."""
        _need(body, 4, offset, cls.payload_type, "AUTH payload")
        return cls(lookup(AuthMethod, body[0]), body[4:], critical=critical)


@dataclass(frozen=True, slots=True)
class NoncePayload(Payload):
    """Nonce payload (§3.9): 16 to 256 octets."""

    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def __post_init__(self) -> None:
        if not NONCE_MIN <= len(self.data) <= NONCE_MAX:
            raise ValueError("nonce must be 16 to 256 octets (RFC 7296 §3.9)")

    def encode_body(self) -> bytes:
        """The nonce octets."""
        return self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> NoncePayload:
        """Parse §3.9; a nonce outside 16..256 octets is a syntax error."""
        if not NONCE_MIN <= len(body) <= NONCE_MAX:
            raise FieldError(f"nonce of {len(body)} octets (must be 16..256)", offset, cls.payload_type)
        return cls(body, critical=critical)


@dataclass(frozen=True, slots=True)
class NotifyPayload(Payload):
    """Notify payload (§3.10): protocol, SPI, type and data."""

    payload_type: ClassVar[int] = PayloadType.NOTIFY
    notify_type: NotifyType | int
    data: bytes = b""
    protocol: ProtocolId | int = 0
    spi: bytes = b""

    def __post_init__(self) -> None:
        if (
            not 0 <= int(self.notify_type) < 0x10000
            or not 0 <= int(self.protocol) < 256
            or len(self.spi) > 255
        ):
            raise ValueError("notify type, protocol or SPI out of range")

    @property
    def is_error(self) -> bool:
        """Types below 16384 are errors (§3.10.1)."""
        return int(self.notify_type) < 16384

    def encode_body(self) -> bytes:
        """Protocol ID, SPI size, type, SPI, data."""
        return _NOTIFY.pack(int(self.protocol), len(self.spi), int(self.notify_type)) + self.spi + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> NotifyPayload:
        """Parse §3.10."""
        _need(body, 4, offset, cls.payload_type, "Notify payload")
        protocol, spi_size, ntype = _NOTIFY.unpack_from(body)
        if 4 + spi_size > len(body):
            raise LengthError(f"SPI size {spi_size} exceeds the Notify payload", offset + 1, cls.payload_type)
        return cls(
            lookup(NotifyType, ntype),
            body[4 + spi_size :],
            lookup(ProtocolId, protocol),
            body[4 : 4 + spi_size],
            critical=critical,
        )


@dataclass(frozen=True, slots=True)
class DeletePayload(Payload):
    """Delete payload (§3.11): a protocol and the SPIs to delete (none for IKE).

    ``spi_size`` defaults to the size of the SPIs given, else 4 for ESP/AH and 0 for IKE.
    """

    payload_type: ClassVar[int] = PayloadType.DELETE
    protocol: ProtocolId | int
    spis: tuple[bytes, ...] = ()
    spi_size: int = -1

    def __post_init__(self) -> None:
        if self.spi_size < 0:
            default = 4 if int(self.protocol) in (ProtocolId.ESP, ProtocolId.AH) else 0
            object.__setattr__(self, "spi_size", len(self.spis[0]) if self.spis else default)
        if not 0 <= int(self.protocol) < 256 or not 0 <= self.spi_size < 256 or len(self.spis) > 0xFFFF:
            raise ValueError("Delete payload field out of range")
        if _DELETE_SPI_SIZE.get(int(self.protocol)) != self.spi_size:
            raise ValueError("a Delete payload is for IKE with SPI size 0, or AH/ESP with 4 (RFC 7296 §3.11)")
        if int(self.protocol) == ProtocolId.IKE and self.spis:
            raise ValueError("a Delete payload for the IKE SA names no SPI (RFC 7296 §3.11)")
        if self.spis and set(map(len, self.spis)) != {self.spi_size}:
            raise ValueError("all SPIs of a Delete payload have the SPI size")

    def encode_body(self) -> bytes:
        """Protocol, SPI size, number of SPIs, SPIs."""
        return _DELETE.pack(int(self.protocol), self.spi_size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> DeletePayload:
        """Parse §3.11: the SPI size the protocol prescribes (0 for IKE, with no SPIs; 4 for AH and ESP),
        and SPI size times count filling the payload exactly, so that every SPI costs its own octets."""
        _need(body, 4, offset, cls.payload_type, "Delete payload")
        protocol, size, count = _DELETE.unpack_from(body)
        expected = _DELETE_SPI_SIZE.get(protocol)
        if expected is None:
            raise FieldError(
                f"Delete payload for protocol {protocol} (must be 1 IKE, 2 AH or 3 ESP)",
                offset,
                cls.payload_type,
            )
        if size != expected:
            raise FieldError(
                f"SPI size {size} for protocol {protocol} (must be {expected})", offset + 1, cls.payload_type
            )
        if protocol == ProtocolId.IKE and count != 0:
            raise FieldError(
                f"Delete of the IKE SA names {count} SPIs (must be none)", offset + 2, cls.payload_type
            )
        if size * count != len(body) - 4:
            raise LengthError(
                f"{count} SPIs of {size} octets do not fill {len(body) - 4} octets",
                offset + 2,
                cls.payload_type,
            )
        spis = tuple([body[i : i + size] for i in range(4, len(body), size)] if count else ())
        return cls(lookup(ProtocolId, protocol), spis, size, critical=critical)


@dataclass(frozen=True, slots=True)
class VendorIdPayload(Payload):
    """Vendor ID payload (§3.12)."""

    payload_type: ClassVar[int] = PayloadType.VENDOR_ID
    data: bytes

    def encode_body(self) -> bytes:
        """The vendor ID octets."""
        return self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> VendorIdPayload:
        """Parse §3.12."""
        return cls(body, critical=critical)


@dataclass(frozen=True, slots=True)
class CfgAttribute:
    """Configuration attribute (§3.15.1); ``value`` may be empty (a request for the attribute)."""

    type: CfgAttr | int
    value: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= int(self.type) < 0x8000 or len(self.value) > 0xFFFF:
            raise ValueError("CP attribute type is 15 bits, value at most 65535 octets")


@dataclass(frozen=True, slots=True)
class CpPayload(Payload):
    """Configuration payload (§3.15)."""

    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: CfgType | int
    attributes: tuple[CfgAttribute, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= int(self.cfg_type) < 256:
            raise ValueError("CFG type is one octet")

    def encode_body(self) -> bytes:
        """CFG type, three reserved octets, attributes."""
        out = bytearray([int(self.cfg_type), 0, 0, 0])
        for a in self.attributes:
            out += _CP_ATTR.pack(int(a.type), len(a.value)) + a.value
        return bytes(out)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> CpPayload:
        """Parse §3.15 (at most :data:`MAX_CP_ATTRIBUTES`); the reserved bit before each type is ignored."""
        _need(body, 4, offset, cls.payload_type, "CP payload")
        attrs: list[CfgAttribute] = []
        pos = 4
        while pos < len(body):
            if len(attrs) == MAX_CP_ATTRIBUTES:
                raise FieldError(
                    f"more than {MAX_CP_ATTRIBUTES} CP attributes", offset + pos, cls.payload_type
                )
            if len(body) - pos < 4:
                raise TruncatedError("CP attribute header cut short", offset + pos, cls.payload_type)
            atype, length = _CP_ATTR.unpack_from(body, pos)
            if pos + 4 + length > len(body):
                raise LengthError(
                    f"CP attribute length {length} exceeds the payload", offset + pos + 2, cls.payload_type
                )
            attrs.append(CfgAttribute(lookup(CfgAttr, atype & 0x7FFF), body[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        return cls(lookup(CfgType, body[0]), tuple(attrs), critical=critical)


@dataclass(frozen=True, slots=True)
class EapPayload(Payload):
    """EAP payload (§3.16): one complete EAP message (RFC 3748), kept as octets."""

    payload_type: ClassVar[int] = PayloadType.EAP
    data: bytes = field(repr=False)  # EAP-GTC/-MD5 carry passwords or their hashes: kept out of logs

    def __post_init__(self) -> None:
        if len(self.data) < 4 or int.from_bytes(self.data[2:4], "big") != len(self.data):
            raise ValueError("an EAP message has a 4-octet header whose Length covers the whole message")

    @property
    def code(self) -> int:
        """EAP Code (1 Request, 2 Response, 3 Success, 4 Failure)."""
        return self.data[0]

    @property
    def identifier(self) -> int:
        """EAP Identifier."""
        return self.data[1]

    def encode_body(self) -> bytes:
        """The EAP message."""
        return self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> EapPayload:
        """Parse §3.16: the EAP Length field must equal the payload body length."""
        _need(body, 4, offset, cls.payload_type, "EAP payload")
        (eap_len,) = _U16.unpack_from(body, 2)
        if eap_len != len(body):
            raise LengthError(
                f"EAP length {eap_len} != payload body {len(body)}", offset + 2, cls.payload_type
            )
        return cls(body, critical=critical)


@dataclass(frozen=True, slots=True)
class SkPayload(Payload):
    """Encrypted and Authenticated payload (§3.14), opaque: ``body`` = IV || ciphertext || ICV.

    ``first_inner`` is the type of the first payload inside (the SK generic header's Next Payload field).
    """

    payload_type: ClassVar[int] = PayloadType.SK
    first_inner: int
    body: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.first_inner < 256:
            raise ValueError("payload type is one octet")

    def encode_body(self) -> bytes:
        """IV || ciphertext || ICV."""
        return self.body

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool, first_inner: int = 0) -> SkPayload:
        """Keep the encrypted body as is."""
        return cls(first_inner, body, critical=critical)


@dataclass(frozen=True, slots=True)
class SkfPayload(Payload):
    """Encrypted and Authenticated Fragment (RFC 7383 §2.5): numbering plus the opaque protected body.

    ``first_inner`` is the first inner payload type in fragment 1 and 0 in the others.
    """

    payload_type: ClassVar[int] = PayloadType.SKF
    first_inner: int
    number: int
    total: int
    body: bytes

    def __post_init__(self) -> None:
        if not (1 <= self.number <= self.total <= 0xFFFF) or not 0 <= self.first_inner < 256:
            raise ValueError("fragment number must be 1..total, total at most 65535")

    def encode_body(self) -> bytes:
        """Fragment Number, Total Fragments, IV || ciphertext || ICV."""
        return _SKF.pack(self.number, self.total) + self.body

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool, first_inner: int = 0) -> SkfPayload:
        """Parse RFC 7383 §2.5: fragment 0, or a number above the total, is invalid."""
        _need(body, 4, offset, cls.payload_type, "SKF payload")
        number, total = _SKF.unpack_from(body)
        if not 1 <= number <= total:
            raise FieldError(f"fragment {number} of {total}", offset, cls.payload_type)
        return cls(first_inner, number, total, body[4:], critical=critical)


@dataclass(frozen=True, slots=True)
class UnknownPayload(Payload):
    """A payload type we do not implement, kept verbatim (non-critical ones are skipped by the engine)."""

    unknown_type: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 < self.unknown_type < 256 or self.unknown_type in INTERPRETED_TYPES:
            raise ValueError(f"payload type {self.unknown_type} is 1..255 and not one this codec interprets")

    @property
    def type(self) -> int:
        """The received payload type."""
        return self.unknown_type

    def encode_body(self) -> bytes:
        """The received body."""
        return self.data
