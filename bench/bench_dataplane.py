"""Userspace ESP data plane: per-packet cost in-process, and iperf3 through ikeguard <-> ikeguard.

Run: `.venv/bin/python -m bench bench_dataplane` (the iperf3 part needs root, /dev/net/tun and iperf3; it
builds two network namespaces with static AES-256-GCM SAs and removes them again). The strongSwan side-by-side
comparison (issue #7) is not in this module yet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair

from ikeguard.dataplane.table import SaTable, Send

SECONDS = 5


def per_packet_cost(name: str, size: int, count: int = 20_000) -> tuple[float, float]:
    """µs per packet for protect (TUN -> ESP) and unprotect (ESP -> TUN) with SaTable, one core."""
    a, b = SaTable(), SaTable()
    a_out, b_in, _, _ = sa_pair(name)
    a.add_sa(a_out)
    b.add_sa(replace(b_in, replay_window=0))
    inner = udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes(size))
    start = time.perf_counter()
    packets = []
    for _ in range(count):
        sent = a.outbound(inner)
        assert isinstance(sent, Send)
        packets.append(sent.data)
    enc = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    for p in packets:
        assert b.inbound(p) is not None
    dec = (time.perf_counter() - start) / count * 1e6
    return enc, dec


def iperf_through_tunnel() -> dict[str, float]:
    """iperf3 TCP (and UDP 1328 B / 92 B) from left to right through two userspace data planes."""
    from tests.dataplane.netns_helpers import SaPair, start_planes

    from ikeguard.tools.netns import NetnsLab, Topology

    results: dict[str, float] = {}
    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, "bdl", "bdr")
        left, right = start_planes(topo, SaPair(0x1001, 0x2001), Path(tmp))
        try:
            server = topo.right.namespace.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            target = str(topo.right.subnet_address)
            client = ["iperf3", "-c", target, "-t", str(SECONDS), "-J"]
            out = topo.left.namespace.run(*client, timeout=SECONDS + 30)
            server.wait(timeout=10)
            data = json.loads(out.stdout)
            results["tcp_mbit_s"] = data["end"]["sum_received"]["bits_per_second"] / 1e6
            for length in (1328, 92):
                server = topo.right.namespace.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
                time.sleep(0.5)
                out = topo.left.namespace.run(*client, "-u", "-b", "0", "-l", str(length),
                                              timeout=SECONDS + 30)
                server.wait(timeout=10)
                end = json.loads(out.stdout)["end"]["sum"]
                received = end["packets"] - end["lost_packets"]
                results[f"udp{length}_kpps"] = received / end["seconds"] / 1000
        finally:
            left.stop()
            right.stop()
    return results


def main() -> None:
    for name in ("aes256gcm16", "chacha20poly1305", "aes256-sha512"):
        for size in (64, 1400):
            enc, dec = per_packet_cost(name, size)
            print(f"{name:18} {size:5} B inner: protect {enc:6.2f} µs  unprotect {dec:6.2f} µs")
    if os.geteuid() != 0 or shutil.which("iperf3") is None or not Path("/dev/net/tun").exists():
        print("iperf3 through the tunnel: skipped (needs root, /dev/net/tun and iperf3)")
        return
    r = iperf_through_tunnel()
    print(f"ikeguard<->ikeguard aes256gcm16, {SECONDS} s: TCP {r['tcp_mbit_s']:.0f} Mbit/s, "
          f"UDP 1328 B {r['udp1328_kpps']:.1f} kpps, UDP 92 B {r['udp92_kpps']:.1f} kpps (received)")


if __name__ == "__main__":
    main()
    sys.exit(0)
