"""Issue 22: ``[gateway] workers = 2`` with ``dataplane = "userspace"`` and ``esp_workers = 2`` against two
strongSwan 5.9.8 peers (kernel-libipsec). The supervisor runs the machine's one data plane
(service/workerplane.py: one TUN, its ESP sockets in the 4500 group); both IKE workers install their Child SAs
there. Peer A (behind the NAT, seen as 192.0.2.2: IKE worker 0) and peer B (192.0.2.3: IKE worker 1) each
ping through their tunnel and the counters reach the owning worker's ``sas``; 16 UDP flows from the gateway's
side to peer A cross both ESP workers and every outbound SPI's sequence numbers on the wire form one strictly
increasing stream (one sender per SA: AES-GCM nonce safety). SIGKILL of IKE worker 1: its Child SA is removed
from the plane, peer A's tunnel keeps passing traffic; the restarted worker takes B's new SA and it carries
pings again. Second test: the default ``listen`` (both families): one plane per IP version, a tunnel
through the IPv4 one; a plane process that dies stops the gateway (exit code 1).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.service.reuseport import spread_index
from ikeguard.tools.netns import Host, Namespace, Topology, wait_until
from tests.dataplane.netns_helpers import Capture, assert_one_sender_each, esp_streams
from tests.harness.interop_pair import (
    CHILD,
    ESP_PROPOSAL,
    GatewayFactory,
    PeerFactory,
    ikeguard_side,
    strongswan_side,
    subnet,
)
from tests.harness.strongswan import StrongSwanError
from tests.harness.swanctl_conf import ChildConfig
from tests.harness.workers import worker_of, worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]

B_ADDRESS, B_INNER = "192.0.2.3", "198.51.100.250"
FLOWS = 16
REKEY_PACKETS = 1000


def _ping(ns: Namespace, src: str, dst: str, count: int = 4) -> str:
    result = ns.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I", src, dst, check=False)
    return str(result.stdout) + str(result.stderr)


def _child(sas: list[dict[str, Any]], remote: str) -> dict[str, Any]:
    sa = next(sa for sa in sas if sa["remote_addr"] == remote)
    return dict(sa["children"][0])


def _flows(ns: Namespace, src: str, dst: str) -> None:
    script = (
        "import socket,sys,time\n"
        f"socks=[socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range({FLOWS})]\n"
        "for s in socks: s.bind((sys.argv[1], 0))\n"
        "for i in range(100):\n"
        "    for s in socks: s.sendto(b'x'*400, (sys.argv[2], 9000))\n"
        "    time.sleep(0.005)\n"  # paced: tcpdump keeps up (a lost capture only weakens the check)
    )
    ns.run("python3", "-c", script, src, dst, timeout=60)


def test_two_ike_workers_on_one_userspace_plane(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("nat")
    router = topo.router
    assert router is not None and topo.public_address is not None
    assert spread_index(str(topo.public_address), 2) == 0 and spread_index(B_ADDRESS, 2) == 1
    left, right = topo.left, topo.right
    # rekey_packets: the flows below cross it, the plane's soft-lifetime upcall reaches IKE worker 0, which
    # rekeys peer A's Child SA (the upcall path through the supervisor)
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", dataplane="userspace",
                       gateway_keys={"workers": 2, "esp_workers": 2}, child={"rekey_packets": REKEY_PACKETS})
    pids = worker_pids(gw.log())
    assert sorted(pids) == [0, 1], gw.log_tail()
    assert "2 ESP worker(s)" in gw.log(), gw.log_tail()

    # peer A behind the NAT; its Child SA only for its own address (B's /32 must not fall under A's policy)
    a_child = ChildConfig(name=CHILD, local_ts=[f"{left.subnet_address}/32"], remote_ts=[subnet(right)],
                          esp_proposals=[ESP_PROPOSAL])
    peer_a = strongswan_side(strongswan_peer, left, right, conn={"children": [a_child]})
    peer_a.initiate(child="net", ike="ikg")
    peer_a.wait_established("ikg", "net")
    sas = gw.wait_sas(lambda sas: len(sas) == 1 and bool(sas[0]["children"]), timeout=10)
    assert worker_of(sas[0]) == 0

    # peer B from the router's second address (not masqueraded): IKE worker 1
    router.add_address("outside", f"{B_ADDRESS}/24")
    router.run("nft", "insert", "rule", "inet", "ikg_nat", "postrouting", "ip", "saddr", B_ADDRESS, "accept")
    b_host = Host(router, "outside", ipaddress.IPv4Address(B_ADDRESS), left.address6,
                  ipaddress.IPv4Network(f"{B_INNER}/32"), ipaddress.IPv4Address(B_INNER), left.subnet6,
                  left.subnet_address6)
    router.add_address("lo", f"{B_INNER}/32")
    peer_b = strongswan_side(strongswan_peer, b_host, right, name="ssb", conn={"unique": "never"})
    peer_b.initiate(child="net", ike="ikg")
    peer_b.wait_established("ikg", "net")
    sas = gw.wait_sas(lambda sas: len(sas) == 2 and all(sa["children"] for sa in sas), timeout=10)
    sa_a = next(sa for sa in sas if sa["remote_addr"] == str(topo.public_address))
    assert worker_of(sa_a) == 0
    sa_b = next(sa for sa in sas if sa["remote_addr"] == B_ADDRESS)
    assert worker_of(sa_b) == 1 and (int(sa_b["uniqueid"]) - 1) % 2 == 1
    assert {_child(sas, B_ADDRESS)["spi_in"]} != {_child(sas, str(topo.public_address))["spi_in"]}

    # both tunnels carry pings; the counters reach each owning worker's view
    out = _ping(left.namespace, str(left.subnet_address), str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()
    out = _ping(router, B_INNER, str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()
    sas = gw.sas()
    for remote in (str(topo.public_address), B_ADDRESS):
        child = _child(sas, remote)
        assert child["packets_in"] >= 4 and child["packets_out"] >= 4, (remote, child)

    # one sender per SA: 16 flows into the multi-queue TUN (both ESP workers read them), one SPI on the wire
    cap = Capture(right.namespace, "eth0", f"udp port 4500 and src host {right.address}", tmp_path / "a.pcap")
    _flows(right.namespace, str(right.subnet_address), str(left.subnet_address))
    seqs = esp_streams(cap.stop())
    spi_out_a = int(_child(sas, str(topo.public_address))["spi_out"], 16)
    # the plane sends ESP with UDP GSO: the capture may see one frame for several datagrams (only the first
    # one's number is read), so what the one sender numbered is the span of the numbers, not the frame count
    spans = {spi: max(numbers) - min(numbers) + 1 for spi, numbers in seqs.items()}
    assert spi_out_a in seqs and sum(spans.values()) >= FLOWS * 100 // 2, spans
    assert_one_sender_each(seqs)
    # the soft packet lifetime of A's outbound SA was crossed: the upcall reached worker 0, which rekeyed
    gw.wait_audit(lambda e: e["event"] == "child.rekeyed", timeout=15)
    out = _ping(left.namespace, str(left.subnet_address), str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()

    # SIGKILL IKE worker 1 (peer B's): B's Child SA leaves the plane, A's tunnel keeps passing traffic
    os.kill(pids[1], signal.SIGKILL)
    all_removed = re.compile(r"worker 1 gone: removed its (\d+) of \1 SA\(s\) and (\d+) of \2 policy")
    assert wait_until(lambda: all_removed.search(gw.log()), 10), gw.log_tail()
    out = _ping(left.namespace, str(left.subnet_address), str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()
    assert wait_until(lambda: worker_pids(gw.log()).get(1, pids[1]) != pids[1], 10), gw.log_tail()
    assert worker_pids(gw.log())[0] == pids[0]

    # the restarted worker 1 takes B's new SA, which carries pings again
    with contextlib.suppress(StrongSwanError):
        peer_b.terminate(ike="ikg", force=True)
    assert wait_until(lambda: not peer_b.list_sas(), 5)
    peer_b.initiate(child="net", ike="ikg")
    peer_b.wait_established("ikg", "net")
    sas = gw.wait_sas(lambda sas: any(sa["remote_addr"] == B_ADDRESS and sa["children"] for sa in sas),
                      timeout=15)
    assert worker_of(next(sa for sa in sas if sa["remote_addr"] == B_ADDRESS)) == 1
    out = _ping(router, B_INNER, str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()
    out = _ping(left.namespace, str(left.subnet_address), str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()

    # at stop the plane logs each ESP worker's stats: both read flows from the multi-queue TUN (the one that
    # does not own A's outbound SA handed its packets to the owner)
    gw.stop()
    handed = [int(n) for n in re.findall(r"ESP worker \d at stop: .*handed_off=(\d+)", gw.log())]
    assert len(handed) == 2 and any(handed), gw.log_tail()


def test_both_families_and_a_dead_plane(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", dataplane="userspace",
                       listen=["0.0.0.0", "::"], gateway_keys={"workers": 2})
    log = gw.log()
    assert "data plane IPv4: pid" in log and "data plane IPv6: pid" in log, gw.log_tail()
    peer = strongswan_side(strongswan_peer, left, right)
    peer.initiate(child="net", ike="ikg")
    peer.wait_established("ikg", "net")
    out = _ping(left.namespace, str(left.subnet_address), str(right.subnet_address))
    assert " 0% packet loss" in out, out + gw.log_tail()
    found = re.search(r"data plane IPv4: pid (\d+)", log)
    assert found is not None
    os.kill(int(found.group(1)), signal.SIGKILL)
    assert gw.wait_exit(15) == 1, gw.log_tail()
    assert "the IPv4 data plane (pid" in gw.log() and "stopping the gateway" in gw.log()
