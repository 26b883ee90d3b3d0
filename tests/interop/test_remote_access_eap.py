"""Issue 19 step 2: remote access with a device certificate (round 1) and the user through EAP relayed to a
real FreeRADIUS 3.2 (round 2, RFC 4739 / RFC 7296 §2.16 / RFC 3579), against a strongSwan 5.9.8 road warrior.

FreeRADIUS runs in the gateway's namespace with tests/radius/ (users file: alice, bob); strongSwan has the
device certificate as ``local`` and ``local-2 { auth = eap-ttls }`` (strongSwan's TTLS client runs EAP
inside the tunnel: EAP-MD5, or EAP-GTC carrying password + TOTP code for the MFA user; FreeRADIUS's
inner-tunnel server answers), ``eap-mschapv2`` or ``eap-tls``. A right password gives an IKE SA on both
sides (ikeguard's auth.success names the EAP identity, the method, the RADIUS server and the round;
``sas --json`` the user); a wrong password, an
unknown user, and both RADIUS servers down (the first one dead from the start: failover) are refused with
AUTHENTICATION_FAILED at strongSwan and an auth.failure naming the user.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, stop_process, wait_until
from tests.harness.freeradius import FreeRadius
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import DEFAULT_PLUGINS, AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]
SECRET = "gw-radius-secret-8c41d7"
DEAD_PORT = 18120  # nothing listens there in the gateway's namespace
NO_MA_PORT = 18130  # tests/harness/radius_no_ma.py
RADSEC_PORT = 2083  # FreeRADIUS's RADIUS over TLS listener (RFC 6614), mutual certificates
EAP_PLUGINS = (*DEFAULT_PLUGINS, "eap-identity", "eap-md5", "eap-gtc", "eap-ttls", "eap-tls", "eap-mschapv2",
               "md4", "md5", "des")
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
                        ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM), default_eap="ttls",
                        radsec_port=RADSEC_PORT, radsec_clients=("127.0.0.1",))
    radius.start()
    try:
        yield Lab(topo, ca, gw, client, radius)
    finally:
        radius.stop()


def _gateway(factory: GatewayFactory, lab: Lab, *, servers: list[int], dataplane: str = "none",
             pool: str = "", local_ts: str = "198.51.100.0/25", groups: str = "",
             accounting: bool = False, interval: int = 0, dos: bool = True) -> GatewayProcess:
    """``servers``: RADIUS ports over UDP, or RADSEC_PORT for RADIUS over TLS (RFC 6614)."""
    dns = "2001:db8:0:a::53" if ":" in pool else "198.51.100.53"
    blocks = "".join(f'''
[radius.servers.s{i}]
address = "127.0.0.1"
transport = "tls"
tls_port = {port}
ca = "pki/ca.pem"
cert = "pki/radsec.pem"
key = "pki/radsec.key"
server_name = "{GW_FQDN}"
''' if port == RADSEC_PORT else f'''
[radius.servers.s{i}]
address = "127.0.0.1"
auth_port = {port}
acct_port = {port + 1}
secret_file = "radius.secret"
''' for i, port in enumerate(servers))
    config = f'''[gateway]
profile = "baseline"
dataplane = "{dataplane}"
listen = ["192.0.2.1"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3
dos_protection = {"true" if dos else "false"}

[radius]
retransmit_timeout = 0.5
retransmit_tries = 2
accounting = {"true" if accounting else "false"}
accounting_interval = {interval}
{blocks}
[authorities.vpn]
cacert = "pki/ca.pem"

{f'[pools.staff]{chr(10)}addrs = "{pool}"{chr(10)}dns = ["{dns}"]{chr(10)}' if pool else ""}
[connections.rw]
local_addrs = ["192.0.2.1"]
{'pools = ["staff"]' if pool else ""}

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

{groups}
[connections.rw.children.net]
local_ts = ["{local_ts}"]
remote_ts = ["dynamic"]
'''
    files: dict[str, bytes | str] = {
        "pki/ca.pem": lab.ca.cert.public_bytes(serialization.Encoding.PEM),
        "pki/gw.pem": lab.gw.cert_pem(), "pki/gw.key": lab.gw.key_pem(), "radius.secret": SECRET + "\n"}
    if RADSEC_PORT in servers:  # the gateway's TLS client certificate for FreeRADIUS (require_client_cert)
        radsec = lab.ca.issue_leaf("CN=vpn-gw-1 radsec,O=ikeguard test", eku=["clientAuth"])
        files.update({"pki/radsec.pem": radsec.cert_pem(), "pki/radsec.key": radsec.key_pem()})
    return factory(lab.topo.right.namespace, "gw", config, files)


def _client(factory: PeerFactory, lab: Lab, user: str, password: str,
            method: str = "eap-ttls", user_cert: IssuedCertificate | None = None,
            vip: bool = False, users: tuple[tuple[str, str], ...] = (),
            remote_ts: str = "198.51.100.0/25", vip_family: str = "0.0.0.0",
            charon_threads: int = 16) -> StrongSwanPeer:
    second: dict[str, object] = {"auth": method, "eap_id": user, "id": user}
    certs = {"client": lab.client}
    if user_cert is not None:  # EAP-TLS: the user's own certificate, checked by FreeRADIUS
        second["certs"] = "user.pem"
        certs["user"] = user_cert
    everyone = ((user, password), *users)
    conns = [ConnectionConfig(
        name="rw" if i == 0 else f"rw-{name}", local_addrs=["192.0.2.2"], remote_addrs=["192.0.2.1"],
        local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig("net" if i == 0 else f"net-{name}", local_ts=["dynamic"],
                              remote_ts=[remote_ts])],
        extra={"local-2": {**second, "eap_id": name, "id": name},  # type: ignore[dict-item]
               **({"vips": vip_family} if vip else {})})
        for i, (name, _) in enumerate(everyone)]
    peer = factory(lab.topo.left.namespace, "road", connections=conns, certs=certs,
                   cacerts={"ca": lab.ca.cert}, plugins=EAP_PLUGINS,
                   charon_options={"threads": charon_threads})
    if user_cert is not None:
        return peer
    path = peer.swanctl_dir / "swanctl.conf"
    path.write_text(path.read_text() + "secrets {\n" + "".join(
        f'  eap-{name} {{\n    id = {name}\n    secret = "{secret}"\n  }}\n' for name, secret in everyone)
        + "}\n")
    peer.load_all()
    return peer


def _initiate_fails(peer: StrongSwanPeer, child: str = "net") -> None:
    with contextlib.suppress(Exception):  # vici reports the failure; charon's log says why
        peer.initiate(child, timeout=30)
    assert wait_until(lambda: AUTH_FAILED in peer.log(), 10), peer.log()[-3000:]
    assert not [sa for sa in peer.list_sas() if sa.name == ("rw" if child == "net" else f"rw-{child[4:]}")]


def test_eap_relayed_over_radsec_with_accounting(ikeguard_gateway: GatewayFactory,
                                                 strongswan_peer: PeerFactory, lab: Lab) -> None:
    """Issue 19 (RADIUS over TLS, RFC 6614): the gateway's only RADIUS server is FreeRADIUS's TLS listener
    (mutual certificates, secret "radsec"). alice (device certificate + EAP-MSCHAPv2) gets her IKE SA, the
    auth.success names the RadSec server, and accounting Start/Stop go the same way; FreeRADIUS logs the
    requests as coming over TLS."""
    gw = _gateway(ikeguard_gateway, lab, servers=[RADSEC_PORT], accounting=True)
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", "eap-mschapv2")
    road.initiate("net", timeout=30)
    assert road.list_sas()[0].state == "ESTABLISHED"
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    assert sa["user"] == "alice"
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success" and "eap_identity" in e["details"],
                            what="auth.success of alice")
    assert success["details"]["radius_server"] == f"127.0.0.1:{RADSEC_PORT}/tls", success
    assert wait_until(lambda: "Acct-Status-Type = Start" in lab.radius.accounting(), 10)
    road.terminate(ike="rw")
    stopped = wait_until(lambda: "Acct-Status-Type = Stop" in lab.radius.accounting(), 10)
    assert stopped, lab.radius.accounting()
    log = lab.radius.log()
    assert f"port {RADSEC_PORT} (TLS)" in log and "Login OK: [alice" in log, lab.radius.tail()


@pytest.mark.parametrize(("method", "eap"), [("eap-ttls", "ttls"), ("eap-mschapv2", "mschapv2"),
                                            ("eap-tls", "tls")])
def test_device_certificate_then_eap(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                     lab: Lab, method: str, eap: str) -> None:
    """Round 1 the device certificate, round 2 the user: EAP-TTLS (EAP-MD5 inside), EAP-MSCHAPv2 (the
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
    """bob is connected and stays connected while the other user is refused."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    road = _client(strongswan_peer, lab, user, password, users=(("bob", "bob-Pass-2286"),))
    road.initiate("net-bob", timeout=30)
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert f"EAP user '{user}' via RADIUS 127.0.0.1:1812: RADIUS {why}" in failure["reason"], failure
    assert failure.get("details", {}).get("eap_identity") == user
    assert [s["user"] for s in gw.sas()] == ["bob"]
    assert [sa.name for sa in road.list_sas()] == ["rw-bob"]


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


def test_virtual_ip_split_tunnel_and_ping(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                          lab: Lab) -> None:
    """Step 3: CFG_REQUEST -> a virtual IP from [pools.staff] with DNS and INTERNAL_IP4_SUBNET (split
    tunnel: the child's local_ts), the Child SA narrowed to the virtual IP; a ping from the client's
    virtual IP to the protected subnet crosses the userspace data plane."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], dataplane="userspace",
                  pool="203.0.113.64/29")
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True)
    road.initiate("net", timeout=30)
    log = road.log()
    assert "CPRP(ADDR DNS SUBNET)" in log, log[-4000:]
    assert "installing new virtual IP 203.0.113.65" in log
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established" and s[0]["children"], 10)
    assert sa["virtual_ip"] == "203.0.113.65" and sa["user"] == "alice"
    assert sa["children"][0]["remote_ts"] == ["203.0.113.65"]
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="auth.success")
    assert success["details"]["virtual_ip"] == "203.0.113.65"
    ping = lab.topo.left.namespace.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "203.0.113.65",
                                       "198.51.100.1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    [sa] = gw.sas()
    assert sa["children"][0]["packets_in"] >= 3 and sa["children"][0]["packets_out"] >= 3


