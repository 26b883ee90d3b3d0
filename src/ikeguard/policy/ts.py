"""Traffic selectors: config syntax, resolution and narrowing (RFC 7296 §2.9).

Config syntax (swanctl): ``10.10.0.0/24``, ``2001:db8:10::/64``, ``10.0.0.1-10.0.0.9``, a bare address,
each with an optional ``[proto/port]`` (``[tcp/8583]``, ``[udp]``, ``[tcp/1024-65535]``, ``[/53]``,
``[tcp/%any]``); ``dynamic`` = the peer's (or our) address; ``%peer`` = what the peer inventory binds to
the authenticated identity. Written by hand: no library models IKE traffic selectors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from ikeguard.wire.iana import TsType

PROTOCOLS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ipv6-icmp": 58, "icmpv6": 58,
             "sctp": 132}
TS_EXPECTED = (
    'expected a traffic selector: a CIDR ("10.10.0.0/24", "2001:db8:10::/64"), an address or range '
    '("10.0.0.1-10.0.0.9"), optionally with "[proto/port]" ("10.10.0.0/24[tcp/8583]"), "dynamic" or "%peer"'
)
_TS_RE = re.compile(r"^(?P<addr>[^\[\]]+)(\[(?P<proto>[^/\]]*)(/(?P<port>[^\]]*))?\])?$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, order=True)
class TrafficSelector:
    """One RFC 7296 §3.13.1 selector: address range, IP protocol (0 = any) and port range.

    ``start_port > end_port`` is the RFC 4301 OPAQUE range (65535-0).
    """

    version: int
    start: int
    end: int
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> TsType:
        """TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE."""
        return TsType.IPV4_ADDR_RANGE if self.version == 4 else TsType.IPV6_ADDR_RANGE

    @property
    def start_address(self) -> Address:
        """First address of the range."""
        return ipaddress.ip_address(self.start) if self.version == 4 else ipaddress.IPv6Address(self.start)

    @property
    def end_address(self) -> Address:
        """Last address of the range."""
        return ipaddress.ip_address(self.end) if self.version == 4 else ipaddress.IPv6Address(self.end)

    @property
    def is_opaque(self) -> bool:
        """RFC 4301 OPAQUE port range."""
        return self.start_port > self.end_port

    @classmethod
    def from_addresses(cls, start: Address, end: Address, protocol: int = 0, start_port: int = 0,
                       end_port: int = 65535) -> TrafficSelector:
        """Build from ``ipaddress`` objects (what the wire codec hands over)."""
        if start.version != end.version:
            raise ValueError("start and end address must be the same IP version")
        if int(start) > int(end):
            raise ValueError("start address after end address")
        return cls(start.version, int(start), int(end), protocol, start_port, end_port)

    @classmethod
    def for_network(cls, network: ipaddress.IPv4Network | ipaddress.IPv6Network, protocol: int = 0,
                    start_port: int = 0, end_port: int = 65535) -> TrafficSelector:
        """Selector covering a whole network."""
        return cls(network.version, int(network.network_address), int(network.broadcast_address),
                   protocol, start_port, end_port)

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        """The largest selector inside both, or None (RFC 7296 §2.9 narrowing step)."""
        if self.version != other.version:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start > end:
            return None
        if self.protocol and other.protocol and self.protocol != other.protocol:
            return None
        protocol = self.protocol or other.protocol
        ports = _port_intersection(self, other)
        if ports is None:
            return None
        return TrafficSelector(self.version, start, end, protocol, ports[0], ports[1])

    def contains(self, other: TrafficSelector) -> bool:
        """Whether ``other`` lies completely inside this selector."""
        return self.intersect(other) == other

    def __str__(self) -> str:
        return _selector_text(self)

    def _format(self) -> str:
        start, end = self.start_address, self.end_address
        text = str(start)
        if start != end:
            nets = list(ipaddress.summarize_address_range(start, end))
            text = str(nets[0]) if len(nets) == 1 else f"{start}-{end}"
        if self.protocol or (self.start_port, self.end_port) != (0, 65535):
            proto = next((k for k, v in PROTOCOLS.items() if v == self.protocol and k != "icmpv6"),
                         str(self.protocol))
            if self.is_opaque:
                port = "opaque"
            elif (self.start_port, self.end_port) == (0, 65535):
                port = ""
            elif self.start_port == self.end_port:
                port = str(self.start_port)
            else:
                port = f"{self.start_port}-{self.end_port}"
            text += f"[{proto}/{port}]" if port else f"[{proto}]"
        return text


@lru_cache(maxsize=4096)
def _selector_text(ts: TrafficSelector) -> str:
    """A selector's text, memoized (audit records and sas --json name the same selectors again and again);
    a bounded module memo rather than a per-instance cache, which would cost every selector a __dict__."""
    return ts._format()


def _port_intersection(a: TrafficSelector, b: TrafficSelector) -> tuple[int, int] | None:
    full = (0, 65535)
    if a.is_opaque or b.is_opaque:
        other = b if a.is_opaque else a
        if other.is_opaque or (other.start_port, other.end_port) == full:
            return (65535, 0)
        return None
    start, end = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    return (start, end) if start <= end else None


class TsKind(Enum):
    """What a configured selector refers to."""

    FIXED = "fixed"
    DYNAMIC = "dynamic"
    PEER = "%peer"


@dataclass(frozen=True)
class TsSpec:
    """A configured selector: fixed, ``dynamic`` or ``%peer``."""

    kind: TsKind
    selector: TrafficSelector | None = None
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535


def _parse_protocol(text: str) -> int:
    name = text.strip().lower()
    if name in ("", "%any"):
        return 0
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    if name.isdigit() and 0 <= int(name) <= 255:
        return int(name)
    raise ValueError(f"unknown protocol {text!r}: expected one of {', '.join(sorted(PROTOCOLS))} or 0-255")


def _parse_ports(text: str | None) -> tuple[int, int]:
    if text is None or text.strip() in ("", "%any"):
        return 0, 65535
    if text.strip() == "opaque":
        return 65535, 0
    low, sep, high = text.strip().partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise ValueError(f"invalid port {text!r}: expected a number, a range like 1024-65535, or %any")
    start, end = int(low), int(high) if sep else int(low)
    if not (0 <= start <= end <= 65535):
        raise ValueError(f"invalid port range {text!r}: expected 0 <= start <= end <= 65535")
    return start, end


def _parse_addresses(text: str) -> TrafficSelector:
    text = text.strip()
    if "-" in text and "/" not in text:
        low, _, high = text.partition("-")
        return TrafficSelector.from_addresses(ipaddress.ip_address(low.strip()),
                                              ipaddress.ip_address(high.strip()))
    address_text, slash, prefix_text = text.partition("/")
    address = ipaddress.ip_address(address_text)  # faster than ip_network() for 5,000-peer inventories
    bits = address.max_prefixlen
    if slash and not (prefix_text.isdigit() and int(prefix_text) <= bits):
        raise ValueError(f"invalid prefix length {prefix_text!r}")
    host_bits = bits - (int(prefix_text) if slash else bits)
    first = int(address)
    if first & ((1 << host_bits) - 1):
        raise ValueError(f"{text} has host bits set")
    return TrafficSelector(address.version, first, first | ((1 << host_bits) - 1))


@lru_cache(maxsize=65536)
def parse_ts(text: str) -> TsSpec:
    """Parse one configured traffic selector; raise ``ValueError`` with a precise message."""
    match = _TS_RE.match(text.strip())
    if match is None:
        raise ValueError(TS_EXPECTED)
    addr = match.group("addr").strip()
    protocol = _parse_protocol(match.group("proto") or "")
    start_port, end_port = _parse_ports(match.group("port"))
    if (start_port, end_port) != (0, 65535) and protocol not in (0, 1, 6, 17, 58, 132):
        raise ValueError("ports are only meaningful with tcp, udp, sctp or icmp")
    if addr == "dynamic":
        return TsSpec(TsKind.DYNAMIC, None, protocol, start_port, end_port)
    if addr == "%peer":
        return TsSpec(TsKind.PEER, None, protocol, start_port, end_port)
    try:
        base = _parse_addresses(addr)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise ValueError(f"{addr!r} has host bits set: write the network address, e.g. "
                             f"{ipaddress.ip_network(addr, strict=False)}") from None
        raise ValueError(TS_EXPECTED) from None
    selector = TrafficSelector(base.version, base.start, base.end, protocol, start_port, end_port)
    return TsSpec(TsKind.FIXED, selector, protocol, start_port, end_port)


def validate_ts(text: str) -> str:
    """Pydantic hook: keep the text, fail with the parser's message."""
    parse_ts(text)
    return text


