"""`ikeguard reload` (and SIGHUP) on a running gateway with two connections up to strongSwan: changing one
child's selectors re-establishes only that connection (the other keeps its SPIs on both sides); a replaced
certificate file touches no SA and is used from the next authentication; an invalid config is refused
(config.rejected) and everything keeps running."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
PSK = "reload-test-psk-3b9f2a7c1d5e8064"
GW2, CLIENT2 = "gw2.ss-lab.example", "client2.ss-lab.example"
# (gateway side, client side) per connection
NETS = {"certs": ("198.51.100.0/26", "198.51.100.128/26"), "psk": ("198.51.100.64/26", "198.51.100.192/26")}


def gateway_config(gw_addr: str, client_addr: str, psk_local_ts: str = NETS["psk"][0],
                   extra: str = "") -> str:
    return f"""
[gateway]
profile = "baseline"
state_dir = "state"
dataplane = "none"
listen = ["{gw_addr}"]
{extra}

[authorities.lab]
cacert = "pki/ca.pem"

[connections.certs]
local_addrs = ["{gw_addr}"]
remote_addrs = ["{client_addr}"]
proposals = ["{IKE_PROPOSAL}"]

[connections.certs.local]
auth = "pubkey"
id = "{GW_FQDN}"
certs = ["pki/gw.pem"]
key = "pki/gw.key"

[connections.certs.remote]
auth = "pubkey"
id = "{CLIENT_FQDN}"
cacerts = ["lab"]
revocation = "relaxed"

[connections.certs.children.net1]
local_ts = ["{NETS["certs"][0]}"]
remote_ts = ["{NETS["certs"][1]}"]
esp_proposals = ["{ESP_PROPOSAL}"]
start_action = "start"

[connections.psk]
local_addrs = ["{gw_addr}"]
remote_addrs = ["{client_addr}"]
proposals = ["{IKE_PROPOSAL}"]

[connections.psk.local]
auth = "psk"
id = "{GW2}"

[connections.psk.remote]
auth = "psk"
id = "{CLIENT2}"

[connections.psk.children.net2]
local_ts = ["{psk_local_ts}"]
remote_ts = ["{NETS["psk"][1]}"]
esp_proposals = ["{ESP_PROPOSAL}"]
start_action = "start"

