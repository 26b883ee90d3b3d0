"""Issue 23 item 1: Debian's ``swanctl`` against ikeguard's vici socket for credentials and policies, with a
running ``ikeguard run`` gateway that uses ECDSA certificates:

* ``swanctl --list-certs`` prints our certificate with its private key and the trust anchor as a CA (DER
  sent in ``list-cert`` events, parsed by swanctl itself);
* ``swanctl --load-creds`` over a swanctl directory holding the same certificate, key and CA succeeds (they
  map onto the configuration); a foreign certificate or key is refused with where to configure it, and the
  key never appears in the audit trail;
* swanctl then unloads the key its directory lacks (``unload-key``): refused, the gateway keeps its key;
* ``swanctl --list-pols`` prints the trap policy of the child with ``start_action = trap``;
* ``redirect`` (strongSwan's Python ``vici``) of an IKE SA whose peer did not announce REDIRECT_SUPPORTED
  is refused with that reason (the redirect itself: tests/interop/test_redirect_strongswan.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import vici
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, KeyKind
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    gateway_toml,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki

pytestmark = [pytest.mark.root, pytest.mark.interop]

SWANCTL = shutil.which("swanctl") or "/usr/sbin/swanctl"


@pytest.fixture
def vici_dir() -> Iterator[Path]:
    """A short private directory for the socket (sun_path is 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ikgcred"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _swanctl(sock: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWANCTL, *args, "--uri", f"unix://{sock}"], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})


def test_swanctl_lists_and_loads_credentials_and_lists_trap_policies(
    netns_topology: Callable[..., Topology], ikeguard_gateway: Callable[..., GatewayProcess],
    test_pki: TestPki, vici_dir: Path, tmp_path: Path,
) -> None:
    if not Path(SWANCTL).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("swanctl is missing (packaging/system-packages.txt)")
        pytest.skip("swanctl is not installed")
    topo = netns_topology("direct")
    sock = vici_dir / "charon.vici"
    config = gateway_toml(
        [IkgConnection("clients", local_addrs=["192.0.2.1"], remote_addrs=["192.0.2.2"],
                       local=IkgLocal(id=GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote(id=CLIENT_FQDN, cacerts=["test-ca"], revocation="relaxed"),
                       children=[IkgChild("net", local_ts=["198.51.100.0/25"],
                                          remote_ts=["198.51.100.128/25"], start_action="trap")])],
        authorities=[IkgAuthority("test-ca", cacert="pki/ca.pem")], gateway={"vici": str(sock)},
    )
    files = {"pki/gw.pem": test_pki.gw.cert_pem(), "pki/gw.key": test_pki.gw.key_pem(),
             "pki/ca.pem": test_pki.ca.issued.cert_pem()}
    gw = ikeguard_gateway(topo.right.namespace, "gw", config, files)

    listed = _swanctl(sock, "--list-certs")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert "List of X.509 End Entity Certificates" in out and "List of X.509 CA Certificates" in out
    ee, ca = out.split("List of X.509 CA Certificates")
    assert f"CN={GW_FQDN}" in ee and "has private key" in ee
    assert "CN=ikeguard test root CA" in ca and "CN=ikeguard test root CA" in ca.split("issuer:")[0]

    # swanctl --load-creds over the same credentials: every file maps onto the configuration
    same = tmp_path / "swanctl-same"
    for sub, name, data in (("x509", "gw.pem", test_pki.gw.cert_pem()), ("x509ca", "ca.pem",
                            test_pki.ca.issued.cert_pem()), ("private", "gw.pem", test_pki.gw.key_pem())):
        (same / sub).mkdir(parents=True, exist_ok=True)
        (same / sub / name).write_bytes(data)
    (same / "swanctl.conf").write_text("")
    loaded = _swanctl(sock, "--load-creds", "--noprompt", env={"SWANCTL_DIR": str(same)})
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert loaded.stdout.count("loaded certificate from") == 2 and "loaded private key from" in loaded.stdout
    assert "failed" not in loaded.stdout

    # a foreign certificate and key are refused with where to configure them
    other_ca = CertificateAuthority.create_root("CN=somebody else's CA", KeyKind.ECDSA_P384)
    leaf = other_ca.issue_leaf("CN=intruder.example", sans=["intruder.example"])
    foreign = tmp_path / "swanctl-foreign"
    (foreign / "x509").mkdir(parents=True)
    (foreign / "private").mkdir()
    (foreign / "x509" / "intruder.pem").write_bytes(leaf.cert_pem())
    key_pem = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    (foreign / "private" / "intruder.pem").write_bytes(key_pem)
    (foreign / "swanctl.conf").write_text("")
    refused = _swanctl(sock, "--load-creds", "--noprompt", env={"SWANCTL_DIR": str(foreign)})
    text = refused.stdout + refused.stderr
    assert "connections.NAME.local.certs" in text and "connections.NAME.local.key" in text, text
    events = gw.audit_events()
    commands = [e for e in events if e["event"] == "admin.command" and "vici load-" in str(e.get("details"))]
    assert {e["outcome"] for e in commands} == {"failure", "success"}
    # swanctl unloads the keys its directory lacks: refused, the gateway keeps its own
    assert "ikeguard's credentials come from its configuration" in text
    assert "has private key" in _swanctl(sock, "--list-certs").stdout
    assert key_pem.decode().splitlines()[1][:40] not in gw.log_tail(400)

    pols = _swanctl(sock, "--list-pols")
    assert pols.returncode == 0, pols.stderr
    assert "clients/net, TUNNEL" in pols.stdout
    assert "198.51.100.0/25" in pols.stdout and "198.51.100.128/25" in pols.stdout

    session = vici.Session(sock=_unix(sock))
    with pytest.raises(vici.exception.CommandException, match="does not support redirection"):
        session.redirect({"ike": "clients", "gateway": "192.0.2.9"})


def _unix(path: Path) -> object:
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    return s
