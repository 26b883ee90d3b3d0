"""Issue 6 item 1: `ikeguard run` against a real strongSwan in both roles, with PSK, ECDSA P-384 and
RSA-3072 certificates and the suites AES-GCM-256/ECP-384, AES-CBC-256+HMAC-SHA-384/ECP-384 and
ChaCha20-Poly1305/X25519.

Matrix (10 scenarios instead of the 18-way product; every suite x role and every auth x role is covered):
  * each suite in both roles with PSK, userspace data plane, one ping through the tunnel per scenario
    (ikeguard's ESP against strongSwan's kernel-libipsec);
  * ECDSA P-384 and RSA-3072 certificates in both roles, each with a different suite, the ECDSA responder
    over IPv6 (outer and inner addresses), also with the userspace data plane and a ping.
strongSwan's list-sas is the judge: IKE SA ESTABLISHED, Child SA INSTALLED, negotiated proposals as
configured; ikeguard's `sas` reports the same IKE and ESP SPIs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.interop_scenarios import SUITES, PairSpec, assert_same_sa, start_pair
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

SCENARIOS = [
    *(PairSpec(role, "psk", SUITES[suite], dataplane="userspace")
      for suite in ("gcm", "cbc", "chacha") for role in ("initiator", "responder")),
    PairSpec("initiator", "ecdsa", SUITES["gcm"], dataplane="userspace"),
    PairSpec("responder", "ecdsa", SUITES["chacha"], ipv6=True, dataplane="userspace"),
    PairSpec("initiator", "rsa", SUITES["cbc"], dataplane="userspace"),
    PairSpec("responder", "rsa", SUITES["gcm"], dataplane="userspace"),
]
# what strongSwan logs about verifying ikeguard's AUTH payload (RFC 7296 §2.15; RFC 7427 digital signatures:
# ECDSA P-384 with SHA-384, RSA-3072 with RSASSA-PSS as RFC 8247 recommends). strongSwan itself signs RSA
# with PKCS#1 v1.5 by default, which ikeguard verifies (auth.success).
AUTH_LOG = {
    "psk": f"authentication of '{GW_FQDN}' with pre-shared key successful",
    "ecdsa": f"authentication of '{GW_FQDN}' with ECDSA_WITH_SHA384_DER successful",
    "rsa": f"authentication of '{GW_FQDN}' with RSA_EMSA_PSS_SHA2_256_SALT_32 successful",
}


@pytest.mark.parametrize("spec", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_tunnel_with_strongswan(
    spec: PairSpec,
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess],
) -> None:
    pair = start_pair(netns_topology, strongswan_peer, ikeguard_gateway, spec)
    pair.initiate()
    ss, ikg = pair.settled()
    assert_same_sa(ss, ikg, spec.suite)
    assert ss.initiator is (spec.role == "responder")
    assert (ss.local_host, ss.remote_host) == (pair.ss_addr, pair.ikg_addr)
    assert (ikg["local_addr"], ikg["remote_addr"]) == (pair.ikg_addr, pair.ss_addr)
    assert (ss.local_id, ss.remote_id) == (CLIENT_FQDN, GW_FQDN)
    assert (ikg["local_id"], ikg["remote_id"]) == (GW_FQDN, CLIENT_FQDN)
    child = ss.child("net")
    assert child.local_ts == (pair.ss_subnet,) and child.remote_ts == (pair.ikg_subnet,)
    assert ikg["children"][0]["local_ts"] == [pair.ikg_subnet]
    assert ikg["children"][0]["remote_ts"] == [pair.ss_subnet]
    log = pair.peer.log()
    assert AUTH_LOG[spec.auth] in log  # strongSwan verified ikeguard's AUTH with the expected method
    pair.gw.wait_audit(lambda e: e["event"] == "auth.success" and e.get("remote_id") == CLIENT_FQDN, 5)
    if spec.auth != "psk":
        validated = pair.gw.wait_audit(lambda e: e["event"] == "cert.validated", 5)
        assert validated["outcome"] == "success"

    # ESP both ways through ikeguard's userspace data plane and strongSwan's libipsec
    out = pair.ping(2)
    assert " 0% packet loss" in out
    ss_child = pair.peer.list_sas()[0].child("net")
    ikg_child = pair.gw.sas()[0]["children"][0]
    assert ss_child.packets_out >= 2 and ss_child.packets_in >= 2
    assert ikg_child["packets_in"] >= 2 and ikg_child["packets_out"] >= 2