def test_pool_exhausted_internal_address_failure(ikeguard_gateway: GatewayFactory,
                                                 strongswan_peer: PeerFactory, lab: Lab) -> None:
    """A pool of one address: alice holds it, bob's Child SA is refused with INTERNAL_ADDRESS_FAILURE and
    a child.failed record naming the pool and the user."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.70/32")
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True,
                   users=(("bob", "bob-Pass-2286"),))
    road.initiate("net", timeout=30)
    with contextlib.suppress(Exception):
        road.initiate("net-bob", timeout=30)
    assert wait_until(lambda: "INTERNAL_ADDRESS_FAILURE" in road.log(), 10), road.log()[-3000:]
    failed = gw.wait_audit(lambda e: e.get("event") == "child.failed", what="child.failed")
    assert failed["reason"] == "virtual IP pool staff exhausted for user bob", failed
    alice = [s for s in gw.sas() if s["user"] == "alice"]
    assert alice and alice[0]["virtual_ip"] == "203.0.113.70"


TOTP_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # tests/radius/users, user dave


def _fresh_code(latest: float = 20) -> str:
    """The current code, taken at most ``latest`` s into its 30 s step so it is still valid when FreeRADIUS
    checks it."""
    if time.time() % 30 > latest:
        time.sleep(30 - time.time() % 30 + 0.5)
    return str(pyotp.TOTP(TOTP_SEED).now())


@pytest.mark.date_sensitive  # RFC 6238 codes follow the wall clock (FreeRADIUS's and the test's)
@pytest.mark.parametrize("right_code", [True, False])
def test_mfa_password_and_totp(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory, lab: Lab,
                               right_code: bool) -> None:
    """Step 4: dave is enrolled with a TOTP seed; FreeRADIUS (rlm_totp in the TTLS inner tunnel) wants
    the password followed by the current code (EAP-GTC inside EAP-TTLS, checked as PAP). The right code
    gives an IKE SA; a wrong one is refused with AUTHENTICATION_FAILED and an auth.failure naming dave."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    code = _fresh_code()
    if not right_code:
        code = f"{(int(code) + 1) % 1_000_000:06d}"
    road = _client(strongswan_peer, lab, "dave", "dave-Pass-5150" + code)
    if right_code:
        road.initiate("net", timeout=30)
        assert road.list_sas()[0].state == "ESTABLISHED"
        [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
        assert sa["user"] == "dave"
        return
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert "EAP user 'dave' via RADIUS 127.0.0.1:1812: RADIUS Access-Reject" in failure["reason"]


@pytest.mark.date_sensitive  # RFC 6238 codes follow the wall clock (FreeRADIUS's and the test's)
def test_totp_code_is_accepted_once(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                    lab: Lab) -> None:
    """Issue 19 item 3 (TOTP reuse): rlm_totp accepts a code again within its 30 s step; the test
    FreeRADIUS (tests/radius sites.conf, rlm_cache ``totp_used``) remembers user + code for 90 s, so dave's
    second connection with the same, still current code is refused (RFC 6238 §5.2, PCI DSS 8.5.1 a) while
    the first one was accepted. Both attempts fall in one step (asserted): rlm_totp alone would accept."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    code = _fresh_code(latest=8)
    step = int(time.time() // 30)
    road = _client(strongswan_peer, lab, "dave", "dave-Pass-5150" + code)
    road.initiate("net", timeout=30)
    assert road.list_sas()[0].state == "ESTABLISHED"
    gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    road.terminate(ike="rw")
    gw.wait_sas(lambda s: not s, 10)
    _initiate_fails(road)
    assert int(time.time() // 30) == step, "the second attempt left the code's step: nothing proven"
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert "EAP user 'dave' via RADIUS 127.0.0.1:1812: RADIUS Access-Reject" in failure["reason"]


GROUPS = """
[connections.rw.groups.staff]
local_ts = ["198.51.100.0/25"]

[connections.rw.groups.cde]
cde = true
local_ts = ["0.0.0.0/0"]
"""


def test_radius_group_selects_split_or_full_tunnel(ikeguard_gateway: GatewayFactory,
                                                   strongswan_peer: PeerFactory, lab: Lab) -> None:
    """Step 4: the RADIUS Class picks the user's tunnel. alice (Class staff) gets a split tunnel: TS
    198.51.100.0/25 and INTERNAL_IP4_SUBNET; bob (Class cde, a group marked cde = true) a full tunnel:
    TS 0.0.0.0/0 and no subnet attribute. Both clients ask for 0.0.0.0/0."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.64/29",
                  local_ts="192.0.2.1/32", groups=GROUPS)
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True,
                   users=(("bob", "bob-Pass-2286"),), remote_ts="0.0.0.0/0")
    road.initiate("net", timeout=30)
    road.initiate("net-bob", timeout=30)
    log = road.log()
    assert "TS 203.0.113.65/32 === 198.51.100.0/25" in log, log[-4000:]
    assert "TS 203.0.113.66/32 === 0.0.0.0/0" in log
    assert log.count("CPRP(ADDR DNS SUBNET)") == 1 and "CPRP(ADDR DNS) SA" in log
    sas = {s["user"]: s for s in gw.wait_sas(lambda s: len(s) == 2 and all(x["children"] for x in s), 10)}
    assert sas["alice"]["children"][0]["local_ts"] == ["198.51.100.0/25"]
    assert sas["bob"]["children"][0]["local_ts"] == ["0.0.0.0/0"]
    groups = {e["details"]["eap_identity"]: e["details"]["group"] for e in gw.audit_events()
              if e.get("event") == "auth.success"}
    assert groups == {"alice": "staff", "bob": "cde"}


