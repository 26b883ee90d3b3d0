"""Two in-memory userspace data planes with matching SAs: what a peer and a user would see."""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import replace

import pytest

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    InstallFailed,
    LifetimeReached,
    SaConfig,
    SaDirection,
    SaEndpoint,
    SequenceNearOverflow,
)
from ikeguard.dataplane.packet import parse_flow
from ikeguard.dataplane.sa import OutboundSa
from ikeguard.dataplane.sequence import SequenceCounter
from ikeguard.dataplane.table import SaTable, Send, ToTun
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId, IntegId
from tests.dataplane.packets import l4_checksum_ok, tcp_syn4, udp4, udp6

A_NET = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/24"))
B_NET = TrafficSelector.for_network(ipaddress.ip_network("203.0.113.0/24"))
A6_NET = TrafficSelector.for_network(ipaddress.ip_network("2001:db8:a::/64"))
B6_NET = TrafficSelector.for_network(ipaddress.ip_network("2001:db8:b::/64"))
A_GW = SaEndpoint(ipaddress.ip_address("192.0.2.1"))
B_GW = SaEndpoint(ipaddress.ip_address("192.0.2.2"))

TRANSFORMS = {
    "aes128gcm16": (EncrId.AES_GCM_16, 128, 20, 0, 0),
    "aes256gcm16": (EncrId.AES_GCM_16, 256, 36, 0, 0),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None, 36, 0, 0),
    "aes128-sha256": (EncrId.AES_CBC, 128, 16, IntegId.HMAC_SHA2_256_128, 32),
    "aes256-sha384": (EncrId.AES_CBC, 256, 32, IntegId.HMAC_SHA2_384_192, 48),
    "aes256-sha512": (EncrId.AES_CBC, 256, 32, IntegId.HMAC_SHA2_512_256, 64),
}


def sa_pair(name: str = "aes256gcm16", *, spi_ab: int = 0x1001, spi_ba: int = 0x2001, esn: bool = False,
            child: int = 1, **extra: int) -> tuple[SaConfig, SaConfig, SaConfig, SaConfig]:
    """(A out, B in) for A->B and (B out, A in) for B->A, with random keys."""
    encr, bits, klen, integ, ilen = TRANSFORMS[name]
    out: list[SaConfig] = []
    for spi, src, dst, lts, rts in ((spi_ab, A_GW, B_GW, (A_NET, A6_NET), (B_NET, B6_NET)),
                                    (spi_ba, B_GW, A_GW, (B_NET, B6_NET), (A_NET, A6_NET))):
        ek, ik = os.urandom(klen), os.urandom(ilen)
        base = SaConfig(spi, SaDirection.OUTBOUND, encr, bits, integ, ek, ik, src, dst, lts, rts, esn=esn,
                        replay_window=64, child_uniqueid=child, **extra)  # type: ignore[arg-type]
        out.append(base)
        out.append(replace(base, direction=SaDirection.INBOUND, local_ts=rts, remote_ts=lts))
    return out[0], out[1], out[2], out[3]


def wired(name: str = "aes256gcm16", **kw: int) -> tuple[SaTable, SaTable]:
    a, b = SaTable(), SaTable()
    a_out, b_in, b_out, a_in = sa_pair(name, **kw)  # type: ignore[arg-type]
    for table, sa in ((a, a_out), (b, b_in), (b, b_out), (a, a_in)):
        table.add_sa(sa)
    return a, b


def send(table: SaTable, inner: bytes) -> bytes:
    result = table.outbound(inner)
    assert isinstance(result, Send)
    return result.data


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("esn", [False, True])
def test_round_trip_both_ways_and_counters_agree(name: str, esn: bool) -> None:
    a, b = wired(name, esn=esn)
    for size in (0, 1, 13, 100, 1300):
        inner = udp4("198.51.100.7", "203.0.113.9", 4000, 5000, os.urandom(size))
        esp = send(a, inner)
        assert inner not in esp
        assert b.inbound(esp) == inner
        back = udp6("2001:db8:b::9", "2001:db8:a::7", 5000, 4000, os.urandom(size))
        assert a.inbound(send(b, back)) == back
    out_a = a.counters(0x1001, SaDirection.OUTBOUND)
    in_b = b.counters(0x1001, SaDirection.INBOUND)
    assert out_a is not None and in_b is not None
    assert (out_a.packets, out_a.bytes) == (in_b.packets, in_b.bytes) == (5, sum(
        28 + s for s in (0, 1, 13, 100, 1300)))
    assert in_b.drops == {}


def test_replayed_packet_dropped_and_counted() -> None:
    a, b = wired()
    esp = send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x"))
    assert b.inbound(esp) is not None
    assert b.inbound(esp) is None
    counters = b.counters(0x1001, SaDirection.INBOUND)
    assert counters is not None and counters.drops == {"replay": 1} and counters.packets == 1


