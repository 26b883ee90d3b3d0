"""Issue 25 item 1: hybrid post-quantum IKE with strongSwan 6.1, ikeguard in both roles.

``aes256gcm16-prfsha384-ecp384-ke1_mlkem768`` (and ``ke1_mlkem1024``): ECDH P-384 in IKE_SA_INIT, ML-KEM in
one IKE_INTERMEDIATE exchange (RFC 9242, RFC 9370), keys updated, AUTH bound to the exchange (IntAuth).
strongSwan is the judge: its list-sas must show ``ECP_384`` + ``KE1_ML_KEM_768`` for the same IKE and ESP SPIs
as ikeguard, and pings cross the Child SA over ikeguard's userspace data plane both ways. strongSwan fragments
its IKE_INTERMEDIATE request (RFC 7383) at 1280 octets, so reassembly and IntAuth of a fragmented message are
exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.netns import Host, Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import (
    PSK,
    GatewayFactory,
    PairSpec,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
    wait_one_sa,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanError
from tests.harness.strongswan61 import StrongSwan61Peer
from tests.harness.swanctl_conf import AuthConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

Peer61Factory = Callable[..., StrongSwan61Peer]
KEM = {"mlkem768": "ML_KEM_768", "mlkem1024": "ML_KEM_1024"}


def _ping(src: Host, dst: Host) -> str:
    result = src.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2",
                               "-I", str(src.subnet_address), str(dst.subnet_address), check=False)
    return str(result.stdout) + str(result.stderr)


@pytest.mark.parametrize("kem", ["mlkem768", "mlkem1024"])
@pytest.mark.parametrize("ikeguard_role", ["responder", "initiator"])
def test_hybrid_ml_kem_ike_sa_with_strongswan61(
    kem: str, ikeguard_role: str, netns_topology: Callable[..., Topology],
    strongswan61_peer: Peer61Factory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    proposal = f"aes256gcm16-prfsha384-ecp384-ke1_{kem}"
    if ikeguard_role == "responder":
        spec = PairSpec(ike_proposals=(proposal,))
        gw = ikeguard_side(ikeguard_gateway, right, left, spec=spec, remote_addr="%any",
                           dataplane="userspace")
        peer = strongswan_side(strongswan61_peer, left, right, spec=spec)
        peer.initiate(child="net", ike="ikg")
        ikeguard_host, ss_host = right, left
    else:
        spec = PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN, ike_proposals=(proposal,))
        peer = strongswan_side(strongswan61_peer, right, left, spec=spec, remote_addr="%any")
        gw = ikeguard_side(ikeguard_gateway, left, right, spec=spec, child={"start_action": "start"},
                           dataplane="userspace")
        ikeguard_host, ss_host = left, right
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    ikg = wait_one_sa(gw)
    assert ss_sa.dh_group == "ECP_384" and ss_sa.additional_key_exchanges == {1: KEM[kem]}, ss_sa.raw
    assert f"ECP_384/KE1_{KEM[kem]}" in peer.swanctl("--list-sas").stdout
    assert ss_sa.initiator != (ikeguard_role == "initiator")
    assert_same_sa(ss_sa, ikg)
    assert ikg["proposal"] == proposal, ikg
    assert ikg["key_exchanges"] == ["ECP_384", KEM[kem]] and ikg["post_quantum"] is True, ikg
    for src, dst in ((ss_host, ikeguard_host), (ikeguard_host, ss_host)):
        out = _ping(src, dst)
        assert " 0% packet loss" in out, out


@pytest.mark.parametrize("ikeguard_role", ["responder", "initiator"])
def test_rekeys_with_ml_kem_both_ways(
    ikeguard_role: str, netns_topology: Callable[..., Topology],
    strongswan61_peer: Peer61Factory, ikeguard_gateway: GatewayFactory,
) -> None:
    """Issue 25 item 2: ESP ``aes256gcm16-ecp384-ke1_mlkem768``: the first Child SA (IKE_AUTH, no KE), then
    Child SA rekeys and IKE SA rekeys started by strongSwan and by ikeguard, each a CREATE_CHILD_SA followed
    by one IKE_FOLLOWUP_KE (RFC 9370 §2.2.4); the new SAs carry traffic and have the same SPIs on both."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    ike, esp = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768", "aes256gcm16-ecp384-ke1_mlkem768"
    if ikeguard_role == "responder":
        spec = PairSpec(ike_proposals=(ike,), esp_proposals=(esp,))
        gw = ikeguard_side(ikeguard_gateway, right, left, spec=spec, remote_addr="%any",
                           dataplane="userspace")
        peer = strongswan_side(strongswan61_peer, left, right, spec=spec)
        peer.initiate(child="net", ike="ikg")
        ikeguard_host, ss_host = right, left
    else:
        spec = PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN, ike_proposals=(ike,), esp_proposals=(esp,))
        peer = strongswan_side(strongswan61_peer, right, left, spec=spec, remote_addr="%any")
        gw = ikeguard_side(ikeguard_gateway, left, right, spec=spec, child={"start_action": "start"},
                           dataplane="userspace")
        ikeguard_host, ss_host = left, right
    first = peer.wait_established("ikg", "net", timeout=15).child("net")
    wait_one_sa(gw)
    seen = {first.spi_in}
    for starter in ("strongswan", "ikeguard"):
        if starter == "strongswan":
            assert peer.rekey(child="net") == 1
        else:
            gw.cli("rekey", "--conn", "ikg", "--child", "net", json=False)

        def rekeyed(sas: list) -> bool:  # type: ignore[type-arg]
            kids = [c for sa in sas for c in sa.children if c.state == "INSTALLED"]
            return len(kids) == 1 and kids[0].spi_in not in seen

        sas = peer.wait_for(rekeyed, timeout=10, what=f"Child SA rekeyed by {starter}")
        (ss_sa,) = sas
        child = ss_sa.child("net")
        seen.add(child.spi_in)
        assert child.raw.get("dh-group") == b"ECP_384" and child.raw.get("ake1") == b"ML_KEM_768", child.raw
        ikg = wait_one_sa(gw)
        assert_same_sa(ss_sa, ikg)
        assert ikg["children"][0]["key_exchanges"] == ["ECP_384", "ML_KEM_768"], ikg
        for src, dst in ((ss_host, ikeguard_host), (ikeguard_host, ss_host)):
            out = _ping(src, dst)
            assert " 0% packet loss" in out, out

    ike_spis = {(ss_sa.initiator_spi, ss_sa.responder_spi)}
    for starter in ("strongswan", "ikeguard"):
        if starter == "strongswan":
            assert peer.rekey(ike="ikg") == 1
        else:
            gw.cli("rekey", "--conn", "ikg", json=False)

        def ike_rekeyed(sas: list) -> bool:  # type: ignore[type-arg]
            up = [sa for sa in sas if sa.state == "ESTABLISHED"]
            return (len(sas) == 1 and len(up) == 1
                    and (up[0].initiator_spi, up[0].responder_spi) not in ike_spis
                    and any(c.state == "INSTALLED" for c in up[0].children))

        (ss_sa,) = peer.wait_for(ike_rekeyed, timeout=10, what=f"IKE SA rekeyed by {starter}")
        ike_spis.add((ss_sa.initiator_spi, ss_sa.responder_spi))
        assert ss_sa.additional_key_exchanges == {1: "ML_KEM_768"}, ss_sa.raw
        spi_i = f"{ss_sa.initiator_spi:016x}"
        ikg = gw.wait_sas(lambda sas, spi_i=spi_i: len(sas) == 1 and sas[0]["spi_i"] == spi_i,
                          timeout=10, what="ikeguard on the rekeyed IKE SA", conn="ikg")[0]
        assert_same_sa(ss_sa, ikg)
        assert ikg["key_exchanges"] == ["ECP_384", "ML_KEM_768"], ikg
        for src, dst in ((ss_host, ikeguard_host), (ikeguard_host, ss_host)):
            out = _ping(src, dst)
            assert " 0% packet loss" in out, out


