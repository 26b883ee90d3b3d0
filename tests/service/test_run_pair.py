"""Two `ikeguard run` processes (userspace ESP data planes) build a tunnel and carry a ping; the gateway
survives malformed datagrams on 500 and 4500; a refused config exits 1 with the findings `check` gives."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from ikeguard.tools.gateway_process import GatewayProcess, GatewayStartError
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.service.gwconfig import GwConfig

pytestmark = [pytest.mark.root]

PSK = "pair-test-psk-9a8b7c6d5e4f30211"
GatewayFactory = Callable[..., GatewayProcess]


def _pair(topo: Topology, **kwargs: str) -> tuple[GwConfig, GwConfig]:
    left, right = topo.left, topo.right
    responder = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet),
                         str(left.subnet), psk=PSK, **kwargs)
    initiator = GwConfig(str(left.address), str(right.address), CLIENT_FQDN, GW_FQDN, str(left.subnet),
                         str(right.subnet), psk=PSK, start_action="start", **kwargs)
    return responder, initiator


def _installed(sas: list[dict[str, object]]) -> bool:
    return bool(sas) and bool(sas[0]["children"]) and sas[0]["children"][0]["state"] == "installed"  # type: ignore[index]


def test_two_ikeguard_gateways_carry_ping(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    responder, initiator = _pair(topo, dataplane="userspace")
    initiator.extra_child = "rekey_packets = 5"  # the data plane's soft lifetime upcall starts a rekey
    gw = ikeguard_gateway(topo.right.namespace, "gw", responder.text(), responder.files())
    client = ikeguard_gateway(topo.left.namespace, "client", initiator.text(), initiator.files())
    c_sa = client.wait_sas(_installed, timeout=15)[0]
    g_sa = gw.wait_sas(_installed, timeout=5)[0]
    assert (c_sa["spi_i"], c_sa["spi_r"]) == (g_sa["spi_i"], g_sa["spi_r"])
    c_child, g_child = c_sa["children"][0], g_sa["children"][0]
    assert (c_child["spi_in"], c_child["spi_out"]) == (g_child["spi_out"], g_child["spi_in"])
    result = topo.left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                     str(topo.left.subnet_address), str(topo.right.subnet_address),
                                     check=False)
    assert result.returncode == 0, result.stdout + result.stderr + gw.log_tail() + client.log_tail()
    g_child = gw.sas()[0]["children"][0]
    assert g_child["packets_in"] >= 3 and g_child["packets_out"] >= 3
    assert topo.left.namespace.run("ping", "-n", "-c", "4", "-i", "0.2", "-W", "2", "-I",
                                   str(topo.left.subnet_address), str(topo.right.subnet_address),
                                   check=False).returncode == 0
    # more than rekey_packets went through the initiator's inbound SA: it rekeyed the Child SA
    rekeyed = client.wait_audit(lambda e: e["event"] == "child.rekeyed", timeout=10)
    assert rekeyed["connection"] == "ikg" and "soft packets lifetime reached" in client.log()
    c_child = client.wait_sas(lambda sas: [c["state"] for c in sas[0]["children"]] == ["installed"])[0]
    assert c_child["children"][0]["spi_in"] != c_sa["children"][0]["spi_in"]

    # SIGTERM on the initiator: it deletes the SA at the responder, which then has none
    client.send_signal(signal.SIGTERM)
    assert client.wait_exit(10) == 0
    gw.wait_sas(lambda sas: sas == [], timeout=5)
    gw.wait_audit(lambda e: e["event"] == "ike.down")  # the trail is written by its own process
    events = [e["event"] for e in gw.audit_events()]
    assert events.count("ike.up") == 1 and "ike.down" in events


def test_malformed_datagrams_do_not_kill_the_gateway(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    responder, initiator = _pair(topo)
    gw = ikeguard_gateway(topo.right.namespace, "gw", responder.text(), responder.files())
    garbage = [b"", b"\x00", b"\xff", b"\x00\x00\x00\x00", b"\x00" * 4 + b"\x01" * 40, b"\x01" * 28,
               bytes(range(256)) * 3,
               bytes(16) + b"\x21\x20\x22\x08" + b"\xff" * 8,  # IKE_SA_INIT header claiming a huge length
               bytes(4) + bytes(16) + b"\x21\x20\x22\x08" + (28).to_bytes(8, "big")]  # same on 4500
    script = ("import socket\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for d in {[g.hex() for g in garbage]!r}:\n"
              "    for port in (500, 4500):\n"
              f"        s.sendto(bytes.fromhex(d), ('{topo.right.address}', port))\n")
    topo.left.namespace.run("python3", "-c", script)
    client = ikeguard_gateway(topo.left.namespace, "client", initiator.text(), initiator.files())
    client.wait_sas(_installed, timeout=15)  # the gateway still serves a valid peer
    assert gw.running
    log = gw.log()
    assert "dropped datagram from" in log and "dropped ESP from" in log  # they arrived and were refused


def test_refused_config_exits_1_with_the_findings_check_gives(ikeguard_gateway: GatewayFactory) -> None:
    weak = GwConfig("127.0.0.1", "127.0.0.2", GW_FQDN, CLIENT_FQDN, "10.0.0.0/24", "10.0.1.0/24", psk=PSK,
                    profile="pci-dss-4", ike_proposal="3des-sha1-modp1024", listen=["127.0.0.1"])
    gw = ikeguard_gateway(None, "weak", weak.text(), weak.files(), start=False)
    with pytest.raises(GatewayStartError) as info:
        gw.start(timeout=30)
    assert info.value.returncode == 1
    refusal = gw.log()
    assert "ikeguard run: configuration refused" in refusal
    checked = subprocess.run([sys.executable, "-m", "ikeguard", "check", "-c", str(gw.config_path), "--json"],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 1
    failing = [f for f in json.loads(checked.stdout)["findings"] if f["status"] == "fail"]
    assert failing and any("3DES" in f["message"] for f in failing)
    for finding in failing:  # issue 4: `run` refuses with the same findings `check` reports
        assert f"{finding['message']} [{finding['rule']}]" in refusal


QUARANTINE = """
[gateway]
profile = "baseline"
on_violation = "quarantine"
state_dir = "state"
dataplane = "none"
listen = ["{gw}"]

