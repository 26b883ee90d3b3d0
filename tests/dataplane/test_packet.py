"""Inner packet helpers: flows, MSS clamping, ICMP errors; arbitrary bytes never raise."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.dataplane.packet import checksum, clamp_mss, icmp_too_big, needs_too_big, parse_flow
from tests.dataplane.packets import l4_checksum_ok, tcp_syn4, udp4, udp6


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parse_flow(data)
    if data:
        clamp_mss(data, 1200)
        if len(data) >= 40:
            icmp_too_big(data, 1280, bytes(4) if data[0] >> 4 == 4 else bytes(16))
        needs_too_big(data, 10)


@settings(max_examples=100, deadline=None)
@given(src=st.integers(0, 2**32 - 1), dst=st.integers(0, 2**32 - 1), sport=st.integers(0, 65535),
       dport=st.integers(0, 65535), payload=st.binary(max_size=64))
def test_udp4_flow(src: int, dst: int, sport: int, dport: int, payload: bytes) -> None:
    pkt = udp4(str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst)), sport, dport, payload)
    assert parse_flow(pkt) == (4, src, dst, 17, sport, dport)


def test_udp6_flow() -> None:
    pkt = udp6("2001:db8::1", "2001:db8::2", 53, 5353, b"q")
    flow = parse_flow(pkt)
    assert flow is not None and flow.version == 6 and (flow.sport, flow.dport) == (53, 5353)
    assert flow.dst == int(ipaddress.IPv6Address("2001:db8::2"))


@settings(max_examples=100, deadline=None)
@given(mss=st.integers(536, 9000), limit=st.integers(500, 9000))
def test_mss_clamp_keeps_checksum_valid(mss: int, limit: int) -> None:
    syn = tcp_syn4("198.51.100.7", "203.0.113.9", 40000, 443, mss)
    out = clamp_mss(syn, limit)
    assert struct.unpack_from("!H", out, 42)[0] == min(mss, limit)
    assert l4_checksum_ok(out)


def test_icmp6_packet_too_big_checksum() -> None:
    pkt = udp6("2001:db8::1", "2001:db8::2", 1, 2, bytes(1400))
    src = ipaddress.IPv6Address("2001:db8::2").packed
    icmp = icmp_too_big(pkt, 1280, src)
    assert icmp is not None and len(icmp) <= 1280
    pseudo = icmp[8:24] + icmp[24:40] + struct.pack("!I3xB", len(icmp) - 40, 58)
    assert checksum(pseudo + icmp[40:]) == 0
    assert struct.unpack_from("!I", icmp, 44)[0] == 1280