def resolve(specs: Iterable[str], *, own_address: Address | None,
            peer_bound: Sequence[TrafficSelector] = ()) -> tuple[TrafficSelector, ...]:
    """Turn configured selectors into concrete ones: ``dynamic`` -> ``own_address`` (the side's address),
    ``%peer`` -> ``peer_bound`` (inventory selectors of the authenticated identity), with the spec's
    protocol/port restriction applied."""
    result: list[TrafficSelector] = []
    for text in specs:
        spec = parse_ts(text)
        if spec.kind is TsKind.FIXED and spec.selector is not None:
            result.append(spec.selector)
            continue
        restrict = [TrafficSelector(v, 0, (1 << (32 if v == 4 else 128)) - 1, spec.protocol,
                                    spec.start_port, spec.end_port) for v in (4, 6)]
        if spec.kind is TsKind.DYNAMIC:
            if own_address is None:
                continue
            base = [TrafficSelector.from_addresses(own_address, own_address)]
        else:
            base = list(peer_bound)
        for selector in base:
            for r in restrict:
                narrowed = selector.intersect(r)
                if narrowed is not None:
                    result.append(narrowed)
    return tuple(result)


def narrow(proposed: Sequence[TrafficSelector],
           allowed: Sequence[TrafficSelector]) -> tuple[TrafficSelector, ...]:
    """RFC 7296 §2.9: the parts of the proposed selectors the policy allows (may be empty)."""
    out: list[TrafficSelector] = []
    for p in proposed:
        for a in allowed:
            i = p.intersect(a)
            if i is not None and i not in out:
                out.append(i)
    return tuple(out)