PPK_ID = "ppk-east-west"
PPK_HEX = "0x" + "5c" * 32


@pytest.mark.parametrize(("ikeguard_role", "mode"), [("initiator", "required"), ("responder", "required"),
                                                    ("responder", "fallback"), ("responder", "wrong"),
                                                    ("initiator", "classical")])
def test_ppk_with_ml_kem(
    ikeguard_role: str, mode: str, netns_topology: Callable[..., Topology],
    strongswan61_peer: Peer61Factory, ikeguard_gateway: GatewayFactory,
) -> None:
    """Issue 25 item 3 (strongSwan part): RFC 8784 PPK on top of ECDH + ML-KEM-768. ``required``: the same
    PPK on both, both roles: the IKE SA comes up with the PPK mixed in (ikeguard ``ppk``), traffic flows.
    ``fallback``: both optional, strongSwan names a PPK id ikeguard does not have: ikeguard verifies
    NO_PPK_AUTH and the SA comes up without PPK. ``wrong``: same id, another secret: AUTHENTICATION_FAILED.
    ``classical``: the PPK alone, without ML-KEM (ECDH P-384 only)."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    ike = "aes256gcm16-prfsha384-ecp384" + ("" if mode == "classical" else "-ke1_mlkem768")
    required = mode in ("required", "wrong", "classical")
    ss_id = "ppk-unknown-to-ikeguard" if mode == "fallback" else PPK_ID
    ss_secret = "0x" + "77" * 32 if mode == "wrong" else PPK_HEX
    ss_conn = {"extra": {"ppk_id": ss_id, "ppk_required": required}}
    ikg_conn = {"extra": {"ppk_id": PPK_ID, "ppk_required": required}}
    ppks = {"eastwest": {"id": PPK_ID, "secret": PPK_HEX}}
    ss_ppk = [PskSecret(ids=[ss_id], secret=ss_secret, kind="ppk")]
    if ikeguard_role == "responder":
        spec = PairSpec(ike_proposals=(ike,))
        gw = ikeguard_side(ikeguard_gateway, right, left, spec=spec, remote_addr="%any",
                           dataplane="userspace", conn=ikg_conn, ppks=ppks)
        psks = [PskSecret(ids=[spec.ikg_id, spec.ss_id], secret=PSK), *ss_ppk]
        peer = strongswan_side(strongswan61_peer, left, right, spec=spec, conn=ss_conn, psks=psks)
        if mode == "wrong":
            with pytest.raises(StrongSwanError):
                peer.initiate(child="net", ike="ikg")
            assert "received AUTHENTICATION_FAILED notify error" in peer.log()
            gw.wait_audit(lambda e: e["event"] == "auth.failure", timeout=5)
            return
        peer.initiate(child="net", ike="ikg")
        ikeguard_host, ss_host = right, left
    else:
        spec = PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN, ike_proposals=(ike,))
        psks = [PskSecret(ids=[spec.ikg_id, spec.ss_id], secret=PSK), *ss_ppk]
        peer = strongswan_side(strongswan61_peer, right, left, spec=spec, remote_addr="%any", conn=ss_conn,
                               psks=psks)
        gw = ikeguard_side(ikeguard_gateway, left, right, spec=spec, child={"start_action": "start"},
                           dataplane="userspace", conn=ikg_conn, ppks=ppks)
        ikeguard_host, ss_host = left, right
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    ikg = wait_one_sa(gw)
    assert_same_sa(ss_sa, ikg)
    assert ikg["ppk"] is (mode in ("required", "classical")), ikg
    assert ikg["post_quantum"] is (mode != "classical"), ikg
    for src, dst in ((ss_host, ikeguard_host), (ikeguard_host, ss_host)):
        out = _ping(src, dst)
        assert " 0% packet loss" in out, out


def test_peer_without_ml_kem_is_refused_with_no_proposal_chosen(
    netns_topology: Callable[..., Topology], strongswan_peer: Callable[..., Any],
    ikeguard_gateway: GatewayFactory,
) -> None:
    """Issue 25 item 2 (downgrade): strongSwan 5.9.8 (no ML-KEM) offers ECDH P-384 only to an ikeguard that
    requires ``ke1_mlkem768``: NO_PROPOSAL_CHOSEN on the wire and ``proposal.rejected`` in the audit trail."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any",
                       spec=PairSpec(ike_proposals=("aes256gcm16-prfsha384-ecp384-ke1_mlkem768",)))
    peer = strongswan_side(strongswan_peer, left, right, spec=PairSpec())
    with pytest.raises(StrongSwanError):
        peer.initiate(child="net", ike="ikg", timeout=5)
    assert "received NO_PROPOSAL_CHOSEN notify error" in peer.log()
    event = gw.wait_audit(lambda e: e.get("event") == "proposal.rejected", timeout=5)
    assert "ECP_384" in str(event) or "ecp384" in str(event), event