def test_user_in_no_configured_group_refused(ikeguard_gateway: GatewayFactory,
                                             strongswan_peer: PeerFactory, lab: Lab) -> None:
    only_cde = GROUPS.split("[connections.rw.groups.cde]")[0].replace("staff", "admins")
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], groups=only_cde)
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431")
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert ("EAP user 'alice' via RADIUS 127.0.0.1:1812: in no configured group (RADIUS Class/Filter-Id: "
            "staff, split)") in failure["reason"], failure


def test_accounting_start_and_stop_with_traffic(ikeguard_gateway: GatewayFactory,
                                                strongswan_peer: PeerFactory, lab: Lab) -> None:
    """Step 4: with ``[radius] accounting = true`` FreeRADIUS's accounting log shows alice's session:
    Start with her virtual IP, Interim-Update (``accounting_interval = 1``) with the live counters of the
    ping, Stop (she disconnects) with its octets and packets and Acct-Terminate-Cause User-Request."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], dataplane="userspace",
                  pool="203.0.113.64/29", accounting=True, interval=1)
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True)
    road.initiate("net", timeout=30)
    assert wait_until(lambda: "Acct-Status-Type = Start" in lab.radius.accounting(), 10), lab.radius.tail()
    ping = lab.topo.left.namespace.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "203.0.113.65",
                                       "198.51.100.1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    def interim_packets() -> int:
        records = lab.radius.accounting().split("Acct-Status-Type = Interim-Update")[1:]
        return max((int(r.split("Acct-Input-Packets = ")[1].split()[0]) for r in records), default=0)

    assert wait_until(lambda: interim_packets() >= 3, 5), lab.radius.accounting()  # live counters
    road.terminate(ike="rw")
    assert wait_until(lambda: "Acct-Status-Type = Stop" in lab.radius.accounting(), 10), lab.radius.tail()
    detail = lab.radius.accounting()
    start = detail.split("Acct-Status-Type = Interim-Update")[0]
    stop = detail.split("Acct-Status-Type = Stop")[1]
    assert 'User-Name = "alice"' in start and "Framed-IP-Address = 203.0.113.65" in start
    assert "Acct-Terminate-Cause = User-Request" in stop, detail
    packets = int(stop.split("Acct-Input-Packets = ")[1].split()[0])
    octets = int(stop.split("Acct-Input-Octets = ")[1].split()[0])
    assert packets >= 3 and octets >= 3 * 84, detail  # three 84-octet echo requests came in
    assert not gw.sas()


def test_reply_without_message_authenticator_refused(ikeguard_gateway: GatewayFactory,
                                                     strongswan_peer: PeerFactory, lab: Lab,
                                                     tmp_path: Path) -> None:
    """A RADIUS server whose Access-Accept has no Message-Authenticator (tests/harness/radius_no_ma.py,
    in the gateway's namespace) is not believed: AUTHENTICATION_FAILED, and the audit reason names the
    user and BlastRADIUS."""
    secret = tmp_path / "no-ma.secret"
    secret.write_text(SECRET + "\n")
    server = lab.topo.right.namespace.popen(
        [sys.executable, "-m", "tests.harness.radius_no_ma", "127.0.0.1", str(NO_MA_PORT), str(secret)],
        stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        gw = _gateway(ikeguard_gateway, lab, servers=[NO_MA_PORT])
        road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431")
        _initiate_fails(road)
        failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    finally:
        stop_process(server)
    assert (f"EAP user 'alice' via RADIUS 127.0.0.1:{NO_MA_PORT}: no valid RADIUS answer: 127.0.0.1:"
            f"{NO_MA_PORT}: reply without Message-Authenticator refused (BlastRADIUS, CVE-2024-3596)"
            ) in failure["reason"], failure


def test_leases_survive_a_gateway_restart(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                          lab: Lab) -> None:
    """Issue 19 item 4: alice had 203.0.113.65 before the gateway restarted; after the restart bob, first
    to connect, gets .66 (alice's lease is kept for her, from STATE_DIR/leases.json) and alice .65 again.
    Without the saved leases bob would get .65."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.64/29")
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True,
                   users=(("bob", "bob-Pass-2286"),))
    road.initiate("net", timeout=30)
    assert [s["virtual_ip"] for s in gw.sas()] == ["203.0.113.65"]
    gw.stop()
    assert wait_until(lambda: not road.list_sas(), 10)  # the gateway's DELETE reached the client
    gw2 = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.64/29")
    road.initiate("net-bob", timeout=30)
    road.initiate("net", timeout=30)
    ips = {s["user"]: s["virtual_ip"] for s in gw2.wait_sas(lambda s: len(s) == 2, 10)}
    assert ips == {"bob": "203.0.113.66", "alice": "203.0.113.65"}


