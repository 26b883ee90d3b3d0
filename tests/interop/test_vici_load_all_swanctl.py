"""Issue 23: Debian's ``swanctl --load-all`` (connections, shared secrets, authorities, pools) against
ikeguard's vici socket, each item checked by the compliance profile like a reload and audited as
``admin.command``:

* a connection and its PSK loaded over vici work: a strongSwan client authenticates with that PSK;
* ``--list-authorities`` and ``--list-pools`` show the authority and pool loaded over vici;
* a second secret for the same identity (``load-shared`` from strongSwan's Python ``vici``) is refused with
  the profile's ``psk.binding`` finding; the secret never appears in the audit trail nor in the log;
* ``--load-all`` from a swanctl.conf without the pool and authority unloads them (``unload-pool``,
  ``unload-authority``); secrets and authorities kept in the file cannot be unloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import vici

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.service.gwconfig import ESP_PROPOSAL, IKE_PROPOSAL, GwConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

SWANCTL = shutil.which("swanctl") or "/usr/sbin/swanctl"
FILE_PSK = "file-psk-for-another-peer-7d3e9a1c5b"
VICI_PSK = "vici-loaded-psk-2f8b6d4e0a9c1e3b5d"
OTHER_ID = "other.ss-lab.example"


@pytest.fixture
def vici_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ikgload"))  # sun_path is 108 bytes: a short private directory
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _swanctl_conf(ca_file: Path, *, with_pool_and_ca: bool) -> str:
    # the CA outside x509ca/: --load-creds would send it with load-cert, which ikeguard refuses (a trust
    # anchor is configured as an authority, checked by the profile; test_vici_creds_swanctl.py)
    extra = f"""
authorities {{
    lab-ca {{
        cacert = {ca_file}
        crl_uris = http://192.0.2.1/lab-ca.crl
    }}
}}
pools {{
    rw {{
        addrs = 203.0.113.64/26
        dns = 192.0.2.53
    }}
}}""" if with_pool_and_ca else ""
    return f"""
