"""Issue 19 step 2: remote access with a device certificate (round 1) and the user through EAP relayed to a
real FreeRADIUS 3.2 (round 2, RFC 4739 / RFC 7296 §2.16 / RFC 3579), against a strongSwan 5.9.8 road warrior.

FreeRADIUS runs in the gateway's namespace with tests/radius/ (users file: alice, bob); strongSwan has the
device certificate as ``local`` and ``local-2 { auth = eap-ttls }`` (PAP inside the tunnel, answered by the
inner-tunnel server). A right password gives an IKE SA on both sides (ikeguard's auth.success names the EAP
identity, the method, the RADIUS server and the round; ``sas --json`` the user); a wrong password, an
unknown user, and both RADIUS servers down (the first one dead from the start: failover) are refused with
AUTHENTICATION_FAILED at strongSwan and an auth.failure naming the user.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.freeradius import FreeRadius
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import DEFAULT_PLUGINS, AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
SECRET = "gw-radius-secret-8c41d7"
DEAD_PORT = 18120  # nothing listens there in the gateway's namespace
EAP_PLUGINS = (*DEFAULT_PLUGINS, "eap-identity", "eap-md5", "eap-ttls", "eap-tls", "eap-mschapv2", "md4",
               "md5", "des")
AUTH_FAILED = "received AUTHENTICATION_FAILED notify error"


@dataclass
class Lab:
    topo: Topology
    ca: CertificateAuthority
    gw: IssuedCertificate
    client: IssuedCertificate
    radius: FreeRadius


@pytest.fixture
def lab(netns_topology: Callable[..., Topology], tmp_path: Path) -> Iterator[Lab]:
    topo = netns_topology("direct")
    ca = CertificateAuthority.create_root("CN=Bank VPN CA,O=ikeguard test")
    gw = ca.issue_leaf(f"CN={GW_FQDN},O=ikeguard test", sans=[GW_FQDN, "192.0.2.1"])
    client = ca.issue_leaf(f"CN={CLIENT_FQDN},O=ikeguard test", sans=[CLIENT_FQDN, "192.0.2.2"])
    # the EAP-TTLS server: strongSwan checks it names the gateway (its IKE identity) and chains to the CA
    aaa = ca.issue_leaf(f"CN={GW_FQDN},O=ikeguard test radius", sans=[GW_FQDN], eku=["serverAuth"])
    radius = FreeRadius(tmp_path / "freeradius", namespace=topo.right.namespace, address="127.0.0.1",
                        clients={"127.0.0.1": SECRET}, server_cert=aaa,
                        ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM), default_eap="ttls")
    radius.start()
    try:
        yield Lab(topo, ca, gw, client, radius)
    finally:
        radius.stop()


def _gateway(factory: GatewayFactory, lab: Lab, *, servers: list[int]) -> GatewayProcess:
    blocks = "".join(f'''
[radius.servers.s{i}]
address = "127.0.0.1"
auth_port = {port}
secret_file = "radius.secret"
''' for i, port in enumerate(servers))
    config = f'''[gateway]
profile = "baseline"
dataplane = "none"
listen = ["192.0.2.1"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3

[radius]
retransmit_timeout = 0.5
retransmit_tries = 2
{blocks}
[authorities.vpn]
cacert = "pki/ca.pem"

[connections.rw]
local_addrs = ["192.0.2.1"]

[connections.rw.local]
auth = "pubkey"
id = "{GW_FQDN}"
certs = ["pki/gw.pem"]
key = "pki/gw.key"

[connections.rw.remote-1]
auth = "pubkey"
cacerts = ["vpn"]

[connections.rw.remote-2]
auth = "eap-radius"
eap_id = "%any"

[connections.rw.children.net]
local_ts = ["198.51.100.0/25"]
remote_ts = ["dynamic"]
'''
    files: dict[str, bytes | str] = {
        "pki/ca.pem": lab.ca.cert.public_bytes(serialization.Encoding.PEM),
        "pki/gw.pem": lab.gw.cert_pem(), "pki/gw.key": lab.gw.key_pem(), "radius.secret": SECRET + "\n"}
    return factory(lab.topo.right.namespace, "gw", config, files)


def _client(factory: PeerFactory, lab: Lab, user: str, password: str,
            method: str = "eap-ttls", user_cert: IssuedCertificate | None = None) -> StrongSwanPeer:
    second: dict[str, object] = {"auth": method, "eap_id": user, "id": user}
    certs = {"client": lab.client}
    if user_cert is not None:  # EAP-TLS: the user's own certificate, checked by FreeRADIUS
        second["certs"] = "user.pem"
        certs["user"] = user_cert
    conn = ConnectionConfig(
        name="rw", local_addrs=["192.0.2.2"], remote_addrs=["192.0.2.1"],
        local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig("net", local_ts=["dynamic"], remote_ts=["198.51.100.0/25"])],
        extra={"local-2": second})  # type: ignore[dict-item]
    peer = factory(lab.topo.left.namespace, "road", connections=[conn], certs=certs,
                   cacerts={"ca": lab.ca.cert}, plugins=EAP_PLUGINS)
    if user_cert is not None:
        return peer
    path = peer.swanctl_dir / "swanctl.conf"
    path.write_text(path.read_text() + f'secrets {{\n  eap-{user} {{\n    id = {user}\n'
                    f'    secret = "{password}"\n  }}\n}}\n')
    peer.load_all()
    return peer


def _initiate_fails(peer: StrongSwanPeer) -> None:
    with contextlib.suppress(Exception):  # vici reports the failure; charon's log says why
        peer.initiate("net", timeout=30)
    assert wait_until(lambda: AUTH_FAILED in peer.log(), 10), peer.log()[-3000:]
    assert not peer.list_sas()


@pytest.mark.parametrize(("method", "eap"), [("eap-ttls", "ttls"), ("eap-mschapv2", "mschapv2"),
                                            ("eap-tls", "tls")])
def test_device_certificate_then_eap(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                     lab: Lab, method: str, eap: str) -> None:
    """Round 1 the device certificate, round 2 the user: EAP-TTLS with PAP inside, EAP-MSCHAPv2 (the
    RADIUS server's default is TTLS: strongSwan NAKs it and FreeRADIUS follows), EAP-TLS with the user's
    certificate. The MSK from RADIUS keys both final AUTH payloads, so strongSwan's own check of ours proves
    it is the key its EAP method derived."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    user, user_cert = "alice", None
    if eap == "tls":
        user = "carol@bank.example"
        user_cert = lab.ca.issue_leaf("CN=carol,O=ikeguard test", sans=[user], eku=["clientAuth"])
    road = _client(strongswan_peer, lab, user, "alice-Pass-7431", method, user_cert)
    road.initiate("net", timeout=30)
    [ss] = road.list_sas()
    assert ss.state == "ESTABLISHED"
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    assert sa["user"] == user
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="auth.success")
    details = success.get("details", {})
    assert details.get("eap_identity") == user and details.get("eap_method") == eap, success
    assert details.get("radius_server") == "127.0.0.1:1812" and details.get("round") == "2", success
    assert success.get("remote_id") == CLIENT_FQDN
    assert f"Login OK: [{user}" in lab.radius.log(), lab.radius.tail()


