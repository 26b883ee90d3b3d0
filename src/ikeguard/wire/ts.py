"""Traffic Selector payloads TSi/TSr (RFC 7296 §3.13): IPv4 and IPv6 address ranges with protocol and ports.

Selector types other than 7 and 8 (e.g. RFC 9478 security labels) are kept as :class:`RawSelector`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import ClassVar

from ikeguard.wire.errors import FieldError, LengthError, TruncatedError
from ikeguard.wire.iana import PayloadType, TsType, lookup
from ikeguard.wire.payload_base import Payload

_SELECTOR = struct.Struct("!BBHHH")
_TS_HEADER = struct.Struct("!BBH")
_LEN_BY_TYPE: dict[int, int] = {TsType.IPV4_ADDR_RANGE: 16, TsType.IPV6_ADDR_RANGE: 40}


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One address range selector (§3.13.1); ports 0..65535 with protocol 0 mean "any"."""

    start_addr: IPv4Address | IPv6Address
    end_addr: IPv4Address | IPv6Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 0xFFFF

    def __post_init__(self) -> None:
        if self.start_addr.version != self.end_addr.version:
            raise ValueError("start and end address of a selector must be the same IP version")
        if not 0 <= self.ip_protocol < 256 or not (
            0 <= self.start_port < 0x10000 and 0 <= self.end_port < 0x10000
        ):
            raise ValueError("IP protocol is one octet, ports two")

    @property
    def ts_type(self) -> TsType:
        """TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE."""
        return TsType.IPV4_ADDR_RANGE if self.start_addr.version == 4 else TsType.IPV6_ADDR_RANGE

    @classmethod
    def from_network(
        cls,
        network: str | IPv4Network | IPv6Network,
        ip_protocol: int = 0,
        ports: tuple[int, int] = (0, 0xFFFF),
    ) -> TrafficSelector:
        """Selector covering a network, e.g. ``from_network("10.1.0.0/24", 6, (443, 443))``."""
        net = ip_network(network) if isinstance(network, str) else network
        return cls(net.network_address, net.broadcast_address, ip_protocol, ports[0], ports[1])

    def encode(self) -> bytes:
        """Type, protocol, length, ports, start and end address."""
        addresses = self.start_addr.packed + self.end_addr.packed
        head = _SELECTOR.pack(
            self.ts_type, self.ip_protocol, 8 + len(addresses), self.start_port, self.end_port
        )
        return head + addresses


@dataclass(frozen=True, slots=True)
class RawSelector:
    """A selector of a type we do not interpret: its type and the octets after the 4-octet selector header."""

    ts_type: TsType | int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= int(self.ts_type) < 256 or not 1 <= len(self.data) <= 0xFFFF - 3:
            raise ValueError(
                "selector type is one octet; data 1..65532 octets (octet 1 of the selector first)"
            )
        if int(self.ts_type) in _LEN_BY_TYPE:
            raise ValueError("address range selectors are TrafficSelector values")

    def encode(self) -> bytes:
        """Type, data[0] (octet 1), Selector Length (octets 2-3, RFC 7296 §3.13.1), the rest of data."""
        return (
            bytes([int(self.ts_type), self.data[0]]) + struct.pack("!H", 3 + len(self.data)) + self.data[1:]
        )


Selector = TrafficSelector | RawSelector


@dataclass(frozen=True, slots=True)
class _TsBase(Payload):
    selectors: tuple[Selector, ...]

    def __post_init__(self) -> None:
        if len(self.selectors) > 255:
            raise ValueError("at most 255 traffic selectors per payload")

    def encode_body(self) -> bytes:
        """Number of TSs, three reserved octets, selectors."""
        return _TS_HEADER.pack(len(self.selectors), 0, 0) + b"".join(s.encode() for s in self.selectors)


def _decode_selectors(body: bytes, offset: int, ptype: int) -> tuple[Selector, ...]:
    if len(body) < 4:
        raise TruncatedError("TS payload shorter than its 4-octet header", offset, ptype)
    count = body[0]
    selectors: list[Selector] = []
    pos = 4
    for _ in range(count):
        at = offset + pos
        if len(body) - pos < 4:
            raise TruncatedError(f"{count} selectors announced, data ends after {len(selectors)}", at, ptype)
        ts_type, proto, length = _TS_HEADER.unpack_from(body, pos)
        if length < 4 or pos + length > len(body):
            raise LengthError(f"selector length {length} does not fit the payload", at + 2, ptype)
        expected = _LEN_BY_TYPE.get(ts_type)
        if expected is None:
            selectors.append(
                RawSelector(lookup(TsType, ts_type), bytes([proto]) + body[pos + 4 : pos + length])
            )
        else:
            if length != expected:
                raise FieldError(
                    f"selector type {ts_type} must be {expected} octets, is {length}", at + 2, ptype
                )
            _t, _p, _l, sport, eport = _SELECTOR.unpack_from(body, pos)
            half = (expected - 8) // 2
            raw_start = body[pos + 8 : pos + 8 + half]
            raw_end = body[pos + 8 + half : pos + expected]
            start: IPv4Address | IPv6Address
            end: IPv4Address | IPv6Address
            if half == 4:
                start, end = IPv4Address(raw_start), IPv4Address(raw_end)
            else:
                start, end = IPv6Address(raw_start), IPv6Address(raw_end)
            selectors.append(TrafficSelector(start, end, proto, sport, eport))
        pos += length
    if pos != len(body):
        raise LengthError(
            f"{len(body) - pos} octets after the {count} announced selectors", offset + pos, ptype
        )
    return tuple(selectors)


@dataclass(frozen=True, slots=True)
class TsiPayload(_TsBase):
    """TSi (§3.13)."""

    payload_type: ClassVar[int] = PayloadType.TSI

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> TsiPayload:
        """Parse §3.13."""
        return cls(_decode_selectors(body, offset, cls.payload_type), critical=critical)


@dataclass(frozen=True, slots=True)
class TsrPayload(_TsBase):
    """TSr (§3.13)."""

    payload_type: ClassVar[int] = PayloadType.TSR

    @classmethod
    def decode_body(cls, body: bytes, offset: int, critical: bool) -> TsrPayload:
        """Parse §3.13."""
        return cls(_decode_selectors(body, offset, cls.payload_type), critical=critical)
