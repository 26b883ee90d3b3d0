"""IKE_SA_INIT retries, fragmentation and MOBIKE against a real strongSwan (issue 6 item 5).

- COOKIE (RFC 7296 §2.6) both ways: an ikeguard responder over its cookie threshold makes strongSwan retry
  with the COOKIE; a strongSwan responder that always demands cookies gets ikeguard's retry.
- INVALID_KE_PAYLOAD (RFC 7296 §1.2, §3.10.1) both ways: the initiator's first KE group (ecp384) is not the
  responder's only group (curve25519); the initiator retries with the group asked for.
- IKE fragmentation (RFC 7383) both roles: RSA-4096 leaf + RSA-4096 intermediate + CERTREQ make IKE_AUTH
  far larger than 1,500 bytes; strongSwan's log shows the fragments and the SA establishes.
- MOBIKE (RFC 4555): the ikeguard initiator's address changes; strongSwan follows with the same IKE SPIs.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable

import pytest

from ikeguard.crypto.random import SystemRandom
from ikeguard.engine.events import Endpoint, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.policy.proposals import parse_configured
from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate, KeyKind
from ikeguard.tools.netns import Namespace, Topology
from tests.harness.ikeguard_conf import IkgLocal, IkgRemote
from tests.harness.interop_pair import (
    IKE_PROPOSAL,
    GatewayFactory,
    PairSpec,
    PeerFactory,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
    wait_one_sa,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.swanctl_conf import AuthConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

_SEND_UDP = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1],0))\n"
    "s.sendto(bytes.fromhex(sys.stdin.read().strip()),(sys.argv[2],500))\n"
)


def _ike_sa_init_request(local: str, remote: str) -> bytes:
    """A genuine IKE_SA_INIT request (our own engine as a throw-away initiator) that will never continue."""
    conn = ConnectionSettings(
        name="decoy",
        ike_proposals=(parse_configured(IKE_PROPOSAL, "ike"),),
        local=LocalAuth(AuthKind.PSK, "decoy.ss-lab.example", psk=b"d" * 32),
        remote=RemoteAuth(AuthKind.PSK),
        children=(),
    )
    manager = IkeManager([conn], random=SystemRandom())
    manager.initiate("decoy", local=Endpoint(ipaddress.ip_address(local), 500),
                     remote=Endpoint(ipaddress.ip_address(remote), 500), now=time.time())
    return next(e.data for e in manager.events() if isinstance(e, SendDatagram))


def _send_from(ns: Namespace, source: str, target: str, data: bytes) -> None:
    """One UDP datagram to ``target``:500 from an ephemeral port of ``source`` inside ``ns``."""
    ns.run("python3", "-c", _SEND_UDP, source, target, input=data.hex())


# ---------------------------------------------------------------------------------------------- COOKIE
def test_strongswan_retries_with_the_cookie_of_a_busy_ikeguard_responder(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, remote_addr="%any",
                       gateway_keys={"cookie_threshold": 1})
    # One half-open IKE SA (an IKE_SA_INIT that never goes on) puts the responder at its threshold.
    _send_from(topo.left.namespace, str(topo.left.address), str(topo.right.address),
               _ike_sa_init_request(str(topo.left.address), str(topo.right.address)))
    peer = strongswan_side(strongswan_peer, topo.left, topo.right)
    peer.initiate(child="net", ike="ikg")
    ss_sa = peer.wait_established("ikg", "net")
    assert_same_sa(ss_sa, wait_one_sa(gw))
    log = peer.log()
    assert "parsed IKE_SA_INIT response 0 [ N(COOKIE) ]" in log  # our stateless answer
    assert "generating IKE_SA_INIT request 0 [ N(COOKIE) SA KE No" in log  # strongSwan echoes it first
    gw.wait_audit(lambda e: e["event"] == "ike.up", timeout=5)  # the trail is written behind the SA state
    events = gw.audit_events()
    on = [e for e in events if e["event"] == "dos.cookies_on"]
    assert on and "1 half-open" in on[0]["reason"]
    assert any(e["event"] == "ike.up" for e in events)


def test_ikeguard_retries_with_the_cookie_strongswan_demands(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    # charon.cookie_threshold = 0 switches cookies off in strongSwan (tried): 1 plus one half-open SA
    # (an IKE_SA_INIT from another port of the gateway's host that never continues) forces them.
    peer = strongswan_side(strongswan_peer, topo.left, topo.right, remote_addr="%any",
                           charon_options={"cookie_threshold": 1})
    _send_from(topo.right.namespace, str(topo.right.address), str(topo.left.address),
               _ike_sa_init_request(str(topo.right.address), str(topo.left.address)))
    peer.wait_for(lambda sas: len(sas) == 1, what="the half-open decoy IKE_SA")
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, child={"start_action": "start"})
    ss_sa = peer.wait_established("ikg", "net")
    assert_same_sa(ss_sa, wait_one_sa(gw))
    log = peer.log()
    assert "generating IKE_SA_INIT response 0 [ N(COOKIE) ]" in log
    assert "parsed IKE_SA_INIT request 0 [ N(COOKIE) SA KE No" in log  # ikeguard put the COOKIE first
    assert [sa.state for sa in peer.list_sas()].count("ESTABLISHED") == 1


# ----------------------------------------------------------------------------------------- INVALID_KE
ECP_FIRST = "aes256gcm16-prfsha384-ecp384-x25519"  # one proposal, two groups: the KE payload is ecp384
X25519_ONLY = "aes256gcm16-prfsha384-x25519"


def test_invalid_ke_ikeguard_initiator_retries_with_strongswans_group(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    spec = PairSpec(ike_proposals=(ECP_FIRST,), ss_ike_proposals=(X25519_ONLY,))
    peer = strongswan_side(strongswan_peer, topo.left, topo.right, spec=spec, remote_addr="%any")
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, spec=spec, child={"start_action": "start"})
    ss_sa = peer.wait_established("ikg", "net")
    assert ss_sa.dh_group == "CURVE_25519"
    sa = wait_one_sa(gw)
    assert_same_sa(ss_sa, sa)
    assert sa["proposal"].endswith("25519"), sa["proposal"]
    assert "generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]" in peer.log()
    gw.wait_audit(lambda e: e["event"] == "ike.up", timeout=5)
    retries = [e for e in gw.audit_events() if e["event"] == "ike.retry"]
    assert [e["reason"] for e in retries] == ["peer asked for CURVE25519 (INVALID_KE_PAYLOAD)"]


def test_invalid_ke_strongswan_initiator_retries_with_ikeguards_group(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    topo = netns_topology("direct")
    spec = PairSpec(ike_proposals=(X25519_ONLY,), ss_ike_proposals=(ECP_FIRST,))
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, spec=spec, remote_addr="%any")
    peer = strongswan_side(strongswan_peer, topo.left, topo.right, spec=spec)
    peer.initiate(child="net", ike="ikg")
    ss_sa = peer.wait_established("ikg", "net")
    assert ss_sa.dh_group == "CURVE_25519"
    assert_same_sa(ss_sa, wait_one_sa(gw))
    assert "peer didn't accept DH group ECP_384, it requested CURVE_25519" in peer.log()
    gw.wait_audit(lambda e: e["event"] == "ike.up", timeout=5)
    retries = [e for e in gw.audit_events() if e["event"] == "ike.retry"]
    assert [e["reason"] for e in retries] == ["asked peer for CURVE25519 (INVALID_KE_PAYLOAD)"]


# -------------------------------------------------------------------------------------- fragmentation
Leaves = tuple[CertificateAuthority, IssuedCertificate, IssuedCertificate]


def _rsa_chain(root: CertificateAuthority) -> Leaves:
    """An RSA-4096 intermediate under ``root`` and RSA-4096 leaves for both sides below it."""
    inter = root.issue_intermediate("CN=ikeguard test RSA intermediate,O=ikeguard test", KeyKind.RSA_4096)
    gw = inter.issue_leaf(f"CN={GW_FQDN},O=ikeguard test", sans=[GW_FQDN], key_kind=KeyKind.RSA_4096)
    client = inter.issue_leaf(f"CN={CLIENT_FQDN},O=ikeguard test", sans=[CLIENT_FQDN],
                              key_kind=KeyKind.RSA_4096)
    return inter, gw, client


@pytest.fixture(scope="module")
def rsa4096_pki() -> tuple[CertificateAuthority, CertificateAuthority, IssuedCertificate, IssuedCertificate]:
    root = CertificateAuthority.create_root("CN=ikeguard test root CA,O=ikeguard test", KeyKind.ECDSA_P384)
    return (root, *_rsa_chain(root))


def _pem(cert: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("ikeguard_initiates", [True, False],
                         ids=["ikeguard-initiator", "ikeguard-responder"])
def test_fragmented_ike_auth_with_rsa4096_chain(
    ikeguard_initiates: bool,
    rsa4096_pki: tuple[CertificateAuthority, CertificateAuthority, IssuedCertificate, IssuedCertificate],
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    root, inter, gw_leaf, client_leaf = rsa4096_pki
    topo = netns_topology("direct")
    files: dict[str, bytes | str] = {
        "certs/gw.pem": gw_leaf.cert_pem(), "certs/inter.pem": _pem(inter.cert),
        "certs/root.pem": _pem(root.cert), "private/gw.key": gw_leaf.key_pem(),
    }
    gw = ikeguard_side(
        ikeguard_gateway, topo.right, topo.left,
        remote_addr=None if ikeguard_initiates else "%any",
        local=IkgLocal(auth="pubkey", id=GW_FQDN, certs=["certs/gw.pem", "certs/inter.pem"],
                       key="private/gw.key"),
        remote=IkgRemote(auth="pubkey", id=CLIENT_FQDN, cacerts=["certs/root.pem"]),
        conn={"fragmentation": True},
        child={"start_action": "start"} if ikeguard_initiates else None,
        files=files,
    )
    peer = strongswan_side(
        strongswan_peer, topo.left, topo.right,
        remote_addr="%any" if ikeguard_initiates else None,
        local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
        remote=AuthConfig("pubkey", GW_FQDN, cacerts=["root.pem"]),
        conn={"fragmentation": "yes"},
        certs={"client": client_leaf}, cacerts={"root": root.cert, "inter": inter.cert},
    )
    if not ikeguard_initiates:
        peer.initiate(child="net", ike="ikg")
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    assert_same_sa(ss_sa, wait_one_sa(gw))
    log = peer.log()
    # strongSwan's own IKE_AUTH message went out in fragments, and ours arrived in fragments
    sizes = [int(n) for n in re.findall(r"splitting IKE message \((\d+) bytes\) into \d+ fragments", log)]
    assert sizes and min(sizes) > 1500, sizes
    assert "received fragment #1 of" in log
    got = [int(n) for n in re.findall(r"reassembled fragmented IKE message \((\d+) bytes\)", log)]
    assert got and min(got) > 1500, got
    assert f"authentication of '{GW_FQDN}' with RSA" in log



# ---------------------------------------------------------------------------------------------- MOBIKE
def test_mobike_strongswan_follows_the_ikeguard_initiator_to_its_new_address(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    """ikeguard (client side, initiator) loses 192.0.2.2 and gets 192.0.2.3: its address monitor sends
    UPDATE_SA_ADDRESSES from the new address; strongSwan keeps the same IKE SA (SPIs) at the new address."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, right, left, spec=PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN),
                           remote_addr="%any", conn={"mobike": True})
    gw = ikeguard_side(ikeguard_gateway, left, right, spec=PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN),
                       listen=["0.0.0.0"], conn={"mobike": True, "dpd_delay": "2s"},
                       child={"start_action": "start"})
    before = peer.wait_established("ikg", "net")
    sa = wait_one_sa(gw)
    assert_same_sa(before, sa)
    assert before.remote_host == str(left.address) and sa["local_addr"] == str(left.address)

    ns = left.namespace
    ns.sysctl(f"net.ipv4.conf.{left.ifname}.promote_secondaries", 1)
    ns.add_address(left.ifname, "192.0.2.3/24")
    ns.ip("addr", "del", f"{left.address}/24", "dev", left.ifname)

    after = peer.wait_for(lambda sas: len(sas) == 1 and sas[0].remote_host == "192.0.2.3", timeout=10,
                          what="strongSwan's IKE SA at the new address")[0]
    assert (after.uniqueid, after.initiator_spi, after.responder_spi) == (
        before.uniqueid, before.initiator_spi, before.responder_spi)  # the same IKE SA, moved
    assert after.state == "ESTABLISHED"
    log = peer.log()
    assert "parsed INFORMATIONAL request 2 [ N(UPD_SA_ADDR) N(COOKIE2) N(NATD_S_IP) N(NATD_D_IP) ]" in log
    assert f"remote endpoint changed from {left.address}[4500] to 192.0.2.3[4500]" in log
    # kernel-libipsec cannot move an installed SA, so strongSwan rekeys its CHILD_SA after the update (its
    # own choice, logged as "queueing CHILD_REKEY task"); ikeguard follows that rekey too.
    moved = gw.wait_sas(lambda sas: len(sas) == 1 and sas[0]["local_addr"] == "192.0.2.3"
                        and len(sas[0]["children"]) == 1 and sas[0]["children"][0]["state"] == "installed",
                        timeout=5)[0]
    assert (moved["spi_i"], moved["spi_r"]) == (sa["spi_i"], sa["spi_r"])
    now = peer.wait_for(lambda sas: len(sas) == 1 and len(sas[0].children) == 1
                        and sas[0].children[0].state == "INSTALLED", what="one Child SA after the move")[0]
    assert_same_sa(now, gw.sas()[0])
    gw.wait_audit(lambda e: e["event"] == "ike.address_changed", timeout=5)
    changed = [e for e in gw.audit_events() if e["event"] == "ike.address_changed"]
    assert changed and changed[-1]["outcome"] == "success" and "192.0.2.3" in changed[-1]["reason"]

    # The moved SA is alive: a liveness check from the new address is answered (no DPD timeout).
    time.sleep(3)
    assert [s["spi_i"] for s in gw.sas()] == [sa["spi_i"]]
    assert len(peer.list_sas()) == 1
    assert "dpd.timeout" not in {e["event"] for e in gw.audit_events()}


