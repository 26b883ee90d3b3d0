"""Many SAs on one gateway (issue 22, Done-when 2): memory per SA, RSS, `sas --json` and metrics scrape time,
reload time and control-socket latency while the SAs come up.

Run: `.venv/bin/python -m bench bench_scale` as root (IKG_SCALE_SAS=N IKE SAs + 1 Child SA each, default
20000; IKG_BENCH_KEEP=DIR keeps the logs). strongSwan's load-tester (scripts/build-load-tester.sh) initiates
them (PSK ECP-256, 2 threads, <= 32 in flight), each IKE SA from its own IPv6 address (load-tester `addrs`, a
/112 routed through the initiator's host), against `ikeguard run` (one process: `metrics` needs workers = 1;
dataplane none, profile baseline, dos_protection off, audit trail on). Measured once all are up: the gateway's
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


def main() -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/charon-systemd").exists():
        print("scale bench: skipped (needs root, network namespaces and strongSwan)")
        return
    try:
        prefix = _load_tester_prefix()
    except Exception as exc:
        print(f"scale bench: load-tester unavailable: {exc}")
        return
    count = COUNT - COUNT % 2
    keep = os.environ.get("IKG_BENCH_KEEP")
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="ikg-bench-scale-"))
    print(f"scale bench: {count} IKE SAs (+1 Child SA each), {CASE.name}, one IPv6 source per SA, "
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
            initiator = LoadTester(prefix, topo.left.namespace, base / "initiator", CASE, count, _pki(),
                                   addresses=(INIT_ADDR, GW_ADDR), pool=(POOL_NET, 64))
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
                established, failed = initiator.wait(timeout=max(600.0, count / 20))
                done.set()
                prober.join(5)
                seconds = initiator.duration()
                time.sleep(2.0)
                rss, pss = memory_kib(gw.pid)
                up = int(gw.request("conns")[0]["ike_sas_up"])
                full_t, full = _timed(lambda: gw.cli("sas", timeout=300))
                page_t, page = _timed(lambda: gw.cli("sas", "--limit", "100", timeout=60))
                scrape = topo.right.namespace.run(
                    sys.executable, "-c", "import time, urllib.request; t = time.monotonic(); "
                    f"n = len(urllib.request.urlopen('http://{METRICS}/metrics', timeout=120).read()); "
                    "print(time.monotonic() - t, n)", check=False, timeout=180)
                reload_t, reloaded = _timed(lambda: gw.cli("reload", timeout=300))
                after = int(gw.request("conns")[0]["ike_sas_up"])
            finally:
                done.set()
                initiator.stop()
                gw.stop(timeout=60)
        print(f"  {established}/{count} established ({failed} failed) in {seconds:.1f} s "
              f"({established / seconds if seconds else 0:.0f}/s); the gateway holds {up}")
        print(f"  memory: RSS {rss / 1024:.0f} MiB (PSS {pss / 1024:.0f} MiB) with all up, "
              f"{(rss - base_rss) / max(up, 1):.1f} KiB RSS / {(pss - base_pss) / max(up, 1):.1f} KiB PSS "
              "per SA")
        shown = f"{len(full)} SAs" if isinstance(full, list) else "FAILED: " + str(full)[:200]
        print(f"  sas --json: all {shown} in "
              f"{full_t:.2f} s; --limit 100: {page_t:.2f} s ({'ok' if isinstance(page, list) else page})")
        parts = scrape.stdout.split()
        print(f"  metrics scrape: {float(parts[0]):.2f} s, {int(parts[1]):,} bytes" if len(parts) == 2 else
              f"  metrics scrape failed: {scrape.stderr.strip()[-200:]}")
        print(f"  reload (unchanged file): {reload_t:.2f} s, {after} SAs up after it "
              f"({'ok' if not isinstance(reloaded, Exception) else reloaded})")
        print(f"  slowest `conns` answer while the SAs came up: {slowest[0] * 1000:.0f} ms")
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
