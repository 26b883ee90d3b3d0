"""Issue 23 item 3: a libreswan gateway whose certificate and trust anchor live in its NSS database
(``leftcert=NICK``, ``rightca=%same``, ``authby=ecdsa``), imported with ``ikeguard import --nssdb`` and run
as ``ikeguard run``, answers that gateway's libreswan client (pluto from Debian's package): the exported
certificate and key authenticate the gateway, the exported CA authenticates the client, and the Child SA
pluto negotiated is installed at ikeguard with the same SPI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.libreswan import LibreswanConn, LibreswanPeer
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_gateway_imported_from_an_nss_database_answers_its_libreswan_client(
    netns_topology: Callable[..., Topology], libreswan_peer: Callable[..., LibreswanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], test_pki: TestPki, tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    gw_net, client_net = str(topo.right.subnet), str(topo.left.subnet)
    ca = test_pki.ca.issued.cert
    # the gateway as it ran under libreswan: ipsec.conf and its NSS database (harness-written, not started)
    old = LibreswanPeer(topo.right.namespace, tmp_path / "old-gw", name="old-gw", connections=[LibreswanConn(
        "clients", left="192.0.2.1", leftid=f"@{GW_FQDN}", leftcert="gw-nss", leftsubnet=gw_net,
        right="192.0.2.2", rightid=f"@{CLIENT_FQDN}", rightsubnet=client_net, auto="add")],
        certs={"gw-nss": test_pki.gw}, cacerts={"lab-ca": ca})
    old.write_config()
    out = tmp_path / "gw" / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(old.conf_path), "-o", str(out), "--profile", "baseline",
                                       "--dataplane", "none", "--flavour", "libreswan", "--nssdb",
                                       str(old.nss_dir), "--json"])
    report = json.loads(result.output)
    assert report["connections"] == ["clients"] and report["loaded"] and report["passed"], report
    assert not [u for u in report["unmapped"] if u["key"].startswith("conn clients.leftcert")]
    nss = out.parent / "nss"
    files: dict[str, bytes | str] = {str(p.relative_to(out.parent)): p.read_bytes()
                                     for p in nss.rglob("*.pem")}
    assert set(files) == {"nss/certs/gw-nss.pem", "nss/private/gw-nss.pem", "nss/cacerts/lab-ca.pem"}
    gw = ikeguard_gateway(topo.right.namespace, "gw", out.read_text(), files)

    pluto = libreswan_peer(topo.left.namespace, "pluto", connections=[LibreswanConn(
        "clients", left="192.0.2.2", leftid=f"@{CLIENT_FQDN}", leftcert="client", leftsubnet=client_net,
        right="192.0.2.1", rightid=f"@{GW_FQDN}", rightsubnet=gw_net)],
        certs={"client": test_pki.client}, cacerts={"lab-ca": ca})
    pluto.initiate("clients")
    plog = pluto.wait_for_log(re.compile(r"#1: initiator established IKE SA"), timeout=20)
    assert "authenticated peer" in plog and GW_FQDN in plog
    out_spi = re.search(r"Add SA esp\.([0-9a-f]+)@192\.0\.2\.1", plog)
    assert out_spi is not None
    spi = int(out_spi[1], 16)
    sas = gw.wait_sas(lambda sas: any(int(c["spi_in"], 16) == spi for sa in sas for c in sa["children"]),
                      timeout=10, what="the Child SA pluto negotiated")
    sa = next(sa for sa in sas if any(int(c["spi_in"], 16) == spi for c in sa["children"]))
    assert sa["state"] == "established" and sa["remote_id"] == CLIENT_FQDN
    assert sa["children"][0]["state"] == "installed"
