"""Issue 23 item 4: gateways whose configuration was an ``ipsec.conf``, imported with ``ikeguard import`` and
run as ``ikeguard run``, connect to the peer they served before the migration:

* a libreswan gateway (libreswan syntax: ``ikev2=insist``, ``authby=secret``,
  ``ike=aes_gcm256-sha2_384;dh20``, ``esp=aes_gcm256`` with libreswan's default ``pfs=yes``, a quoted PSK in
  ipsec.secrets) answers its libreswan peer (pluto from Debian's package) that keeps its own ipsec.conf:
  pluto establishes the IKE SA with the imported gateway and the Child SA it negotiated is installed there
  (same SPI);
* a strongSwan gateway (``conn %default``, ``also=``, two conns to one peer merged into one connection with
  two children, ``auto=start``, a ``0s`` PSK) initiates to its strongSwan 5.9.8 peer, whose configuration is
  written in swanctl.conf (charon-systemd, as the harness runs it): both Child SAs up, same SPIs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.libreswan import LibreswanConn, LibreswanPeer
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK_TEXT = "branch office: 7Yc2Vn9Qe4Rt8Ws3Lp0Kx6Hd"
PSK_0S = "0sOWFkM2U0ZjVhNmI3YzhkOWUwZjFhMmIzYzRkNWU2ZjdhOGI5YzBkMWUyZjNhNGI1YzY="


def _import(etc: Path, gw_dir: Path, flavour: str) -> tuple[dict[str, Any], str, dict[str, bytes | str]]:
    out = gw_dir / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(etc / "ipsec.conf"), "-o", str(out), "--profile",
                                       "baseline", "--dataplane", "none", "--json"])
    report = json.loads(result.output)
    assert report["flavour"] == flavour
    assert report["loaded"] and report["passed"], report
    files: dict[str, bytes | str] = {name: (gw_dir / name).read_text() for name in report["secret_files"]}
    return report, out.read_text(), files


def test_imported_libreswan_gateway_answers_its_libreswan_peer(
    netns_topology: Callable[..., Topology], libreswan_peer: Callable[..., LibreswanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    gw_net, client_net = str(topo.right.subnet), str(topo.left.subnet)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "ipsec.conf").write_text(f"""\
# /etc/ipsec.conf of the HQ gateway (libreswan 4)
config setup
    protostack=netkey

conn branch
    ikev2=insist
    authby=secret
    left=192.0.2.1
    leftid=@{GW_FQDN}
    leftsubnet={gw_net}
    right=192.0.2.2
    rightid=@{CLIENT_FQDN}
    rightsubnet={client_net}
    ike=aes_gcm256-sha2_384;dh20
    esp=aes_gcm256
    salifetime=1h
    dpddelay=30
    dpdaction=restart
    auto=add
""")
    (etc / "ipsec.secrets").write_text(f'@{GW_FQDN} @{CLIENT_FQDN} : PSK "{PSK_TEXT}"\n')
    report, toml, files = _import(etc, tmp_path / "gw", "libreswan")
    assert report["connections"] == ["branch"]
    assert [u["key"] for u in report["unmapped"]] == ["config setup.protostack"]
    assert 'esp_proposals = ["aes256gcm16-ecp384"]' in toml  # pfs=yes: the IKE group rekeys Child SAs
    gw = ikeguard_gateway(topo.right.namespace, "gw", toml, files)

    pluto = libreswan_peer(topo.left.namespace, "pluto", connections=[LibreswanConn(
        "branch", left="192.0.2.2", leftid=f"@{CLIENT_FQDN}", leftsubnet=client_net, right="192.0.2.1",
        rightid=f"@{GW_FQDN}", rightsubnet=gw_net, authby="secret", ike="aes_gcm256-sha2_384;dh20",
        esp="aes_gcm256")], psks=[(f"@{CLIENT_FQDN}", f"@{GW_FQDN}", PSK_TEXT)])
    pluto.initiate("branch")
    plog = pluto.wait_for_log(re.compile(r"#1: initiator established IKE SA"), timeout=15)
    assert f"authenticated peer using authby=secret and ID_FQDN '@{GW_FQDN}'" in plog
    assert "{cipher=AES_GCM_16_256 integ=n/a prf=HMAC_SHA2_384 group=DH20}" in plog
    out_spi = re.search(r"Add SA esp\.([0-9a-f]+)@192\.0\.2\.1", plog)
    assert out_spi is not None  # pluto's outbound ESP SA: ikeguard's inbound SPI
    spi = int(out_spi[1], 16)
    sas = gw.wait_sas(lambda sas: any(int(c["spi_in"], 16) == spi for sa in sas for c in sa["children"]),
                      timeout=10, what="the Child SA pluto negotiated")
    sa = next(sa for sa in sas if any(int(c["spi_in"], 16) == spi for c in sa["children"]))
    assert sa["state"] == "established" and sa["remote_id"] == CLIENT_FQDN
    assert sa["proposal"] == "aes256gcm16-prfsha384-ecp384"
    assert sa["children"][0]["state"] == "installed" and sa["children"][0]["name"] == "branch"
    assert sa["children"][0]["local_ts"] == [gw_net] and sa["children"][0]["remote_ts"] == [client_net]


def _peer_with_file(strongswan_peer: Callable[..., StrongSwanPeer], topo: Topology,
                    text: str) -> StrongSwanPeer:
    """A strongSwan peer whose swanctl.conf is ``text`` as written, not generated."""
    peer = strongswan_peer(topo.left.namespace, "peer", connections=[], start=False)
    generate = peer.write_config

    def write_config() -> None:
        generate()
        (peer.swanctl_dir / "swanctl.conf").write_text(text)

    peer.write_config = write_config  # type: ignore[method-assign]
    return peer.start()


def test_imported_strongswan_ipsec_conf_initiates_both_children_to_its_peer(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    etc = tmp_path / "etc"
    etc.mkdir()
    # kernel-libipsec on the peer needs local addresses in the second child's subnet: the sites' IPv6 nets
    (etc / "ipsec.conf").write_text(f"""\
