"""Issue 13 S3 through the running gateway: two strongSwan peers that choose the same ESP SPI.

One ikeguard gateway (`ikeguard run`, ``dataplane = "userspace"``, 192.0.2.1, 198.51.100.0/25) and two
strongSwan 5.9 peers (charon-systemd with kernel-libipsec), A (192.0.2.21, 198.51.100.128/27) and B
(192.0.2.22, 198.51.100.160/27), each with its own PSK and connection. Both peers are forced to allocate the
same inbound SPI with strongSwan's own settings, ``charon.spi_min = charon.spi_max`` (libipsec's SPI
allocator reads them), so the gateway's outbound SPI is the same towards both: what a peer achieves by
copying another peer's SPI from the wire. Before the fix the second Child SA replaced the first one's
outbound entry in the data plane, and deleting A's Child SA removed B's SA while A's policy kept encrypting
with A's deleted keys.

* both tunnels carry traffic (ping through each, both directions), and the ESP towards each peer carries the
  shared SPI, each sealed with that peer's keys (each peer decrypts its own: strongSwan's counters agree);
* A's Child SA is deleted, by A (``swanctl --terminate --child``: a Delete naming the shared SPI) or by the
  gateway's operator (``ikeguard terminate --uniqueid``): the gateway removes exactly A's SAs; pings from the
  gateway's subnet to A's subnet go out as nothing at all (no ESP towards A on the wire: fail closed), and
  B's tunnel keeps working both ways, every packet the gateway sealed for B opened by B.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.multi_site import (
    GATEWAY_ADDRESS,
    GATEWAY_SUBNET,
    MultiSite,
    SiteHost,
    SiteSpec,
    build_multi_site,
)
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.harness.traffic import Capture, esp_payloads

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

SHARED_SPI = 0xC0FFEE01
IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16"
GW_ID = "gw.spi-lab.example"
SITES = (
    SiteSpec("a", "a.spi-lab.example", "192.0.2.21", "198.51.100.128/27"),
    SiteSpec("b", "b.spi-lab.example", "192.0.2.22", "198.51.100.160/27"),
)


def _openssl_rand() -> str:
    """A fresh key as an operator makes one (`openssl rand -base64 32`), written as strongSwan's 0s form."""
    return "0s" + subprocess.run(["openssl", "rand", "-base64", "32"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()


def _gateway(net: MultiSite, keys: dict[str, str]) -> tuple[str, dict[str, str]]:
    conns, secrets = [], []
    for role, key in keys.items():
        site = net[role]
        conns.append(IkgConnection(
            name=f"peer-{role}", local_addrs=[GATEWAY_ADDRESS], remote_addrs=["%any"],
            proposals=[IKE_PROPOSAL],
            local=IkgLocal("psk", GW_ID), remote=IkgRemote("psk", site.identity),
            children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=[site.subnet],
                               esp_proposals=[ESP_PROPOSAL])]))
        secrets.append(IkgSecret(f"peer-{role}", [site.identity], key))
    text = gateway_toml(conns, listen=[GATEWAY_ADDRESS], secrets=secrets, dataplane="userspace")
    return text, secret_files(secrets)


def _peer(strongswan_peer: PeerFactory, site: SiteHost, key: str) -> StrongSwanPeer:
    conn = ConnectionConfig(
        name="ikg", local_addrs=[site.address], remote_addrs=[GATEWAY_ADDRESS], proposals=[IKE_PROPOSAL],
        local=AuthConfig("psk", site.identity), remote=AuthConfig("psk", GW_ID),
        children=[ChildConfig("net", local_ts=[site.subnet], remote_ts=[GATEWAY_SUBNET],
                              esp_proposals=[ESP_PROPOSAL])])
    # strongSwan's own knob: libipsec allocates inbound SPIs in [spi_min, spi_max]
    forced = {"spi_min": f"0x{SHARED_SPI:08x}", "spi_max": f"0x{SHARED_SPI:08x}"}
    return strongswan_peer(site.namespace, site.site.role, connections=[conn], charon_options=forced,
                           psks=[PskSecret([GW_ID, site.identity], key)])


def _gw_child(gw: GatewayProcess, identity: str) -> dict[str, Any] | None:
    children = [c for s in gw.sas() if s["remote_id"] == identity for c in s["children"]
                if c["state"] == "installed"]
    return children[0] if len(children) == 1 else None


