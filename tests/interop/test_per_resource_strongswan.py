"""Issue 22 / RFC 9611: an ikeguard initiator configured for per-resource Child SAs (``per_resource_sas = 2``)
against strongSwan 5.9 (no RFC 9611 support: it ignores the SA_RESOURCE_INFO status notify). The fallback
Child SA is the only one, on both sides, and carries traffic; ikeguard requests no more Child SAs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.interop_scenarios import SUITES, PairSpec, assert_same_sa, start_pair
from tests.harness.strongswan import StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_peer_without_rfc9611_keeps_the_fallback_sa_only(
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess],
) -> None:
    spec = PairSpec("initiator", "psk", SUITES["gcm"], dataplane="userspace",
                    ikg_child={"extra": {"per_resource_sas": 2}})
    pair = start_pair(netns_topology, strongswan_peer, ikeguard_gateway, spec)
    pair.initiate()
    ss, ikg = pair.settled()
    assert_same_sa(ss, ikg, spec.suite)
    assert " 0% packet loss" in pair.ping(2)
    assert len(pair.peer.list_sas()[0].children) == 1
    (ikg_child,) = pair.gw.sas()[0]["children"]
    assert ikg_child["packets_out"] >= 2 and ikg_child["packets_in"] >= 2
    assert not [e for e in pair.gw.audit_events() if e["event"] == "child.failed"]
    # strongSwan did receive the notify (it names unknown types by number) and answered without it
    (parsed,) = [line for line in pair.peer.log().splitlines() if "parsed IKE_AUTH request" in line]
    assert "N((16444))" in parsed
    (answer,) = [line for line in pair.peer.log().splitlines() if "generating IKE_AUTH response" in line]
    assert "16444" not in answer and "CREATE_CHILD_SA" not in pair.peer.log()