def test_ipv6_virtual_ip_and_ping(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                  lab: Lab) -> None:
    """An IPv6 pool: strongSwan asks with ``vips = ::`` (INTERNAL_IP6_ADDRESS), gets 2001:db8:0:c::1 and
    INTERNAL_IP6_SUBNET for 2001:db8:0:a::/64, and pings the gateway's protected IPv6 address from it over
    the userspace data plane (IKE over IPv4)."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], dataplane="userspace",
                  pool="2001:db8:0:c::/120", local_ts="2001:db8:0:a::/64")
    road = _client(strongswan_peer, lab, "alice", "alice-Pass-7431", vip=True, vip_family="::",
                   remote_ts="2001:db8:0:a::/64")
    road.initiate("net", timeout=30)
    log = road.log()
    assert "installing new virtual IP 2001:db8:0:c::" in log, log[-4000:]
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["children"], 10)
    vip = sa["virtual_ip"]
    assert vip.startswith("2001:db8:0:c::") and sa["children"][0]["remote_ts"] == [vip]
    ping = lab.topo.left.namespace.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-I", vip,
                                       str(lab.topo.right.subnet_address6), check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_generated_swanctl_profile_connects(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                            lab: Lab) -> None:
    """Issue 19 item 5: ``ikeguard client-profile --format swanctl`` for alice, loaded as it is into a
    strongSwan road warrior (with her device certificate as device.pem and her EAP secret), connects and
    gets a virtual IP."""
    from click.testing import CliRunner

    from ikeguard.control.cli import main

    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.64/29")
    result = CliRunner().invoke(main, ["client-profile", "-c", str(gw.config_path), "--conn", "rw",
                                       "--user", "alice", "--format", "swanctl"])
    assert result.exit_code == 0, result.output
    road = strongswan_peer(lab.topo.left.namespace, "road", connections=[], certs={"device": lab.client},
                           cacerts={"ca": lab.ca.cert}, plugins=EAP_PLUGINS)
    (road.swanctl_dir / "swanctl.conf").write_text(
        result.stdout + 'secrets {\n  eap-alice {\n    id = alice\n    secret = "alice-Pass-7431"\n  }\n}\n')
    road.load_all()
    road.initiate("net", timeout=30)
    assert road.list_sas()[0].state == "ESTABLISHED"
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["children"], 10)
    assert sa["user"] == "alice" and sa["virtual_ip"] == "203.0.113.65"


def test_eap_only_round_with_gateway_certificate(ikeguard_gateway: GatewayFactory,
                                                 strongswan_peer: PeerFactory, lab: Lab) -> None:
    """A connection whose only round is ``remote.auth = "eap-radius"`` (RFC 7296 §2.16 without RFC 4739):
    the client sends no AUTH in its first IKE_AUTH request, the gateway answers with its certificate
    AUTH and EAP-Request/Identity; the user authenticates by EAP-MSCHAPv2 through FreeRADIUS (round 1)."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    config = gw.config.replace('[connections.rw.remote-1]\nauth = "pubkey"\ncacerts = ["vpn"]\n\n'
                               '[connections.rw.remote-2]\n', "[connections.rw.remote]\n")
    assert config != gw.config
    gw.stop()
    gw = ikeguard_gateway(lab.topo.right.namespace, "gw", config, dict(gw.files))
    conn = ConnectionConfig(
        name="rw", local_addrs=["192.0.2.2"], remote_addrs=["192.0.2.1"],
        local=AuthConfig("eap-mschapv2", "alice", extra={"eap_id": "alice"}),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
        children=[ChildConfig("net", local_ts=["dynamic"], remote_ts=["198.51.100.0/25"])])
    road = strongswan_peer(lab.topo.left.namespace, "road", connections=[conn], cacerts={"ca": lab.ca.cert},
                           plugins=EAP_PLUGINS)
    path = road.swanctl_dir / "swanctl.conf"
    path.write_text(path.read_text() + 'secrets {\n  eap-alice {\n    id = alice\n'
                    '    secret = "alice-Pass-7431"\n  }\n}\n')
    road.load_all()
    road.initiate("net", timeout=30)
    assert road.list_sas()[0].state == "ESTABLISHED"
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    assert sa["user"] == "alice" and sa["remote_id"] == "alice"
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="auth.success")
    assert success["details"]["round"] == "1" and success["details"]["eap_method"] == "mschapv2"


