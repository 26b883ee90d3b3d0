"""A certificate gateway's strongSwan ``ipsec.conf`` imported with ``ikeguard import`` and run as ``ikeguard
run`` answers a strongSwan 5.9.8 client: ``left=%defaultroute``, ``leftcert`` in ipsec.d/certs (made with
strongSwan's ``pki``), its key found in ipsec.d/private by its public key (ipsec.secrets only says
``: ECDSA gw.key``), ``right=%any``, ``rightca=%same`` narrowed to our certificate's issuer although a second
CA sits in ipsec.d/cacerts, ``auto=add``. The client initiates; strongSwan's ``list-sas`` and ``ikeguard sas``
show the same SPIs, and a client certified by the other CA is refused (the narrowing is real)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.starter import starter_conftest
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]


def _client_conf(client_addr: str, gw_addr: str, client_ts: str, gw_ts: str) -> str:
    return f"""\
connections {{
    hq {{
        local_addrs = {client_addr}
        remote_addrs = {gw_addr}
        proposals = aes256gcm16-prfsha384-ecp384
        local {{
            auth = pubkey
            certs = client.pem
            id = {CLIENT_FQDN}
        }}
        remote {{
            auth = pubkey
            id = {GW_FQDN}
        }}
        children {{
            lan {{
                local_ts = {client_ts}
                remote_ts = {gw_ts}
                esp_proposals = aes256gcm16-ecp384
            }}
        }}
    }}
}}
"""


def test_imported_certificate_ipsec_conf_answers_strongswan_client(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    if shutil.which("pki") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strongSwan's pki tool is missing (strongswan-pki, packaging/system-packages.txt)")
        pytest.skip("strongSwan's pki tool is not installed")
    topo = netns_topology("direct")
    client, gw_side = topo.left, topo.right
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=CH, O=ss-lab, CN=ss-lab Root CA")
    other = tool.self_signed_ca("other", "C=CH, O=elsewhere, CN=Other Root CA")
    gw_cert = tool.issue("gw", ca, f"C=CH, O=ss-lab, CN={GW_FQDN}", sans=[GW_FQDN])
    client_cert = tool.issue("client", ca, f"C=CH, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    rogue_cert = tool.issue("rogue", other, f"C=CH, O=elsewhere, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])

    etc = tmp_path / "etc"
    for sub in ("certs", "cacerts", "private"):
        (etc / "ipsec.d" / sub).mkdir(parents=True)
    shutil.copy(ca.cert_path, etc / "ipsec.d" / "cacerts" / "ss-lab.pem")
    shutil.copy(other.cert_path, etc / "ipsec.d" / "cacerts" / "another.pem")
    shutil.copy(gw_cert.cert_path, etc / "ipsec.d" / "certs" / "gw.pem")
    shutil.copy(gw_cert.key_path, etc / "ipsec.d" / "private" / "gw.key")
    (etc / "ipsec.conf").write_text(f"""\
# /etc/ipsec.conf - HQ gateway for the branch routers (strongSwan 5.9, starter + stroke)
config setup
	uniqueids=replace

conn %default
	keyexchange=ikev2
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	ikelifetime=24h
	lifetime=8h
	dpddelay=30s
	dpdaction=clear

conn branches
	left=%defaultroute
	leftcert=gw.pem
	leftid=@{GW_FQDN}
	leftsubnet={gw_side.subnet}
	right=%any
	rightid=@{CLIENT_FQDN}
	rightca=%same
	rightsubnet={client.subnet}
	auto=add
""")
    (etc / "ipsec.secrets").write_text(": ECDSA gw.key\n")
    parsed = starter_conftest(etc / "ipsec.conf")
    assert "error" not in parsed.lower(), parsed

    out = tmp_path / "gw" / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(etc / "ipsec.conf"), "-o", str(out), "--profile",
                                       "baseline", "--dataplane", "none", "--json"])
    report: dict[str, Any] = json.loads(result.output)
    assert report["loaded"] and report["passed"], report
    assert report["connections"] == ["branches"] and report["unmapped"] == [] and report["secret_files"] == []
    gw = ikeguard_gateway(gw_side.namespace, "gw", out.read_text(), {})

    def client_peer(name: str, cert: Path, key: Path) -> StrongSwanPeer:
        peer = strongswan_peer(client.namespace, name, connections=[], start=False)
        generate = peer.write_config

        def write_config() -> None:
            generate()
            (peer.swanctl_dir / "swanctl.conf").write_text(_client_conf(
                str(client.address), str(gw_side.address), str(client.subnet), str(gw_side.subnet)))
            shutil.copy(ca.cert_path, peer.swanctl_dir / "x509ca" / "ca.pem")
            shutil.copy(cert, peer.swanctl_dir / "x509" / "client.pem")
            shutil.copy(key, peer.swanctl_dir / "private" / "client.pem")

        peer.write_config = write_config  # type: ignore[method-assign]
        return peer.start()

    # a client certified by the other CA in cacerts/ is refused: rightca=%same trusts ss-lab's CA only
    rogue = client_peer("rogue", rogue_cert.cert_path, rogue_cert.key_path)
    with pytest.raises(StrongSwanError):
        rogue.initiate(child="lan", ike="hq", timeout=15)
    assert gw.sas() == []
    rogue.stop()

    peer = client_peer("peer", client_cert.cert_path, client_cert.key_path)
    peer.initiate(child="lan", ike="hq", timeout=20)
    ss = peer.wait_established("hq", "lan", timeout=20)
    sas = gw.wait_sas(lambda sas: bool(sas) and bool(sas[0]["children"])
                      and sas[0]["children"][0]["state"] == "installed", timeout=20)
    assert sas[0]["initiator"] is False and sas[0]["remote_id"] == CLIENT_FQDN
    assert sas[0]["spi_i"] == f"{ss.initiator_spi:016x}" and sas[0]["spi_r"] == f"{ss.responder_spi:016x}"
    assert sas[0]["children"][0]["spi_in"] == f"{ss.child('lan').spi_out:08x}"
