"""Issue 13 S1 through the running gateway: a PSK peer must not authenticate as another PSK peer.

The ikeguard responder (`ikeguard run`, 192.0.2.1) serves two PSK peers A and B configured the way the issue
found vulnerable and strongSwan operators write it: each secret names the gateway's id *and* the peer's
(`ids = [gw, a]`, `[gw, b]`). Before the fix the first secret sharing any id served every connection, so A's
key opened B's connection. Here a third strongSwan, mallory (192.0.2.23), knows only A's key and claims
IDi = B's identity (with INITIAL_CONTACT, strongSwan's default on a first contact):

* strongSwan receives AUTHENTICATION_FAILED (RFC 7296 §2.21.2) and has no SA;
* ikeguard audits `auth.failure` (pre-shared key mismatch) for B's identity from mallory's address;
* B's IKE and Child SAs stay exactly as they were on both ends (same SPIs: INITIAL_CONTACT, keyed by the
  identity, is only honoured after authentication, RFC 7296 §2.4);
* the legitimate A and B still come up (B re-initiating from scratch after the attempt).

The secrets are written the way operators write them: random octets from `openssl rand`, as `0s` base64 and
`0x` hex, the same line in swanctl.conf and in ikeguard's secret file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.multi_site import GATEWAY_ADDRESS, GATEWAY_SUBNET, SiteHost, SiteSpec, build_multi_site
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
GW_ID = "gw.psk-lab.example"
A_ID = "a.psk-lab.example"
B_ID = "b.psk-lab.example"
SITES = (
    SiteSpec("a", A_ID, "192.0.2.21", "198.51.100.128/27"),
    SiteSpec("b", B_ID, "192.0.2.22", "198.51.100.160/27"),
    SiteSpec("mallory", "mallory.psk-lab.example", "192.0.2.23", "198.51.100.192/27"),
)
AUTH_FAILED = "received AUTHENTICATION_FAILED notify error"


def _openssl_rand(*args: str) -> str:
    """A fresh key as an operator makes one (`openssl rand -base64 32` / `openssl rand -hex 32`)."""
    return subprocess.run(["openssl", "rand", *args], capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()


def _gateway_config(a: SiteHost, b: SiteHost, key_a: str, key_b: str) -> tuple[str, dict[str, str]]:
    def conn(name: str, peer: SiteHost) -> IkgConnection:
        return IkgConnection(
            name=name, local_addrs=[GATEWAY_ADDRESS], remote_addrs=["%any"], proposals=[IKE_PROPOSAL],
            local=IkgLocal("psk", GW_ID), remote=IkgRemote("psk", peer.identity),
            children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=[peer.subnet],
                               esp_proposals=[ESP_PROPOSAL])])

    # the S1 layout: each secret names the gateway's id and one peer's
    secrets = [IkgSecret("peer-a", [GW_ID, A_ID], key_a), IkgSecret("peer-b", [GW_ID, B_ID], key_b)]
    text = gateway_toml([conn("peer-a", a), conn("peer-b", b)], listen=[GATEWAY_ADDRESS], secrets=secrets,
                        gateway={"retransmit_timeout": 1.0, "retransmit_tries": 3})
    return text, secret_files(secrets)


def _peer(strongswan_peer: PeerFactory, site: SiteHost, name: str, identity: str, key: str,
          remote_ts: str = GATEWAY_SUBNET) -> StrongSwanPeer:
    conn = ConnectionConfig(
        name="ikg", local_addrs=[site.address], remote_addrs=[GATEWAY_ADDRESS], proposals=[IKE_PROPOSAL],
        local=AuthConfig("psk", identity), remote=AuthConfig("psk", GW_ID),
        children=[ChildConfig("net", local_ts=[site.subnet], remote_ts=[remote_ts],
                              esp_proposals=[ESP_PROPOSAL])])
    return strongswan_peer(site.namespace, name, connections=[conn],
                           psks=[PskSecret([GW_ID, identity], key)])


def _gw_sas_of(gw: GatewayProcess, identity: str) -> list[dict[str, Any]]:
    return [s for s in gw.sas() if s["remote_id"] == identity]


def _fingerprint(sas: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must not change: IKE SA identity and every Child SA's SPIs, state and selectors."""
    return [(s["uniqueid"], s["spi_i"], s["spi_r"], s["state"], s["name"],
             tuple((c["spi_in"], c["spi_out"], c["state"], tuple(c["remote_ts"])) for c in s["children"]))
            for s in sas]


