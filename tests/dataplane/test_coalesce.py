"""Receive-side coalescing (software GRO into the TUN, dataplane/coalesce.py): what merges, what does not,
and that a merged packet is exactly the segments' payload behind a valid IPv4 header and a partial TCP
checksum that completes to the right one."""

from __future__ import annotations

import ipaddress
import struct

from ikeguard.dataplane.coalesce import VNET_HDR, coalesce, ip_checksum, vnet_header
from ikeguard.dataplane.packet import checksum
from tests.dataplane.packets import ipv4, l4_checksum_ok, udp4

A, B = "198.51.100.7", "203.0.113.9"
TS = b"\x01\x01\x08\x0a" + bytes(8)  # NOP NOP timestamps


def tcp4(seq: int, data: bytes, flags: int = 0x10, ack: int = 7, opts: bytes = TS,
         sport: int = 40000) -> bytes:
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, 5201, seq, ack, (5 + len(opts) // 4) << 4, flags, 500,
                                0, 0) + opts + data)
    s, d = ipaddress.IPv4Address(A).packed, ipaddress.IPv4Address(B).packed
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(seg))
    struct.pack_into("!H", seg, 16, checksum(pseudo + bytes(seg)))
    return ipv4(A, B, 6, bytes(seg), df=True)


def test_a_run_of_segments_becomes_one_gso_packet() -> None:
    segs = [tcp4(1000 + i * 1000, bytes([i]) * 1000) for i in range(5)]
    segs[-1] = tcp4(5000, b"\x04" * 400, flags=0x18)  # a short last segment with PSH
    ((merged, gso),) = coalesce(segs)
    assert gso == 1000 and len(merged) == 20 + 32 + 4400
    assert merged[52:] == b"".join(s[52:] for s in segs)
    assert ip_checksum(merged[:10] + b"\x00\x00" + merged[12:20]) == int.from_bytes(merged[10:12], "big")
    assert merged[33] == 0x18  # PSH carried over
    # the partial checksum (pseudo-header sum) completes to the real one over the whole segment
    body = bytearray(merged)
    partial = int.from_bytes(body[36:38], "big")
    body[36:38] = b"\x00\x00"
    segment = bytes(body[20:]) + b"\x00" * (len(body) % 2)
    total = partial + sum(struct.unpack(f"!{len(segment) // 2}H", segment))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    body[36:38] = (~total & 0xFFFF).to_bytes(2, "big")
    assert l4_checksum_ok(bytes(body))
    flags, gso_type, hdr_len, size, start, offset = VNET_HDR.unpack(vnet_header(merged, gso))
    assert (flags, gso_type, hdr_len, size, start, offset) == (1, 1, 52, 1000, 20, 16)


def test_what_is_not_merged() -> None:
    base = tcp4(1000, b"a" * 1000)
    cases = [
        [base, tcp4(3000, b"b" * 1000)],  # a gap in the sequence
        [base, tcp4(2000, b"b" * 1000, ack=8)],  # another ACK number
        [base, tcp4(2000, b"b" * 1000, sport=40001)],  # another connection
        [base, tcp4(2000, b"b" * 1000, flags=0x11)],  # FIN
        [tcp4(1000, b"a" * 600), tcp4(1600, b"b" * 1000)],  # a bigger segment after a short one
        [tcp4(1000, b"a" * 1000, flags=0x18), tcp4(2000, b"b" * 1000)],  # nothing after PSH
        [base, udp4(A, B, 1, 2, b"x" * 100), tcp4(2000, b"b" * 1000)],  # not adjacent
    ]
    for packets in cases:
        out = coalesce(packets)
        assert [p for p, _ in out] == packets and all(gso == 0 for _, gso in out)
    assert VNET_HDR.unpack(vnet_header(base, 0)) == (0, 0, 0, 0, 0, 0)