def _ping(ns_site: SiteHost | None, src: str, dst: str, net: MultiSite, count: int = 3) -> bool:
    ns = (ns_site or net.gateway).namespace
    done = ns.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I", src, dst, check=False)
    return " 0% packet loss" in done.stdout


@pytest.mark.parametrize("deleted_by", ["strongswan", "ikeguard"])
def test_two_peers_with_the_same_spi_keep_separate_tunnels_and_a_delete_stops_only_its_own(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory, tmp_path: Path,
    deleted_by: str,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    a, b = net["a"], net["b"]
    keys = {"a": _openssl_rand(), "b": _openssl_rand()}
    text, files = _gateway(net, keys)
    gw = ikeguard_gateway(net.gateway.namespace, "gw", text, files)
    gw_host = net.gateway.subnet_address

    peers = {}
    for role, site in (("a", a), ("b", b)):
        peers[role] = _peer(strongswan_peer, site, keys[role])
        peers[role].initiate(child="net", ike="ikg")
        ss_child = peers[role].wait_established("ikg", "net", timeout=15).child("net")
        assert ss_child.spi_in == SHARED_SPI, ss_child  # strongSwan applied the forced SPI
    gw.wait_sas(lambda sas: _gw_child(gw, a.identity) is not None and _gw_child(gw, b.identity) is not None,
                timeout=10, what="both Child SAs installed")
    child_a, child_b = _gw_child(gw, a.identity), _gw_child(gw, b.identity)
    assert child_a is not None and child_b is not None
    assert child_a["spi_out"] == child_b["spi_out"] == f"{SHARED_SPI:08x}"  # the collision is real
    assert child_a["uniqueid"] != child_b["uniqueid"]

    # both tunnels carry traffic, each way; ESP towards each peer carries the shared SPI
    cap = Capture(net.gateway.namespace, "eth0", "udp port 4500 and src host 192.0.2.1", tmp_path / "up.pcap")
    for site in (a, b):
        assert _ping(site, site.subnet_address, gw_host, net), f"ping from {site.identity}"
        assert _ping(None, gw_host, site.subnet_address, net), f"ping to {site.identity}"
    shared = SHARED_SPI.to_bytes(4, "big")
    assert sum(1 for p in esp_payloads(cap.stop()) if p[:4] == shared) >= 12  # 2 x (3 replies + 3 requests)
    for role in ("a", "b"):  # each peer decrypted what the gateway sent it (its own keys)
        ss_child = peers[role].list_sas()[0].child("net")
        assert ss_child.packets_in >= 6 and ss_child.packets_out >= 6, ss_child

    # A's Child SA is deleted; B's, with the same SPI, must stay
    if deleted_by == "strongswan":
        peers["a"].terminate(child="net")
    else:
        gw.cli("terminate", "--uniqueid", str(child_a["uniqueid"]), json=False)
        peers["a"].wait_for(lambda sas: not any(s.children for s in sas), what="A's Child SA gone at A")
    gw.wait_sas(lambda sas: _gw_child(gw, a.identity) is None, timeout=10, what="A's Child SA gone")
    after_b = _gw_child(gw, b.identity)
    assert after_b is not None and after_b["uniqueid"] == child_b["uniqueid"], after_b
    downs = [e for e in gw.audit_events() if e["event"] == "child.down"]
    assert [e.get("remote_id") for e in downs] == [a.identity], downs

    to_a = Capture(net.gateway.namespace, "eth0", f"dst host {a.address}", tmp_path / "to-a.pcap")
    assert not _ping(None, gw_host, a.subnet_address, net, count=3)  # A's policy: fail closed
    assert esp_payloads(to_a.stop()) == []  # nothing sealed with A's deleted keys (or any) goes to A
    to_b = Capture(net.gateway.namespace, "eth0", f"dst host {b.address} and udp port 4500",
                   tmp_path / "to-b.pcap")
    assert _ping(None, gw_host, b.subnet_address, net), "B's tunnel after A's delete"
    assert _ping(b, b.subnet_address, gw_host, net), "B's tunnel after A's delete (B initiating)"
    esp_to_b = [p for p in esp_payloads(to_b.stop()) if p[:4] == shared]
    assert len(esp_to_b) >= 6, len(esp_to_b)
    counters_b = _gw_child(gw, b.identity)
    assert counters_b is not None and counters_b["packets_out"] >= 12 and counters_b["drops"]["out"] == {}
    ss_b = peers["b"].list_sas()[0].child("net")
    assert ss_b.packets_in == counters_b["packets_out"], (ss_b, counters_b)  # B opened all of them
