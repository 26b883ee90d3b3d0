"""Inner IP packet helpers for the userspace data plane: pure, no IO.

Flow extraction for selector checks (RFC 4301 §4.4.1: addresses, protocol, ports; ICMP type/code in the
port fields), TCP MSS clamping on SYNs (RFC 879 / RFC 6691) with the incremental checksum update of
RFC 1624, and ICMP "fragmentation needed" (RFC 792, RFC 1191) / ICMPv6 "packet too big" (RFC 4443 §3.2)
for oversize packets. Written by hand: the stdlib has no IP packet codec, and these few fields do not
justify a dependency.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from ikeguard.policy.ts import TrafficSelector

_PORT_PROTOCOLS = (6, 17, 132)  # TCP, UDP, SCTP: ports in the first 4 octets of the header
_ICMP_PROTOCOLS = (1, 58)


class Flow(NamedTuple):
    """Selector-relevant fields of one inner packet; ports are None when not visible (fragment, ext hdr)."""

    version: int
    src: int
    dst: int
    protocol: int
    sport: int | None
    dport: int | None


def _ports(pkt: bytes, off: int, proto: int) -> tuple[int | None, int | None]:
    if len(pkt) < off + 4:
        return None, None
    if proto in _PORT_PROTOCOLS:
        sport, dport = struct.unpack_from("!HH", pkt, off)
        return sport, dport
    if proto in _ICMP_PROTOCOLS:  # RFC 4301 §4.4.1.1: type in the high, code in the low octet
        typecode = (pkt[off] << 8) | pkt[off + 1]
        return typecode, typecode
    return None, None


_V4 = struct.Struct("!BxxxxxHxBxxII")  # version/IHL, flags/fragment offset, protocol, source, destination
_V4_PORTS = struct.Struct("!xxxxxxHxBxxIIHH")  # the same and the ports, for a 20-octet header
_PORTS = struct.Struct("!HH")
_new_flow = tuple.__new__  # Flow(...) without the NamedTuple's Python-level __new__ (once per packet)


def parse_flow(pkt: bytes) -> Flow | None:
    """The flow of an IPv4/IPv6 packet, or None when it is not a well-formed IP packet."""
    if len(pkt) < 24:
        if len(pkt) < 20:
            return None
    elif pkt[0] == 0x45:  # the common case: IPv4 without options, the ports fields present
        frag, proto, src, dst, sport, dport = _V4_PORTS.unpack_from(pkt)
        if not frag & 0x1FFF and (proto == 6 or proto == 17):
            return _new_flow(Flow, (4, src, dst, proto, sport, dport))
    if pkt[0] >> 4 == 4:
        verihl, frag, proto, src, dst = _V4.unpack_from(pkt)
        ihl = (verihl & 0x0F) * 4
        if ihl < 20 or len(pkt) < ihl:
            return None
        if frag & 0x1FFF:  # not the first fragment: no ports
            return Flow(4, src, dst, proto, None, None)
        if proto in _PORT_PROTOCOLS and len(pkt) >= ihl + 4:
            sport, dport = _PORTS.unpack_from(pkt, ihl)
            return Flow(4, src, dst, proto, sport, dport)
        sport, dport = _ports(pkt, ihl, proto)
        return Flow(4, src, dst, proto, sport, dport)
    if pkt[0] >> 4 == 6:
        if len(pkt) < 40:
            return None
        proto = pkt[6]
        src = int.from_bytes(pkt[8:24], "big")
        dst = int.from_bytes(pkt[24:40], "big")
        sport, dport = _ports(pkt, 40, proto)
        return Flow(6, src, dst, proto, sport, dport)
    return None


def _port_ok(ts: TrafficSelector, port: int | None) -> bool:
    if ts.start_port == 0 and ts.end_port == 65535:
        return True
    if ts.start_port > ts.end_port:  # OPAQUE: matches only when ports are not available
        return port is None
    return port is not None and ts.start_port <= port <= ts.end_port


def ts_match(selectors: Sequence[TrafficSelector], version: int, addr: int, proto: int,
             port: int | None) -> bool:
    """Whether (address, protocol, port) lies in one of ``selectors`` (RFC 7296 §3.13.1)."""
    for ts in selectors:
        if (ts.version == version and ts.start <= addr <= ts.end
                and (ts.protocol == 0 or ts.protocol == proto) and _port_ok(ts, port)):
            return True
    return False


def _fold(csum: int) -> int:
    while csum >> 16:
        csum = (csum & 0xFFFF) + (csum >> 16)
    return csum


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return ~_fold(total) & 0xFFFF


def clamp_mss(pkt: bytes, mss: int) -> bytes:
    """The packet with a TCP SYN's MSS option lowered to ``mss`` (checksum per RFC 1624), else as is."""
    if len(pkt) < 40:  # no room for an IP and a TCP header
        return pkt
    version = pkt[0] >> 4
    if version == 4:
        off = (pkt[0] & 0x0F) * 4
        if pkt[9] != 6 or struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF:
            return pkt
    elif version == 6:
        off = 40
        if pkt[6] != 6:
            return pkt
    else:
        return pkt
    if len(pkt) < off + 20 or not pkt[off + 13] & 0x02:  # SYN flag
        return pkt
    data_off = (pkt[off + 12] >> 4) * 4
    i, end = off + 20, min(off + data_off, len(pkt))
    while i < end:
        kind = pkt[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or pkt[i + 1] < 2:
            break
        length = pkt[i + 1]
        if kind == 2 and length == 4 and i + 4 <= end:
            old = struct.unpack_from("!H", pkt, i + 2)[0]
            if old <= mss:
                return pkt
            out = bytearray(pkt)
            struct.pack_into("!H", out, i + 2, mss)
            old_sum = struct.unpack_from("!H", out, off + 16)[0]
            new_sum = ~_fold((~old_sum & 0xFFFF) + (~old & 0xFFFF) + mss) & 0xFFFF  # RFC 1624 eqn. 3
            struct.pack_into("!H", out, off + 16, new_sum)
            return bytes(out)
        i += length
    return pkt


def needs_too_big(pkt: bytes, mtu: int) -> bool:
    """True when ``pkt`` exceeds ``mtu`` and may not be fragmented (IPv4 DF set, or any IPv6 packet)."""
    if len(pkt) <= mtu or len(pkt) < 20:
        return False
    version = pkt[0] >> 4
    return version == 6 or (version == 4 and bool(pkt[6] & 0x40))


def icmp_too_big(pkt: bytes, mtu: int, source: bytes) -> bytes | None:
    """The ICMP error telling the sender of ``pkt`` to use ``mtu`` (sent from ``source``), or None when an
    error must not be sent (the offending packet is itself an ICMP error, RFC 1122 §3.2.2)."""
    version = pkt[0] >> 4 if len(pkt) >= 40 else 0
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        if ihl < 20:
            return None
        if pkt[9] == 1 and len(pkt) > ihl and pkt[ihl] not in (0, 8):
            return None
        quoted = pkt[: ihl + 8]
        icmp = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted)
        struct.pack_into("!H", icmp, 2, checksum(bytes(icmp)))
        total = 20 + len(icmp)
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 1, 0, source, pkt[12:16]))
        struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
        return bytes(hdr) + bytes(icmp)
    if version == 6:
        if pkt[6] == 58 and len(pkt) > 40 and pkt[40] < 128:
            return None
        quoted = pkt[: 1280 - 48]
        icmp = bytearray(struct.pack("!BBHI", 2, 0, 0, mtu) + quoted)
        pseudo = source + pkt[8:24] + struct.pack("!I3xB", len(icmp), 58)
        struct.pack_into("!H", icmp, 2, checksum(pseudo + bytes(icmp)))
        hdr6 = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 64, source, pkt[8:24])
        return hdr6 + bytes(icmp)
    return None
