"""ESP through a real NAT between ikeguard's userspace data plane and strongSwan (kernel-libipsec), both ways.

The left host sits behind an nftables masquerade (tests' ``nat`` topology). Whichever side is behind it, the
tunnel carries pings both ways as RFC 3948 UDP-encapsulated ESP on port 4500 through the NAT's mapping, and
the two sides' counters for the same SPIs agree (what one sent, the other received).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Host, Topology
from tests.harness.interop_pair import GatewayFactory, PairSpec, PeerFactory, ikeguard_side, strongswan_side
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

BEHIND_SPEC = PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN)  # ikeguard behind the NAT is the "client"


def _installed(sas: list[dict[str, Any]]) -> bool:
    return len(sas) == 1 and any(c["state"] == "installed" for c in sas[0]["children"])


def _ping(src: Host, dst: Host, count: int = 5) -> str:
    result = src.namespace.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
                               "-I", str(src.subnet_address), str(dst.subnet_address), check=False)
    return str(result.stdout) + str(result.stderr)


def _assert_tunnel_carries_esp_through_the_nat(topo: Topology, gw: GatewayProcess, peer: StrongSwanPeer,
                                                ikeguard_host: Host, strongswan_host: Host) -> None:
    gw.wait_sas(_installed, timeout=15)
    for src, dst in ((strongswan_host, ikeguard_host), (ikeguard_host, strongswan_host)):
        out = _ping(src, dst)
        assert " 0% packet loss" in out, out
    (sa,) = gw.sas()
    (child,) = sa["children"]
    assert sa["encap"] and sa["remote_port"] != 500
    if ikeguard_host is topo.right:  # strongSwan is behind the NAT: ikeguard sees the NAT's public address
        assert sa["remote_addr"] == str(topo.public_address) and sa["nat_remote"]
    else:
        assert sa["nat_local"]
    ss_child = peer.list_sas()[0].child("net")
    assert (child["spi_in"], child["spi_out"]) == (f"{ss_child.spi_out:08x}", f"{ss_child.spi_in:08x}")
    assert child["packets_in"] == ss_child.packets_out >= 10  # echo requests or replies, both directions
    assert child["packets_out"] == ss_child.packets_in >= 10
    assert child["bytes_in"] == ss_child.bytes_out and child["bytes_out"] == ss_child.bytes_in


def test_esp_through_nat_strongswan_behind_it(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("nat")
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", dataplane="userspace")
    peer = strongswan_side(strongswan_peer, left, right)
    peer.initiate(child="net", ike="ikg")
    peer.wait_established("ikg", "net")
    _assert_tunnel_carries_esp_through_the_nat(topo, gw, peer, ikeguard_host=right, strongswan_host=left)


def test_esp_through_nat_ikeguard_behind_it(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("nat")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, right, left, spec=BEHIND_SPEC, remote_addr="%any")
    gw = ikeguard_side(ikeguard_gateway, left, right, spec=BEHIND_SPEC, remote_addr=str(right.address),
                       child={"start_action": "start"}, dataplane="userspace")
    peer.wait_established("ikg", "net")
    _assert_tunnel_carries_esp_through_the_nat(topo, gw, peer, ikeguard_host=left, strongswan_host=right)
