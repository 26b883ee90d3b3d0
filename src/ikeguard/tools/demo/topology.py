"""The demo's network: processor, merchant A and merchant B on one switched segment, plus the demo SIEM.

Built on `ikeguard.tools.netns.NetnsLab` primitives (namespaces, veth, PID-tracked processes, teardown on
exit/signal). A fourth namespace ``wan`` holds a Linux bridge standing in for the Internet; each site has one
veth into it (``eth0`` on the site side), its outer address from 192.0.2.0/24 and its protected subnet's first
address on ``lo``. The SIEM listens on the bridge itself (192.0.2.100). Nothing touches the host namespace.

    merchant A 192.0.2.11 --+
    merchant B 192.0.2.12 --+-- br0 (wan, SIEM 192.0.2.100) --+-- processor 192.0.2.1
"""

from __future__ import annotations

from dataclasses import dataclass

from ikeguard.tools.demo.scenario import SIEM_ADDRESS, SITES, Site
from ikeguard.tools.netns import Namespace, NetnsLab

BRIDGE = "br0"
WAN_ROLE = "wan"
LAB_PREFIX = "ikgd"  # demo namespaces are ikgd-<role>-<token>


@dataclass
class DemoNetwork:
    """The namespaces of one demo run, by site name."""

    lab: NetnsLab
    wan: Namespace
    sites: dict[str, Namespace]

    def namespace(self, site: Site) -> Namespace:
        """The namespace a site lives in."""
        return self.sites[site.name]

    @property
    def names(self) -> list[str]:
        """Every namespace name (for the summary and the leak check)."""
        return [ns.name for ns in self.lab.namespaces]


def build_network(lab: NetnsLab, sites: tuple[Site, ...] = SITES) -> DemoNetwork:
    """Create the wan namespace with its bridge and one namespace per site, addressed and up."""
    wan = lab.namespace(WAN_ROLE)
    wan.ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
    wan.set_up(BRIDGE)
    wan.add_address(BRIDGE, f"{SIEM_ADDRESS}/24")
    namespaces: dict[str, Namespace] = {}
    for site in sites:
        ns = lab.namespace(site.role)
        port = f"to-{site.role}"
        lab.veth(wan, ns, port, "eth0")
        wan.ip("link", "set", port, "master", BRIDGE)
        ns.add_address("eth0", site.interface)
        ns.add_subnet_address(site.subnet_address)
        namespaces[site.name] = ns
    return DemoNetwork(lab, wan, namespaces)
