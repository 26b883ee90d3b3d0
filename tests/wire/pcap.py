"""Minimal pcap/pcapng reader for the test captures (UDP payloads with their ports), and a pcap writer.

Written by hand with ``struct`` (a few dozen lines; no dependency needed for test data). Reads
pcap (µs/ns, both byte orders) and pcapng (SHB/IDB/EPB/SPB), link types Ethernet (1), BSD loopback
(0, 108), raw IP (101, 228, 229), Linux cooked (113, 276); IPv4 (unfragmented) and IPv6 (no extension
headers) carrying UDP.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UdpDatagram:
    """One UDP payload from a capture, with its frame number (1-based) and ports."""

    frame: int
    src_port: int
    dst_port: int
    payload: bytes


def read_udp(path: Path) -> list[UdpDatagram]:
    """Every UDP datagram in the capture at ``path``, in order."""
    data = path.read_bytes()
    frames = _pcapng_frames(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else _pcap_frames(data)
    out: list[UdpDatagram] = []
    for number, (linktype, frame) in enumerate(frames, start=1):
        udp = _udp_of(_ip_of(linktype, frame))
        if udp is not None:
            out.append(UdpDatagram(number, *udp))
    return out


def _pcap_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        _sec, _frac, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        yield linktype, data[pos : pos + incl]
        pos += incl


def _pcapng_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    linktypes: list[int] = []
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        body = data[pos + 8 : pos + blen - 4]
        if btype == 0x0A0D0D0A:
            linktypes = []
        elif btype == 1:
            linktypes.append(struct.unpack_from(endian + "H", body, 0)[0])
        elif btype == 6:
            iface, _hi, _lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
            yield linktypes[iface], body[20 : 20 + caplen]
        elif btype == 3:
            (orig,) = struct.unpack_from(endian + "I", body, 0)
            yield linktypes[0], body[4 : 4 + orig]
        pos += blen


def _ip_of(linktype: int, frame: bytes) -> bytes:
    if linktype == 1:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        offset = 14
        while ethertype in (0x8100, 0x88A8):  # VLAN tags
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        return frame[offset:]
    if linktype in (0, 108):
        return frame[4:]
    if linktype in (101, 228, 229, 12, 14):
        return frame
    if linktype == 113:
        return frame[16:]
    if linktype == 276:
        return frame[20:]
    raise ValueError(f"unsupported link type {linktype}")


def _udp_of(packet: bytes) -> tuple[int, int, bytes] | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        if packet[9] != 17:
            return None
        segment = packet[ihl:total]
    elif version == 6:
        if packet[6] != 17:
            return None
        plen = struct.unpack_from("!H", packet, 4)[0]
        segment = packet[40 : 40 + plen]
    else:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", segment, 0)
    return sport, dport, segment[8:ulen]


def write_udp_pcap(path: Path, datagrams: list[tuple[int, int, bytes]]) -> None:
    """Write (src port, dst port, payload) as IPv4/UDP 192.0.2.1 -> 192.0.2.2 (raw-IP pcap, link 101)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for index, (sport, dport, payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0,
                             bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))  # fmt: skip
        checksum = _ip_checksum(header)
        packet = header[:10] + checksum.to_bytes(2, "big") + header[12:] + udp
        out += struct.pack("<IIII", index, 0, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