def test_out_of_order_inside_window_accepted() -> None:
    a, b = wired()
    packets = [send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes([i]))) for i in range(10)]
    for esp in reversed(packets):
        assert b.inbound(esp) is not None


@pytest.mark.parametrize("name", ["aes256gcm16", "chacha20poly1305", "aes128-sha256"])
def test_corrupted_icv_dropped_and_counted_window_untouched(name: str) -> None:
    a, b = wired(name)
    esp = bytearray(send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, b"payload")))
    good = bytes(esp)
    esp[-1] ^= 0x01
    assert b.inbound(bytes(esp)) is None
    counters = b.counters(0x1001, SaDirection.INBOUND)
    assert counters is not None and counters.drops == {"icv": 1}
    assert b.inbound(good) is not None  # the forgery did not advance the replay window


def test_inner_addresses_outside_selectors_dropped_and_counted() -> None:
    a_out, b_in, _, _ = sa_pair()
    b = SaTable()
    b.add_sa(b_in)
    rogue = OutboundSa(a_out, lambda e: None)  # a peer that encrypts whatever it likes
    for inner in (udp4("10.9.9.9", "203.0.113.9", 1, 2, b"spoofed source"),
                  udp4("198.51.100.7", "192.0.2.200", 1, 2, b"outside local_ts")):
        assert b.inbound(rogue.protect(inner)) is None
    assert b.inbound(rogue.protect(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"ok"))) is not None
    counters = b.counters(0x1001, SaDirection.INBOUND)
    assert counters is not None and counters.drops == {"selector": 2} and counters.packets == 1


def test_port_selectors_segment_traffic() -> None:
    only_tcp_8583 = TrafficSelector(B_NET.version, B_NET.start, B_NET.end, 6, 8583, 8583)
    a_out, _, _, _ = sa_pair()
    a = SaTable()
    a.add_sa(replace(a_out, remote_ts=(only_tcp_8583,)))
    assert a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 8583, b"udp")) is None
    assert isinstance(a.outbound(tcp_syn4("198.51.100.7", "203.0.113.9", 1, 8583, 1200)), Send)
    assert a.drops == {"no_policy": 1}


def test_fail_closed_no_outbound_sa_means_drop() -> None:
    a, _ = wired()
    inner = udp4("198.51.100.7", "203.0.113.9", 1, 2, b"secret")
    assert isinstance(a.outbound(inner), Send)
    a.delete_sa(0x1001, SaDirection.OUTBOUND)
    assert a.outbound(inner) is None
    assert a.drops == {"no_sa": 1}
    assert a.policies()[0].no_sa_drops == 1
    empty = SaTable()
    empty.add_policy(7, (A_NET,), (B_NET,))  # trap policy before the SA is up
    assert empty.outbound(inner) is None and empty.drops == {"no_sa": 1}


def test_make_before_break_rekey_loses_nothing() -> None:
    a, b = wired()
    in_flight = [send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes([i]))) for i in range(5)]
    new_a_out, new_b_in, new_b_out, new_a_in = sa_pair(spi_ab=0x1002, spi_ba=0x2002)
    b.add_sa(new_b_in)  # responder-side inbound first
    a.add_sa(new_a_in)
    a.add_sa(new_a_out)  # atomic switch of A's outbound
    after = send(a, udp4("198.51.100.7", "203.0.113.9", 1, 2, b"new"))
    assert after[:4] == (0x1002).to_bytes(4, "big")
    for esp in in_flight:  # old SA still decrypts packets already on the wire
        assert b.inbound(esp) is not None
    assert b.inbound(after) is not None
    b.add_sa(new_b_out)
    b.delete_sa(0x1001, SaDirection.INBOUND)
    a.delete_sa(0x1001, SaDirection.OUTBOUND)
    assert isinstance(a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x")), Send)
    assert a.drops == {} and b.drops == {}


def test_lifetime_upcalls_soft_then_hard() -> None:
    events: list[DataPlaneEvent] = []
    a = SaTable()
    a.subscribe(events.append)
    a_out, *_ = sa_pair(soft_packets=3, hard_packets=5)
    a.add_sa(a_out)
    inner = udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x")
    results = [a.outbound(inner) for _ in range(7)]
    assert [isinstance(r, Send) for r in results] == [True] * 5 + [False] * 2
    assert events == [LifetimeReached(0x1001, SaDirection.OUTBOUND, False, "packets", 1),
                      LifetimeReached(0x1001, SaDirection.OUTBOUND, True, "packets", 1)]


def test_sequence_numbers_never_wrap() -> None:
    events: list[DataPlaneEvent] = []
    a_out, *_ = sa_pair()
    sa = OutboundSa(a_out, events.append, SequenceCounter(limit=3))
    seqs = [struct.unpack_from("!I", sa.protect(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"")), 4)[0]
            for _ in range(3)]
    assert seqs == [1, 2, 3]
    with pytest.raises(Exception, match="seq_exhausted"):
        sa.protect(udp4("198.51.100.7", "203.0.113.9", 1, 2, b""))
    assert events[0] == SequenceNearOverflow(0x1001, False, 1)
    assert events[-1] == SequenceNearOverflow(0x1001, True, 1)
    assert sa.counters.drops == {"seq_exhausted": 1}


