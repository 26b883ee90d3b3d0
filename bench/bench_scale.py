"""Many SAs on one gateway (issue 22, Done-when 2): memory per SA, RSS, `sas --json` and metrics scrape time,
reload time and control-socket latency while the SAs come up.

Run: `.venv/bin/python -m bench bench_scale` as root (IKG_SCALE_SAS=N IKE SAs + 1 Child SA each, default
20000; IKG_SCALE_INITIATORS=K load-testers, default 8; IKG_SCALE_BUDGET=S seconds for the set-up, default
max(600, N/20); IKG_BENCH_KEEP=DIR keeps the logs). strongSwan's load-tester (scripts/build-load-tester.sh)
initiates them (PSK ECP-256, 2 threads and <= 32 in flight per load-tester) against `ikeguard run` (one
process: `metrics` needs workers = 1; dataplane none, profile baseline, dos_protection off, audit trail on).
With K = 1 each IKE SA comes from its own IPv6 address (load-tester `addrs`, a /112 routed through the
initiator's host): the load-tester slows from ~140 to ~11 IKE SAs/s once its interface holds thousands of
addresses (13,785 SAs in 1,000 s). With K > 1 the K load-testers share the initiator's one address, each
with its own IKE ports (charon.port 20000 + 2i) and private run directory: K source endpoints, not one per SA
(the load-tester's per-SA ports need the socket-dynamic plugin, which the build does not include).
Measured once all are up: the gateway's
RSS (the whole process tree) and its growth per SA, `ikeguard sas --json` in full and paged (`--limit 100`), a
Prometheus scrape of `/metrics`, `ikeguard reload` of the unchanged file (every SA kept), and the slowest
`conns` answer seen while the SAs were being set up.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)

from bench.bench_ike_setup import (
    CASES,
    GW_ID,
    POOL_NET,
    POOL_ROUTE,
    PSK,
    LoadTester,
    _load_tester_prefix,
    _pki,
    memory_kib,
)
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, Topology

COUNT = int(os.environ.get("IKG_SCALE_SAS", "20000"))
INITIATORS = max(1, int(os.environ.get("IKG_SCALE_INITIATORS", "8")))
BUDGET = float(os.environ.get("IKG_SCALE_BUDGET", "0")) or max(600.0, COUNT / 20)
CASE = CASES[0]
GW_ADDR, INIT_ADDR = "2001:db8:0:1::1", "2001:db8:0:1::2"
METRICS = "127.0.0.1:9469"


def _timed(fn: object) -> tuple[float, object]:
    start = time.monotonic()
    try:
        result = fn()  # type: ignore[operator]
    except Exception as exc:  # a benchmark reports
        result = exc
    return time.monotonic() - start, result


class _Initiators:
    """Several load-testers driven as one."""

    def __init__(self, testers: list[LoadTester], count: int) -> None:
        self.testers = testers
        self.count = count

    def start(self) -> None:
        for tester in self.testers:
            tester.start()

    def stop(self) -> None:
        for tester in self.testers:
            tester.stop()

    def progress(self) -> tuple[int, int]:
        counts = [t.progress() for t in self.testers]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def wait(self, timeout: float) -> tuple[int, int]:
        """Until all are up or failed, ``timeout`` passed or nothing moved for 60 s; progress every minute."""
        start = time.monotonic()
        last, moved, shown = (-1, -1), start, start
        while True:
            now = self.progress()
            if now[0] + now[1] >= self.count:
                return now
            if now != last:
                last, moved = now, time.monotonic()
            if time.monotonic() - start > timeout or time.monotonic() - moved > 60:
                return now
            if time.monotonic() - shown > 60:
                shown = time.monotonic()
                print(f"    {shown - start:.0f} s: {now[0]} up, {now[1]} failed, "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(2.0)

    def duration(self) -> float:
        return max(t.duration() for t in self.testers)


class _Prober:
    """The slowest `conns` answer (control socket and event loop responsiveness) while a block runs."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.slowest = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.2):
            seconds, _ = _timed(lambda: self.gw.request("conns"))
            self.slowest = max(self.slowest, seconds)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)