# /etc/ipsec.conf of the HQ gateway (strongSwan 5.9, starter + stroke)
config setup
    uniqueids=yes

conn %default
    keyexchange=ikev2
    ike=aes256gcm16-prfsha384-ecp384!
    esp=aes256gcm16-ecp384!
    ikelifetime=8h
    lifetime=1h
    margintime=9m
    reauth=no
    authby=secret

conn branch-base
    left={right.address}
    leftid=@{GW_FQDN}
    right={left.address}
    rightid=@{CLIENT_FQDN}
    auto=ignore

conn branch-lan
    also=branch-base
    leftsubnet={right.subnet}
    rightsubnet={left.subnet}
    auto=start

conn branch-v6
    also=branch-base
    leftsubnet={right.subnet6}
    rightsubnet={left.subnet6}
    auto=add
""")
    (etc / "ipsec.secrets").write_text(f"@{GW_FQDN} @{CLIENT_FQDN} : PSK {PSK_0S}\n")
    report, toml, files = _import(etc, tmp_path / "gw", "strongswan")
    assert report["connections"] == ["branch-lan"]  # branch-v6 became its second child
    assert list(files.values()) == [PSK_0S + "\n"]
    gw = ikeguard_gateway(right.namespace, "gw", toml, files)
    peer = _peer_with_file(strongswan_peer, topo, f"""\
connections {{
    hq {{
        local_addrs = {left.address}
        remote_addrs = {right.address}
        proposals = aes256gcm16-prfsha384-ecp384
        local {{
            auth = psk
            id = {CLIENT_FQDN}
        }}
        remote {{
            auth = psk
            id = {GW_FQDN}
        }}
        children {{
            branch-lan {{
                local_ts = {left.subnet}
                remote_ts = {right.subnet}
                esp_proposals = aes256gcm16-ecp384
            }}
            branch-v6 {{
                local_ts = {left.subnet6}
                remote_ts = {right.subnet6}
                esp_proposals = aes256gcm16-ecp384
            }}
        }}
    }}
}}
secrets {{
    ike-hq {{
        id-gw = {GW_FQDN}
        id-client = {CLIENT_FQDN}
        secret = {PSK_0S}
    }}
}}
""")
    ss = peer.wait_established("hq", "branch-lan", timeout=25)  # ikeguard started it (auto=start)
    assert not ss.initiator
    peer.initiate(child="branch-v6", ike="hq")  # the merged conn's second child, over the same IKE SA
    ss = peer.wait_established("hq", "branch-v6", timeout=20)
    sas = gw.wait_sas(lambda sas: bool(sas) and len([c for c in sas[0]["children"]
                                                     if c["state"] == "installed"]) == 2, timeout=20)
    assert sas[0]["initiator"] is True and sas[0]["spi_r"] == f"{ss.responder_spi:016x}"
    ours = {c["name"]: c["spi_in"] for c in sas[0]["children"]}
    for name in ("branch-lan", "branch-v6"):
        assert ours[name] == f"{ss.child(name).spi_out:08x}"
