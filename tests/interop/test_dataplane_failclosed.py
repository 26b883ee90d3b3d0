"""Issue 7 fail closed, with the real gateway: ikeguard (`ikeguard run`, userspace data plane) on the right,
its peer on the left; the right namespace has a DEFAULT ROUTE via the left host, so a packet for the remote
selectors that escaped the tunnel would leave on eth0 in the clear. With the peer stopped (its SA gone on our
side) and with our own gateway killed (SIGKILL: no clean-up at all), tcpdump on every interface of the
namespace other than the TUN device (which is the way into the data plane, not out of the host) sees no
packet addressed to the remote selectors. Positive control: once the routes are removed by hand, the same
capture does see the cleartext leak.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Namespace, Topology, wait_until
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.traffic import Capture, start_tool
from tests.interop.test_dataplane_ikeguard import open_pair
from tests.interop.test_dataplane_strongswan import TUN, open_tunnel

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def interfaces(ns: Namespace) -> list[str]:
    """Every interface of the namespace except our TUN device."""
    names = [line.split(":")[1].strip().split("@")[0] for line in ns.ip("-o", "link").stdout.splitlines()]
    return [n for n in names if n != TUN]


def probe(ns: Namespace, src: str, dst: str, tmp_path: Path, tag: str, up: bool = False) -> dict[str, int]:
    """Send ping, a TCP SYN and a UDP datagram from ``src`` to ``dst``; frames to ``dst`` per interface."""
    caps = {ifname: Capture(ns, ifname, f"dst host {dst}", tmp_path / f"{tag}-{ifname}.pcap")
            for ifname in interfaces(ns)}
    ping = ns.run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", src, dst, check=False)
    tcp = start_tool(ns, "tcp-send", src, dst, "5001", "1000")
    udp = start_tool(ns, "udp-send", src, dst, "5002", "3", "10")
    udp.wait(timeout=10)
    time.sleep(1.0)  # let TCP retransmit its SYN once
    tcp.kill()
    tcp.wait(timeout=5)
    assert (ping.returncode == 0) is up, ping.stdout  # answered through the tunnel, or not at all
    return {ifname: len(cap.stop()) for ifname, cap in caps.items()}


def assert_no_leak(ns: Namespace, src: str, dst: str, tmp_path: Path, tag: str, up: bool = False) -> None:
    seen = probe(ns, src, dst, tmp_path, tag, up)
    assert "eth0" in seen and "lo" in seen
    assert all(n == 0 for n in seen.values()), seen


def leak_control(ns: Namespace, src: str, dst: str, remote_net: str, tmp_path: Path) -> None:
    """Without the TUN and blackhole routes, the same probe leaves on eth0 in the clear: the captures work."""
    for route in (("route", "del", remote_net, "dev", TUN), ("route", "del", "blackhole", remote_net)):
        ns.ip(*route, check=False)
    assert remote_net not in ns.ip("route", "show", "table", "all").stdout
    seen = probe(ns, src, dst, tmp_path, "control")
    assert seen["eth0"] >= 3, seen


def test_strongswan_peer_stopped_nothing_leaves_in_the_clear(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    t = open_tunnel(topo, strongswan_peer, ikeguard_gateway, tmp_path, ikeguard_initiates=False)
    ns = topo.right.namespace
    ns.add_route("default", via=str(topo.left.address))
    assert_no_leak(ns, t.gw_addr, t.peer_addr, tmp_path, "up", up=True)  # tunnel up: only ESP leaves
    t.peer.terminate(ike="ikg")  # the peer deletes the SA ...
    t.peer.stop()  # ... and is gone
    t.gw.wait_sas(lambda sas: sas == [], timeout=10)
    assert_no_leak(ns, t.gw_addr, t.peer_addr, tmp_path, "down")
    # ikeguard is killed outright: its TUN device disappears, the blackhole route stays
    t.gw.kill()
    assert wait_until(lambda: TUN not in ns.ip("link").stdout, 5)
    assert f"blackhole {topo.left.subnet}" in ns.ip("route", "show", "table", "all").stdout
    assert_no_leak(ns, t.gw_addr, t.peer_addr, tmp_path, "killed")
    leak_control(ns, t.gw_addr, t.peer_addr, str(topo.left.subnet), tmp_path)


def test_ikeguard_peer_stopped_nothing_leaves_in_the_clear(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Here our gateway is the initiator (left); its peer (right) stops with SIGTERM and DELETEs the SA."""
    topo = netns_topology("direct")
    p = open_pair(topo, ikeguard_gateway)
    ns = topo.left.namespace
    ns.add_route("default", via=str(topo.right.address))
    p.right.send_signal(signal.SIGTERM)
    assert p.right.wait_exit(10) == 0
    p.left.wait_sas(lambda sas: sas == [], timeout=10)
    assert_no_leak(ns, p.left_addr, p.right_addr, tmp_path, "down")
    leak_control(ns, p.left_addr, p.right_addr, str(topo.right.subnet), tmp_path)
