"""Issue 23 item 4: a remote-access gateway's swanctl.conf (device certificate, then the user's EAP relayed
to RADIUS, a pool), imported with ``ikeguard import --radius-server`` and run as ``ikeguard run``, serves the
road warrior it served before: strongSwan 5.9.8 with a device certificate and EAP-TTLS for alice through
FreeRADIUS 3.2 gets its IKE SA and a virtual IP from the imported pool, and strongSwan's ``swanctl
--list-pools --leases`` (vici ``get-pools`` on ikeguard's socket) shows the pool and alice's lease online."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ikeguard.control.cli import main
from ikeguard.tools.gateway_process import GatewayProcess
from tests.harness.plugin import GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.interop.test_remote_access_eap import SECRET, Lab, _client, lab  # noqa: F401 - the lab fixture

pytestmark = [pytest.mark.root, pytest.mark.interop]

GATEWAY_SWANCTL = f"""\
# /etc/swanctl/swanctl.conf of the VPN concentrator (strongSwan 5.9, eap-radius plugin)
connections {{
    rw {{
        local_addrs = 192.0.2.1
        pools = staff
        proposals = aes256gcm16-prfsha384-ecp384
        local {{
            auth = pubkey
            certs = gw.pem
            id = {GW_FQDN}
        }}
        remote-1 {{
            auth = pubkey
            cacerts = ca.pem
        }}
        remote-2 {{
            auth = eap-radius
            eap_id = %any
        }}
        children {{
            net {{
                local_ts = 198.51.100.0/25
                esp_proposals = aes256gcm16-ecp384
            }}
        }}
    }}
}}
pools {{
    staff {{
        addrs = 203.0.113.64/26
        dns = 198.51.100.53
    }}
}}
"""


def test_imported_eap_road_warrior_gateway_serves_its_client(
    ikeguard_gateway: Callable[..., GatewayProcess], strongswan_peer: Callable[..., StrongSwanPeer],
    lab: Lab, tmp_path: Path,  # noqa: F811 - the fixture imported above
) -> None:
    swanctl = tmp_path / "etc-swanctl"
    for sub in ("x509", "x509ca", "private"):
        (swanctl / sub).mkdir(parents=True)
    (swanctl / "x509ca" / "ca.pem").write_bytes(lab.ca.cert.public_bytes(serialization.Encoding.PEM))
    (swanctl / "x509" / "gw.pem").write_bytes(lab.gw.cert_pem())
    (swanctl / "private" / "gw.pem").write_bytes(lab.gw.key_pem())
    (swanctl / "swanctl.conf").write_text(GATEWAY_SWANCTL)
    gw_dir = tmp_path / "gw"
    gw_dir.mkdir()
    (gw_dir / "radius.secret").write_text(SECRET + "\n")
    (gw_dir / "radius.secret").chmod(0o600)
    out = gw_dir / "gateway.toml"
    result = CliRunner().invoke(main, [
        "import", str(swanctl / "swanctl.conf"), "-o", str(out), "--profile", "baseline",
        "--dataplane", "none", "--radius-server", f"127.0.0.1:{lab.radius.auth_port}", "--radius-secret-file",
        str(gw_dir / "radius.secret"), "--json"])
    report = json.loads(result.output)
    assert report["loaded"] and report["passed"], report
    assert report["connections"] == ["rw"] and report["unmapped"] == []
    sock_dir = Path(tempfile.mkdtemp(prefix="ikgpool"))  # sun_path is short: not under tmp_path
    sock = sock_dir / "charon.vici"
    toml = out.read_text().replace('state_dir = "state"',
                                   f'state_dir = "state"\nlisten = ["192.0.2.1"]\nvici = "{sock}"')
    files: dict[str, bytes | str] = {"radius.secret": SECRET + "\n"}
    try:
        _serve_alice(ikeguard_gateway, strongswan_peer, lab, toml, files, sock)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def _serve_alice(ikeguard_gateway: Callable[..., GatewayProcess],
                 strongswan_peer: Callable[..., StrongSwanPeer], lab: Lab, toml: str,  # noqa: F811
                 files: dict[str, bytes | str], sock: Path) -> None:
    gw = ikeguard_gateway(lab.topo.right.namespace, "gw", toml, files)
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True)
    road.initiate("net", timeout=30)
    [ss] = road.list_sas()
    assert ss.state == "ESTABLISHED"
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    assert sa["user"] == "alice" and sa["virtual_ip"].startswith("203.0.113.")
    assert sa["spi_i"] == f"{ss.initiator_spi:016x}"
    # strongSwan's swanctl lists the imported pool and alice's lease through ikeguard's vici socket
    swanctl = shutil.which("swanctl") or "/usr/sbin/swanctl"
    pools = subprocess.run([swanctl, "--list-pools", "--leases", "--uri", f"unix://{sock}"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert pools.returncode == 0, pools.stderr
    assert pools.stdout.split()[:6] == ["staff", "203.0.113.65", "1", "/", "0", "/"], pools.stdout
    assert pools.stdout.split()[6] == "62"
    assert f"{sa['virtual_ip']}" in pools.stdout and "online" in pools.stdout and "'alice'" in pools.stdout