def test_fifty_users_at_once_get_fifty_addresses(ikeguard_gateway: GatewayFactory,
                                                 strongswan_peer: PeerFactory, lab: Lab) -> None:
    """Issue 19 item 4: 50 users (one strongSwan with 50 connections, each its own EAP-MSCHAPv2 identity,
    started 10 at a time) each get an IKE SA and a distinct virtual IP from one pool; FreeRADIUS accepts
    all 50."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"u{i:02d}" for i in range(50)]
    lab.radius.stop()
    lab.radius.users = "".join(f'{n}\tCleartext-Password := "pw-{n}-7731"\n\n' for n in names)
    lab.radius.start()
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port], pool="203.0.113.0/26", dos=False)
    road = _client(strongswan_peer, lab, names[0], f"pw-{names[0]}-7731", "eap-mschapv2", vip=True,
                   users=tuple((n, f"pw-{n}-7731") for n in names[1:]),
                   charon_threads=48)  # each waiting vici initiate holds one of charon's threads
    children = ["net"] + [f"net-{n}" for n in names[1:]]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda child: road.initiate(child, timeout=60), children))
    elapsed = time.monotonic() - started
    sas = gw.wait_sas(lambda s: len(s) == 50 and all(x["children"] for x in s), 30)
    ips = {s["user"]: s["virtual_ip"] for s in sas}
    assert sorted(ips) == names
    assert len(set(ips.values())) == 50 and all(ip.startswith("203.0.113.") for ip in ips.values())
    assert lab.radius.log().count("Login OK") == 50
    print(f"50 users with EAP-MSCHAPv2 through FreeRADIUS: {elapsed:.1f} s")


def test_ikeguard_branch_with_eap_through_ikeguard_relay(ikeguard_gateway: GatewayFactory, lab: Lab) -> None:
    """Issue 19 (client side EAP, against ikeguard's own responder): an ikeguard branch initiates with its
    device certificate (round 1) and EAP-MSCHAPv2 as alice (round 2, [connections.X.local-2]); the gateway
    relays the EAP to FreeRADIUS, whose default method (TTLS) the branch refuses with a Legacy Nak asking for
    MSCHAPv2. Both sides establish the IKE SA and the Child SA with the same SPIs; the gateway's auth.success
    names alice, mschapv2 and round 2, the branch's names its own EAP identity."""
    gw = _gateway(ikeguard_gateway, lab, servers=[lab.radius.auth_port])
    config = f'''[gateway]
profile = "baseline"
dataplane = "none"
listen = ["192.0.2.2"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3

[authorities.vpn]
cacert = "pki/ca.pem"

[secrets.eap.alice]
id = "alice"
secret_file = "eap-alice.secret"

[connections.hq]
remote_addrs = ["192.0.2.1"]

[connections.hq.local]
auth = "pubkey"
id = "{CLIENT_FQDN}"
certs = ["pki/branch.pem"]
key = "pki/branch.key"

[connections.hq.local-2]
auth = "eap-mschapv2"
eap_id = "alice"

[connections.hq.remote]
auth = "pubkey"
id = "{GW_FQDN}"
cacerts = ["vpn"]

[connections.hq.children.net]
local_ts = ["dynamic"]
remote_ts = ["198.51.100.0/25"]
start_action = "start"
'''
    files: dict[str, bytes | str] = {
        "pki/ca.pem": lab.ca.cert.public_bytes(serialization.Encoding.PEM),
        "pki/branch.pem": lab.client.cert_pem(), "pki/branch.key": lab.client.key_pem(),
        "eap-alice.secret": "alice-Pass-7431\n"}
    branch = ikeguard_gateway(lab.topo.left.namespace, "branch", config, files)
    [ours] = branch.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established" and s[0]["children"],
                             15, what="the branch's IKE SA with its Child SA")
    [theirs] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established" and s[0]["children"], 10)
    assert (ours["spi_i"], ours["spi_r"]) == (theirs["spi_i"], theirs["spi_r"])
    assert ours["children"][0]["spi_in"] == theirs["children"][0]["spi_out"]
    assert theirs["user"] == "alice"
    relayed = gw.wait_audit(lambda e: e.get("event") == "auth.success" and "eap_identity" in e["details"],
                            what="the gateway's auth.success of alice")
    assert relayed["details"]["eap_method"] == "mschapv2" and relayed["details"]["round"] == "2", relayed
    own = branch.wait_audit(lambda e: e.get("event") == "auth.success", what="the branch's auth.success")
    assert own["details"]["eap_identity"] == "alice" and own["details"]["eap_method"] == "mschapv2", own
    assert "Found mutually acceptable type MSCHAPv2" in lab.radius.log(), lab.radius.tail()  # our Nak
    assert "alice-Pass-7431" not in branch.log() and "alice-Pass-7431" not in repr(branch.audit_events())


