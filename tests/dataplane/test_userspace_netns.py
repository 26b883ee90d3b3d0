"""ikeguard <-> ikeguard userspace data planes in network namespaces (static SAs): traffic, counters,
replay/ICV/selector drops, fail closed, make-before-break rekey. Needs root; every namespace, process and
TUN device is removed by ``NetnsLab`` also on failure."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikeguard.dataplane.sa import OutboundSa
from ikeguard.dataplane.sequence import SequenceCounter
from ikeguard.dataplane.userspace.config import sa_from_json
from ikeguard.tools.netns import NetnsLab, Topology
from tests.dataplane.netns_helpers import (
    Capture,
    DataPlaneProcess,
    SaPair,
    nettool,
    start_planes,
    udp_payloads,
    wait_listening,
)
from tests.dataplane.packets import udp4

pytestmark = pytest.mark.root


@dataclass
class Tunnel:
    topo: Topology
    pair: SaPair
    left: DataPlaneProcess
    right: DataPlaneProcess
    workdir: Path


@pytest.fixture
def tunnel(tmp_path: Path) -> Iterator[Tunnel]:
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "dpl", "dpr")
        pair = SaPair(0x1001, 0x2001)
        left, right = start_planes(topo, pair, tmp_path)
        try:
            yield Tunnel(topo, pair, left, right, tmp_path)
        finally:
            left.stop()
            right.stop()


def ping(t: Tunnel, count: int = 3, check: bool = True) -> bool:
    ns = t.topo.left.namespace
    result = ns.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", str(t.topo.right.subnet_address),
                    check=False, timeout=30)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.returncode == 0


def tcp_transfer(t: Tunnel, size: int) -> tuple[str, str]:
    server = nettool(t.topo.right.namespace, "tcp-serve", "5001")
    wait_listening(server)
    client = nettool(t.topo.left.namespace, "tcp-send", str(t.topo.right.subnet_address), "5001", str(size))
    sent, _ = client.communicate(timeout=120)
    got, _ = server.communicate(timeout=30)
    return sent.strip(), got.strip()


def test_ping_and_tcp_through_the_tunnel_counters_agree(tunnel: Tunnel) -> None:
    t = tunnel
    ping(t, 5)
    ping6 = t.topo.left.namespace.run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "1",
                                      str(t.topo.right.subnet_address6), check=False, timeout=30)
    assert ping6.returncode == 0, ping6.stdout + ping6.stderr  # IPv6 inner traffic (next header 41)
    size = 4_000_000
    sent, got = tcp_transfer(t, size)
    assert sent == got and got.startswith(f"{size} ")
    time.sleep(0.2)
    for spi, sender, receiver in ((t.pair.spi_lr, t.left, t.right), (t.pair.spi_rl, t.right, t.left)):
        out, inb = sender.sa(spi, "out"), receiver.sa(spi, "in")
        assert out["packets"] == inb["packets"] > 5
        assert out["bytes"] == inb["bytes"]
        assert inb["drops"] == {}
    assert t.left.sa(t.pair.spi_lr, "out")["bytes"] > size  # payload plus TCP/IP headers
    stats = t.left.cmd(op="counters")["stats"]
    assert stats["gso_sends"] > 0 and stats["send_errors"] == 0  # bulk data left in UDP GSO batches


def test_replayed_corrupted_and_out_of_selector_packets_dropped_and_counted(tunnel: Tunnel) -> None:
    t = tunnel
    cap = Capture(t.topo.right.namespace, "eth0", "udp dst port 4500", t.workdir / "esp.pcap")
    ping(t, 4)
    spi = t.pair.spi_lr.to_bytes(4, "big")
    captured = [p for p in udp_payloads(cap.stop()) if len(p) > 8 and p[:4] == spi]
    assert len(captured) >= 4
    before = t.right.sa(t.pair.spi_lr, "in")
    # forge with the left->right keys, starting far ahead so the window is not what rejects them
    out_sa = sa_from_json(t.pair.left(t.topo)[0])
    forger = OutboundSa(out_sa, lambda e: None, SequenceCounter(start=100_000))
    r, l_ = t.topo.right, t.topo.left
    corrupted = bytearray(forger.protect(udp4(str(l_.subnet_address), str(r.subnet_address), 9, 9, b"x")))
    corrupted[-1] ^= 0x40
    outside = forger.protect(udp4("192.0.2.99", str(r.subnet_address), 9, 9, b"spoofed inner source"))
    valid = forger.protect(udp4(str(l_.subnet_address), str(r.subnet_address), 9, 9, b"control"))
    lines = [p.hex() for p in captured] + [bytes(corrupted).hex(), outside.hex(), valid.hex()]
    (t.workdir / "inject.hex").write_text("\n".join(lines) + "\n")
    sender = nettool(l_.namespace, "udp-raw", str(r.address), "4500", str(t.workdir / "inject.hex"))
    assert sender.wait(timeout=30) == 0
    time.sleep(0.3)
    after = t.right.sa(t.pair.spi_lr, "in")
    assert after["drops"] == {"replay": len(captured), "icv": 1, "selector": 1}
    assert after["packets"] == before["packets"] + 1  # only the valid forged control packet


def ping6(t: Tunnel, count: int = 3) -> bool:
    result = t.topo.left.namespace.run("ping", "-6", "-n", "-c", str(count), "-i", "0.2", "-W", "1",
                                       str(t.topo.right.subnet_address6), check=False, timeout=30)
    return result.returncode == 0


def test_fail_closed_nothing_leaves_in_the_clear(tunnel: Tunnel) -> None:
    t = tunnel
    left_ns = t.topo.left.namespace
    left_ns.add_route("default", via=str(t.topo.right.address))  # routes that would carry cleartext
    left_ns.add_route("default", via=str(t.topo.right.address6))
    bpf = f"net {t.topo.right.subnet} or net {t.topo.right.subnet6}"
    ping(t, 2)
    assert ping6(t, 2)
    t.left.cmd(op="delete_sa", spi=t.pair.spi_lr, direction="out")  # SA gone, routes stay
    cap = Capture(left_ns, "eth0", bpf, t.workdir / "a.pcap")
    assert not ping(t, 3, check=False)
    assert not ping6(t, 3)
    assert cap.stop() == []
    counters = t.left.cmd(op="counters")
    assert counters["drops"].get("no_sa", 0) >= 6
    t.left.stop()  # the data plane is gone entirely: the TUN device and its routes vanish
    cap = Capture(left_ns, "eth0", bpf, t.workdir / "b.pcap")
    assert not ping(t, 3, check=False)
    assert not ping6(t, 3)
    assert cap.stop() == []
    # control: without the blackhole fallback the same ping leaks in the clear, so the capture does see leaks
    left_ns.ip("route", "del", "blackhole", str(t.topo.right.subnet), "metric", "4294967295")
    cap = Capture(left_ns, "eth0", bpf, t.workdir / "c.pcap")
    ping(t, 2, check=False)
    assert len(cap.stop()) >= 2


def rekey(t: Tunnel, old: SaPair, new: SaPair) -> None:
    """Make-before-break, in the order the engine emits it: new inbound SAs first, then the outbound
    switch, old outbound removed, old inbound kept until packets already on the wire have arrived."""
    r_out, r_in = new.right(t.topo)
    l_out, l_in = new.left(t.topo)
    t.right.cmd(op="add_sa", sa=r_in)
    t.left.cmd(op="add_sa", sa=l_in)
    t.left.cmd(op="add_sa", sa=l_out)  # atomic switch of the initiator's outbound traffic
    t.right.cmd(op="add_sa", sa=r_out)
    t.left.cmd(op="delete_sa", spi=old.spi_lr, direction="out")
    t.right.cmd(op="delete_sa", spi=old.spi_rl, direction="out")
    time.sleep(0.5)
    t.right.cmd(op="delete_sa", spi=old.spi_lr, direction="in")
    t.left.cmd(op="delete_sa", spi=old.spi_rl, direction="in")
    if old.child != new.child:  # the old Child SA is gone; its routes are shared with the new one and stay
        t.left.cmd(op="remove_policy", child=old.child)
        t.right.cmd(op="remove_policy", child=old.child)


def assert_only(t: Tunnel, pair: SaPair) -> None:
    """Only the new SAs remain, they carried the left->right traffic, and nothing was dropped anywhere."""
    for proc in (t.left, t.right):
        counters = proc.cmd(op="counters")
        assert {sa["spi"] for sa in counters["sas"]} == {f"{pair.spi_lr:08x}", f"{pair.spi_rl:08x}"}
        assert all(sa["drops"] == {} for sa in counters["sas"])
        assert counters["drops"] == {}
    assert t.left.sa(pair.spi_lr, "out")["packets"] == t.right.sa(pair.spi_lr, "in")["packets"] > 0


def test_rekey_make_before_break_during_traffic_loses_nothing(tunnel: Tunnel) -> None:
    t = tunnel
    right_ns, left_ns = t.topo.right.namespace, t.topo.left.namespace
    target = str(t.topo.right.subnet_address)
    # a numbered UDP stream across a rekey: every datagram arrives
    udp_server = nettool(right_ns, "udp-serve", "5002", "1000", "20")
    wait_listening(udp_server)
    udp_client = nettool(left_ns, "udp-send", target, "5002", "1000", "2")
    time.sleep(0.6)
    second = SaPair(0x1002, 0x2002, child=2)  # the engine gives a rekeyed Child SA a new unique id
    rekey(t, t.pair, second)
    assert udp_client.wait(timeout=60) == 0
    received, _ = udp_server.communicate(timeout=60)
    assert int(received) == 1000
    assert_only(t, second)
    # a bulk TCP transfer across another rekey completes with every byte intact
    server = nettool(right_ns, "tcp-serve", "5001")
    wait_listening(server)
    # large enough to still be running when the rekey lands (the plane moves 20-70 MB/s here); the new SA
    # must have carried part of it (assert_only)
    size = 150_000_000
    client = nettool(left_ns, "tcp-send", target, "5001", str(size))
    time.sleep(0.2)
    third = SaPair(0x1003, 0x2003, child=3)
    rekey(t, second, third)
    sent, _ = client.communicate(timeout=180)
    got, _ = server.communicate(timeout=30)
    assert sent.strip() == got.strip() and got.startswith(f"{size} ")
    assert_only(t, third)


def test_mss_clamping_and_icmp_fragmentation_needed(tmp_path: Path) -> None:
    """The TUN MTU (1500) is above what fits the path (1400 - 28 - 37 = 1335 inner octets for AES-GCM):
    TCP still flows because SYNs are clamped, and a DF packet too big for the path gets ICMP back."""
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "dpl", "dpr")
        pair = SaPair(0x1001, 0x2001)
        left, right = start_planes(topo, pair, tmp_path, path_mtu=1400, tun_mtu=1500)
        t = Tunnel(topo, pair, left, right, tmp_path)
        try:
            sent, got = tcp_transfer(t, 3_000_000)
            assert sent == got
            for proc, spi in ((left, pair.spi_lr), (right, pair.spi_rl)):
                assert "too_big" not in proc.sa(spi, "out")["drops"]  # every segment fit: MSS was clamped
            result = topo.left.namespace.run(
                "ping", "-n", "-M", "do", "-s", str(1400 - 28), "-c", "2", "-i", "0.3", "-W", "1",
                str(topo.right.subnet_address), check=False)
            assert "mtu = 1335" in result.stdout + result.stderr, result.stdout + result.stderr
            assert left.sa(pair.spi_lr, "out")["drops"]["too_big"] >= 1
            ping(t, 2)  # smaller packets still pass
        finally:
            left.stop()
            right.stop()


def test_shared_port_demux_ike_keepalive_esp(tmp_path: Path) -> None:
    """Port 4500 carries IKE (non-ESP marker), NAT keepalives (0xFF) and ESP (RFC 3948 §2.2, §2.3)."""
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "dpl", "dpr")
        pair = SaPair(0x1001, 0x2001)
        keepalive = {"keepalive": {"peer": f"{topo.right.address}:4500", "interval": 0.2}}
        left, right = start_planes(topo, pair, tmp_path, left_extra=keepalive)
        t = Tunnel(topo, pair, left, right, tmp_path)
        try:
            ike = bytes(4) + os.urandom(8) + bytes(8) + bytes([0x21, 0x20, 0x22, 0x08]) + bytes(8)
            (tmp_path / "ike.hex").write_text(f"{ike.hex()}\n{ike.hex()}\n")
            sender = nettool(topo.left.namespace, "udp-raw", str(topo.right.address), "4500",
                             str(tmp_path / "ike.hex"))
            assert sender.wait(timeout=30) == 0
            ping(t, 2)
            time.sleep(0.5)
            counters = right.cmd(op="counters")
            assert counters["stats"]["ike_in"] == 2
            assert counters["stats"]["keepalives_in"] >= 2
            assert counters["drops"] == {}  # neither IKE nor keepalives were taken for ESP
        finally:
            left.stop()
            right.stop()


@pytest.mark.parametrize("encr,integ,esn", [("chacha20poly1305", "", True), ("aes256", "sha384", False),
                                            ("aes128gcm16", "", True)])
def test_other_transforms_and_esn_carry_traffic(tmp_path: Path, encr: str, integ: str, esn: bool) -> None:
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "dpl", "dpr")
        pair = SaPair(0x1001, 0x2001, encr, integ, esn)
        left, right = start_planes(topo, pair, tmp_path)
        t = Tunnel(topo, pair, left, right, tmp_path)
        try:
            ping(t, 2)
            sent, got = tcp_transfer(t, 1_000_000)
            assert sent == got
            assert left.sa(pair.spi_lr, "out")["packets"] == right.sa(pair.spi_lr, "in")["packets"]
        finally:
            left.stop()
            right.stop()


def test_lifetime_upcalls_reach_the_control_channel(tunnel: Tunnel) -> None:
    t = tunnel
    new = SaPair(0x1002, 0x2002)
    r_out, r_in = new.right(t.topo)
    l_out, l_in = new.left(t.topo)
    l_out.update(soft_packets=3, hard_packets=6)
    for proc, sa in ((t.right, r_in), (t.left, l_in), (t.left, l_out), (t.right, r_out)):
        proc.cmd(op="add_sa", sa=sa)
    ping(t, 8, check=False)  # echo requests 7 and 8 hit the hard limit
    events = t.left.cmd(op="events")["events"]
    kinds = [(e["type"], e["hard"], e["kind"]) for e in events if e["type"] == "LifetimeReached"]
    assert kinds == [("LifetimeReached", False, "packets"), ("LifetimeReached", True, "packets")]
    out = t.left.sa(0x1002, "out")
    assert out["packets"] == 6 and out["drops"] == {"hard_lifetime": 2}
    # delete_sa answers the final counters (ikeguard run with workers accounts from them)
    assert t.left.cmd(op="sa_counters", spi=0x1002, direction="out")["counters"]["packets"] == 6
    final = t.left.cmd(op="delete_sa", spi=0x1002, direction="out")["counters"]
    assert final["packets"] == 6 and final["drops"] == {"hard_lifetime": 2}
    assert t.left.cmd(op="sa_counters", spi=0x1002, direction="out")["counters"] is None


def test_raw_esp_without_udp_encapsulation(tmp_path: Path) -> None:
    """Without a NAT between the peers ESP is IP protocol 50 (RFC 4303 §3.1), as strongSwan sends it."""
    with NetnsLab() as lab:
        topo = Topology.two_hosts(lab, "dpl", "dpr")
        pair = SaPair(0x1001, 0x2001, encap=False)
        left, right = start_planes(topo, pair, tmp_path)
        t = Tunnel(topo, pair, left, right, tmp_path)
        try:
            cap = Capture(topo.right.namespace, "eth0", "esp or udp port 4500", tmp_path / "raw.pcap")
            ping(t, 2)
            sent, got = tcp_transfer(t, 1_000_000)
            assert sent == got
            frames = cap.stop()
            assert frames and all(f[12:14] == b"\x08\x00" and f[23] == 50 for f in frames)
            assert left.sa(pair.spi_lr, "out")["packets"] == right.sa(pair.spi_lr, "in")["packets"]
        finally:
            left.stop()
            right.stop()