[connections.good]
proposals = ["aes256gcm16-prfsha384-ecp384"]
local.auth = "psk"
local.id = "{gw_id}"
remote.auth = "psk"
remote.id = "{client_id}"
children.net.local_ts = ["198.51.100.0/25"]
children.net.remote_ts = ["198.51.100.128/25"]
children.net.esp_proposals = ["aes256gcm16"]

[connections.weak]
remote_addrs = ["192.0.2.99"]
proposals = ["3des-md5-modp1024"]
local.auth = "psk"
local.id = "{gw_id}"
remote.auth = "psk"
remote.id = "weak.ss-lab.example"
children.net.local_ts = ["198.51.100.0/25"]
children.net.remote_ts = ["203.0.113.0/24"]
children.net.esp_proposals = ["aes256gcm16"]

[secrets.ike.good]
ids = ["{client_id}"]
secret_file = "psk.txt"
[secrets.ike.weak]
ids = ["weak.ss-lab.example"]
secret_file = "weak.txt"
"""


def test_quarantine_runs_the_compliant_connection_and_records_the_other(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    text = QUARANTINE.format(gw=topo.right.address, gw_id=GW_FQDN, client_id=CLIENT_FQDN)
    gw = ikeguard_gateway(topo.right.namespace, "gw", text,  # each peer its own key (psk.binding)
                          {"psk.txt": PSK, "weak.txt": "weak-peer-own-psk-5e0d2c7b9a1f4836"})
    conns = {c["name"]: c for c in gw.request("conns")}
    assert conns["weak"]["status"].startswith("quarantined: ")
    assert "crypto.ike.encr" in conns["weak"]["status"]
    assert conns["good"]["status"] == "down"
    _, initiator = _pair(topo)
    client_text = initiator.text().replace("connections.ikg", "connections.good")
    client = ikeguard_gateway(topo.left.namespace, "client", client_text, initiator.files())
    client.wait_sas(_installed, timeout=15)
    assert gw.request("conns")[0]["status"] == "up"
    gw.wait_audit(lambda e: e["event"] == "config.rejected")
    events = gw.audit_events()
    rejected = [e for e in events if e["event"] == "config.rejected"]
    assert [e["connection"] for e in rejected] == ["weak"] and "crypto.ike.encr" in rejected[0]["reason"]
    assert any(e["event"] == "config.loaded" for e in events)
    assert "connection weak quarantined" in gw.log()


def test_xfrm_without_kernel_esp_refuses_to_start_naming_the_key(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    from ikeguard.dataplane.xfrm import probe

    topo = netns_topology("direct")
    responder, _ = _pair(topo, dataplane="xfrm")
    if probe().esp:  # a kernel with ESP: the gateway runs on it
        gw = ikeguard_gateway(topo.right.namespace, "gw", responder.text(), responder.files())
        assert "data plane xfrm" in gw.log()
        return
    with pytest.raises(GatewayStartError) as info:
        ikeguard_gateway(topo.right.namespace, "gw", responder.text(), responder.files())
    assert info.value.returncode == 1
    assert 'ikeguard run: gateway.dataplane = "xfrm": kernel has no ESP' in str(info.value)


def test_userspace_dataplane_over_ipv6_next_to_ipv4(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    """Both families listened on: one userspace plane each; an IPv6 tunnel (outer and inner) carries ping6."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    common = {"psk": PSK, "dataplane": "userspace"}
    responder = GwConfig(str(right.address6), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet6),
                         str(left.subnet6), listen=[str(right.address), str(right.address6)], **common)
    initiator = GwConfig(str(left.address6), str(right.address6), CLIENT_FQDN, GW_FQDN, str(left.subnet6),
                         str(right.subnet6), listen=[str(left.address), str(left.address6)],
                         start_action="start", **common)
    gw = ikeguard_gateway(right.namespace, "gw", responder.text(), responder.files())
    client = ikeguard_gateway(left.namespace, "client", initiator.text(), initiator.files())
    c_sa = client.wait_sas(_installed, timeout=15)[0]
    assert c_sa["remote_addr"] == str(right.address6)
    result = left.namespace.run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                str(left.subnet_address6), str(right.subnet_address6), check=False)
    assert result.returncode == 0, result.stdout + result.stderr + gw.log_tail() + client.log_tail()
    g_child = gw.sas()[0]["children"][0]
    assert g_child["packets_in"] >= 3 and g_child["packets_out"] >= 3
    links = right.namespace.ip("link").stdout
    assert "ikg0" in links and "ikg6" in links  # one TUN per family