def _eap_only_gateway(factory: GatewayFactory, lab: Lab, gw_id: str = GW_FQDN) -> GatewayProcess:
    """The gateway with ``local.auth = "eap"`` (EAP-only, RFC 5998): no certificate of its own, one round."""
    gw = _gateway(factory, lab, servers=[lab.radius.auth_port])
    config = gw.config.replace(
        f'auth = "pubkey"\nid = "{GW_FQDN}"\ncerts = ["pki/gw.pem"]\nkey = "pki/gw.key"\n',
        f'auth = "eap"\nid = "{gw_id}"\n')
    config = config.replace('[connections.rw.remote-1]\nauth = "pubkey"\ncacerts = ["vpn"]\n\n'
                            '[connections.rw.remote-2]\n', "[connections.rw.remote]\n")
    assert 'auth = "eap"\n' in config and "remote-2" not in config
    gw.stop()
    files = {k: v for k, v in gw.files.items() if k not in ("pki/gw.pem", "pki/gw.key")}
    return factory(lab.topo.right.namespace, "gw", config, files)


def _eap_only_client(factory: PeerFactory, lab: Lab, method: str) -> StrongSwanPeer:
    """strongSwan as the road warrior: EAP as its only round and ``remote { auth = eap }``: the gateway is
    authenticated by the EAP method (the TTLS server certificate names the gateway and chains to the CA);
    charon offers EAP_ONLY_AUTHENTICATION in every first IKE_AUTH request."""
    conn = ConnectionConfig(
        name="rw", local_addrs=["192.0.2.2"], remote_addrs=["192.0.2.1"],
        local=AuthConfig(method, "alice", extra={"eap_id": "alice"}),
        remote=AuthConfig("eap", GW_FQDN),  # the TLS server certificate chains to the CA in x509ca
        children=[ChildConfig("net", local_ts=["dynamic"], remote_ts=["198.51.100.0/25"])])
    road = factory(lab.topo.left.namespace, "road", connections=[conn], cacerts={"ca": lab.ca.cert},
                   plugins=EAP_PLUGINS)
    path = road.swanctl_dir / "swanctl.conf"
    path.write_text(path.read_text() + 'secrets {\n  eap-alice {\n    id = alice\n'
                    '    secret = "alice-Pass-7431"\n  }\n}\n')
    road.load_all()
    return road


