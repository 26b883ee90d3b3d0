"""Issue 22 item 1: ``metrics`` and ``vici`` with ``[gateway] workers = 2`` against two strongSwan peers
whose IKE SAs live in different workers (peer A masqueraded as 192.0.2.2: worker 0; peer B from 192.0.2.3:
worker 1, as in test_workers.py), one gateway run for all of it:

* one metrics endpoint for the whole gateway (control/metrics_workers.py): the SA gauge is the sum (2), the
  IKE_AUTH counter the sum of both workers';
* Debian's ``swanctl`` against the supervisor's vici socket (control/vici_workers.py): ``--list-sas`` lists
  both SAs, ``--list-conns`` the connection, ``--reload-settings`` reloads both workers, ``--terminate
  --ike-id`` of peer A's SA ends that one only; a ``vici`` package client registered for ``ike-updown`` gets
  both workers' events with the SAs' SPIs;
* after SIGKILL of worker 1 (peer B's SA) and its restart its SA's live gauges are gone while the counters
  keep what the dead worker had counted; peer B's new SA (worker 1 again) is redirected by ``swanctl
  --redirect --ike-id`` (RFC 5685) through the supervisor.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import vici
from prometheus_client.parser import text_string_to_metric_families

from ikeguard.tools.netns import Host, Topology, wait_until
from tests.harness.interop_pair import GatewayFactory, PeerFactory, ikeguard_side, strongswan_side
from tests.harness.strongswan import StrongSwanError
from tests.harness.workers import worker_of, worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]

B_ADDRESS, B_INNER = "192.0.2.3", "198.51.100.250"
METRICS = "127.0.0.1:9469"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SWANCTL = shutil.which("swanctl") or "/usr/sbin/swanctl"


@pytest.fixture
def vici_dir() -> Iterator[Path]:
    """A short private directory for the socket (sun_path is 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ikgwv"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _swanctl(sock: Path, *args: str) -> str:
    done = subprocess.run([SWANCTL, *args, "--uri", f"unix://{sock}"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _scrape(topo: Topology) -> Samples:
    body = topo.right.namespace.run("curl", "-sf", "--max-time", "20", f"http://{METRICS}/metrics").stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def _listen(sock: Path, events: queue.Queue[tuple[str, dict[str, Any]]], listening: threading.Event,
            stop: threading.Event) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        for kind, message in vici.Session(s).listen(["ike-updown"], timeout=0.2):
            listening.set()
            if stop.is_set():
                return
            if kind is not None:
                events.put((kind.decode(), message))


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sample's value; 0 when absent (a gauge with no SA has no series)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_one_metrics_endpoint_and_one_vici_socket(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    vici_dir: Path,
) -> None:
    if not Path(SWANCTL).exists():
        pytest.fail("swanctl is missing (packaging/system-packages.txt)")
    sock = vici_dir / "charon.vici"
    topo = netns_topology("nat")
    router = topo.router
    assert router is not None
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any",
                       gateway_keys={"workers": 2, "metrics": METRICS, "vici": str(sock)})
    pids = worker_pids(gw.log())
    assert sorted(pids) == [0, 1], gw.log_tail()

    peer_a = strongswan_side(strongswan_peer, left, right)
    router.add_address("outside", f"{B_ADDRESS}/24")
    router.run("nft", "insert", "rule", "inet", "ikg_nat", "postrouting", "ip", "saddr", B_ADDRESS, "accept")
    router.add_address("lo", f"{B_INNER}/32")
    b_host = Host(router, "outside", ipaddress.IPv4Address(B_ADDRESS), left.address6,
                  ipaddress.IPv4Network(f"{B_INNER}/32"), ipaddress.IPv4Address(B_INNER), left.subnet6,
                  left.subnet_address6)
    peer_b = strongswan_side(strongswan_peer, b_host, right, name="ssb", conn={"unique": "never"})
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    listening, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=_listen, args=(sock, events, listening, stop), daemon=True)
    listener.start()
    assert listening.wait(10)
    peer_a.initiate(child="net", ike="ikg")
    peer_b.initiate(child="net", ike="ikg")
    sas = gw.wait_sas(lambda sas: len(sas) == 2 and all(sa["children"] for sa in sas), timeout=15)
    assert sorted(worker_of(sa) for sa in sas) == [0, 1]
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

    # swanctl against the one vici socket: both workers' SAs, and the right one terminated
    sa_a = next(sa for sa in sas if sa["remote_addr"] != B_ADDRESS)
    listed = _swanctl(sock, "--list-sas")
    for sa in (sa_a, sa_b):
        assert f"ikg: #{sa['uniqueid']}, ESTABLISHED, IKEv2" in listed, listed
        assert f"{str(sa['spi_r']).removeprefix('0x')}_r" in listed, listed
    assert "ikg: IKEv2" in _swanctl(sock, "--list-conns")
    loaded_before = sum(1 for e in gw.audit_events() if e["event"] == "config.loaded")
    _swanctl(sock, "--reload-settings")  # every worker reloads the file (both SAs stay: nothing changed)
    gw.wait_audit(lambda e: e["event"] == "config.loaded" and sum(
        1 for x in gw.audit_events() if x["event"] == "config.loaded") >= loaded_before + 1, timeout=10)
    ended = _swanctl(sock, "--terminate", "--ike-id", str(sa_a["uniqueid"]))
    assert "terminate completed successfully" in ended, ended
    left_over = gw.wait_sas(lambda sas: len(sas) == 1, timeout=10)
    assert left_over[0]["uniqueid"] == sa_b["uniqueid"]
    # one reload, one record: worker 0 writes it for all (issue 22)
    assert sum(1 for e in gw.audit_events() if e["event"] == "config.loaded") == loaded_before + 1
    assert f"#{sa_b['uniqueid']}," in _swanctl(sock, "--list-sas", "--ike-id", str(sa_b["uniqueid"]))
    # the events of both workers on one vici connection: up (with the SA's view) twice, then A's down
    got: list[tuple[str, dict[str, Any]]] = []
    with contextlib.suppress(queue.Empty):
        while len(got) < 3:
            got.append(events.get(timeout=10))
    stop.set()
    ups = {int(m["ikg"]["uniqueid"]): m["ikg"] for k, m in got if k == "ike-updown" and m.get("up") == b"yes"}
    # (both ups arrive: the supervisor reports ready only once every worker's event stream is open; before
    # that fix an up emitted while the stream was still being opened was never seen)
    assert sorted(ups) == sorted([int(sa_a["uniqueid"]), int(sa_b["uniqueid"])]), got
    for sa in (sa_a, sa_b):
        assert ups[int(sa["uniqueid"])]["responder-spi"].decode() == str(sa["spi_r"]).removeprefix("0x")
    down = next(m for k, m in got if k == "ike-updown" and "up" not in m)
    assert int(down["ikg"]["uniqueid"]) == int(sa_a["uniqueid"])
    listener.join(5)

    # SIGKILL worker 1: once restarted, its SA's live gauges are gone; its counted exchanges are kept
    os.kill(pids[1], signal.SIGKILL)
    assert wait_until(lambda: worker_pids(gw.log()).get(1, pids[1]) != pids[1], 10), gw.log_tail()

    def settled() -> bool:
        now = _scrape(topo)
        return _value(now, "ikeguard_workers_answering") == 2 and _value(
            now, "ikeguard_ike_sas", **group, state="established") == 0

    assert wait_until(settled, 20), gw.log_tail()
    after = _scrape(topo)
    assert _value(after, "ikeguard_child_sas", **group, state="installed") == 0
    assert _value(after, "ikeguard_ike_exchanges_total", **auth) == 2  # the dead worker's count is kept
    assert _value(after, "ikeguard_connection_up", **group) == 0
    assert "ikg: #" not in _swanctl(sock, "--list-sas")

    # peer B again (worker 1, restarted): swanctl --redirect by ike-id reaches that worker (RFC 5685 §5)
    with contextlib.suppress(StrongSwanError):  # vici reports the forced delete of a dead SA as a failure
        peer_b.terminate(ike="ikg", force=True)
    assert wait_until(lambda: not peer_b.list_sas(), 5)
    peer_b.initiate(child="net", ike="ikg")
    new_b = gw.wait_sas(lambda sas: len(sas) == 1 and bool(sas[0]["children"]), timeout=15)[0]
    assert worker_of(new_b) == 1
    moved = _swanctl(sock, "--redirect", "--ike-id", str(new_b["uniqueid"]), "--gateway", str(right.address))
    assert "redirect completed successfully" in moved, moved
    sent = gw.wait_audit(lambda e: e["event"] == "ike.redirected"
                         and e.get("ike_uniqueid") == new_b["uniqueid"], timeout=10)
    assert sent["details"]["direction"] == "out"