def test_mobike_ikeguard_responder_follows_strongswan_to_its_new_address(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory
) -> None:
    """The other direction: strongSwan (initiator, client side) loses 192.0.2.2 and gets 192.0.2.3; its own
    address monitor sends UPDATE_SA_ADDRESSES and the ikeguard responder moves the same IKE SA."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", conn={"mobike": True})
    peer = strongswan_side(strongswan_peer, left, right, conn={"mobike": True, "local_addrs": []})
    peer.initiate(child="net", ike="ikg")
    before = peer.wait_established("ikg", "net")
    sa = wait_one_sa(gw)
    assert_same_sa(before, sa)

    ns = left.namespace
    ns.sysctl(f"net.ipv4.conf.{left.ifname}.promote_secondaries", 1)
    ns.add_address(left.ifname, "192.0.2.3/24")
    ns.ip("addr", "del", f"{left.address}/24", "dev", left.ifname)

    moved = gw.wait_sas(lambda sas: len(sas) == 1 and sas[0]["remote_addr"] == "192.0.2.3", timeout=10,
                        what="ikeguard's IKE SA at strongSwan's new address")[0]
    assert (moved["spi_i"], moved["spi_r"]) == (sa["spi_i"], sa["spi_r"])  # the same IKE SA, moved
    after = peer.wait_for(lambda sas: len(sas) == 1 and sas[0].local_host == "192.0.2.3", timeout=5)[0]
    assert (after.initiator_spi, after.responder_spi) == (before.initiator_spi, before.responder_spi)
    assert "N(UPD_SA_ADDR)" in peer.log()
    gw.wait_audit(lambda e: e["event"] == "ike.address_changed" and "192.0.2.3" in e.get("reason", ""),
                  timeout=5)
