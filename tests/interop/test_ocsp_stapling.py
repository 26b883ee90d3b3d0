"""Issue 18, OCSP in IKE (RFC 4806) with strongSwan 6.1 (``connections.<conn>.ocsp``): no OCSP responder is
reachable from the side that validates, only the stapled response proves the certificate unrevoked.

The CA is made the way an operator does it (``ikeguard pki init`` / ``issue --ocsp-uri`` / ``revoke`` /
``ocsp-serve``). The gateway's certificate names ``http://127.0.0.1:18080/`` as its OCSP responder, the
clients' ``http://127.0.0.1:18081/``; a namespace has its own loopback, so ``pki ocsp-serve`` runs on the
port of each side's own certificate in that side's namespace (it fetches its own status there), and the
peer's URI leads nowhere from the namespace of the side that validates. Both validate with
``revocation = strict``, so without the staple the IKE SA would fail (``revocation_unavailable``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.tools.certfactory import IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Host, Namespace, Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, PairSpec, ikeguard_side, strongswan_side
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError
from tests.harness.strongswan61 import StrongSwan61Peer
from tests.harness.swanctl_conf import DEFAULT_PLUGINS, AuthConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

Peer61Factory = Callable[..., StrongSwan61Peer]
GatewayFactory = Callable[..., GatewayProcess]
GW_PORT, CLIENT_PORT = 18080, 18081  # on each namespace's own loopback


def _uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


@dataclass(frozen=True)
class Ca:
    directory: Path
    root: x509.Certificate
    gw: IssuedCertificate
    client: IssuedCertificate
    revoked_client: IssuedCertificate


def _pki(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ikeguard", "pki", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"ikeguard pki {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _issue(directory: Path, stem: str, fqdn: str, port: int, *extra: str) -> IssuedCertificate:
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
    _pki("issue", "--dir", str(directory), "--dn", f"C=US, O=ss-lab, CN={fqdn}", "--san", fqdn,
         "--ocsp-uri", _uri(port), "--lifetime", "1h", "--key-out", str(key_path), "--out", str(cert_path),
         *extra)
    key: Any = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return IssuedCertificate(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    directory = tmp_path_factory.mktemp("ocsp-ca")
    key = ec.generate_private_key(ec.SECP384R1())
    key_path = directory / "ca.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    _pki("init", "--dir", str(directory), "--key", str(key_path), "--dn", "C=US, O=ss-lab, CN=ss-lab OCSP CA")
    gw = _issue(directory, "gw", GW_FQDN, GW_PORT, "--server")
    client = _issue(directory, "client", CLIENT_FQDN, CLIENT_PORT)
    revoked = _issue(directory, "revoked-client", CLIENT_FQDN, CLIENT_PORT)
    _pki("revoke", "--dir", str(directory), format(revoked.cert.serial_number, "x"), "--reason",
         "key_compromise")
    root = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    return Ca(directory, root, gw, client, revoked)


@pytest.fixture
def ocsp_responder(ca: Ca) -> Iterator[Callable[[Namespace, int], None]]:
    """``pki ocsp-serve`` on 127.0.0.1:port inside a namespace; stopped by PID after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ns: Namespace, port: int) -> None:
        proc = ns.popen([sys.executable, "-m", "ikeguard", "pki", "ocsp-serve", "--dir", str(ca.directory),
                         "--listen", f"127.0.0.1:{port}", "--validity", "10m"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "OCSP responder for" in line, line

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def _unreachable(ns: Namespace, port: int) -> None:
    """The OCSP URI leads nowhere from ``ns`` (nothing listens there on its loopback)."""
    done = ns.run(sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('{_uri(port)}', "
                  "timeout=2)", check=False)
    assert done.returncode != 0 and "refused" in done.stderr.lower(), done.stderr[-500:]


def _pair(ca: Ca, client: IssuedCertificate, ikg_host: Host, ss_host: Host, gateway: GatewayFactory,
          peer61: Peer61Factory, *, ikeguard_role: str = "responder",
          ) -> tuple[GatewayProcess, StrongSwan61Peer]:
    """ikeguard (the gateway certificate) and strongSwan 6.1 (a client certificate), ``ocsp = both`` and
    ``revocation = strict`` on both; the initiator is strongSwan unless ``ikeguard_role`` is "initiator"."""
    ca_pem = ca.root.public_bytes(serialization.Encoding.PEM)
    initiator = ikeguard_role == "initiator"
    gw = ikeguard_side(gateway, ikg_host, ss_host, spec=PairSpec(),
                       remote_addr=None if initiator else "%any",
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["vpn-ca"], revocation="strict"),
                       authorities=[IkgAuthority("vpn-ca", cacert="pki/ca.pem")],
                       conn={"extra": {"ocsp": "both"}}, start=not initiator,
                       files={"pki/gw.pem": ca.gw.cert_pem(), "pki/gw.key": ca.gw.key_pem(),
                              "pki/ca.pem": ca_pem})
    peer = strongswan_side(peer61, ss_host, ikg_host, spec=PairSpec(),
                           remote_addr="%any" if initiator else None,
                           local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"],
                                             extra={"revocation": "strict"}),
                           conn={"extra": {"ocsp": "both"}},
                           certs={"client": client}, cacerts={"ca": ca.root},
                           plugins=(*DEFAULT_PLUGINS, "curl"))
    return gw, peer


def _wait_staple(gw: GatewayProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while "OCSP response for our certificate" not in gw.log():
        assert time.monotonic() < deadline, gw.log_tail()
        time.sleep(0.2)


@pytest.mark.parametrize("ikeguard_role", ["responder", "initiator"])
def test_ocsp_responses_stapled_both_ways_with_strongswan61(
    ikeguard_role: str, ca: Ca, netns_topology: Callable[..., Topology], strongswan61_peer: Peer61Factory,
    ikeguard_gateway: GatewayFactory, ocsp_responder: Callable[[Namespace, int], None],
) -> None:
    """Both ``ocsp = both``. ikeguard responder: strongSwan asks in its IKE_AUTH request and gets ikeguard's
    stapled answer in the response; ikeguard asks in the IKE_SA_INIT response and validates the answer
    strongSwan staples in its IKE_AUTH request. ikeguard initiator: the other way round (ikeguard asks in
    its IKE_AUTH request, strongSwan in its IKE_SA_INIT response)."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    ikg_host, ss_host = (right, left) if ikeguard_role == "responder" else (left, right)
    ocsp_responder(ikg_host.namespace, GW_PORT)  # ikeguard fetches its own status here
    ocsp_responder(ss_host.namespace, CLIENT_PORT)  # strongSwan fetches its own status here
    _unreachable(ss_host.namespace, GW_PORT)
    _unreachable(ikg_host.namespace, CLIENT_PORT)
    gw, peer = _pair(ca, ca.client, ikg_host, ss_host, ikeguard_gateway, strongswan61_peer,
                     ikeguard_role=ikeguard_role)
    if ikeguard_role == "responder":
        _wait_staple(gw)
        peer.initiate(child="net", ike=CONN, timeout=15)
    else:
        gw.start()
        _wait_staple(gw)
        gw.cli("initiate", "--conn", CONN, json=False)
        peer.wait_established(CONN, "net", timeout=15)
    log = peer.log()
    assert "received OCSP response issued by" in log, log[-4000:]
    # strongSwan judged ikeguard's certificate by the stapled answer, never asking the (unreachable) responder
    checked = log.split(f'checking certificate status of "C=US, O=ss-lab, CN={GW_FQDN}"', 1)[1]
    assert "using cached ocsp response" in checked.split("certificate status is", 1)[0], log[-4000:]
    assert checked.split("certificate status is", 1)[1].startswith(" good"), log[-4000:]
    assert f"requesting ocsp status from '{_uri(GW_PORT)}'" not in log
    assert f'sending OCSP status for certificate "C=US, O=ss-lab, CN={CLIENT_FQDN}"' in log, log[-4000:]
    validated = gw.wait_audit(lambda e: e["event"] == "cert.validated", what="cert.validated")
    assert validated["details"].get("ocsp_received") == "good", validated
    success = gw.wait_audit(lambda e: e["event"] == "auth.success", what="auth.success")
    assert success["details"].get("ocsp_sent") == "good", success
    assert [sa["state"] for sa in gw.sas()] == ["established"]
    (conn,) = gw.cli("conns")
    assert conn["ocsp"] == "both" and conn["ocsp_staple"]["status"] == "good", conn


def test_stapled_revoked_answer_refuses_the_peer(
    ca: Ca, netns_topology: Callable[..., Topology], strongswan61_peer: Peer61Factory,
    ikeguard_gateway: GatewayFactory, ocsp_responder: Callable[[Namespace, int], None],
) -> None:
    """strongSwan staples the responder's "revoked" for its own (revoked) certificate: ikeguard refuses with
    AUTHENTICATION_FAILED, ``cert.rejected`` says revoked according to the stapled response."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    ocsp_responder(right.namespace, GW_PORT)
    ocsp_responder(left.namespace, CLIENT_PORT)
    gw, peer = _pair(ca, ca.revoked_client, right, left, ikeguard_gateway, strongswan61_peer)
    _wait_staple(gw)
    with pytest.raises(StrongSwanError):
        peer.initiate(child="net", ike=CONN, timeout=10)
    assert "received AUTHENTICATION_FAILED notify error" in peer.log()
    rejected = gw.wait_audit(lambda e: e["event"] == "cert.rejected", what="cert.rejected")
    assert rejected["reason"].startswith("revoked"), rejected
    assert "stapled" in rejected["reason"] and rejected["details"].get("ocsp_received") == "revoked", rejected
    assert rejected["cert_serial"] == format(ca.revoked_client.cert.serial_number, "x")
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure", what="auth.failure")
    assert failure["details"].get("ocsp_received") == "revoked", failure
    assert not gw.sas()