def test_userspace_dataplane_through_a_real_nat(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory
) -> None:
    """The client behind a masquerading router: NAT detected (RFC 7296 §2.23), IKE moves to 4500 (the data
    plane's socket on both sides), ESP in UDP (RFC 3948) carries the ping, keepalives keep the mapping."""
    topo = netns_topology("nat")
    left, right = topo.left, topo.right
    responder = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet),
                         str(left.subnet), psk=PSK, dataplane="userspace")
    initiator = GwConfig(str(left.address), str(right.address), CLIENT_FQDN, GW_FQDN, str(left.subnet),
                         str(right.subnet), psk=PSK, dataplane="userspace", start_action="start")
    gw = ikeguard_gateway(right.namespace, "gw", responder.text(), responder.files())
    client = ikeguard_gateway(left.namespace, "client", initiator.text(), initiator.files())
    c_sa = client.wait_sas(_installed, timeout=15)[0]
    g_sa = gw.wait_sas(_installed, timeout=5)[0]
    assert c_sa["nat_local"] and c_sa["encap"] and g_sa["nat_remote"] and g_sa["encap"]
    assert (c_sa["local_port"], c_sa["remote_port"]) == (4500, 4500)
    assert g_sa["remote_addr"] == str(topo.public_address) and g_sa["local_port"] == 4500
    result = left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I",
                                str(left.subnet_address), str(right.subnet_address), check=False)
    assert result.returncode == 0, result.stdout + result.stderr + gw.log_tail() + client.log_tail()
    assert gw.sas()[0]["children"][0]["packets_in"] >= 3


def test_profile_option_overrides_the_configured_profile(ikeguard_gateway: GatewayFactory) -> None:
    """`run --profile pci-dss-4` enforces that profile on a config that passes its own (baseline)."""
    config = GwConfig("127.0.0.1", "127.0.0.2", GW_FQDN, CLIENT_FQDN, "10.0.0.0/24", "10.0.1.0/24", psk=PSK,
                      listen=["127.0.0.1"])
    gw = ikeguard_gateway(None, "strict", config.text(), config.files(), start=False, profile="pci-dss-4")
    with pytest.raises(GatewayStartError) as info:
        gw.start(timeout=30)
    assert info.value.returncode == 1
    assert "[dpd.enabled]" in gw.log() and "[reauth.enabled]" in gw.log()
