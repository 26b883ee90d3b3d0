"""A running gateway exports data-plane drops that belong to no SA as
``ikeguard_dataplane_drops_total{reason}`` (in-process: tests/control/test_metrics_dataplane_drops.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.service.gwconfig import GwConfig

GatewayFactory = Callable[..., GatewayProcess]
METRICS = "127.0.0.1:9471"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.mark.root
@pytest.mark.interop
def test_running_gateway_exports_esp_drops_without_an_sa(
    netns_topology: Callable[..., Topology], ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    config = GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet), str(left.subnet),
                      psk="drops-metric-psk-6c1f0e9a2b7d", dataplane="userspace",
                      extra_gateway=f'metrics = "{METRICS}"')
    ikeguard_gateway(right.namespace, "gw", config.text(), {"psk.txt": "drops-metric-psk-6c1f0e9a2b7d\n"})

    def scrape() -> Samples:
        body = right.namespace.run("curl", "-sf", f"http://{METRICS}/metrics").stdout
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body) for s in family.samples}

    def drops() -> dict[str, float]:
        return {dict(labels)["reason"]: v for (name, labels), v in scrape().items()
                if name == "ikeguard_dataplane_drops_total"}

    assert drops() == {}
    # ESP-in-UDP (RFC 3948) to the gateway's NAT-T port: three for an unknown SPI, two too short to be ESP
    script = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "esp, short = bytes.fromhex('deadbeef00000001') + bytes(40), bytes(range(1, 6))\n"
              "for p in [esp] * 3 + [short] * 2:\n"
              "    s.sendto(p, (sys.argv[1], 4500))")
    left.namespace.run(sys.executable, "-c", script, str(right.address))
    assert wait_until(lambda: drops() == {"unknown_spi": 3, "malformed": 2}, 10), drops()
