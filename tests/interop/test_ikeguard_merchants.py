"""The merchant case (issue 6 item 6): an ikeguard template responder and three strongSwan merchants.

Topology (tests/harness/multi_site.py): the ikeguard gateway 192.0.2.1 (198.51.100.0/25) and merchants A, B, C
in three namespaces on one bridge, each a separate charon. The gateway's template connection accepts any
identity matching ``*.merchants.example`` whose certificate chains to the lab CA (revocation strict, local CRL
file) and gives each one only what its peer inventory entry says (``remote_ts = ["%peer"]``, RFC 7296 §2.9
narrowing).

What strongSwan sees is the judge: the installed CHILD_SA's selectors, the notify it received
(TS_UNACCEPTABLE, AUTHENTICATION_FAILED); ikeguard's audit trail must say why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import CertificateAuthority, IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgPeer,
    IkgRemote,
    gateway_toml,
    peers_toml,
)
from tests.harness.multi_site import (
    GATEWAY_ADDRESS,
    GATEWAY_SUBNET,
    MultiSite,
    SiteHost,
    SiteSpec,
    build_multi_site,
)
from tests.harness.strongswan import IkeSaInfo, StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]

IKE_PROPOSAL = "aes256gcm16-prfsha384-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp384"
GW_ID = "gw.processor.example"
PATTERN = "*.merchants.example"
REAUTH_S = 10  # the template connection's reauth_time: a revoked merchant is closed within this
MERCHANTS = (
    SiteSpec("mera", "merchant-a.merchants.example", "192.0.2.11", "198.51.100.128/27"),
    SiteSpec("merb", "merchant-b.merchants.example", "192.0.2.12", "198.51.100.160/27"),
    SiteSpec("merc", "merchant-c.merchants.example", "192.0.2.13", "198.51.100.192/27"),
)
WIDE_A = "198.51.100.128/25"  # what merchant A proposes: its own /27 and both other merchants' subnets


def _gateway_config() -> str:
    conn = IkgConnection(
        name="merchants",
        local_addrs=[GATEWAY_ADDRESS],
        remote_addrs=["%any"],
        local=IkgLocal("pubkey", GW_ID, certs=["pki/gw.pem"], key="pki/gw.key"),
        remote=IkgRemote("pubkey", PATTERN, cacerts=["lab"], revocation="strict", peers="peers.toml"),
        children=[IkgChild("net", local_ts=[GATEWAY_SUBNET], remote_ts=["%peer"],
                           esp_proposals=[ESP_PROPOSAL])],
        proposals=[IKE_PROPOSAL],
        reauth_time=f"{REAUTH_S}s",
        rand_time="0s",
    )
    return gateway_toml(
        [conn],
        listen=[GATEWAY_ADDRESS],
        authorities=[IkgAuthority("lab", "pki/ca.pem", crls=["pki/lab.crl"])],
    )


def _merchant_conn(name: str, site: SiteHost, cert: str, local_ts: str,
                   extra_children: tuple[ChildConfig, ...] = ()) -> ConnectionConfig:
    return ConnectionConfig(
        name=name,
        local_addrs=[site.address],
        remote_addrs=[GATEWAY_ADDRESS],
        local=AuthConfig("pubkey", site.identity, certs=[f"{cert}.pem"]),
        remote=AuthConfig("pubkey", GW_ID, cacerts=["ca.pem"]),
        proposals=[IKE_PROPOSAL],
        children=[ChildConfig("net", local_ts=[local_ts], remote_ts=[GATEWAY_SUBNET],
                              esp_proposals=[ESP_PROPOSAL]), *extra_children],
    )


def _crl_pem(ca: CertificateAuthority, revoked: list[IssuedCertificate], number: int) -> bytes:
    return ca.crl(revoked, crl_number=number).public_bytes(serialization.Encoding.PEM)


def _up(peer: StrongSwanPeer, ike: str) -> IkeSaInfo | None:
    return next((sa for sa in peer.list_sas() if sa.name == ike and sa.state == "ESTABLISHED"), None)


def _events(gw: GatewayProcess, name: str, **match: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events()
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())]


def test_template_connection_serves_three_merchants_each_only_its_own_subnet(
    netns_lab: NetnsLab, strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    cert_factory: CertificateAuthority,
) -> None:
    started = time.monotonic()
    net: MultiSite = build_multi_site(netns_lab, MERCHANTS, gateway_identity=GW_ID)
    a, b, c = net["mera"], net["merb"], net["merc"]
    ca = cert_factory
    gw_cert = ca.issue_leaf(f"CN={GW_ID},O=processor", sans=[GW_ID])
    leaves = {s.identity: ca.issue_leaf(f"CN={s.identity},O=merchant", sans=[s.identity]) for s in (a, b, c)}
    c_old = ca.issue_leaf(f"CN={c.identity},O=merchant", sans=[c.identity])  # superseded, already revoked
    inventory = peers_toml([IkgPeer(s.identity, [s.subnet], ticket=f"CHG-{s.site.name}") for s in (a, b, c)])
    gw = ikeguard_gateway(net.gateway.namespace, "gw", _gateway_config(), {
        "pki/ca.pem": ca.issued.cert_pem(),
        "pki/gw.pem": gw_cert.cert_pem(), "pki/gw.key": gw_cert.key_pem(),
        "pki/lab.crl": _crl_pem(ca, [c_old], 1), "peers.toml": inventory,
    })

    steal = ChildConfig("steal", local_ts=[a.subnet], remote_ts=[GATEWAY_SUBNET],
                        esp_proposals=[ESP_PROPOSAL])
    common = {"cacerts": {"ca": ca.cert}}
    peer_a = strongswan_peer(a.namespace, "mera", connections=[_merchant_conn("m", a, "m", WIDE_A)],
                             certs={"m": leaves[a.identity]}, **common)
    peer_b = strongswan_peer(b.namespace, "merb",
                             connections=[_merchant_conn("m", b, "m", b.subnet, (steal,))],
                             certs={"m": leaves[b.identity]}, **common)
    peer_c = strongswan_peer(c.namespace, "merc", connections=[
        _merchant_conn("m", c, "m", c.subnet), _merchant_conn("old", c, "old", c.subnet)],
        certs={"m": leaves[c.identity], "old": c_old}, **common)

    # 1. Each merchant gets exactly its inventory subnet; A proposed a /25 and is narrowed to its /27.
    for peer in (peer_a, peer_b, peer_c):
        peer.initiate(child="net", ike="m")
    for peer, site in ((peer_a, a), (peer_b, b), (peer_c, c)):
        sa = peer.wait_established("m", "net")
        child = sa.child("net")
        assert child.local_ts == (site.subnet,), f"{site.identity}: {child.local_ts}"
        assert child.remote_ts == (GATEWAY_SUBNET,)
        assert sa.remote_id == GW_ID
    a_conf = peer_a.list_conns()["m"]["children"]["net"]
    assert a_conf["local-ts"] == [WIDE_A]  # strongSwan really asked for the wider subnet
    gw_sas = gw.wait_sas(lambda sas: len(sas) == 3 and all(s["children"] for s in sas),
                         what="three merchants")
    by_id = {s["remote_id"]: s for s in gw_sas}
    assert set(by_id) == {a.identity, b.identity, c.identity}
    for peer, site in ((peer_a, a), (peer_b, b), (peer_c, c)):
        ours = by_id[site.identity]["children"][0]
        theirs = _up(peer, "m")
        assert theirs is not None
        assert ours["remote_ts"] == [site.subnet] and ours["local_ts"] == [GATEWAY_SUBNET]
        assert (ours["spi_in"], ours["spi_out"]) == (
            format(theirs.child("net").spi_out, "08x"), format(theirs.child("net").spi_in, "08x"))

    # 2. B (valid certificate, authenticated) asks for A's subnet on its IKE SA: TS_UNACCEPTABLE, audited.
    b_before = _up(peer_b, "m")
    assert b_before is not None
    with pytest.raises(StrongSwanError):
        peer_b.initiate(child="steal", ike="m", timeout=5)
    peer_b.wait_for_log("received TS_UNACCEPTABLE notify")
    rejected = gw.wait_audit(lambda e: e["event"] == "ts.rejected" and e.get("remote_id") == b.identity,
                             what="ts.rejected for merchant B")
    assert b.identity in rejected["reason"] and a.subnet in rejected["reason"]
    assert rejected["outcome"] == "failure" and rejected["connection"] == "merchants"
    b_after = _up(peer_b, "m")
    assert b_after is not None and [ch.name for ch in b_after.children] == ["net"]
    assert b_after.child("net").spi_in == b_before.child("net").spi_in  # B's own tunnel untouched
    assert all(ch["remote_ts"] != [a.subnet] or s["remote_id"] == a.identity
               for s in gw.sas() for ch in s["children"])

    # 3. C's superseded certificate is on the CRL: refused at IKE_AUTH (strict revocation), C stays up.
    with pytest.raises(StrongSwanError):
        peer_c.initiate(child="net", ike="old", timeout=5)
    peer_c.wait_for_log("received AUTHENTICATION_FAILED notify error")
    revoked = gw.wait_audit(lambda e: e["event"] == "cert.rejected" and e.get("remote_id") == c.identity,
                            what="cert.rejected for C's old certificate")
    assert "revoked" in revoked["reason"]
    assert _up(peer_c, "old") is None and _up(peer_c, "m") is not None

    # 4. C's current certificate is revoked afterwards (a new CRL file). As a responder ikeguard cannot
    #    reauthenticate a peer: at reauth_time it closes EVERY SA (A's too, asserted below), so what ends C's
    #    access is that its reconnection is refused as revoked while A, unrevoked, reconnects.
    c_established = _up(peer_c, "m")
    gw.write_file("pki/lab.crl", _crl_pem(ca, [c_old, leaves[c.identity]], 2))
    assert c_established is not None and _up(peer_c, "m") is not None  # revoked while its SA is up
    peer_c.wait_for(lambda sas: _up_in(sas, "m") is None, timeout=REAUTH_S + 10,
                    what="C's SA closed at reauth (as every SA is)")
    down = gw.wait_audit(lambda e: e["event"] == "ike.down" and e.get("remote_id") == c.identity,
                         what="ike.down for C")
    assert "reauthentication required" in down["reason"]
    with pytest.raises(StrongSwanError):
        peer_c.initiate(child="net", ike="m", timeout=5)
    assert peer_c.log().count("received AUTHENTICATION_FAILED notify error") == 2  # old cert, then this one
    serial = format(leaves[c.identity].serial, "x")
    refused = gw.wait_audit(
        lambda e: e["event"] == "cert.rejected" and e.get("remote_id") == c.identity
        and "revoked" in e["reason"] and serial in str(e), what="cert.rejected for C's current certificate")
    assert refused["outcome"] == "failure"
    peer_a.wait_for(lambda sas: _up_in(sas, "m") is None, timeout=10, what="A closed at reauth too")
    peer_a.initiate(child="net", ike="m")
    assert peer_a.wait_established("m", "net").child("net").local_ts == (a.subnet,)
    assert {s["remote_id"] for s in gw.sas()} <= {a.identity, b.identity}
    assert c.identity not in {s["remote_id"] for s in gw.sas()}
    print(f"merchant scenario took {time.monotonic() - started:.1f}s")


def _up_in(sas: list[IkeSaInfo], ike: str) -> IkeSaInfo | None:
    return next((sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED"), None)