def test_install_failures_are_reported() -> None:
    events: list[DataPlaneEvent] = []
    a = SaTable()
    a.subscribe(events.append)
    a_out, b_in, *_ = sa_pair()
    with pytest.raises(DataPlaneError):
        a.add_sa(replace(a_out, encr_key=b"short"))
    a.add_sa(b_in)
    with pytest.raises(DataPlaneError):
        a.add_sa(b_in)
    with pytest.raises(DataPlaneError):
        a.add_sa(replace(a_out, integ_id=0, encr_id=EncrId.AES_CBC, encr_key_bits=128, encr_key=bytes(16)))
    assert [type(e) for e in events] == [InstallFailed] * 3


def test_mss_clamped_on_syn_with_valid_checksum() -> None:
    a, b = wired()
    a.path_mtu = 1400
    syn = tcp_syn4("198.51.100.7", "203.0.113.9", 40000, 80, 1460)
    inner = b.inbound(send(a, syn))
    assert inner is not None and inner != syn
    mss = struct.unpack_from("!H", inner, 20 + 22)[0]
    assert mss == 1400 - 28 - 8 - 8 - 3 - 2 - 16 - 40
    assert l4_checksum_ok(inner) and l4_checksum_ok(syn)


def test_oversize_df_packet_gets_icmp_fragmentation_needed() -> None:
    a, _ = wired()
    a.path_mtu = 1400
    a.icmp_source4 = ipaddress.IPv4Address("198.51.100.1").packed
    big = udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes(1400), df=True)
    result = a.outbound(big)
    assert isinstance(result, ToTun)
    flow = parse_flow(result.data)
    assert flow is not None and flow.protocol == 1 and flow.sport == (3 << 8) | 4
    assert flow.dst == int(ipaddress.IPv4Address("198.51.100.7"))
    assert struct.unpack_from("!H", result.data, 26)[0] == 1400 - 28 - 8 - 8 - 3 - 2 - 16
    # without DF the packet is sent (the outer UDP datagram is fragmented by the kernel)
    assert isinstance(a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes(1400))), Send)


def test_garbage_never_raises() -> None:
    a, b = wired()
    for junk in (b"", b"\x00" * 3, os.urandom(7), os.urandom(40), b"\x00\x00\x10\x01" + os.urandom(60)):
        assert b.inbound(junk) is None
        assert a.outbound(junk) is None


def test_nat_mapping_change_moves_outbound_traffic() -> None:
    a, b = wired()
    moved = SaEndpoint(ipaddress.ip_address("192.0.2.77"), 34567)  # the peer now behind a NAT mapping
    a.update_sa_addresses((0x1001, 0x2001), A_GW, moved)
    sent = a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x"))
    assert isinstance(sent, Send) and sent.destination == moved
    assert b.inbound(sent.data) is not None  # keys and sequence numbers unchanged


def test_path_mtu_change_is_followed() -> None:
    a, _ = wired()
    big = udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes(1300), df=True)
    assert isinstance(a.outbound(big), Send)
    a.path_mtu = 1280
    result = a.outbound(big)
    assert isinstance(result, ToTun)
    assert struct.unpack_from("!H", result.data, 26)[0] == 1280 - 28 - 37


def test_rekeyed_child_with_new_uniqueid_takes_over_the_policy() -> None:
    """The engine gives a rekeyed Child SA a new unique id: its outbound SA replaces the old one."""
    a, b = wired(child=1)
    new_a_out, new_b_in, _, _ = sa_pair(spi_ab=0x1002, spi_ba=0x2002, child=2)
    b.add_sa(new_b_in)
    a.add_sa(new_a_out)
    a.delete_sa(0x1001, SaDirection.OUTBOUND)
    assert a.remove_policy(1) is None  # still used by child 2
    sent = a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"after rekey"))
    assert isinstance(sent, Send) and sent.data[:4] == (0x1002).to_bytes(4, "big")
    assert b.inbound(sent.data) is not None
    assert len(a.policies()) == 1 and a.drops == {}
    assert a.remove_policy(2) is not None  # the last user: routes may go now
    assert a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x")) is None
    assert a.drops == {"no_policy": 1}
