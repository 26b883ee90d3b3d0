"""Data-plane drops that belong to no SA (``no_policy``, ``no_sa``, ``unknown_spi``, ``malformed``) are
exported as ``ikeguard_dataplane_drops_total{reason}`` (never per SA); ``ikeguard sas`` shows each Child SA's
own drops."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Any

from rich.console import Console

from ikeguard.control.cli_gateway import sas_table
from ikeguard.control.metrics import GatewayCollector, dataplane_drops
from ikeguard.dataplane.table import SaTable
from ikeguard.policy.ts import TrafficSelector
from ikeguard.service.familyplanes import FamilyPlanes
from ikeguard.service.stats import GatewayStats
from ikeguard.tools.gateway_process import GatewayProcess
from tests.control.recording import RecordingGateway

GatewayFactory = Callable[..., GatewayProcess]
METRICS = "127.0.0.1:9471"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
NET_A = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/25"))
NET_B = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.128/25"))


def _udp4(src: str, dst: str) -> bytes:
    """A minimal IPv4/UDP packet as the TUN hands it to the data plane."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return header + struct.pack("!HHHH", 1234, 53, 8, 0)


class _Plane:
    """What the userspace data plane is to the metrics: an object holding its SaTable."""

    def __init__(self, table: SaTable) -> None:
        self.table = table


def _samples(collector: GatewayCollector) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect() for s in family.samples}


def test_drops_without_an_sa_are_counted_by_reason_only() -> None:
    v4, v6 = SaTable(), SaTable()
    v4.outbound(_udp4("198.51.100.1", "203.0.113.9"))  # no policy covers it
    v4.add_policy(7, (NET_A,), (NET_B,))  # a policy whose Child SA has no outbound SA: fail closed
    for _ in range(3):
        v4.outbound(_udp4("198.51.100.1", "198.51.100.200"))
    v6.inbound(b"\xde\xad\xbe\xef" + bytes(12))  # ESP for an SPI nobody has
    v6.inbound(b"\x01\x02\x03")  # too short to be ESP
    planes = FamilyPlanes({4: _Plane(v4), 6: _Plane(v6)})  # type: ignore[dict-item]
    assert dataplane_drops(planes) == {"no_policy": 1, "no_sa": 3, "unknown_spi": 1, "malformed": 1}
    assert dataplane_drops(_Plane(v4)) == {"no_policy": 1, "no_sa": 3}
    assert dataplane_drops(None) == {}  # dataplane = "none": nothing counted, nothing made up

    gw = RecordingGateway([])
    gw.stats = GatewayStats()
    gw.conns = lambda: []  # type: ignore[method-assign]
    gw.dataplane = planes  # type: ignore[attr-defined]
    samples = _samples(GatewayCollector(gw))
    drops = {k: v for k, v in samples.items() if k[0] == "ikeguard_dataplane_drops_total"}
    assert drops == {("ikeguard_dataplane_drops_total", (("reason", r),)): n
                     for r, n in (("malformed", 1), ("no_policy", 1), ("no_sa", 3), ("unknown_spi", 1))}


def test_sas_table_shows_a_childs_drops() -> None:
    child: dict[str, Any] = {"name": "net", "uniqueid": 2, "state": "installed", "spi_in": "c1a2b3c4",
                             "spi_out": "0badcafe", "local_ts": ["198.51.100.0/25"],
                             "remote_ts": ["198.51.100.128/25"], "drops": {"in": {"replay": 4, "icv": 1},
                                                                          "out": {}}}
    quiet = dict(child, uniqueid=3, drops={"in": {}, "out": {}})
    sa = {"uniqueid": 1, "name": "ikg", "state": "established", "children": [child, quiet]}
    console = Console(width=220, record=True)
    console.print(sas_table([sa]))
    text = console.export_text()
    assert "drops in icv 1, replay 4" in text
    assert text.count("drops") == 1  # a Child SA without drops gets no drops line
