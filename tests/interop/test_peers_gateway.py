"""`ikeguard peers` against a running template gateway and two strongSwan-authenticated merchants:
disable closes only that peer's SAs and its next attempt is refused at IKE_AUTH; enable lets it back;
add binds a new identity to its own subnet without a reload; every change persists and is audited."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.certfactory import CertificateAuthority
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
A, B, C = "merchant-a.ss-lab.example", "merchant-b.ss-lab.example", "merchant-c.ss-lab.example"
SUBNETS = {A: "198.51.100.128/27", B: "198.51.100.160/27", C: "198.51.100.192/27"}


def gateway_config(local_addr: str, local_ts: str) -> str:
    return f"""
[gateway]
profile = "baseline"
state_dir = "state"
dataplane = "none"
listen = ["{local_addr}"]

[authorities.lab]
cacert = "pki/ca.pem"

[connections.merchants]
local_addrs = ["{local_addr}"]
remote_addrs = ["%any"]
proposals = ["{IKE_PROPOSAL}"]

[connections.merchants.local]
auth = "pubkey"
id = "{GW_FQDN}"
certs = ["pki/gw.pem"]
key = "pki/gw.key"

[connections.merchants.remote]
auth = "pubkey"
id = "*.ss-lab.example"
cacerts = ["lab"]
revocation = "relaxed"
peers = "peers.toml"

[connections.merchants.children.net]
local_ts = ["{local_ts}"]
remote_ts = ["%peer"]
esp_proposals = ["{ESP_PROPOSAL}"]
"""


PEERS = f"""
[[peer]]
id = "{A}"
remote_ts = ["{SUBNETS[A]}"]
ticket = "CHG-1"

[[peer]]
id = "{B}"
remote_ts = ["{SUBNETS[B]}"]
ticket = "CHG-2"
"""


def _merchant(name: str, ident: str, local: str, remote: str, remote_ts: str) -> ConnectionConfig:
    return ConnectionConfig(
        name=name, local_addrs=[local], remote_addrs=[remote], proposals=[IKE_PROPOSAL],
        local=AuthConfig("pubkey", ident, certs=[f"{name}.pem"]), remote=AuthConfig("pubkey", GW_FQDN,
                                                                                    cacerts=["ca.pem"]),
        children=[ChildConfig(name="net", local_ts=[SUBNETS[ident]], remote_ts=[remote_ts],
                              esp_proposals=[ESP_PROPOSAL])])


def _up(sas: list[Any], name: str) -> Any:
    return next((sa for sa in sas if sa.name == name and sa.state == "ESTABLISHED"), None)


def test_peers_disable_enable_add_against_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    cert_factory: CertificateAuthority,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    gw_cert = cert_factory.issue_leaf(f"CN={GW_FQDN},O=ikeguard test", sans=[GW_FQDN])
    leaves = {i: cert_factory.issue_leaf(f"CN={i},O=ikeguard test", sans=[i]) for i in (A, B, C)}
    for ident in (B, C):  # strongSwan (libipsec) routes through an address inside each merchant subnet
        left.namespace.add_subnet_address(ipaddress.ip_network(SUBNETS[ident]).network_address + 1)
    gw = ikeguard_gateway(right.namespace, "gw", gateway_config(str(right.address), str(right.subnet)), {
        "pki/ca.pem": cert_factory.issued.cert_pem(), "pki/gw.pem": gw_cert.cert_pem(),
        "pki/gw.key": gw_cert.key_pem(), "peers.toml": PEERS})
    names = {A: "a", B: "b", C: "c"}
    merchants = strongswan_peer(
        left.namespace, "merchants",
        connections=[_merchant(names[i], i, str(left.address), str(right.address), str(right.subnet))
                     for i in (A, B, C)],
        certs={names[i]: leaves[i] for i in (A, B, C)}, cacerts={"ca": cert_factory.cert})

    merchants.initiate(child="net", ike="a")
    merchants.initiate(child="net", ike="b")
    gw.wait_sas(lambda sas: len(sas) == 2 and all(s["children"] for s in sas), what="both merchants up")
    listed = gw.cli("peers", "list")
    assert [(p["id"], p["enabled"], p["ike_sas"], p["ticket"]) for p in listed] == [
        (A, True, 1, "CHG-1"), (B, True, 1, "CHG-2")]
    assert A in gw.cli("peers", "list", json=False)
    b_before = _up(merchants.list_sas(), "b")
    assert b_before is not None

    # disable A: A's SA is deleted at strongSwan, B's is untouched (same SPIs)
    out = gw.cli("peers", "disable", A, "--ticket", "INC-7", json=False)
    assert f"peer {A} disabled in connection merchants; 1 IKE SA deleted" in out
    merchants.wait_for(lambda sas: _up(sas, "a") is None, what="merchant A's SA deleted")
    b_after = _up(merchants.list_sas(), "b")
    assert b_after is not None and b_after.initiator_spi == b_before.initiator_spi
    assert b_after.child("net").spi_in == b_before.child("net").spi_in
    assert [s["remote_id"] for s in gw.sas()] == [B]

    # A's next attempt is refused at IKE_AUTH
    with pytest.raises(StrongSwanError):
        merchants.initiate(child="net", ike="a", timeout=5)
    assert _up(merchants.list_sas(), "a") is None
    refused = gw.wait_audit(lambda e: e["event"] == "auth.failure" and e.get("remote_id") == A,
                            what="auth.failure for the disabled merchant")
    assert refused["outcome"] == "failure"
    assert [s["remote_id"] for s in gw.sas()] == [B]

    # the inventory file says so (survives a restart) and the trail has operator and ticket
    inventory = tomllib.loads((gw.workdir / "peers.toml").read_text())
    assert {p["id"]: p["enabled"] for p in inventory["peer"]} == {A: False, B: True}
    disabled = next(e for e in gw.audit_events() if e["event"] == "peer.disabled")
    assert disabled["remote_id"] == A and disabled["admin"] == "root"
    assert disabled["details"]["ticket"] == "INC-7" and disabled["details"]["terminated"] == 1

    # enable: A comes back
    assert gw.cli("peers", "enable", A, "--ticket", "INC-8")["enabled"] is True
    merchants.initiate(child="net", ike="a")
    assert _up(merchants.list_sas(), "a") is not None

    # add C without a reload: C may now connect, bound to its own subnet
    with pytest.raises(StrongSwanError):
        merchants.initiate(child="net", ike="c", timeout=5)  # not in the inventory yet
    added = gw.cli("peers", "add", C, "--ts", SUBNETS[C], "--ticket", "CHG-3", "--conn", "merchants")
    assert added["id"] == C and added["remote_ts"] == [SUBNETS[C]]
    merchants.initiate(child="net", ike="c")
    sa_c = next(s for s in gw.sas() if s["remote_id"] == C)
    assert sa_c["children"][0]["remote_ts"] == [SUBNETS[C]]
    overlap = gw.cli("peers", "add", "merchant-d.ss-lab.example", "--ts", "198.51.100.200/29", check=False,
                     json=False)
    assert overlap == ""  # refused: stdout empty, reason on stderr (exit 1)
    events = [e["event"] for e in gw.audit_events()]
    assert events.count("peer.added") == 1 and events.count("peer.enabled") == 1