def test_eap_only_with_mutual_ttls(ikeguard_gateway: GatewayFactory, strongswan_peer: PeerFactory,
                                   lab: Lab) -> None:
    """Issue 19, EAP-only authentication (RFC 5998): the gateway has no certificate (``local.auth =
    "eap"``); strongSwan sends N(EAP_ONLY_AUTHENTICATION), the gateway's first IKE_AUTH response carries
    IDr and the EAP-Request but no CERT and no AUTH, EAP-TTLS through FreeRADIUS authenticates both sides
    (the TTLS server certificate names the gateway) and the MSK keys both final AUTH payloads."""
    gw = _eap_only_gateway(ikeguard_gateway, lab)
    road = _eap_only_client(strongswan_peer, lab, "eap-ttls")
    road.initiate("net", timeout=30)
    assert road.list_sas()[0].state == "ESTABLISHED"
    assert "allow mutual EAP-only authentication" in road.log()
    [sa] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", 10)
    assert sa["user"] == "alice"
    success = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="auth.success")
    assert success["details"]["eap_only"] == "yes" and success["details"]["eap_method"] == "ttls"


def test_eap_only_refuses_non_mutual_mschapv2(ikeguard_gateway: GatewayFactory,
                                              strongswan_peer: PeerFactory, lab: Lab) -> None:
    """RFC 5998 §4: EAP-MSCHAPv2 is not a safe method for EAP-only (strongSwan's is_mutual is false too):
    FreeRADIUS accepts alice's password, yet the gateway refuses with AUTHENTICATION_FAILED and an
    auth.failure naming alice and the method."""
    gw = _eap_only_gateway(ikeguard_gateway, lab)
    road = _eap_only_client(strongswan_peer, lab, "eap-mschapv2")
    _initiate_fails(road)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="auth.failure")
    assert "alice" in failure["reason"] and "mschapv2 is not" in failure["reason"], failure
    assert "needs a mutual EAP method" in failure["reason"]
    assert "Login OK" in lab.radius.log()  # RADIUS accepted the user; the gateway refused the method
    assert gw.sas() == []


