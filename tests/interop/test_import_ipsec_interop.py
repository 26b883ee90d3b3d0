"""`ikeguard import` of a gateway's legacy ``ipsec.conf`` + ``ipsec.secrets``, run as `ikeguard run`,
against a strongSwan 5.9.8 peer configured as its operator would (swanctl.conf with the same proposals, ids
and a ``0s`` PSK): ``conn %default``, an ``also=`` template and two ``auto=start`` conns sharing their IKE
settings become one connection with two children; ikeguard initiates both from the imported
``start_action`` and strongSwan's ``list-sas`` shows the same SPIs. strongSwan's own ipsec.conf parser
(``starter --conftest``) accepts the source file first, so the test starts from a configuration charon's
starter would have loaded."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.starter import starter_conftest
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

SECRET = "0s" + base64.b64encode(bytes(range(7, 39))).decode()


def test_imported_ipsec_conf_site_initiates_two_children_to_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right  # right: the ikeguard gateway ("left" in its ipsec.conf)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "ipsec.conf").write_text(f"""\
# ipsec.conf - strongSwan IPsec configuration file
config setup
	uniqueids=yes

conn %default
	keyexchange=ikev2
	authby=secret
	ike=aes256gcm16-prfsha384-ecp384!
	esp=aes256gcm16-ecp384!
	ikelifetime=8h
	lifetime=1h
	margintime=9m
	dpddelay=30s
	dpdaction=restart

conn site
	left={right.address}
	leftid=@{GW_FQDN}
	right={left.address}
	rightid=@{CLIENT_FQDN}

conn lan
	also=site
	leftsubnet={right.subnet}
	rightsubnet={left.subnet}
	auto=start

# the sites' IPv6 subnets (kernel-libipsec needs local addresses there)
conn voice
	also=site
	leftsubnet={right.subnet6}
	rightsubnet={left.subnet6}
	auto=start
""")
    (etc / "ipsec.secrets").write_text(f"@{GW_FQDN} @{CLIENT_FQDN} : PSK {SECRET}\n")
    parsed = starter_conftest(etc / "ipsec.conf")
    assert "error" not in parsed.lower(), parsed

    out = tmp_path / "gw" / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(etc / "ipsec.conf"), "-o", str(out), "--profile",
                                       "baseline", "--dataplane", "none", "--json"])
    report: dict[str, Any] = json.loads(result.output)
    assert report["loaded"] and report["passed"], report
    assert report["connections"] == ["lan"] and report["skipped"] == []
    assert [u["key"] for u in report["unmapped"]] == ["conn site.auto"]  # the also= template only
    files: dict[str, bytes | str] = {name: (out.parent / name).read_text() for name in report["secret_files"]}
    gw = ikeguard_gateway(right.namespace, "gw", out.read_text(), files)

    peer = strongswan_peer(left.namespace, "peer", connections=[], start=False)
    generate = peer.write_config

    def write_config() -> None:
        generate()
        (peer.swanctl_dir / "swanctl.conf").write_text(f"""\
connections {{
    site {{
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
            lan {{
                local_ts = {left.subnet}
                remote_ts = {right.subnet}
                esp_proposals = aes256gcm16-ecp384
            }}
            voice {{
                local_ts = {left.subnet6}
                remote_ts = {right.subnet6}
                esp_proposals = aes256gcm16-ecp384
            }}
        }}
    }}
}}
secrets {{
    ike-site {{
        id-gw = {GW_FQDN}
        id-client = {CLIENT_FQDN}
        secret = {SECRET}
    }}
}}
""")

    peer.write_config = write_config  # type: ignore[method-assign]
    peer.start()
    peer.wait_established("site", "lan", timeout=30)
    ss = peer.wait_established("site", "voice", timeout=30)
    assert not ss.initiator  # ikeguard started both children, from the imported auto=start
    sas = gw.wait_sas(lambda sas: bool(sas) and len([c for c in sas[0]["children"]
                                                     if c["state"] == "installed"]) == 2, timeout=20)
    assert len(sas) == 1 and sas[0]["initiator"] is True and sas[0]["remote_id"] == CLIENT_FQDN
    assert sas[0]["spi_r"] == f"{ss.responder_spi:016x}"
    ours = {c["name"]: c["spi_out"] for c in sas[0]["children"]}
    for name in ("lan", "voice"):
        assert ours[name] == f"{ss.child(name).spi_in:08x}"


def test_starter_conftest_flags_errors(tmp_path: Path) -> None:
    """The starter check above can fail: an unknown keyword is a parsing error in its output."""
    conf = tmp_path / "ipsec.conf"
    conf.write_text("conn x\n\tleftt=192.0.2.1\n\tauto=add\n")
    assert "parsing error" in starter_conftest(conf)
