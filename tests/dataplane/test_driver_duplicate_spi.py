"""Issue 13 S3 between the engine and the data plane: the service's ``ChildSaDriver`` names the Child SA in
every data-plane call, so a gateway with two peers using the same outbound SPI (the engine Lab of
tests/engine/test_duplicate_peer_spi.py: real engines, both peers forced to the same SPI) installs, moves
(NAT mapping change, RFC 7296 §2.23), counts, routes upcalls for, and deletes each peer's SA on its own.

The data plane is the userspace ``SaTable`` behind a thin adapter (the userspace plane without its TUN,
routes and socket)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from ikeguard.dataplane.base import SaConfig, SaCounters, SaDirection, SaEndpoint
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.engine.events import DeleteChildSa, Direction, Endpoint, InstallChildSa, UpdateSaAddresses
from ikeguard.policy.ts import TrafficSelector
from ikeguard.service.outputs import ChildSaDriver
from ikeguard.service.stats import GatewayStats
from tests.dataplane.packets import udp4
from tests.engine.test_duplicate_peer_spi import GW, GW_HOST, PEERS, Lab

MOVED = Endpoint(ipaddress.ip_address("192.0.2.77"), 34567)


class TablePlane:
    """The DataPlane calls ChildSaDriver makes, on a real SaTable."""

    def __init__(self) -> None:
        self.table = SaTable()

    def add_sa(self, sa: SaConfig) -> None:
        self.table.add_sa(sa)

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        return self.table.delete_sa(spi, direction, child_uniqueid)

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint, encap: bool,
                            children: Collection[int] | None = None) -> None:
        self.table.update_sa_addresses(spis, local, remote, children)

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        self.table.add_policy(child_uniqueid, local_ts, remote_ts)

    def remove_policy(self, child_uniqueid: int) -> None:
        self.table.remove_policy(child_uniqueid)

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        return self.table.counters(spi, direction, child_uniqueid)


def test_the_driver_keeps_two_peers_with_one_outbound_spi_apart() -> None:
    lab = Lab()
    lab.up("p1")
    lab.up("p2")
    c1, c2 = lab.gw_child("p1"), lab.gw_child("p2")
    shared = c1.spi_out
    assert c2.spi_out == shared and c1.uniqueid != c2.uniqueid
    plane = TablePlane()
    driver = ChildSaDriver(plane, GatewayStats())  # type: ignore[arg-type]
    for event in lab.events["gw"]:
        if isinstance(event, InstallChildSa):
            assert driver.install(event, event.child_name) is None
    peers = {name: SaTable() for name in PEERS}
    for name, table in peers.items():
        for event in lab.events[name]:
            if isinstance(event, InstallChildSa):
                table.add_sa(SaConfig.from_install(event))

    def to_peer(name: str) -> Send | None:
        sent = plane.table.outbound(udp4(GW_HOST, PEERS[name][2], 1, 2, b"x"))
        assert sent is None or isinstance(sent, Send)
        if sent is not None:
            assert peers[name].inbound(sent.data) is not None  # sealed with this peer's own keys
        return sent

    first, second = to_peer("p1"), to_peer("p2")
    assert first is not None and first.destination.address == PEERS["p1"][0].address
    assert second is not None and second.destination.address == PEERS["p2"][0].address

    # P1's NAT mapping changes: its IKE SA's SAs move, P2's SA with the same outbound SPI does not
    (sa1,) = [s for s in lab.gw.ike_sas() if s.remote.address == PEERS["p1"][0].address]
    driver.update_addresses(UpdateSaAddresses(sa1.uniqueid, GW, MOVED, True, ((c1.spi_in, c1.spi_out),)))
    moved, kept = to_peer("p1"), to_peer("p2")
    assert moved is not None and moved.destination == SaEndpoint(MOVED.address, MOVED.port)
    assert kept is not None and kept.destination.address == PEERS["p2"][0].address

    # upcalls (lifetimes, sequence numbers) name the Child SA: each reaches its own, an SPI alone none
    assert driver.inbound_spi_for(shared, SaDirection.OUTBOUND, c2.uniqueid) == c2.spi_in
    assert driver.inbound_spi_for(shared, SaDirection.OUTBOUND, c1.uniqueid) == c1.spi_in
    assert driver.inbound_spi_for(shared, SaDirection.OUTBOUND) is None  # ambiguous: never a guess
    assert driver.inbound_spi_for(c1.spi_in, SaDirection.INBOUND) == c1.spi_in
    out1 = driver.counters(shared, inbound=False, child_uniqueid=c1.uniqueid)
    out2 = driver.counters(shared, inbound=False, child_uniqueid=c2.uniqueid)
    assert out1 is not None and out2 is not None and (out1.packets, out2.packets) == (2, 2)
    assert driver.counters(shared, inbound=False) is None  # the plane refuses the ambiguous SPI

    # P1's Child SA is deleted (both directions, as the engine emits it): only P1's traffic stops
    for direction in ("in", "out"):
        spi = c1.spi_in if direction == "in" else c1.spi_out
        driver.delete(DeleteChildSa(sa1.uniqueid, c1.uniqueid, Direction(direction), spi, "deleted by peer"))
    driver.child_gone(c1.uniqueid)
    assert to_peer("p1") is None and plane.table.drops == {"no_sa": 1}
    assert to_peer("p2") is not None
    assert driver.counters(shared, inbound=False, child_uniqueid=c2.uniqueid) is not None
    assert driver.inbound_spi_for(shared, SaDirection.OUTBOUND) == c2.spi_in  # unambiguous again
