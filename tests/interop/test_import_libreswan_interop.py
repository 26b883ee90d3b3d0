"""Issue 23 item 4: a gateway whose configuration was libreswan's ``ipsec.conf`` (libreswan syntax:
``ikev2=insist``, ``authby=secret``, ``ike=aes_gcm256-sha2_384;dh20``, ``esp=aes_gcm256`` with libreswan's
default ``pfs=yes``, a quoted PSK in ipsec.secrets), imported with ``ikeguard import`` and run as ``ikeguard
run``, answers its libreswan peer (pluto from Debian's package) that keeps its own ipsec.conf: pluto
establishes the IKE SA with the imported gateway and the Child SA it negotiated is installed there (same
SPI). The strongSwan ipsec.conf case is tests/interop/test_import_ipsec_interop.py."""

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

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK_TEXT = "branch office: 7Yc2Vn9Qe4Rt8Ws3Lp0Kx6Hd"


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