@dataclass(frozen=True)
class NarrowedSelectors:
    """The responder's answer: narrowed TSi (initiator side) and TSr (responder side)."""

    tsi: tuple[TrafficSelector, ...]
    tsr: tuple[TrafficSelector, ...]


def narrow_for_responder(tsi: Sequence[TrafficSelector], tsr: Sequence[TrafficSelector], *,
                         remote_allowed: Sequence[TrafficSelector],
                         local_allowed: Sequence[TrafficSelector]) -> NarrowedSelectors | None:
    """Narrow the initiator's TSi against what the peer is entitled to and TSr against our local side.

    Returns None when either side narrows to nothing: the engine answers TS_UNACCEPTABLE (RFC 7296 §2.9).
    """
    new_tsi = narrow(tsi, remote_allowed)
    new_tsr = narrow(tsr, local_allowed)
    if not new_tsi or not new_tsr:
        return None
    return NarrowedSelectors(new_tsi, new_tsr)


def is_subset(returned: Sequence[TrafficSelector], proposed: Sequence[TrafficSelector]) -> bool:
    """Initiator's check of a responder's answer: every returned selector lies inside one proposed
    (RFC 7296 §2.9: the responder may only narrow)."""
    return all(any(p.contains(r) for p in proposed) for r in returned)


def overlapping_pairs(items: Sequence[tuple[str, TrafficSelector]]) -> list[tuple[str, str]]:
    """Pairs of owners whose selectors overlap (sweep over sorted ranges; O(n log n) when disjoint)."""
    pairs: list[tuple[str, str]] = []
    ordered = sorted(items, key=lambda it: (it[1].version, it[1].start))
    active: list[tuple[str, TrafficSelector]] = []
    for owner, sel in ordered:
        active = [(o, s) for o, s in active if s.version == sel.version and s.end >= sel.start]
        for other_owner, other in active:
            if other_owner != owner and other.intersect(sel) is not None:
                pairs.append((other_owner, owner))
        active.append((owner, sel))
    return pairs
