"""The libreswan harness against strongSwan: pluto (initiator) completes IKE_AUTH with charon (responder).

ECDSA P-384 certificates from the test PKI, AES-GCM-256 / PRF-SHA384 / ECP-384. charon establishes the IKE SA
and its Child SA; pluto authenticates charon and then cannot install ESP on this kernel (XFRM without ESP),
so the proof on pluto's side is its log plus what charon reports (see tests/harness/libreswan.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ikeguard.tools.netns import Topology
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

