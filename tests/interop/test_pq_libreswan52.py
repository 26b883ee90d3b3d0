"""Issue 25 item 3 (libreswan part): RFC 8784 PPK between libreswan 5.2 (Debian 13, from the strongSwan 6.1
chroot; tests/harness/libreswan52.py) as initiator and `ikeguard run` as responder, PSK authentication, IKE
level only (pluto cannot install ESP on this kernel). ``insist`` on both: the IKE SA comes up with the PPK
mixed in; a wrong PPK: AUTHENTICATION_FAILED and an ``auth.failure`` audit record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.netns import Topology
from tests.harness.interop_pair import GatewayFactory, PairSpec, ikeguard_side
from tests.harness.libreswan import LibreswanConn
from tests.harness.libreswan52 import Libreswan52Peer
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN

pytestmark = [pytest.mark.root, pytest.mark.interop]
PSK = "interop-pair-psk-3b8e1f0c9d7a6e52"
PPK_ID = "ppk-libreswan"
PPK = "a post-quantum preshared key of at least 32 characters"


@pytest.mark.parametrize("ppk_matches", [True, False])
def test_ppk_with_libreswan52(ppk_matches: bool, netns_topology: Callable[..., Topology],
                              ikeguard_gateway: GatewayFactory, tmp_path: Path) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, spec=PairSpec(), remote_addr="%any",
                       conn={"extra": {"ppk_id": PPK_ID, "ppk_required": True}},
                       ppks={"lsw": {"id": PPK_ID, "secret": PPK}})
    theirs = PPK if ppk_matches else PPK + " but another one"
    pluto = Libreswan52Peer(left.namespace, tmp_path / "pluto", name="pluto", connections=[LibreswanConn(
        "ikg", left=str(left.address), leftid=f"@{CLIENT_FQDN}", leftsubnet=str(left.subnet),
        right=str(right.address), rightid=f"@{GW_FQDN}", rightsubnet=str(right.subnet), authby="secret",
        extra={"ppk": "insist", "ppk-ids": PPK_ID})],
        psks=[(f"@{CLIENT_FQDN}", f"@{GW_FQDN}", PSK)],
        ppks=[(f"@{CLIENT_FQDN}", f"@{GW_FQDN}", PPK_ID, theirs)])
    try:
        pluto.start()
        pluto.initiate("ikg")
        if ppk_matches:
            sas = gw.wait_sas(lambda s: len(s) == 1 and s[0]["state"] == "established", timeout=15,
                              what="IKE SA from libreswan", conn="ikg")
            assert sas[0]["ppk"] is True, sas
        else:
            event = gw.wait_audit(lambda e: e.get("event") == "auth.failure", timeout=15)
            assert "does not verify" in str(event) or "mismatch" in str(event), event
            assert not [s for s in gw.sas() if s["state"] == "established"]
    finally:
        pluto.stop()
