"""The strongSwan 6.1 fixture (tests/harness/strongswan61.py): a chroot-built charon with ML-KEM in a netns.

Proves the peer the post-quantum interop tests rely on: it is strongSwan 6.1, its plugins register ML-KEM
(``swanctl --list-algs``), and two such peers establish an RFC 9370 hybrid IKE SA (ECDH + ML-KEM-768 in
IKE_INTERMEDIATE) whose list-sas names the additional key exchange.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ikeguard.tools.netns import Topology
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan61 import StrongSwan61Peer
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret

pytestmark = [pytest.mark.root, pytest.mark.interop]

PROPOSAL = "aes256gcm16-prfsha384-ecp384-ke1_mlkem768"


def _conn(local: str, remote: str, me: str, peer: str, lsub: str, rsub: str) -> ConnectionConfig:
    return ConnectionConfig(
        local_addrs=[local], remote_addrs=[remote],
        local=AuthConfig("psk", me), remote=AuthConfig("psk", peer),
        proposals=[PROPOSAL],
        children=[ChildConfig(local_ts=[lsub], remote_ts=[rsub], esp_proposals=["aes256gcm16"])],
    )


def test_strongswan61_lists_ml_kem_and_establishes_a_hybrid_sa(
    strongswan61_peer: Callable[..., StrongSwan61Peer], netns_topology: Callable[..., Topology]
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    psk = [PskSecret(ids=[GW_FQDN, CLIENT_FQDN], secret="0sc3Ryb25nU3dhbjYxLWhhcm5lc3M=")]
    l_addr, r_addr, l_sub, r_sub = str(left.address), str(right.address), str(left.subnet), str(right.subnet)
    gw = strongswan61_peer(right.namespace, "gw", psks=psk, connections=[
        _conn(r_addr, l_addr, GW_FQDN, CLIENT_FQDN, r_sub, l_sub)])
    client = strongswan61_peer(left.namespace, "client", psks=psk, connections=[
        _conn(l_addr, r_addr, CLIENT_FQDN, GW_FQDN, l_sub, r_sub)])
    assert gw.version().startswith("6.1"), gw.version()
    algs = gw.list_algs()
    assert "ML_KEM_768" in algs and "ML_KEM_1024" in algs, algs

    client.initiate(child="net", ike="ikg")
    sa = gw.wait_established("ikg", "net", timeout=10)
    assert sa.dh_group == "ECP_384" and sa.additional_key_exchanges == {1: "ML_KEM_768"}, sa.raw
    listing = gw.swanctl("--list-sas").stdout
    assert "ECP_384/KE1_ML_KEM_768" in listing, listing
