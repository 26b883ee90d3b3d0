"""Issue 19 ("client side EAP for the initiator as well"): ikeguard initiates as a branch gateway and
authenticates to a strongSwan 5.9.8 head-end with EAP, strongSwan's charon being the EAP server itself
(eap-mschapv2 / eap-md5 with the branch's password in its swanctl.conf ``secrets { eap-* }``).

- RFC 4739 rounds as initiator: round 1 our certificate with N(ANOTHER_AUTH_FOLLOWS), round 2 (IDi alone,
  then EAP-MSCHAPv2); strongSwan logs the EAP method succeeding with an MSK, both IKE SAs and the Child SA
  are up with the same SPIs, and ikeguard's auth.success names the EAP identity, the method and round 2;
- EAP as the only round of ours (RFC 7296 §2.16: IKE_AUTH without AUTH): EAP-MD5, which has no MSK, so the
  final AUTH payloads are keyed with SK_pi/SK_pr;
- a wrong password: strongSwan refuses (EAP-Failure), ikeguard records auth.failure naming the EAP identity
  and establishes nothing; the password appears in no log or audit record of ikeguard.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.interop_pair import (
    CHILD,
    CONN,
    ESP_PROPOSAL,
    IKE_PROPOSAL,
    GatewayFactory,
    PeerFactory,
    address,
    assert_same_sa,
    subnet,
    wait_one_sa,
)
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import DEFAULT_PLUGINS, AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

EAP_PLUGINS = (*DEFAULT_PLUGINS, "eap-identity", "eap-md5", "eap-mschapv2", "eap-tls", "md4", "md5", "des")
BRANCH_USER = "branch-17@bank.example"
PASSWORD = "Br4nch-17 eap pass"


def _lab(tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
         ikeguard_gateway: GatewayFactory, *, method: str, rounds: int,
         password: str = PASSWORD) -> tuple[StrongSwanPeer, GatewayProcess]:
    """strongSwan head-end (left) with its certificate, requiring the branch's certificate and then EAP
    (rounds = 2) or EAP only (rounds = 1); ikeguard branch (right) initiating at start."""
    tool = PkiTool(tmp_path / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=bank, CN=bank VPN CA")
    head = tool.issue("head", ca, f"C=US, O=bank, CN={CLIENT_FQDN}", sans=[CLIENT_FQDN])
    branch = tool.issue("branch", ca, f"C=US, O=bank, CN={GW_FQDN}", sans=[GW_FQDN])
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    eap_remote = AuthConfig(f"eap-{method}", None, extra={"eap_id": "%any"})
    extra = {"remote-2": eap_remote.tree()} if rounds == 2 else {}
    remote = AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]) if rounds == 2 else eap_remote
    peer = strongswan_peer(
        left.namespace, "headend",
        connections=[ConnectionConfig(
            name=CONN, local_addrs=[address(left)], remote_addrs=["%any"],
            local=AuthConfig("pubkey", CLIENT_FQDN, certs=["head.pem"]), remote=remote,
            proposals=[IKE_PROPOSAL], extra=extra,
            children=[ChildConfig(name=CHILD, local_ts=[subnet(left)], remote_ts=[subnet(right)],
                                  esp_proposals=[ESP_PROPOSAL])])],
        psks=[PskSecret(ids=[BRANCH_USER], secret=PASSWORD, kind="eap")],
        certs={"head": head.issued(ca)}, cacerts={"ca": ca.cert}, plugins=EAP_PLUGINS,
        # small EAP-TLS fragments from strongSwan: ikeguard must acknowledge and reassemble them
        charon_options={"plugins.eap-tls.fragment_size": 300})
    eap_local = f'auth = "eap-{method}"\neap_id = "{BRANCH_USER}"\n'
    if method == "tls":  # our TLS client certificate names the EAP identity (strongSwan checks it)
        user = tool.issue("user", ca, "C=US, O=bank, CN=branch-17 user", sans=[BRANCH_USER])
        eap_local += 'certs = ["pki/user.pem"]\nkey = "pki/user.key"\n'
    if rounds == 2:
        local = (f'[connections.{CONN}.local]\nauth = "pubkey"\nid = "{GW_FQDN}"\n'
                 f'certs = ["pki/branch.pem"]\nkey = "pki/branch.key"\n\n'
                 f'[connections.{CONN}.local-2]\n{eap_local}')
    else:
        local = f'[connections.{CONN}.local]\nid = "{GW_FQDN}"\n{eap_local}'
    config = f'''[gateway]
profile = "baseline"
dataplane = "none"
listen = ["{address(right)}"]
state_dir = "state"
retransmit_timeout = 1.0
retransmit_tries = 3

[authorities.bank]
cacert = "pki/ca.pem"

[secrets.eap.branch]
id = "{BRANCH_USER}"
secret_file = "eap-branch.secret"

[connections.{CONN}]
remote_addrs = ["{address(left)}"]
proposals = ["{IKE_PROPOSAL}"]

{local}
[connections.{CONN}.remote]
auth = "pubkey"
id = "{CLIENT_FQDN}"
cacerts = ["bank"]

[connections.{CONN}.children.{CHILD}]
local_ts = ["{subnet(right)}"]
remote_ts = ["{subnet(left)}"]
esp_proposals = ["{ESP_PROPOSAL}"]
start_action = "start"
'''
    files: dict[str, bytes | str] = {"pki/ca.pem": ca.cert_pem(), "pki/branch.pem": branch.cert_pem(),
                                     "pki/branch.key": branch.key_pem(), "eap-branch.secret": password + "\n"}
    if method == "tls":
        files.update({"pki/user.pem": user.cert_pem(), "pki/user.key": user.key_pem()})
    gw = ikeguard_gateway(right.namespace, "branch", config, files)
    return peer, gw


def _no_secret_anywhere(gw: GatewayProcess, password: str) -> None:
    assert password not in gw.log()
    assert password not in repr(gw.audit_events())


def test_certificate_then_eap_mschapv2_as_initiator(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    peer, gw = _lab(tmp_path, netns_topology, strongswan_peer, ikeguard_gateway, method="mschapv2", rounds=2)
    ikg = wait_one_sa(gw, timeout=15)
    ss = peer.wait_established(CONN, CHILD, timeout=5)
    assert_same_sa(ss, ikg)
    log = peer.log()
    assert f"authentication of '{GW_FQDN}' with ECDSA" in log, log[-3000:]  # round 1: the certificate
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert f"authentication of '{BRANCH_USER}' with EAP successful" in log, log[-3000:]
    success = [e for e in gw.audit_events() if e["event"] == "auth.success"]
    assert success and success[-1]["details"]["eap_identity"] == BRANCH_USER, success
    assert success[-1]["details"]["eap_method"] == "mschapv2" and success[-1]["details"]["round"] == "2"
    _no_secret_anywhere(gw, PASSWORD)


def test_eap_md5_as_the_only_round_of_the_initiator(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    peer, gw = _lab(tmp_path, netns_topology, strongswan_peer, ikeguard_gateway, method="md5", rounds=1)
    ikg = wait_one_sa(gw, timeout=15)
    assert_same_sa(peer.wait_established(CONN, CHILD, timeout=5), ikg)
    log = peer.log()
    assert f"received EAP identity '{BRANCH_USER}'" in log, log[-3000:]
    assert "EAP method EAP_MD5 succeeded, no MSK established" in log, log[-3000:]
    assert f"authentication of '{GW_FQDN}' with EAP successful" in log, log[-3000:]  # our IDi of round 1
    _no_secret_anywhere(gw, PASSWORD)


def test_wrong_eap_password_is_refused_and_audited(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    wrong = "not the branch password"
    peer, gw = _lab(tmp_path, netns_topology, strongswan_peer, ikeguard_gateway, method="mschapv2", rounds=2,
                    password=wrong)
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure", what="auth.failure", timeout=15)
    assert BRANCH_USER in failure["reason"] and "EAP" in failure["reason"], failure
    assert failure["details"]["eap_identity"] == BRANCH_USER
    assert "EAP_MSCHAPV2 failed" in peer.log() or "EAP-MS-CHAPv2 verification failed" in peer.log()
    assert not [s for s in gw.sas() if s["state"] == "established"]
    assert not peer.list_sas() or all(s.state != "ESTABLISHED" for s in peer.list_sas())
    _no_secret_anywhere(gw, wrong)


def test_certificate_then_eap_tls_as_initiator(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    """Round 2 EAP-TLS (RFC 5216) with our user certificate against strongSwan's eap-tls server: the TLS
    server must present the certificate strongSwan authenticated the IKE SA with, strongSwan checks ours
    names the EAP identity, and the MSK from the TLS exporter keys both final AUTH payloads."""
    peer, gw = _lab(tmp_path, netns_topology, strongswan_peer, ikeguard_gateway, method="tls", rounds=2)
    ikg = wait_one_sa(gw, timeout=15)
    assert_same_sa(peer.wait_established(CONN, CHILD, timeout=5), ikg)
    log = peer.log()
    assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-3000:]
    assert log.count("received EAP_TLS acknowledgment packet") >= 3, log[-3000:]  # its fragments, acked
    assert f"authentication of '{BRANCH_USER}' with EAP successful" in log, log[-3000:]
    success = [e for e in gw.audit_events() if e["event"] == "auth.success"]
    assert success and success[-1]["details"]["eap_method"] == "tls", success