def test_peer_a_with_its_own_key_cannot_log_in_as_peer_b(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    net = build_multi_site(netns_lab, SITES, gateway_identity=GW_ID)
    a, b, mallory = net["a"], net["b"], net["mallory"]
    key_a = "0s" + _openssl_rand("-base64", "32")
    key_b = "0x" + _openssl_rand("-hex", "32")
    text, files = _gateway_config(a, b, key_a, key_b)
    gw = ikeguard_gateway(net.gateway.namespace, "gw", text, files)

    # B is up first: its SAs are what the attack would steal or tear down
    peer_b = _peer(strongswan_peer, b, "b", B_ID, key_b)
    peer_b.initiate(child="net", ike="ikg")
    b_before = peer_b.wait_established("ikg", "net")
    gw_b_before = gw.wait_sas(lambda sas: any(s["remote_id"] == B_ID and s["children"] and
                                              s["children"][0]["state"] == "installed" for s in sas),
                              what="B's SAs on the gateway")
    gw_b_before = _gw_sas_of(gw, B_ID)
    assert [s["name"] for s in gw_b_before] == ["peer-b"]

    # mallory: A's key, B's identity, B's subnet; strongSwan sends INITIAL_CONTACT on this first contact
    attacker = _peer(strongswan_peer, mallory, "mallory", B_ID, key_a)
    with pytest.raises(StrongSwanError):
        attacker.initiate(child="net", ike="ikg", timeout=8)
    attacker.wait_for_log(AUTH_FAILED, timeout=10)
    assert "N(INIT_CONTACT)" in attacker.log()  # the attempt carried INITIAL_CONTACT for B's identity
    assert not any(sa.state == "ESTABLISHED" for sa in attacker.list_sas())
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure"
                            and e.get("remote_addr", "").startswith(mallory.address),
                            what="mallory's auth.failure")
    assert failure["outcome"] == "failure" and "pre-shared key mismatch" in failure["reason"], failure
    assert not any(e["event"] in ("auth.success", "ike.up", "child.up")
                   and e.get("remote_addr", "").startswith(mallory.address) for e in gw.audit_events())

    # B's SAs are untouched on both ends; nothing was installed for mallory (its refused SA is gone)
    expected = _fingerprint(gw_b_before)
    gw.wait_sas(lambda sas: _fingerprint([s for s in sas if s["remote_id"] == B_ID]) == expected,
                timeout=5, what="B's SAs exactly as before the attempt")
    assert [s["remote_addr"] for s in gw.sas()] == [b.address], gw.sas()
    b_after = peer_b.wait_established("ikg", "net")
    assert (b_after.uniqueid, b_after.initiator_spi, b_after.responder_spi) == (
        b_before.uniqueid, b_before.initiator_spi, b_before.responder_spi)
    assert (b_after.child("net").spi_in, b_after.child("net").spi_out) == (
        b_before.child("net").spi_in, b_before.child("net").spi_out)

    # the legitimate peers still work: A comes up on its own connection; B starts over and comes up again
    peer_a = _peer(strongswan_peer, a, "a", A_ID, key_a)
    peer_a.initiate(child="net", ike="ikg")
    assert peer_a.wait_established("ikg", "net").remote_id == GW_ID
    gw.wait_sas(lambda sas: any(s["remote_id"] == A_ID and s["name"] == "peer-a" and s["children"] and
                                s["children"][0]["state"] == "installed" for s in sas), what="A's SAs")
    peer_b.terminate(ike="ikg")
    peer_b.initiate(child="net", ike="ikg")
    b_again = peer_b.wait_established("ikg", "net")
    assert b_again.initiator_spi != b_before.initiator_spi
    assert b_again.child("net").remote_ts == (GATEWAY_SUBNET,)
    successes = {e.get("remote_id") for e in gw.audit_events() if e["event"] == "auth.success"}
    assert successes == {A_ID, B_ID}
