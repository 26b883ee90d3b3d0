"""Builders for inner test packets (IPv4/IPv6 with UDP or TCP) with valid checksums."""

from __future__ import annotations

import ipaddress
import struct

from ikeguard.dataplane.packet import checksum


def ipv4(src: str, dst: str, proto: int, payload: bytes, df: bool = False) -> bytes:
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000 if df else 0, 64,
                                proto, 0, s, d))
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr) + payload


def _l4_checksum(src: bytes, dst: bytes, proto: int, seg: bytes) -> int:
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    else:
        pseudo = src + dst + struct.pack("!I3xB", len(seg), proto)
    return checksum(pseudo + seg)


def udp4(src: str, dst: str, sport: int, dport: int, data: bytes, df: bool = False) -> bytes:
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    struct.pack_into("!H", seg, 6, _l4_checksum(s, d, 17, bytes(seg)) or 0xFFFF)
    return ipv4(src, dst, 17, bytes(seg), df)


def tcp_syn4(src: str, dst: str, sport: int, dport: int, mss: int) -> bytes:
    opts = struct.pack("!BBH", 2, 4, mss) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK permitted
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, (5 + len(opts) // 4) << 4, 0x02, 65535,
                                0, 0) + opts)
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    struct.pack_into("!H", seg, 16, _l4_checksum(s, d, 6, bytes(seg)))
    return ipv4(src, dst, 6, bytes(seg), df=True)


def udp6(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)
    struct.pack_into("!H", seg, 6, _l4_checksum(s, d, 17, bytes(seg)) or 0xFFFF)
    return struct.pack("!IHBB16s16s", 6 << 28, len(seg), 17, 64, s, d) + bytes(seg)


def l4_checksum_ok(pkt: bytes) -> bool:
    """Whether the TCP/UDP checksum of an IPv4 packet verifies."""
    ihl = (pkt[0] & 0x0F) * 4
    return _l4_checksum(pkt[12:16], pkt[16:20], pkt[9], pkt[ihl:]) == 0