@pytest.mark.parametrize("ikeguard_role", ["responder", "initiator"])
def test_hybrid_ml_kem_with_certificates(
    ikeguard_role: str, netns_topology: Callable[..., Topology], strongswan61_peer: Peer61Factory,
    ikeguard_gateway: GatewayFactory, test_pki: TestPki,
) -> None:
    """Issue 25 item 1 with ECDSA P-384 certificates: the IntAuth of IKE_INTERMEDIATE goes into the signed
    octets of both AUTH payloads (RFC 9242 §3.3.2), ML-KEM-1024, ikeguard in both roles."""
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    ike = "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024"
    spec = PairSpec(ikg_id=GW_FQDN, ss_id=CLIENT_FQDN, ike_proposals=(ike,))
    files = {"pki/gw.pem": test_pki.gw.cert_pem(), "pki/gw.key": test_pki.gw.key_pem(),
             "pki/ca.pem": test_pki.ca.cert.public_bytes(serialization.Encoding.PEM)}
    ikg_host, ss_host = (right, left) if ikeguard_role == "responder" else (left, right)
    gw = ikeguard_side(ikeguard_gateway, ikg_host, ss_host, spec=spec, dataplane="userspace",
                       remote_addr="%any" if ikeguard_role == "responder" else None,
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["lab"], revocation="relaxed"),
                       authorities=[IkgAuthority("lab", cacert="pki/ca.pem")], files=files,
                       child={"start_action": "start"} if ikeguard_role == "initiator" else None)
    peer = strongswan_side(strongswan61_peer, ss_host, ikg_host, spec=spec,
                           remote_addr="%any" if ikeguard_role == "initiator" else None,
                           local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]),
                           certs={"client": test_pki.client}, cacerts={"ca": test_pki.ca.cert})
    if ikeguard_role == "responder":
        peer.initiate(child="net", ike="ikg")
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    ikg = wait_one_sa(gw)
    assert ss_sa.additional_key_exchanges == {1: "ML_KEM_1024"}, ss_sa.raw
    assert_same_sa(ss_sa, ikg)
    for src, dst in ((ss_host, ikg_host), (ikg_host, ss_host)):
        out = _ping(src, dst)
        assert " 0% packet loss" in out, out
