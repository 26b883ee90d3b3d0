"""Throughput and profile of the userspace data plane under the real gateway (`ikeguard run`, not the
standalone plane): two gateways (PSK, aes256gcm16, userspace data plane) in network namespaces, iperf3 TCP
from the left (initiator) host's subnet to the right one's, optionally with one gateway under cProfile.

Run (root, iperf3):
`.venv/bin/python -m bench.profile_gateway_dataplane [--encap] [--profile left|right] [--seconds N]`;
`... --outbound-cpu` measures only the CPU time of SaTable.outbound per packet (no root needed).
Prints Mbit/s received and, with --profile, the top functions of that gateway by own time.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import pstats
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.service.gwconfig import GwConfig

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, Topology

PSK = "bench-profile-psk-7d1c0e55a9b2"


def _installed(sas: list[dict[str, Any]]) -> bool:
    return bool(sas) and any(c["state"] == "installed" for c in sas[0]["children"])


def run(seconds: int, profile: str | None, streams: int = 1,
        encap: bool = False) -> tuple[float, Path | None]:
    """iperf3 TCP through two `ikeguard run` gateways; (Mbit/s received, profile file or None)."""
    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, "pgl", "pgr")
        left, right = topo.left, topo.right
        extra = "encap = true" if encap else ""  # ESP in UDP although no NAT is in between (RFC 3948)
        configs = {
            "right": GwConfig(str(right.address), "%any", GW_FQDN, CLIENT_FQDN, str(right.subnet),
                              str(left.subnet), psk=PSK, dataplane="userspace", extra_connection=extra),
            "left": GwConfig(str(left.address), str(right.address), CLIENT_FQDN, GW_FQDN, str(left.subnet),
                             str(right.subnet), psk=PSK, dataplane="userspace", start_action="start",
                             extra_connection=extra),
        }
        prof_path = Path(tmp) / "gateway.prof"
        gws: dict[str, GatewayProcess] = {}
        for side, host in (("right", right), ("left", left)):
            workdir = Path(tmp) / side
            argv = None
            if profile == side:
                argv = [sys.executable, "-m", "cProfile", "-o", str(prof_path), "-m", "ikeguard", "run", "-c",
                        str(workdir / "gateway.toml")]
            gw = GatewayProcess(host.namespace.name, workdir, configs[side].text(), configs[side].files(),
                                name=side, argv=argv)
            gws[side] = gw.start(timeout=30)
        try:
            gws["left"].wait_sas(_installed, timeout=20)
            server = right.namespace.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            out = left.namespace.run("iperf3", "-c", str(right.subnet_address), "-B",
                                     str(left.subnet_address), "-t", str(seconds), "-P", str(streams), "-J",
                                     timeout=seconds + 30)
            server.wait(timeout=10)
            mbit = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            for gw in gws.values():
                gw.stop(timeout=15)
        if profile is None or not prof_path.exists():
            return mbit, None
        kept = Path(tempfile.gettempdir()) / f"ikeguard-{profile}-gateway.prof"
        kept.write_bytes(prof_path.read_bytes())
        return mbit, kept


def outbound_cpu_us(payload: int, rounds: int = 7, count: int = 30_000) -> float:
    """CPU µs per TCP segment (ACK, ``payload`` octets) in SaTable.outbound, AES-256-GCM: min of rounds."""
    from tests.dataplane.test_table import sa_pair

    from ikeguard.dataplane.table import SaTable

    src, dst = ipaddress.IPv4Address("198.51.100.7").packed, ipaddress.IPv4Address("203.0.113.9").packed
    seg = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 1, 5 << 4, 0x10, 65535, 0, 0) + bytes(payload)
    inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, src, dst) + seg
    best = float("inf")
    for _ in range(rounds):
        table = SaTable()
        table.add_sa(sa_pair("aes256gcm16")[0])
        start = time.process_time()
        for _ in range(count):
            table.outbound(inner)
        best = min(best, (time.process_time() - start) / count * 1e6)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("left", "right"), default=None)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--encap", action="store_true", help="force ESP in UDP (encap = true)")
    parser.add_argument("--outbound-cpu", action="store_true", help="only SaTable.outbound CPU per packet")
    args = parser.parse_args(argv)
    if args.outbound_cpu:
        print(f"SaTable.outbound, AES-256-GCM, CPU per TCP segment: 1400 B {outbound_cpu_us(1360):.2f} µs, "
              f"bare ACK {outbound_cpu_us(0):.2f} µs")
        return
    mbit, prof = run(args.seconds, args.profile, encap=args.encap)
    what = (", ESP in UDP" if args.encap else ", ESP (IP protocol 50)") + (
        f", {args.profile} gateway under cProfile" if args.profile else "")
    print(f"ikeguard run <-> ikeguard run, userspace, aes256gcm16, iperf3 TCP {args.seconds} s{what}: "
          f"{mbit:.0f} Mbit/s")
    if prof is not None:
        print(f"profile: {prof}")
        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
