"""`ikeguard import` of a gateway's swanctl.conf, run as `ikeguard run`, against a strongSwan peer that loads
the mirror of the original file (the way the two sites were configured before the migration):

* PSK with a ``0x`` secret, IPv4, two children: strongSwan initiates both, ikeguard answers with the imported
  configuration (same SPIs on both sides);
* certificates made with strongSwan's ``pki`` (private key found in ``private/`` by its public key), IPv6:
  ikeguard initiates from the imported ``start_action = start``.
"""

from __future__ import annotations

import json
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
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

SECRET = "0x8c3f1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _peer_with_file(strongswan_peer: Callable[..., StrongSwanPeer], topo: Topology, text: str,
                    files: dict[str, Path] | None = None) -> StrongSwanPeer:
    """A strongSwan peer whose swanctl.conf is ``text`` as written (plus credential files), not generated."""
    peer = strongswan_peer(topo.left.namespace, "peer", connections=[], start=False)
    generate = peer.write_config

    def write_config() -> None:
        generate()
        (peer.swanctl_dir / "swanctl.conf").write_text(text)
        for rel, src in (files or {}).items():
            shutil.copy(src, peer.swanctl_dir / rel)

    peer.write_config = write_config  # type: ignore[method-assign]
    return peer.start()


def _import(source: Path, gw_dir: Path, profile: str = "baseline") -> tuple[dict[str, Any], str,
                                                                             dict[str, bytes | str]]:
    out = gw_dir / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(source), "-o", str(out), "--profile", profile,
                                       "--dataplane", "none", "--json"])
    report = json.loads(result.output)
    assert report["loaded"] and report["passed"], report
    files: dict[str, bytes | str] = {name: (gw_dir / name).read_text() for name in report["secret_files"]}
    return report, out.read_text(), files


def test_imported_psk_site_with_two_children_answers_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right

    def conf(local: Any, remote: Any, local_id: str, remote_id: str, start: str,
             voice: tuple[str, str]) -> str:
        return f"""\
connections {{
    site {{
        local_addrs = {local.address}
        remote_addrs = {remote.address}
        proposals = aes256gcm16-prfsha384-ecp384
        rekey_time = 8h
        local {{
            auth = psk
            id = {local_id}
        }}
        remote {{
            auth = psk
            id = {remote_id}
        }}
        children {{
            lan {{
                local_ts = {local.subnet}
                remote_ts = {remote.subnet}
                esp_proposals = aes256gcm16-ecp384
                start_action = {start}
            }}
            voice {{
                local_ts = {voice[0]}
                remote_ts = {voice[1]}
                esp_proposals = aes256gcm16-ecp384
                dpd_action = restart
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
"""

    original = tmp_path / "original" / "swanctl.conf"
    original.parent.mkdir()
    # the second child carries the sites' IPv6 subnets (kernel-libipsec needs local addresses there)
    voice = (str(right.subnet6), str(left.subnet6))
    original.write_text(conf(right, left, GW_FQDN, CLIENT_FQDN, "none", voice))
    report, toml, files = _import(original, tmp_path / "gw")
    assert report["connections"] == ["site"] and report["unmapped"] == []
    gw = ikeguard_gateway(right.namespace, "gw", toml, files)
    mirror = conf(left, right, CLIENT_FQDN, GW_FQDN, "start", (voice[1], voice[0]))
    peer = _peer_with_file(strongswan_peer, topo, mirror)
    peer.wait_established("site", "lan", timeout=20)
    peer.initiate(child="voice", ike="site")  # the second child over the same IKE SA (CREATE_CHILD_SA)
    ss = peer.wait_established("site", "voice", timeout=20)
    sas = gw.wait_sas(lambda sas: bool(sas) and len([c for c in sas[0]["children"]
                                                     if c["state"] == "installed"]) == 2, timeout=20)
    assert sas[0]["spi_i"] == f"{ss.initiator_spi:016x}" and sas[0]["remote_id"] == CLIENT_FQDN
    ours = {c["name"]: c["spi_in"] for c in sas[0]["children"]}
    for name in ("lan", "voice"):
        assert ours[name] == f"{ss.child(name).spi_out:08x}"


def test_imported_certificate_site_over_ipv6_initiates_to_strongswan(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    if shutil.which("pki") is None:
        pytest.skip("strongSwan's pki tool is not installed")
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=CH, O=ss-lab, CN=ss-lab Root CA")
    gw_cert = tool.issue("gw", ca, f"C=CH, O=ss-lab, CN={GW_FQDN}", sans=[GW_FQDN])
    client_cert = tool.issue("client", ca, f"C=CH, O=ss-lab, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])

    def conf(local_addr: str, remote_addr: str, local_ts: str, remote_ts: str, local_id: str, remote_id: str,
             cert: str, start: str) -> str:
        return f"""\
connections {{
    v6 {{
        local_addrs = {local_addr}
        remote_addrs = {remote_addr}
        proposals = aes256gcm16-prfsha384-ecp384
        local {{
            auth = pubkey
            certs = {cert}
            id = {local_id}
        }}
        remote {{
            auth = pubkey
            id = {remote_id}
            cacerts = ca.pem
        }}
        children {{
            net6 {{
                local_ts = {local_ts}
                remote_ts = {remote_ts}
                esp_proposals = aes256gcm16-ecp384
                start_action = {start}
            }}
        }}
    }}
}}
"""

    swanctl = tmp_path / "etc-swanctl"
    for sub in ("x509", "x509ca", "private"):
        (swanctl / sub).mkdir(parents=True)
    shutil.copy(ca.cert_path, swanctl / "x509ca" / "ca.pem")
    shutil.copy(gw_cert.cert_path, swanctl / "x509" / "gw.pem")
    shutil.copy(gw_cert.key_path, swanctl / "private" / "gw.key")
    (swanctl / "swanctl.conf").write_text(conf(str(right.address6), str(left.address6), str(right.subnet6),
                                               str(left.subnet6), GW_FQDN, CLIENT_FQDN, "gw.pem", "start"))
    report, toml, files = _import(swanctl / "swanctl.conf", tmp_path / "gw")
    assert report["connections"] == ["v6"] and report["unmapped"] == []
    gw = ikeguard_gateway(right.namespace, "gw", toml, files)
    mirror = conf(str(left.address6), str(right.address6), str(left.subnet6), str(right.subnet6), CLIENT_FQDN,
                  GW_FQDN, "client.pem", "none")
    peer = _peer_with_file(strongswan_peer, topo, mirror, {
        "x509ca/ca.pem": ca.cert_path, "x509/client.pem": client_cert.cert_path,
        "private/client.pem": client_cert.key_path})
    ss = peer.wait_established("v6", "net6", timeout=20)
    assert not ss.initiator  # ikeguard started it, from the imported start_action
    sas = gw.wait_sas(lambda sas: bool(sas) and bool(sas[0]["children"])
                      and sas[0]["children"][0]["state"] == "installed", timeout=20)
    assert sas[0]["initiator"] is True and sas[0]["remote_addr"] == str(left.address6)
    assert sas[0]["spi_r"] == f"{ss.responder_spi:016x}"
    assert sas[0]["children"][0]["spi_out"] == f"{ss.child('net6').spi_in:08x}"