connections {{
    vc {{
        local_addrs = 192.0.2.1
        proposals = {IKE_PROPOSAL}
        local {{
            auth = psk
            id = {GW_FQDN}
        }}
        remote {{
            auth = psk
            id = {CLIENT_FQDN}
        }}
        children {{
            net {{
                local_ts = 198.51.100.0/25
                remote_ts = 198.51.100.128/25
                esp_proposals = {ESP_PROPOSAL}
            }}
        }}
    }}
}}
secrets {{
    ike-client {{
        id = {CLIENT_FQDN}
        secret = 0x{VICI_PSK.encode().hex()}
    }}
}}
{extra}
"""


def _swanctl(sock: Path, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWANCTL, *args, "--uri", f"unix://{sock}"], capture_output=True, text=True,
                          timeout=90, check=False, env={**os.environ, "SWANCTL_DIR": str(directory)})


def _unix(path: Path) -> object:
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    return s


def test_swanctl_load_all_loads_secrets_authorities_and_pools_through_the_profile(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess], test_pki: TestPki, vici_dir: Path, tmp_path: Path,
) -> None:
    if not Path(SWANCTL).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("swanctl is missing (packaging/system-packages.txt)")
        pytest.skip("swanctl is not installed")
    topo = netns_topology("direct")
    sock = vici_dir / "charon.vici"
    config = GwConfig("192.0.2.1", "%any", GW_FQDN, OTHER_ID, "198.51.100.0/25", "198.51.100.128/25",
                      psk=FILE_PSK, extra_gateway=f'vici = "{sock}"')
    gw = ikeguard_gateway(topo.right.namespace, "gw", config.text(), config.files())

    directory = tmp_path / "swanctl"
    directory.mkdir()
    ca_file = tmp_path / "lab-ca.pem"
    ca_file.write_bytes(test_pki.ca.issued.cert_pem())
    (directory / "swanctl.conf").write_text(_swanctl_conf(ca_file, with_pool_and_ca=True))
    loaded = _swanctl(sock, directory, "--load-all", "--noprompt")
    out = loaded.stdout + loaded.stderr
    assert loaded.returncode == 0, out
    for line in ("loaded ike secret 'ike-client'", "loaded authority 'lab-ca'", "loaded pool 'rw'",
                 "loaded connection 'vc'"):
        assert line in out, out
    assert [line for line in out.splitlines() if "failed" in line and "opening directory" not in line] == []

    authorities = _swanctl(sock, directory, "--list-authorities").stdout
    assert "lab-ca:" in authorities and "http://192.0.2.1/lab-ca.crl" in authorities, authorities
    pools = _swanctl(sock, directory, "--list-pools").stdout
    assert "rw" in pools and "203.0.113.65" in pools, pools

    # the connection and its PSK, both loaded over vici, authenticate a strongSwan client
    conn = ConnectionConfig(
        name="vc", local_addrs=[str(topo.left.address)], remote_addrs=["192.0.2.1"],
        local=AuthConfig("psk", CLIENT_FQDN), remote=AuthConfig("psk", GW_FQDN), proposals=[IKE_PROPOSAL],
        children=[ChildConfig(name="net", local_ts=[str(topo.left.subnet)],
                              remote_ts=[str(topo.right.subnet)], esp_proposals=[ESP_PROPOSAL])])
    peer = strongswan_peer(topo.left.namespace, "client", connections=[conn],
                           psks=[PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret=VICI_PSK)])
    peer.initiate(child="net", timeout=20)
    up = gw.wait_sas(lambda sas: len(sas) == 1 and bool(sas[0]["children"]), timeout=15)[0]
    assert up["name"] == "vc" and up["remote_id"] == CLIENT_FQDN

    # a second secret for the same identity breaks psk.binding: refused, the running configuration stays
    session = vici.Session(sock=_unix(sock))
    dup_secret = b"second-secret-for-the-same-peer-91a7c3"
    with pytest.raises(vici.exception.CommandException, match="already has secret"):
        session.load_shared({"type": "IKE", "id": "dup", "data": dup_secret, "owners": [CLIENT_FQDN]})
    with pytest.raises(vici.exception.CommandException, match="RADIUS"):
        session.load_shared({"type": "EAP", "id": "eap", "data": b"x" * 20, "owners": ["alice"]})
    assert [k.decode() for k in session.get_shared()["keys"]] == ["ike-client"]
    assert wait_until(lambda: len(gw.cli("sas")) == 1, 5)

    # the same file without pool and authority: swanctl unloads both
    (directory / "swanctl.conf").write_text(_swanctl_conf(ca_file, with_pool_and_ca=False))
    again = _swanctl(sock, directory, "--load-all", "--noprompt")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "no authorities found, 1 unloaded" in out and "no pools found, 1 unloaded" in out, out
    assert "lab-ca" not in _swanctl(sock, directory, "--list-authorities").stdout
    assert " rw " not in _swanctl(sock, directory, "--list-pools").stdout
    with pytest.raises(vici.exception.CommandException, match="not loaded over vici"):
        session.unload_authority({"name": "lab-ca"})

    events = gw.audit_events()
    commands = [(e["details"]["command"], e["outcome"]) for e in events if e["event"] == "admin.command"]
    assert any(c.lower().startswith("vici load-shared id=ike-client type=ike") and o == "success"
               for c, o in commands)
    assert any(c.startswith("vici load-shared id=dup") and o == "failure" for c, o in commands)
    assert ("vici load-authority lab-ca", "success") in commands
    assert ("vici load-pool rw", "success") in commands
    assert ("vici unload-pool name=rw", "success") in commands
    assert ("vici unload-authority name=lab-ca", "success") in commands
    trail = json.dumps(events)
    for secret in (VICI_PSK, VICI_PSK.encode().hex(), dup_secret.decode()):
        assert secret not in trail and secret not in gw.log_tail(400)
