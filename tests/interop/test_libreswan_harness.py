"""libreswan's pluto as initiator: first against charon (proves the harness), then against `ikeguard run`.

ECDSA P-384 certificates from the test PKI, AES-GCM-256 / PRF-SHA384 / ECP-384. The responder establishes the
IKE SA and its Child SA; pluto authenticates the responder and then cannot install ESP on this kernel (XFRM
without ESP), deletes its SA without notifying and retries, so the proof on pluto's side is its log (see
tests/harness/libreswan.py), and on the responder's side its own SA view and audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import (
    IkgAuthority,
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.libreswan import LibreswanConn, LibreswanPeer, live_plutos
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN, TestPki
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig

pytestmark = [pytest.mark.root, pytest.mark.interop]

GW_NET = "198.51.100.0/25"
CLIENT_NET = "198.51.100.128/25"


def _charon_responder(strongswan_peer: Callable[..., StrongSwanPeer], topo: Topology, pki: TestPki,
                      *, proposals: tuple[str, ...] = ("aes256gcm16-prfsha384-ecp384",)) -> StrongSwanPeer:
    return strongswan_peer(
        topo.right.namespace,
        "gw",
        connections=[
            ConnectionConfig(
                name="ikg",
                local_addrs=["192.0.2.1"],
                remote_addrs=["192.0.2.2"],
                local=AuthConfig("pubkey", GW_FQDN, certs=["gw.pem"]),
                remote=AuthConfig("pubkey", CLIENT_FQDN, cacerts=["ca.pem"]),
                proposals=proposals,
                children=[ChildConfig("net", local_ts=[GW_NET], remote_ts=[CLIENT_NET],
                                      esp_proposals=["aes256gcm16"])],
                encap=None,
            )
        ],
        certs={"gw": pki.gw},
        cacerts={"ca": pki.ca.cert},
    )


def _pluto(libreswan_peer: Callable[..., LibreswanPeer], topo: Topology, pki: TestPki,
           **conn: str) -> LibreswanPeer:
    return libreswan_peer(
        topo.left.namespace,
        "pluto",
        connections=[
            LibreswanConn(
                "ikg",
                left="192.0.2.2",
                leftid=f"@{CLIENT_FQDN}",
                leftcert="client",
                leftsubnet=CLIENT_NET,
                right="192.0.2.1",
                rightid=f"@{GW_FQDN}",
                rightsubnet=GW_NET,
                **conn,  # type: ignore[arg-type]
            )
        ],
        certs={"client": pki.client},
        cacerts={"ikgca": pki.ca.cert},
    )


def test_pluto_initiator_authenticates_with_charon_responder(
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    test_pki: TestPki,
    libreswan_peer: Callable[..., LibreswanPeer],
) -> None:
    topo = netns_topology("direct")
    gw = _charon_responder(strongswan_peer, topo, test_pki)
    pluto = _pluto(libreswan_peer, topo, test_pki)
    assert pluto.states() == []
    pluto.initiate("ikg")
    # charon (responder) establishes the IKE SA and its Child SA; pluto then fails to install ESP on this
    # kernel and deletes its SA, so the proof on charon's side is its log, not a (transient) list-sas.
    log = gw.wait_for_log("CHILD_SA net{1} established", timeout=20)
    assert "selected proposal: IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384" in log
    assert re.search(r"IKE_SA ikg\[1\] established between 192\.0\.2\.1\[gw\.ss-lab\.example\]"
                     r"\.\.\.192\.0\.2\.2\[client\.ss-lab\.example\]", log)
    assert "authentication of 'client.ss-lab.example' with ECDSA_WITH_SHA512_DER successful" in log
    # pluto's side: it verified charon's ECDSA certificate signature and established the IKE SA
    plog = pluto.wait_for_log(re.compile(r"#1: .*established IKE SA"), timeout=10)
    assert "authentication failed" not in plog
    assert pluto.running
    pluto.stop()
    assert pluto.returncode is not None and pluto.pid not in live_plutos()


def test_pluto_with_a_proposal_charon_refuses_gets_no_proposal_chosen(
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    test_pki: TestPki,
    libreswan_peer: Callable[..., LibreswanPeer],
) -> None:
    topo = netns_topology("direct")
    gw = _charon_responder(strongswan_peer, topo, test_pki)
    pluto = _pluto(libreswan_peer, topo, test_pki, ike="aes_gcm128-sha2_256;dh19")
    pluto.initiate("ikg")
    pluto.wait_for_log("NO_PROPOSAL_CHOSEN", timeout=15)
    assert "established IKE SA" not in pluto.log()
    log = gw.log()
    assert "received proposals: IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256" in log
    assert "received proposals unacceptable" in log
    assert gw.list_sas() == []



def test_pluto_initiator_completes_ike_auth_with_the_ikeguard_responder(
    netns_topology: Callable[..., Topology],
    ikeguard_gateway: Callable[..., GatewayProcess],
    test_pki: TestPki,
    libreswan_peer: Callable[..., LibreswanPeer],
) -> None:
    """Issue 6 item 8: pluto -> ikeguard responder, ECDSA P-384 certificates both ways."""
    topo = netns_topology("direct")
    config = gateway_toml(
        [IkgConnection("clients", local_addrs=["192.0.2.1"], remote_addrs=["%any"],
                       local=IkgLocal(id=GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote(id=CLIENT_FQDN, cacerts=["test-ca"], revocation="relaxed"),
                       children=[IkgChild("net", local_ts=[GW_NET], remote_ts=[CLIENT_NET],
                                          esp_proposals=["aes256gcm16"])])],
        authorities=[IkgAuthority("test-ca", cacert="pki/ca.pem")],
    )
    files = {"pki/gw.pem": test_pki.gw.cert_pem(), "pki/gw.key": test_pki.gw.key_pem(),
             "pki/ca.pem": test_pki.ca.issued.cert_pem()}
    gw = ikeguard_gateway(topo.right.namespace, "gw", config, files)
    pluto = _pluto(libreswan_peer, topo, test_pki)
    pluto.initiate("ikg")

    plog = pluto.wait_for_log(re.compile(r"#1: initiator established IKE SA"), timeout=15)
    established = next(line for line in plog.splitlines() if "#1: initiator established IKE SA" in line)
    assert "authenticated peer 'P-384 ECDSA with SHA2_384' digital signature" in established
    assert f"'@{GW_FQDN}'" in established and "CN=ikeguard test root CA" in established
    assert "{cipher=AES_GCM_16_256 integ=n/a prf=HMAC_SHA2_384 group=DH20}" in plog
    # pluto tried to install its outbound ESP SA (towards us): that SPI is ikeguard's inbound SPI
    out_spi = re.search(r"Add SA esp\.([0-9a-f]+)@192\.0\.2\.1", plog)
    assert out_spi is not None

    # pluto prints SPIs without leading zeros (esp.101d666), ikeguard with 8 hex digits: compare numbers
    spi = int(out_spi[1], 16)
    sas = gw.wait_sas(lambda sas: any(int(c["spi_in"], 16) == spi for sa in sas for c in sa["children"]),
                      timeout=10, what="the Child SA pluto negotiated")
    sa = next(sa for sa in sas if any(int(c["spi_in"], 16) == spi for c in sa["children"]))
    assert sa["state"] == "established" and sa["initiator"] is False
    assert sa["remote_id"] == CLIENT_FQDN and sa["local_id"] == GW_FQDN
    assert sa["proposal"] == "aes256gcm16-prfsha384-ecp384"
    child = sa["children"][0]
    assert child["state"] == "installed" and child["proposal"] == "aes256gcm16"
    assert child["local_ts"] == [GW_NET] and child["remote_ts"] == [CLIENT_NET]
    events = gw.audit_events()
    validated = [e for e in events
                 if e["event"] == "cert.validated" and e.get("ike_uniqueid") == sa["uniqueid"]]
    assert validated and validated[0]["outcome"] == "success"
    assert any(e["event"] == "auth.success" and e.get("remote_id") == CLIENT_FQDN for e in events)


def test_pluto_psk_initiator_with_the_ikeguard_responder(
    netns_topology: Callable[..., Topology],
    ikeguard_gateway: Callable[..., GatewayProcess],
    libreswan_peer: Callable[..., LibreswanPeer],
) -> None:
    """The PSK path of the harness (authby=secret, ipsec.secrets) against ikeguard; a wrong PSK is refused."""
    topo = netns_topology("direct")
    psk = IkgSecret("client", ids=[CLIENT_FQDN], secret="libreswan-interop-psk-2f9c1e7a4b6d8035")
    config = gateway_toml(
        [IkgConnection("clients", local_addrs=["192.0.2.1"], remote_addrs=["%any"],
                       local=IkgLocal("psk", id=GW_FQDN), remote=IkgRemote("psk", id=CLIENT_FQDN),
                       children=[IkgChild("net", local_ts=[GW_NET], remote_ts=[CLIENT_NET],
                                          esp_proposals=["aes256gcm16"])])],
        secrets=[psk],
    )
    gw = ikeguard_gateway(topo.right.namespace, "gw", config, secret_files([psk]))

    def conn(name: str) -> LibreswanConn:
        return LibreswanConn(name, left="192.0.2.2", leftid=f"@{CLIENT_FQDN}", leftsubnet=CLIENT_NET,
                             right="192.0.2.1", rightid=f"@{GW_FQDN}", rightsubnet=GW_NET, authby="secret")

    pluto = libreswan_peer(topo.left.namespace, "pluto", connections=[conn("ikg")],
                           psks=[(f"@{CLIENT_FQDN}", f"@{GW_FQDN}", psk.secret)])
    pluto.initiate("ikg")
    plog = pluto.wait_for_log(re.compile(r"#1: initiator established IKE SA"), timeout=15)
    assert f"authenticated peer using authby=secret and ID_FQDN '@{GW_FQDN}'" in plog
    sas = gw.wait_sas(lambda sas: any(sa["remote_id"] == CLIENT_FQDN for sa in sas), timeout=10)
    assert sas[0]["proposal"] == "aes256gcm16-prfsha384-ecp384"

    bad = libreswan_peer(topo.left.namespace, "pluto-bad", connections=[conn("bad")],
                         psks=[(f"@{CLIENT_FQDN}", f"@{GW_FQDN}", "not-the-right-psk-0000000000000000")],
                         start=False)
    pluto.stop()  # one pluto per namespace (UDP 500)
    bad.start()
    bad.initiate("bad")
    bad.wait_for_log("AUTHENTICATION_FAILED", timeout=15)
    failure = gw.wait_audit(lambda e: e["event"] == "auth.failure", timeout=10)
    assert failure["outcome"] == "failure" and failure.get("remote_id") == CLIENT_FQDN