def test_eap_only_gateway_refuses_client_without_rfc5998(ikeguard_gateway: GatewayFactory, lab: Lab) -> None:
    """RFC 5998 §2: a client that does not send N(EAP_ONLY_AUTHENTICATION) (ikeguard's own EAP client as
    initiator, ``local.auth = "eap-mschapv2"``, which requires the responder's certificate AUTH) gets no
    ``local.auth = "eap"`` connection: AUTHENTICATION_FAILED before any RADIUS round, and the gateway's
    auth.failure says EAP-only needs the notify."""
    gw = _eap_only_gateway(ikeguard_gateway, lab)
    config = f'''[gateway]
profile = "baseline"
dataplane = "none"
listen = ["192.0.2.2"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3

[authorities.vpn]
cacert = "pki/ca.pem"

[secrets.eap.alice]
id = "alice"
secret_file = "eap-alice.secret"

[connections.hq]
remote_addrs = ["192.0.2.1"]

[connections.hq.local]
auth = "eap-mschapv2"
id = "alice"

[connections.hq.remote]
auth = "pubkey"
id = "{GW_FQDN}"
cacerts = ["vpn"]

[connections.hq.children.net]
local_ts = ["dynamic"]
remote_ts = ["198.51.100.0/25"]
start_action = "start"
'''
    files: dict[str, bytes | str] = {"pki/ca.pem": lab.ca.cert.public_bytes(serialization.Encoding.PEM),
                                     "eap-alice.secret": "alice-Pass-7431\n"}
    branch = ikeguard_gateway(lab.topo.left.namespace, "branch", config, files)
    failure = gw.wait_audit(lambda e: e.get("event") == "auth.failure", what="the gateway's auth.failure")
    assert "needs the peer's EAP_ONLY_AUTHENTICATION" in failure["reason"], failure
    refused = branch.wait_audit(lambda e: e.get("event") == "auth.failure", what="the branch's auth.failure")
    assert "AUTHENTICATION_FAILED" in refused["reason"], refused
    assert gw.sas() == [] and "Login OK" not in lab.radius.log()


@pytest.mark.parametrize("gw_id", [GW_FQDN, "other.bank.example"])
def test_ikeguard_eap_only_client_with_eap_tls(ikeguard_gateway: GatewayFactory, lab: Lab,
                                               gw_id: str) -> None:
    """ikeguard as the EAP-only client (RFC 5998): ``local.auth = "eap-tls"`` with carol's certificate and
    ``remote.auth = "eap"``; the branch sends N(EAP_ONLY_AUTHENTICATION), accepts the gateway's first
    response without AUTH and validates FreeRADIUS's EAP-TLS server certificate against its authority and
    the gateway's IDr. Both sides establish with the same SPIs. When the gateway's identity is one the TLS
    server certificate does not carry (``other.bank.example``), the branch refuses it."""
    gw = _eap_only_gateway(ikeguard_gateway, lab, gw_id)
    user = "carol@bank.example"
    carol = lab.ca.issue_leaf("CN=carol,O=ikeguard test", sans=[user], eku=["clientAuth"])
    config = f'''[gateway]
profile = "baseline"
dataplane = "none"
listen = ["192.0.2.2"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3

[authorities.vpn]
cacert = "pki/ca.pem"

[connections.hq]
remote_addrs = ["192.0.2.1"]

[connections.hq.local]
auth = "eap-tls"
id = "{user}"
certs = ["pki/carol.pem"]
key = "pki/carol.key"

[connections.hq.remote]             # EAP-only: the EAP-TLS server certificate authenticates the gateway
auth = "eap"
id = "{gw_id}"
cacerts = ["vpn"]

[connections.hq.children.net]
local_ts = ["dynamic"]
remote_ts = ["198.51.100.0/25"]
start_action = "start"
'''
    files: dict[str, bytes | str] = {"pki/ca.pem": lab.ca.cert.public_bytes(serialization.Encoding.PEM),
                                     "pki/carol.pem": carol.cert_pem(), "pki/carol.key": carol.key_pem()}
    branch = ikeguard_gateway(lab.topo.left.namespace, "branch", config, files)
    if gw_id != GW_FQDN:
        refused = branch.wait_audit(lambda e: e.get("event") == "auth.failure", what="the branch's refusal")
        assert "EAP-TLS server refused" in refused["reason"] and "certificate rejected" in refused["reason"]
        assert branch.sas() == [] or all(s["state"] != "established" for s in branch.sas())
        return
    [ours] = branch.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established" and s[0]["children"],
                             15, what="the branch's IKE SA with its Child SA")
    [theirs] = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established" and s[0]["children"], 10)
    assert (ours["spi_i"], ours["spi_r"]) == (theirs["spi_i"], theirs["spi_r"])
    assert theirs["user"] == user
    own = branch.wait_audit(lambda e: e.get("event") == "auth.success", what="the branch's auth.success")
    assert own["details"]["eap_only"] == "yes" and own["details"]["eap_method"] == "tls", own
    relayed = gw.wait_audit(lambda e: e.get("event") == "auth.success", what="the gateway's auth.success")
    assert relayed["details"]["eap_only"] == "yes" and relayed["details"]["eap_method"] == "tls", relayed
