"""Issue 22 item 1: ``metrics`` with ``[gateway] workers = 2`` against two strongSwan peers whose IKE SAs
live in different workers (peer A masqueraded as 192.0.2.2: worker 0; peer B from 192.0.2.3: worker 1, as in
test_workers.py). One endpoint for the whole gateway (control/metrics_workers.py): the SA gauge is the sum
(2), the IKE_AUTH counter the sum of both workers'; after SIGKILL of worker 1 and its restart its SA's live
gauges are gone while the counters keep what the dead worker had counted.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.tools.netns import Host, Topology, wait_until
from tests.harness.interop_pair import GatewayFactory, PeerFactory, ikeguard_side, strongswan_side

pytestmark = [pytest.mark.root, pytest.mark.interop]

B_ADDRESS, B_INNER = "192.0.2.3", "198.51.100.250"
METRICS = "127.0.0.1:9469"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _worker(sa: dict[str, object]) -> int:
    return int(str(sa["spi_r"]).removeprefix("0x")[:2], 16)


def _worker_pids(log: str) -> dict[int, int]:
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", log)}


def _scrape(topo: Topology) -> Samples:
    body = topo.right.namespace.run("curl", "-sf", "--max-time", "20", f"http://{METRICS}/metrics").stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sample's value; 0 when absent (a gauge with no SA has no series)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_one_metrics_endpoint(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("nat")
    router = topo.router
    assert router is not None
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any",
                       gateway_keys={"workers": 2, "metrics": METRICS})
    pids = _worker_pids(gw.log())
    assert sorted(pids) == [0, 1], gw.log_tail()

    peer_a = strongswan_side(strongswan_peer, left, right)
    router.add_address("outside", f"{B_ADDRESS}/24")
    router.run("nft", "insert", "rule", "inet", "ikg_nat", "postrouting", "ip", "saddr", B_ADDRESS, "accept")
    router.add_address("lo", f"{B_INNER}/32")
    b_host = Host(router, "outside", ipaddress.IPv4Address(B_ADDRESS), left.address6,
                  ipaddress.IPv4Network(f"{B_INNER}/32"), ipaddress.IPv4Address(B_INNER), left.subnet6,
                  left.subnet_address6)
    peer_b = strongswan_side(strongswan_peer, b_host, right, name="ssb", conn={"unique": "never"})
    peer_a.initiate(child="net", ike="ikg")
    peer_b.initiate(child="net", ike="ikg")
    sas = gw.wait_sas(lambda sas: len(sas) == 2 and all(sa["children"] for sa in sas), timeout=15)
    assert sorted(_worker(sa) for sa in sas) == [0, 1]
    sa_b = next(sa for sa in sas if sa["remote_addr"] == B_ADDRESS)
    group = {"connection": "ikg", "peer_group": str(sa_b["remote_id"])}

    # one endpoint, the sums of both workers
    scraped = _scrape(topo)
    assert _value(scraped, "ikeguard_ike_sas", **group, state="established") == 2, scraped
    assert _value(scraped, "ikeguard_child_sas", **group, state="installed") == 2
    assert _value(scraped, "ikeguard_connection_up", **group) == 1
    assert _value(scraped, "ikeguard_connection_configured", **group) == 1
    auth = {"connection": "ikg", "exchange": "IKE_AUTH", "outcome": "success"}
    assert _value(scraped, "ikeguard_ike_exchanges_total", **auth) == 2
    assert (_value(scraped, "ikeguard_workers"), _value(scraped, "ikeguard_workers_answering")) == (2, 2)
    assert _value(scraped, "ikeguard_metrics_snapshot_ok") == 1

    # SIGKILL worker 1: once restarted, its SA's live gauges are gone; its counted exchanges are kept
    os.kill(pids[1], signal.SIGKILL)
    assert wait_until(lambda: _worker_pids(gw.log()).get(1, pids[1]) != pids[1], 10), gw.log_tail()

    def settled() -> bool:
        now = _scrape(topo)
        return _value(now, "ikeguard_workers_answering") == 2 and _value(
            now, "ikeguard_ike_sas", **group, state="established") == 1

    assert wait_until(settled, 20), gw.log_tail()
    after = _scrape(topo)
    assert _value(after, "ikeguard_child_sas", **group, state="installed") == 1
    assert _value(after, "ikeguard_ike_exchanges_total", **auth) == 2
    assert _value(after, "ikeguard_connection_up", **group) == 1
