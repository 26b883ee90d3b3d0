"""Issue 19 (RADIUS over TLS, RFC 6614): the RADIUS client over RadSec against a real FreeRADIUS 3.2 TLS
listener on loopback (``listen { proto = tcp; tls { require_client_cert = yes } }``, client ``proto = tls``,
secret "radsec").

An EAP-MD5 conversation is accepted over TLS with mutual certificates and an accounting record goes the same
way; a gateway certificate from a CA FreeRADIUS does not trust is refused in the handshake; a server whose
certificate does not carry the configured name, or chains to another CA, is refused by the client: each
refusal is UNREACHABLE with the TLS reason, after which the next server (UDP here) still answers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.engine.eap_relay import EapRelayRequest, RelayOutcome
from ikeguard.service.radius import RadiusClient, RadiusServer
from ikeguard.service.radsec import RADSEC_SECRET, TlsSettings
from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate
from tests.harness.freeradius import FreeRadius
from tests.service.test_radius_client import SECRET, _free_udp_port, _identity, _md5_conversation

pytestmark = [pytest.mark.root]


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    radius: FreeRadius
    ca: CertificateAuthority
    gateway: IssuedCertificate
    files: Path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("FreeRADIUS runs as root here")
    ca = CertificateAuthority.create_root("CN=Bank AAA CA")
    server = ca.issue_leaf("CN=radius.bank.example", sans=["radius.bank.example"], eku=["serverAuth"])
    gateway = ca.issue_leaf("CN=vpn-gw-1.bank.example", sans=["vpn-gw-1.bank.example"], eku=["clientAuth"])
    radius = FreeRadius(tmp_path / "radius", namespace=None, address="127.0.0.1",
                        clients={"127.0.0.1": SECRET.decode()}, server_cert=server,
                        ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM), auth_port=_free_udp_port(),
                        acct_port=_free_udp_port(), default_eap="md5", radsec_port=_free_tcp_port(),
                        radsec_clients=("127.0.0.1",))
    radius.start()
    files = tmp_path / "gw"
    files.mkdir()
    try:
        yield Lab(radius, ca, gateway, files)
    finally:
        radius.stop()


def _radsec(lab: Lab, *, client: IssuedCertificate | None = None, ca: CertificateAuthority | None = None,
            name: str = "radius.bank.example") -> RadiusServer:
    client = client or lab.gateway
    ca_pem = (ca or lab.ca).cert.public_bytes(serialization.Encoding.PEM)
    ca_file = _write(lab.files / f"ca-{id(ca)}.pem", ca_pem)
    cert = _write(lab.files / f"gw-{id(client)}.pem", client.cert_pem())
    key = _write(lab.files / f"gw-{id(client)}.key", client.key_pem())
    tls = TlsSettings(ca_file, cert, key, name, lab.radius.radsec_port)
    return RadiusServer("127.0.0.1", RADSEC_SECRET, tls=tls, context=tls.context())


def test_eap_and_accounting_over_radsec_with_mutual_certificates(lab: Lab) -> None:
    server = _radsec(lab)
    client = RadiusClient([server], timeout=1.0, retries=2)
    good = _md5_conversation(client, "alice", "alice-Pass-7431")
    assert good.outcome is RelayOutcome.ACCEPT, good
    assert good.server == f"127.0.0.1:{lab.radius.radsec_port}/tls"
    assert good.user_class == ("staff",)
    bad = _md5_conversation(client, "alice", "wrong-password")
    assert bad.outcome is RelayOutcome.REJECT
    sent = client.account({"Acct-Status-Type": "Start", "User-Name": "alice", "Acct-Session-Id": "radsec-1"})
    assert sent == server.name
    assert "radsec-1" in lab.radius.accounting()
    # 5 requests (2 x 2 EAP rounds, 1 accounting) over one kept-open TLS connection (RFC 6614 §2.5)
    assert client.tls_pool.opened == 1
    assert lab.radius.log().count(f"-> (127.0.0.1, {lab.radius.radsec_port},") == 1, lab.radius.tail()
    # the server goes away and comes back: the dead pooled connection is replaced by a new one
    lab.radius.stop()
    lab.radius.start()
    assert _md5_conversation(client, "alice", "alice-Pass-7431").outcome is RelayOutcome.ACCEPT
    assert client.tls_pool.opened == 2
    assert "alice-Pass" not in repr(server) and "PRIVATE" not in repr(server)


@pytest.mark.parametrize("refusal", ["untrusted-client", "server-name", "server-ca"])
def test_tls_refusals_fail_over_to_the_next_server(lab: Lab, refusal: str) -> None:
    other = CertificateAuthority.create_root("CN=Elsewhere CA")
    if refusal == "untrusted-client":  # FreeRADIUS wants a client certificate from its own CA
        server = _radsec(lab, client=other.issue_leaf("CN=vpn-gw-1.bank.example", eku=["clientAuth"]))
    elif refusal == "server-name":
        server = _radsec(lab, name="aaa.other.example")
    else:
        server = _radsec(lab, ca=other)
    udp = RadiusServer("127.0.0.1", SECRET, lab.radius.auth_port)
    alone = RadiusClient([server], timeout=1.0, retries=1).authenticate(
        EapRelayRequest("alice", _identity(0, "alice")))
    assert alone.outcome is RelayOutcome.UNREACHABLE, alone
    assert "TLS" in alone.reason or "closed the connection" in alone.reason, alone.reason
    if refusal == "server-name":
        assert "Hostname mismatch" in alone.reason, alone.reason
    if refusal == "server-ca":
        assert "server certificate refused" in alone.reason, alone.reason
    both = RadiusClient([server, udp], timeout=1.0, retries=1)
    answer = both.authenticate(EapRelayRequest("alice", _identity(0, "alice")))
    assert answer.outcome is RelayOutcome.CHALLENGE and answer.server == udp.name
