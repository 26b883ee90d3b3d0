"""Issue 20 "Done when" 5: route redistribution over BGP. Each ikeguard node runs FRR (zebra + bgpd) peering
with an upstream FRR router (in the LAN namespace, 192.0.2.200, AS 64500). A node announces the merchant's
subnet only while it holds a Child SA for it: the userspace data plane routes a Child SA's remote selectors
into its TUN device (ikg0), and bgpd redistributes kernel routes on ikg0 matching the merchant prefix list
(the data plane's blackhole fallback route, kept for leak protection, has no interface and is not
announced). The standby holds no SA and announces nothing; after SIGKILL of the active its TUN device (and
route) is gone, the new active installs the SA and the upstream router learns the subnet from it within
the BGP timers (keepalive 1 s, hold 3 s). Recipe in docs/ha.md."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, wait_until
from tests.harness.frr import Frr, frr_dirs
from tests.harness.ha_pair import ETCD_HOST, ha_pair
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.slow]

MERCHANT = "198.51.100.128/25"


def gateway_frr(name: str, address: str) -> str:
    return f"""frr defaults traditional
hostname {name}
log file {{dir}}/frr.log
!
ip prefix-list MERCHANTS seq 5 permit {MERCHANT} le 32
!
route-map FROM-TUNNELS permit 10
 match ip address prefix-list MERCHANTS
 match interface ikg0
!
router bgp 64501
 bgp router-id {address}
 no bgp ebgp-requires-policy
 timers bgp 1 3
 neighbor {ETCD_HOST} remote-as 64500
 neighbor {ETCD_HOST} timers connect 1
 address-family ipv4 unicast
  redistribute kernel route-map FROM-TUNNELS
 exit-address-family
!
"""


UPSTREAM = f"""frr defaults traditional
hostname upstream
!
router bgp 64500
 bgp router-id {ETCD_HOST}
 no bgp ebgp-requires-policy
 timers bgp 1 3
 neighbor 192.0.2.1 remote-as 64501
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.2 remote-as 64501
 neighbor 192.0.2.2 timers connect 1
!
"""


def test_upstream_learns_the_merchant_subnet_from_the_active_node(
    netns_lab: NetnsLab, strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    with frr_dirs() as frr, ha_pair(netns_lab, ikeguard_gateway, tmp_path) as pair:
        (_ns1, gw1), (_ns2, gw2) = pair.nodes
        upstream = Frr(pair.lan, frr / "up", UPSTREAM)
        for (ns, _gw), address in zip(pair.nodes, ("192.0.2.1", "192.0.2.2"), strict=True):
            Frr(ns, frr / ns.name, gateway_frr(ns.name, address))
        assert wait_until(lambda: upstream.vtysh("show ip bgp summary json").count('"Established"') == 2,
                          20, 0.5), upstream.vtysh("show ip bgp summary")
        assert upstream.route_nexthops(MERCHANT) == set()  # no tunnel yet: nobody announces it

        peer = pair.connect(strongswan_peer)
        peer.wait_established("ikg", "net", timeout=15)
        assert wait_until(lambda: upstream.route_nexthops(MERCHANT) == {"192.0.2.1"}, 10, 0.2), \
            upstream.vtysh(f"show ip bgp {MERCHANT}")
        learned = upstream.route_nexthops(MERCHANT)
        assert wait_until(lambda: gw1.cli("ha", "status")["synced_sas"] == 1, 5, interval=0.1)
        time.sleep(0.5)

        killed = time.monotonic()
        gw1.kill()
        assert wait_until(lambda: upstream.route_nexthops(MERCHANT) == {"192.0.2.2"}, 15, 0.1), \
            upstream.vtysh(f"show ip bgp {MERCHANT}")
        moved = time.monotonic() - killed
        assert gw2.cli("ha", "status")["role"] == "active"
        print(f"BGP: upstream learned {MERCHANT} from {learned}; after SIGKILL of gw1 from 192.0.2.2 only, "
              f"{moved:.2f} s later (hold time 3 s)")
        assert moved <= 3.0 + 3.0  # the takeover (lease) plus the BGP hold time
