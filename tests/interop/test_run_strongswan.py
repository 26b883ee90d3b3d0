"""`ikeguard run` as a process in a network namespace against a real strongSwan peer (PSK and certificates,
both roles): strongSwan's own view shows the IKE SA ESTABLISHED and the Child SA INSTALLED with the SPIs
ikeguard reports; SIGTERM makes ikeguard DELETE the SA (strongSwan's side is gone)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "service-test-psk-4c1d9e7a2b3f5a60"
PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _strongswan_client(strongswan_peer: PeerFactory, topo: Topology, *, remote: str | None = None,
                       start: str | None = None) -> StrongSwanPeer:
    """strongSwan on the left host (client.ss-lab.example) with a mirrored PSK connection."""
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg",
        local_addrs=[str(left.address)],
        remote_addrs=[remote or str(right.address)],
        local=AuthConfig("psk", CLIENT_FQDN),
        remote=AuthConfig("psk", GW_FQDN),
        proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet)], remote_ts=[str(right.subnet)],
                              esp_proposals=[ESP_PROPOSAL])],
    )
    return strongswan_peer(left.namespace, "client", connections=[conn],
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])


def _ikeguard_gw(ikeguard_gateway: GatewayFactory, topo: Topology, *, remote: str,
                 **kwargs: str) -> GatewayProcess:
    right, left = topo.right, topo.left
    config = GwConfig(str(right.address), remote, GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      psk=PSK, **kwargs)
    return ikeguard_gateway(right.namespace, "gw", config.text(), config.files())


def _assert_same_sa(ss_sa: object, ikg: dict[str, object]) -> None:
    """strongSwan's SA and ikeguard's describe the same SA: SPIs, proposal, selectors."""
    child = ss_sa.child("net")  # type: ignore[attr-defined]
    ikg_child = ikg["children"][0]  # type: ignore[index]
    assert ikg["state"] == "established"
    assert ikg_child["state"] == "installed"
    assert ikg["spi_i"] == f"{ss_sa.initiator_spi:016x}"  # type: ignore[attr-defined]
    assert ikg["spi_r"] == f"{ss_sa.responder_spi:016x}"  # type: ignore[attr-defined]
    assert (ikg_child["spi_in"], ikg_child["spi_out"]) == (f"{child.spi_out:08x}", f"{child.spi_in:08x}")
    assert ikg["proposal"] == IKE_PROPOSAL == ss_sa.proposal  # type: ignore[attr-defined]
    assert ikg_child["proposal"] == child.proposal


def test_strongswan_initiates_to_ikeguard_responder(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    gw = _ikeguard_gw(ikeguard_gateway, topo, remote="%any")
    client = _strongswan_client(strongswan_peer, topo)
    client.initiate(child="net", ike="ikg")
    ss_sa = client.wait_established("ikg", "net")
    assert ss_sa.initiator
    sas = gw.wait_sas(lambda sas: bool(sas) and sas[0]["children"] and
                      sas[0]["children"][0]["state"] == "installed", timeout=10)
    assert sas[0]["initiator"] is False and sas[0]["remote_id"] == CLIENT_FQDN
    _assert_same_sa(ss_sa, sas[0])

    # SIGTERM: ikeguard deletes the IKE SA at the peer before it exits 0
    gw.send_signal(signal.SIGTERM)
    assert gw.wait_exit(10) == 0
    assert wait_until(lambda: client.list_sas() == [], 5), client.log()[-2000:]
    assert "received DELETE for IKE_SA" in client.log()
    assert "did not confirm" not in gw.log()  # strongSwan's answer reached us before we exited


def test_ikeguard_initiates_to_strongswan_with_start_action(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    client = _strongswan_client(strongswan_peer, topo, remote="%any")
    gw = _ikeguard_gw(ikeguard_gateway, topo, remote=str(topo.left.address), start_action="start")
    ss_sa = client.wait_established("ikg", "net")
    assert not ss_sa.initiator
    sas = gw.wait_sas(lambda sas: bool(sas) and sas[0]["children"] and
                      sas[0]["children"][0]["state"] == "installed", timeout=10)
    assert sas[0]["initiator"] is True
    _assert_same_sa(ss_sa, sas[0])
    gw.wait_audit(lambda e: e["event"] == "child.up")  # the trail is written by its own process
    events = [e["event"] for e in gw.audit_events()]
    assert "config.loaded" in events and "ike.up" in events and "child.up" in events


def _ping(topo: Topology, count: int = 3) -> str:
    result = topo.left.namespace.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I",
                                     str(topo.left.subnet_address), str(topo.right.subnet_address),
                                     check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_userspace_dataplane_carries_ping_to_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    """ikeguard's userspace ESP data plane (TUN, ESP in UDP on its 4500 socket) against strongSwan's."""
    topo = netns_topology("direct")
    client = _strongswan_client(strongswan_peer, topo, remote="%any")
    gw = _ikeguard_gw(ikeguard_gateway, topo, remote=str(topo.left.address), start_action="start",
                      dataplane="userspace")
    client.wait_established("ikg", "net")
    gw.wait_sas(lambda sas: bool(sas) and sas[0]["children"] and
                sas[0]["children"][0]["state"] == "installed", timeout=10)
    assert " 0% packet loss" in _ping(topo, 3)
    ss_child = client.list_sas()[0].child("net")
    child = gw.sas()[0]["children"][0]
    assert ss_child.packets_out >= 3 and ss_child.packets_in >= 3
    assert child["packets_in"] >= 3 and child["packets_out"] >= 3  # counters from ikeguard's data plane
    assert child["bytes_in"] > 0 and child["bytes_out"] > 0
    gw.send_signal(signal.SIGTERM)
    assert gw.wait_exit(10) == 0
    assert wait_until(lambda: client.list_sas() == [], 5)
    # the stopped gateway leaves neither its TUN device nor routes for the remote subnet behind
    assert "ikg0" not in topo.right.namespace.ip("link").stdout
    assert str(topo.left.subnet) not in topo.right.namespace.ip("route", "show", "table", "all").stdout


def test_wildcard_listen_answers_ipv6_from_the_address_asked(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    """listen = 0.0.0.0 and :: (IPV6_V6ONLY): an IPv6 peer reaches the gateway, which learns its local
    address from IPV6_RECVPKTINFO and answers from it (strongSwan accepts only answers from where it sent)."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    conn = ConnectionConfig(
        name="ikg", local_addrs=[str(left.address6)], remote_addrs=[str(right.address6)],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(left.subnet6)], remote_ts=[str(right.subnet6)],
                              esp_proposals=[ESP_PROPOSAL])],
    )
    client = strongswan_peer(left.namespace, "client", connections=[conn],
                             psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=PSK)])
    config = GwConfig("%any", "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet6), str(left.subnet6), psk=PSK,
                      listen=["0.0.0.0", "::"])
    text = config.text().replace('local_addrs = ["%any"]\n', "")
    gw = ikeguard_gateway(right.namespace, "gw", text, config.files())
    client.initiate(child="net", ike="ikg")
    ss_sa = client.wait_established("ikg", "net")
    sas = gw.wait_sas(lambda sas: bool(sas) and sas[0]["children"] and
                      sas[0]["children"][0]["state"] == "installed", timeout=10)
    assert sas[0]["local_addr"] == str(right.address6) and sas[0]["remote_addr"] == str(left.address6)
    _assert_same_sa(ss_sa, sas[0])
    assert sas[0]["children"][0]["remote_ts"] == [str(left.subnet6)]
