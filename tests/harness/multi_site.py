"""A gateway and several sites (merchants, good and bad clients) on one switched segment, for interop tests.

Reuses the demo's bridge topology (`ikeguard.tools.demo.topology.build_network`): a ``wan`` namespace holds a
Linux bridge, every site has its own namespace with one veth into it, its outer address from 192.0.2.0/24 and
the first address of its protected subnet on ``lo``. Each site is a separate namespace, so each strongSwan
peer has its own UDP 500/4500, TUN device and routing table. Everything belongs to the given NetnsLab and is
removed with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ikeguard.tools.demo.scenario import Site
from ikeguard.tools.demo.topology import DemoNetwork, build_network
from ikeguard.tools.netns import Namespace, NetnsLab

__all__ = ["GATEWAY_ADDRESS", "GATEWAY_SUBNET", "MultiSite", "SiteSpec", "build_multi_site"]

GATEWAY_ADDRESS = "192.0.2.1"
GATEWAY_SUBNET = "198.51.100.0/25"


@dataclass(frozen=True)
class SiteSpec:
    """What a test asks for: a short role (namespace name part), identity, outer address, protected subnet."""

    role: str
    identity: str
    address: str
    subnet: str


@dataclass(frozen=True)
class SiteHost:
    """One built site: its namespace plus the addresses a test configures peers with."""

    site: Site
    namespace: Namespace

    @property
    def identity(self) -> str:
        return self.site.identity

    @property
    def address(self) -> str:
        return str(self.site.address)

    @property
    def subnet(self) -> str:
        return str(self.site.subnet)

    @property
    def subnet_address(self) -> str:
        return str(self.site.subnet_address)


@dataclass(frozen=True)
class MultiSite:
    """The gateway's site and the other sites, by role."""

    network: DemoNetwork
    gateway: SiteHost
    sites: dict[str, SiteHost]

    def __getitem__(self, role: str) -> SiteHost:
        return self.sites[role]


def build_multi_site(
    lab: NetnsLab, sites: Sequence[SiteSpec], *, gateway_identity: str, gateway_role: str = "gw"
) -> MultiSite:
    """The gateway (192.0.2.1, 198.51.100.0/25) and `sites` on one bridge, each in its own namespace."""
    gateway = Site(gateway_role, gateway_role, gateway_identity, ipaddress.IPv4Address(GATEWAY_ADDRESS),
                   ipaddress.IPv4Network(GATEWAY_SUBNET))
    built = [Site(s.role, s.role, s.identity, ipaddress.IPv4Address(s.address),
                  ipaddress.IPv4Network(s.subnet)) for s in sites]
    network = build_network(lab, (gateway, *built))
    hosts = {site.name: SiteHost(site, network.namespace(site)) for site in built}
    return MultiSite(network, SiteHost(gateway, network.namespace(gateway)), hosts)
