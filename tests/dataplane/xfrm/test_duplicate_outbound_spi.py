"""Issue 13 S3 on the XFRM plane (against ``memkernel``, which keys states as the kernel does: destination and
SPI): two peers choosing the same outbound SPI.

At different addresses the kernel holds two distinct states and each stays bound to its own Child SA:
deleting one deletes that state only (before the fix the plane kept one entry per SPI, so deleting Child SA 3
deleted the state of Child SA 4 and left Child SA 3's keys encrypting). Behind one address (one NAT) the two
would need the same kernel state: the second Child SA is refused with a reason naming the first, and the
cleanup of the refused Child SA removes nothing of the first one.
"""

from __future__ import annotations

import ipaddress

import pytest

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    InstallFailed,
    LifetimeReached,
    SaDirection,
    SaEndpoint,
)
from ikeguard.dataplane.xfrm import XFRM_FEATURES, XfrmDataPlane
from ikeguard.dataplane.xfrm.structs import (
    XFRM_MSG_EXPIRE,
    LifetimeCfg,
    LifetimeCur,
    Selector,
    UsersaInfo,
    XfrmId,
)
from ikeguard.policy.ts import TrafficSelector
from tests.dataplane.xfrm.memkernel import MemKernel
from tests.dataplane.xfrm.sas import GW, PEER, gcm_udp_sa

SHARED = 0xC0FFEE01
PEER2 = ipaddress.ip_address("203.0.113.3")
NET2 = (TrafficSelector.for_network(ipaddress.ip_network("198.51.100.192/26")),)


def _plane() -> tuple[XfrmDataPlane, MemKernel, list[DataPlaneEvent]]:
    kernel = MemKernel()
    plane = XfrmDataPlane(features=XFRM_FEATURES, sock=kernel, monitor=kernel)
    events: list[DataPlaneEvent] = []
    plane.subscribe(events.append)
    return plane, kernel, events


def _second_peer(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 port: int = 4500) -> dict[str, object]:
    return {"destination": SaEndpoint(address, port), "remote_ts": NET2, "child_uniqueid": 4}


def test_two_peers_at_different_addresses_keep_their_own_states() -> None:
    plane, kernel, events = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED))  # Child SA 3 -> PEER
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED, **_second_peer(PEER2)))  # Child SA 4 -> PEER2
    assert {(PEER, SHARED), (PEER2, SHARED)} <= set(kernel.states)
    kernel.count(PEER2, SHARED, 500, 5, (0, 0, 0))
    counters = plane.counters(SHARED, SaDirection.OUTBOUND, 4)
    assert counters is not None and counters.packets == 5
    with pytest.raises(DataPlaneError, match="name the Child SA"):
        plane.delete_sa(SHARED, SaDirection.OUTBOUND)  # an SPI alone is ambiguous: refused, never guessed
    assert plane.delete_sa(SHARED, SaDirection.OUTBOUND, 3) is not None
    assert (PEER, SHARED) not in kernel.states  # Child SA 3's keys are gone from the kernel ...
    assert (PEER2, SHARED) in kernel.states  # ... and Child SA 4's state is untouched
    assert plane.delete_sa(SHARED, SaDirection.OUTBOUND, 3) is None
    assert plane.counters(SHARED, SaDirection.OUTBOUND, 4) is not None
    # a kernel EXPIRE of Child SA 4's state names Child SA 4
    state = UsersaInfo(Selector(), XfrmId(PEER2, SHARED), GW, 2, lft=LifetimeCfg(900, 1000),
                       curlft=LifetimeCur(950, 3))
    kernel.events.append((XFRM_MSG_EXPIRE, state.pack() + b"\x01" + bytes(7)))
    assert plane.poll_events() == 1
    assert events[-1] == LifetimeReached(SHARED, SaDirection.OUTBOUND, True, "bytes", 4)
    assert plane.counters(SHARED, SaDirection.OUTBOUND, 4) is None  # the kernel removed it


def test_two_peers_behind_one_address_with_the_same_spi_second_refused_first_kept() -> None:
    plane, kernel, events = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED))  # Child SA 3 -> PEER:31337
    kernel.log.clear()
    with pytest.raises(DataPlaneError, match="already used by Child SA 3"):
        plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED, **_second_peer(PEER, 40001)))
    assert "NEWSA" not in kernel.log  # refused before the kernel was asked
    (failed,) = [e for e in events if isinstance(e, InstallFailed)]
    assert (failed.spi, failed.direction, failed.child_uniqueid) == (SHARED, SaDirection.OUTBOUND, 4)
    assert "two peers behind one address" in failed.reason
    # the engine deletes the refused Child SA: its outbound delete must not touch Child SA 3's state
    assert plane.delete_sa(SHARED, SaDirection.OUTBOUND, 4) is None
    assert (PEER, SHARED) in kernel.states and "DELSA" not in kernel.log
    assert plane.counters(SHARED, SaDirection.OUTBOUND, 3) is not None


def test_moving_an_sa_onto_another_child_sas_state_is_refused() -> None:
    plane, kernel, _ = _plane()
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED))  # Child SA 3 -> PEER
    plane.add_sa(gcm_udp_sa(SaDirection.OUTBOUND, spi=SHARED, **_second_peer(PEER2)))  # Child SA 4 -> PEER2
    with pytest.raises(DataPlaneError, match="already used by Child SA 3"):
        plane.update_sa_addresses((SHARED,), SaEndpoint(GW, 4500), SaEndpoint(PEER, 4500), True, {4})
    assert {(PEER, SHARED), (PEER2, SHARED)} <= set(kernel.states)
    # moving Child SA 3's IKE SA elsewhere moves only Child SA 3's state
    new = ipaddress.ip_address("203.0.113.9")
    plane.update_sa_addresses((SHARED,), SaEndpoint(GW, 4500), SaEndpoint(new, 4500), True, {3})
    assert (new, SHARED) in kernel.states and (PEER2, SHARED) in kernel.states
    assert (PEER, SHARED) not in kernel.states