[secrets.ike.client2]
ids = ["{CLIENT2}", "{GW2}"]
secret_file = "psk.txt"
"""


def _client(strongswan_peer: PeerFactory, topo: Topology, pki: TestPki) -> StrongSwanPeer:
    left, right = topo.left, topo.right
    left.namespace.add_subnet_address("198.51.100.193")  # libipsec routes via an address inside local_ts
    certs = ConnectionConfig(
        name="certs", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        proposals=[IKE_PROPOSAL],
        local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig(name="net1", local_ts=[NETS["certs"][1]], remote_ts=[NETS["certs"][0]],
                              esp_proposals=[ESP_PROPOSAL])])
    psk = ConnectionConfig(
        name="psk", local_addrs=[str(left.address)], remote_addrs=[str(right.address)],
        proposals=[IKE_PROPOSAL],
        local=AuthConfig("psk", CLIENT2), remote=AuthConfig("psk", GW2),
        children=[ChildConfig(name="net2", local_ts=[NETS["psk"][1]], remote_ts=[NETS["psk"][0]],
                              esp_proposals=[ESP_PROPOSAL])])
    return strongswan_peer(left.namespace, "client", connections=[certs, psk],
                           psks=[PskSecret(ids=[GW2, CLIENT2], secret=PSK)],
                           certs={"client": pki.client}, cacerts={"ca": pki.ca.cert})


def _both_up(sas: list[dict[str, Any]]) -> bool:
    names = {sa["name"] for sa in sas if sa["state"] == "established" and sa["children"]
             and all(c["state"] == "installed" for c in sa["children"])}
    return names == {"certs", "psk"} and len(sas) == 2


def _by_name(sas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {sa["name"]: sa for sa in sas}


def _spis(sa: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    return sa["spi_i"], sa["spi_r"], tuple(c["spi_in"] for c in sa["children"])


def _run(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([gw.python, "-m", "ikeguard", *args, "--socket", str(gw.control_socket)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_reload_keeps_unchanged_changes_changed_and_refuses_invalid(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    test_pki: TestPki,
) -> None:
    topo = netns_topology("direct")
    gw_addr, client_addr = str(topo.right.address), str(topo.left.address)
    client = _client(strongswan_peer, topo, test_pki)
    files: dict[str, bytes | str] = {"pki/ca.pem": test_pki.ca.issued.cert_pem(),
                                     "pki/gw.pem": test_pki.gw.cert_pem(),
                                     "pki/gw.key": test_pki.gw.key_pem(),
                                     "psk.txt": PSK + "\n"}
    gw = ikeguard_gateway(topo.right.namespace, "gw", gateway_config(gw_addr, client_addr), files)
    before = _by_name(gw.wait_sas(_both_up, timeout=15, what="both connections up (start_action)"))
    ss_certs = client.wait_established("certs", "net1")

    # 1. change the psk child's selectors: only psk is re-established; certs keeps its SPIs on both sides
    gw.update_config(gateway_config(gw_addr, client_addr, psk_local_ts="198.51.100.64/27"))
    result = gw.cli("reload", "--wait")
    assert result["changed"] == ["psk"] and result["kept"] == ["certs"] and result["starting"] == ["psk"]
    after = _by_name(gw.wait_sas(
        lambda sas: _both_up(sas) and _by_name(sas)["psk"]["children"][0]["local_ts"] == ["198.51.100.64/27"],
        timeout=15, what="psk re-established with the new selectors"))
    assert _spis(after["certs"]) == _spis(before["certs"])
    assert after["psk"]["uniqueid"] != before["psk"]["uniqueid"]
    assert _spis(after["psk"]) != _spis(before["psk"])
    ss_after = client.wait_established("certs", "net1")
    assert (ss_after.initiator_spi, ss_after.child("net1").spi_in) == (ss_certs.initiator_spi,
                                                                        ss_certs.child("net1").spi_in)
    client.wait_for(lambda sas: any(sa.name == "psk" and sa.state == "ESTABLISHED" and sa.children
                                    and sa.children[0].local_ts == (NETS["psk"][1],)
                                    and sa.children[0].remote_ts == ("198.51.100.64/27",) for sa in sas),
                    what="strongSwan's psk child narrowed to the new selectors")

    # 2. a renewed certificate (new key, same paths): no SA is touched ...
    renewed = test_pki.ca.issue_leaf(f"CN={GW_FQDN},O=ikeguard test", sans=[GW_FQDN, gw_addr])
    gw.write_file("pki/gw.pem", renewed.cert_pem())
    gw.write_file("pki/gw.key", renewed.key_pem())
    text = gw.cli("reload", json=False)
    assert "kept certs, psk; changed none; added none; removed none" in text
    kept = _by_name(gw.sas())
    assert {n: _spis(sa) for n, sa in kept.items()} == {n: _spis(sa) for n, sa in after.items()}
    # ... and the next authentication uses it (the new key signs: strongSwan accepts the new certificate)
    assert gw.cli("terminate", "--conn", "certs") == {"terminated": 1}
    client.wait_for(lambda sas: all(sa.name != "certs" for sa in sas), what="certs SA deleted")
    gw.cli("initiate", "--conn", "certs")
    client.wait_established("certs", "net1")
    assert f'received end entity cert "O=ikeguard test, CN={GW_FQDN}"' in client.log()
    before_invalid = {n: _spis(sa) for n, sa in _by_name(gw.sas()).items()}

    # 3. an invalid config is refused; everything keeps running
    gw.update_config(gateway_config(gw_addr, client_addr, extra='colour = "blue"'))
    refused = _run(gw, "reload")
    assert refused.returncode == 1
    assert refused.stderr.startswith("ikeguard: configuration refused (1 finding: config.unknown-key)")
    assert "the running configuration stays" in refused.stderr and refused.stderr.count("\n") == 1
    assert gw.running
    assert {n: _spis(sa) for n, sa in _by_name(gw.sas()).items()} == before_invalid
    rejected = gw.wait_audit(lambda e: e["event"] == "config.rejected", what="config.rejected")
    assert rejected["outcome"] == "failure" and "colour" in rejected["reason"]

    # 4. SIGHUP reloads the (fixed) file the same way
    gw.update_config(gateway_config(gw_addr, client_addr, psk_local_ts="198.51.100.64/27"))
    loaded_before = sum(e["event"] == "config.loaded" for e in gw.audit_events())
    gw.send_signal(signal.SIGHUP)
    gw.wait_audit(lambda e: e["event"] == "config.loaded" and e.get("admin") == "SIGHUP",
                  what="config.loaded from SIGHUP")
    assert sum(e["event"] == "config.loaded" for e in gw.audit_events()) == loaded_before + 1
    assert {n: _spis(sa) for n, sa in _by_name(gw.sas()).items()} == before_invalid
