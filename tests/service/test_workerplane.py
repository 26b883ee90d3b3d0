"""service/workerplane.py pieces without processes: an SA survives the JSON hand-off to the machine's plane
exactly, lifetime upcalls come back as the gateway's events, and inbound SPIs of different IKE workers never
collide while each lands on the ESP worker its SPI steers to (the real thing: tests/interop/
test_workers_userspace.py)."""

from __future__ import annotations

import dataclasses
import ipaddress
import multiprocessing as mp
from pathlib import Path
from typing import Any

from ikeguard.dataplane.base import LifetimeReached, SaConfig, SaDirection, SaEndpoint, SequenceNearOverflow
from ikeguard.dataplane.userspace.commands import _event_json
from ikeguard.dataplane.userspace.config import sa_from_json, sa_to_json
from ikeguard.dataplane.userspace.steering import worker_of_spi
from ikeguard.policy.ts import TrafficSelector
from ikeguard.service.workerplane import PlaneChannel, PlaneClient, PlaneHost, event_from_json


def _sa() -> SaConfig:
    net = ipaddress.ip_network("198.51.100.0/25")
    return SaConfig(
        spi=0xC0FFEE01, direction=SaDirection.OUTBOUND, encr_id=20, encr_key_bits=256, integ_id=0,
        encr_key=bytearray(range(36)), integ_key=bytearray(),
        source=SaEndpoint(ipaddress.ip_address("192.0.2.1"), 4500),
        destination=SaEndpoint(ipaddress.ip_address("2001:db8::2"), 31000),
        local_ts=(TrafficSelector.for_network(net, protocol=6, start_port=80, end_port=80),),
        remote_ts=(TrafficSelector(4, 1, 0xFFFF, 17, 65535, 0),),  # a range, OPAQUE ports
        esn=True, encap=True, replay_window=128, ike_uniqueid=3, child_uniqueid=7, child_name="net",
        soft_bytes=10, hard_bytes=20, soft_packets=30, hard_packets=40, seq_out=99, replay_top=5)


def test_sa_json_round_trip_is_exact() -> None:
    sa = _sa()
    back = sa_from_json(sa_to_json(sa))
    assert back == sa and back.encr_key == sa.encr_key


def test_upcalls_come_back_as_events() -> None:
    for event in (LifetimeReached(0x1234, SaDirection.INBOUND, True, "bytes", 9),
                  SequenceNearOverflow(0x99, False, 4)):
        assert event_from_json(_event_json(event)) == event


def test_inbound_spis_partitioned_by_ike_worker() -> None:
    here, _there = mp.Pipe()
    seen: dict[int, int] = {}
    for esp_workers in (1, 2, 3):
        for worker in range(3):
            client = PlaneClient(PlaneChannel(here), 4, worker, 3, esp_workers)
            for _ in range(200):
                spi = client.alloc_spi()
                assert 0x100 <= spi < 1 << 32 and (spi // esp_workers) % 3 == worker
                assert seen.setdefault(spi, worker) == worker
                assert 0 <= worker_of_spi(spi, esp_workers) < esp_workers


class _Recorder(PlaneChannel):
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def ask(self, version: int, cmd: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(cmd)
        return {"ok": True}


def test_outbound_sas_alternate_over_esp_workers() -> None:
    """IKE worker 1 of 2 numbers its Child SAs 2, 4, 6, ...: they alternate over 2 ESP workers."""
    channel = _Recorder()
    client = PlaneClient(channel, 4, 1, 2, 2)
    owners = []
    for child in (2, 4, 6, 8):
        client.add_sa(dataclasses.replace(_sa(), child_uniqueid=child))
        owners.append(channel.sent[-1]["sa"]["worker"])
    assert owners == [0, 1, 0, 1]
    client.add_sa(dataclasses.replace(_sa(), direction=SaDirection.INBOUND))
    assert "worker" not in channel.sent[-1]["sa"]  # inbound: where its SPI steers


class _FakePlane:
    version = 4

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(cmd)
        return {"ok": True}


def test_a_dead_workers_sas_and_policies_leave_the_plane_only_its_own(tmp_path: Path) -> None:
    host = PlaneHost({}, 2, 2, tmp_path, lambda index, event: None)
    plane = _FakePlane()
    host.planes[4] = plane  # type: ignore[assignment]
    for worker, child, spi in ((0, 1, 0x1000), (1, 2, 0x2000)):
        for direction in ("in", "out"):
            sa = {**sa_to_json(_sa()), "spi": spi + (direction == "out"), "direction": direction,
                  "child": child}
            assert host.apply(worker, 4, {"op": "add_sa", "sa": sa})["ok"]
    host.apply(1, 4, {"op": "delete_sa", "spi": 0x2000, "direction": "in", "child": 2})
    plane.seen.clear()
    host.forget(1)
    assert plane.seen == [{"op": "delete_sa", "spi": 0x2001, "direction": "out", "child": 2},
                          {"op": "remove_policy", "child": 2}]
    plane.seen.clear()
    host.forget(1)  # idempotent: the successor's attach finds nothing left
    assert plane.seen == [] and host.sas[0] == {(4, 0x1000, "in", 1), (4, 0x1001, "out", 1)}