@pytest.mark.parametrize(("user", "password", "why"), [
    ("alice", "not-her-password", "Access-Reject"),
    ("mallory", "whatever-1", "Access-Reject"),
])
def test_wrong_password_and_unknown_user_refused(ikeguard_gateway: GatewayFactory,
                                                 strongswan_peer: PeerFactory, lab: Lab, user: str,
                                                 password: str, why: str) -> None:
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    road = _client(strongswan_peer, lab, user, password)
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert f"EAP user '{user}' via RADIUS 127.0.0.1:1812: RADIUS {why}" in failure["reason"], failure
    assert failure.get("details", {}).get("eap_identity") == user
    assert not gw.sas()


def test_failover_then_both_servers_down(ikeguard_gateway: GatewayFactory,
                                         strongswan_peer: PeerFactory, lab: Lab) -> None:
    gw = _gateway(ikeguard_gateway, lab, servers=[DEAD_PORT, lab.radius.auth_port])
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431")
    road.initiate("net", timeout=40)  # the first server never answers: the first round fails over
    assert road.list_sas()[0].state == "ESTABLISHED"
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="auth.success")
    assert success["details"]["radius_server"] == f"127.0.0.1:{lab.radius.auth_port}"
    road.terminate(ike="rw")
    lab.radius.stop()  # now neither server answers
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", timeout=20, what="auth.failure")
    assert "EAP user 'alice'" in failure["reason"] and "no valid RADIUS answer" in failure["reason"], failure
    assert f"127.0.0.1:{DEAD_PORT}: no answer" in failure["reason"]
