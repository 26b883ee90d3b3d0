"""The gateway's ``dataplane = "none"`` (IKE-only gateways, benchmarks) holds state for the SAs it has, not
for every SA it ever had: a gateway rekeying thousands of Child SAs an hour for months must not grow."""

from __future__ import annotations

import ipaddress
import tracemalloc

from ikeguard.dataplane.base import SaConfig, SaDirection, SaEndpoint
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId

GW = SaEndpoint(ipaddress.ip_address("192.0.2.1"))
PEER = SaEndpoint(ipaddress.ip_address("198.51.100.7"))
LOCAL = TrafficSelector.for_network(ipaddress.ip_network("192.0.2.0/25"))
REMOTE = TrafficSelector.for_network(ipaddress.ip_network("203.0.113.0/24"))


def _child_sa(plane: NoneDataPlane, child: int) -> None:
    """One Child SA's life as the engine drives it: an inbound SPI allocated, both directions installed,
    both deleted."""
    inbound = plane.alloc_spi()
    outbound = 0x1000 + child
    for spi, direction, src, dst in ((inbound, SaDirection.INBOUND, PEER, GW),
                                     (outbound, SaDirection.OUTBOUND, GW, PEER)):
        plane.add_sa(SaConfig(spi, direction, EncrId.AES_GCM_16, 256, 0, bytes(36), b"", src, dst,
                              (LOCAL,), (REMOTE,), child_uniqueid=child))
    assert plane.alloc_spi() != inbound  # an installed inbound SPI is never handed out again
    plane.delete_sa(inbound, SaDirection.INBOUND, child)
    plane.delete_sa(outbound, SaDirection.OUTBOUND, child)


def test_a_deleted_child_sa_leaves_nothing_behind() -> None:
    plane = NoneDataPlane(record_calls=False)
    for child in range(1, 201):  # warm up allocator free lists
        _child_sa(plane, child)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for child in range(201, 5201):
            _child_sa(plane, child)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename")
                if s.traceback[0].filename.endswith("none.py"))
    assert plane.sas == {}
    assert grown < 8 * 1024, f"the none plane grew by {grown} octets over 5,000 Child SAs that are gone"