def main() -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/charon-systemd").exists():
        print("scale bench: skipped (needs root, network namespaces and strongSwan)")
        return
    try:
        prefix = _load_tester_prefix()
    except Exception as exc:
        print(f"scale bench: load-tester unavailable: {exc}")
        return
    per = COUNT // INITIATORS
    count = (per - per % 2) * INITIATORS
    keep = os.environ.get("IKG_BENCH_KEEP")
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="ikg-bench-scale-"))
    sources = "one IPv6 source per SA" if INITIATORS == 1 else f"{INITIATORS} load-testers, one address"
    print(f"scale bench: {count} IKE SAs (+1 Child SA each), {CASE.name}, {sources}, "
          f"load average {os.getloadavg()[0]:.2f}, started {dt.datetime.now(dt.UTC):%H:%M:%S}Z")
    try:
        with NetnsLab() as lab:
            topo = Topology.two_hosts(lab, "scinit", "scresp")
            for key in ("all", "default", "eth0"):
                topo.left.namespace.sysctl(f"net.ipv6.conf.{key}.accept_dad", 0)
            topo.right.namespace.add_route(POOL_ROUTE, via=INIT_ADDR)
            secrets = [IkgSecret("lt", ids=[], secret=PSK)]
            config = gateway_toml(
                [IkgConnection("lt", local_addrs=[GW_ADDR], remote_addrs=["%any"],
                               local=IkgLocal("psk", id=GW_ID), remote=IkgRemote("psk", id="%any"),
                               proposals=[CASE.ike], unique="never", mobike=False,
                               children=[IkgChild("net", esp_proposals=[CASE.esp])])],
                profile="baseline", dataplane="none", listen=[GW_ADDR], secrets=secrets,
                gateway={"dos_protection": False, "metrics": METRICS},
            )
            gw = GatewayProcess(topo.right.namespace.name, base / "gateway", config, secret_files(secrets),
                                name="ikeguard")
            gw.start(timeout=60)
            assert gw.pid is not None
            pki = _pki()
            if INITIATORS == 1:
                initiators = [LoadTester(prefix, topo.left.namespace, base / "initiator", CASE, count, pki,
                                         addresses=(INIT_ADDR, GW_ADDR), pool=(POOL_NET, 64))]
            else:
                initiators = [LoadTester(prefix, topo.left.namespace, base / f"initiator{i}", CASE,
                                         count // INITIATORS, pki, addresses=(INIT_ADDR, GW_ADDR),
                                         charon_options={"port": 20000 + 2 * i, "port_nat_t": 20001 + 2 * i},
                                         private_run=True, id_prefix=f"lt{i}")
                              for i in range(INITIATORS)]
                for tester in initiators:
                    tester.pool = None  # no per-SA addresses (bench_ike_setup's IKG_BENCH_POOL default)
            initiator = _Initiators(initiators, count)
            slowest = [0.0]
            done = threading.Event()

            def probe() -> None:  # conns latency while the SAs come up
                while not done.wait(1.0):
                    seconds, _ = _timed(lambda: gw.request("conns"))
                    slowest[0] = max(slowest[0], seconds)

            prober = threading.Thread(target=probe, daemon=True)
            try:
                time.sleep(1.0)
                base_rss, base_pss = memory_kib(gw.pid)
                initiator.start()
                prober.start()
                established, failed = initiator.wait(timeout=BUDGET)
                done.set()
                prober.join(5)
                seconds = initiator.duration()
                time.sleep(2.0)
                rss, pss = memory_kib(gw.pid)
                up = int(gw.request("conns")[0]["ike_sas_up"])
                load = os.getloadavg()[0]
                with _Prober(gw) as during_sas:
                    full_t, full = _timed(lambda: gw.cli("sas", timeout=600))
                page_t, page = _timed(lambda: gw.cli("sas", "--limit", "100", timeout=60))
                socket_page_t, _ = _timed(lambda: gw.request("sas", limit=100))
                with _Prober(gw) as during_scrape:
                    scrape = topo.right.namespace.run(
                        sys.executable, "-c", "import time, urllib.request; t = time.monotonic(); "
                        f"b = urllib.request.urlopen('http://{METRICS}/metrics', timeout=120).read(); "
                        "print(time.monotonic() - t, len(b), int(b'ikeguard_metrics_snapshot_ok 1.0' in b))",
                        check=False, timeout=180)
                with _Prober(gw) as during_reload:
                    reload_t, reloaded = _timed(lambda: gw.cli("reload", timeout=300))
                after = int(gw.request("conns")[0]["ike_sas_up"])
            finally:
                done.set()
                initiator.stop()
                gw.stop(timeout=60)
        print(f"  {established}/{count} established ({failed} failed) in {seconds:.1f} s "
              f"({established / seconds if seconds else 0:.0f}/s); the gateway holds {up}; "
              f"load average {load:.1f} when measured")
        print(f"  memory: RSS {rss / 1024:.0f} MiB (PSS {pss / 1024:.0f} MiB) with all up, "
              f"{(rss - base_rss) / max(up, 1):.1f} KiB RSS / {(pss - base_pss) / max(up, 1):.1f} KiB PSS "
              "per SA")
        shown = f"{len(full)} SAs" if isinstance(full, list) else "FAILED: " + str(full)[:200]
        print(f"  sas --json: all {shown} in {full_t:.2f} s (slowest `conns` meanwhile "
              f"{during_sas.slowest * 1000:.0f} ms); --limit 100: {page_t:.2f} s by the CLI "
              f"({'ok' if isinstance(page, list) else page}), {socket_page_t * 1000:.0f} ms on the socket")
        parts = scrape.stdout.split()
        print(f"  metrics scrape: {float(parts[0]):.2f} s, {int(parts[1]):,} bytes, snapshot_ok {parts[2]} "
              f"(slowest `conns` meanwhile {during_scrape.slowest * 1000:.0f} ms)" if len(parts) == 3 else
              f"  metrics scrape failed: {scrape.stderr.strip()[-200:]}")
        print(f"  reload (unchanged file): {reload_t:.2f} s, {after} SAs up after it "
              f"({'ok' if not isinstance(reloaded, Exception) else reloaded}; slowest `conns` meanwhile "
              f"{during_reload.slowest * 1000:.0f} ms)")
        print(f"  slowest `conns` answer while the SAs came up: {slowest[0] * 1000:.0f} ms")
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
