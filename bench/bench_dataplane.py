"""Userspace ESP data plane: per-packet cost in-process, and iperf3 through ikeguard <-> ikeguard.

Run: `.venv/bin/python -m bench bench_dataplane` (the iperf3 part needs root, /dev/net/tun and iperf3; it
builds two network namespaces with static AES-256-GCM SAs and removes them again), then the same iperf3 runs
between two strongSwan charons with kernel-libipsec (PSK, aes256gcm16 ESP-in-UDP), side by side, as ratios.
Then ESP on every core (issue 22): both ikeguard planes with ``IKG_DP_WORKERS`` (2) worker processes and one
Child SA per worker (RFC 9611 per-resource SAs, static), ``IKG_DP_PARALLEL`` (4) TCP streams, against the
strongSwan pair with the same streams; CPU time of the planes / charons per byte of TCP payload from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair

from ikeguard.dataplane.table import SaTable, Send

SECONDS = 5


def per_packet_cost(name: str, size: int, rounds: int = 40, count: int = 1_000) -> tuple[float, float]:
    """CPU µs per packet for protect (TUN -> ESP) and unprotect (ESP -> TUN) with SaTable, one core: the
    minimum over short rounds of process time (robust to other load on a shared machine)."""
    inner = udp4("198.51.100.7", "203.0.113.9", 1, 2, bytes(size))
    enc = dec = float("inf")
    for _ in range(rounds):
        a, b = SaTable(), SaTable()
        a_out, b_in, _, _ = sa_pair(name)
        a.add_sa(a_out)
        b.add_sa(b_in)
        start = time.process_time()
        packets = []
        for _ in range(count):
            sent = a.outbound(inner)
            assert isinstance(sent, Send)
            packets.append(sent.data)
        enc = min(enc, (time.process_time() - start) / count * 1e6)
        start = time.process_time()
        for p in packets:
            assert b.inbound(p) is not None
        dec = min(dec, (time.process_time() - start) / count * 1e6)
    return enc, dec


def iperf_through_tunnel(workers: int = 1, parallel: int = 1, offload: bool = False) -> dict[str, Any]:
    """iperf3 TCP (and UDP 1328 B / 92 B) from left to right through two userspace data planes; with
    ``workers`` > 1 each plane runs that many worker processes and the tunnel has one Child SA per worker with
    the same selectors (RFC 9611 per-resource SAs; SPIs chosen so that SPI mod N names the worker). Also the
    CPU time (user + system) both planes used, per byte of TCP payload."""
    from tests.dataplane.netns_helpers import SaPair, start_planes

    from ikeguard.tools.netns import NetnsLab, Topology

    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, f"bd{workers}l", f"bd{workers}r")
        extra: dict[str, Any] = {"workers": workers, "tun_offload": offload} if workers > 1 else {}
        left, right = start_planes(topo, SaPair(0x1000, 0x2000, child=1), Path(tmp), **extra)
        try:
            for k in range(1, workers):
                pair = SaPair(0x1000 + k, 0x2000 + k, child=k + 1)
                for plane, (out, inb) in ((right, pair.right(topo)), (left, pair.left(topo))):
                    plane.cmd(op="add_sa", sa=inb)
                    plane.cmd(op="add_sa", sa=out)
            result: dict[str, Any] = _iperf(topo, SECONDS, parallel, tcp_only=workers > 1,
                                            pids=[left.proc.pid, right.proc.pid])
            sas = left.cmd(op="counters")["sas"]
            result["packets_per_sa"] = [sa["packets"] for sa in sorted(sas, key=lambda sa: sa["spi"])
                                        if sa["direction"] == "out"]
            return result
        finally:
            left.stop()
            right.stop()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` and their children (the workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        todo += [int(c) for c in children]
    return total


_STRONGSWAN_CONF = """charon-systemd {{
    journal {{
        default = -1
    }}
    filelog {{
        log {{
            path = {dir}/charon.log
            default = 1
        }}
    }}
}}
charon {{
    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints revocation curve25519 gcm aes sha1 \
sha2 hmac kdf kernel-libipsec kernel-netlink socket-default vici updown
    install_routes = yes
    plugins {{
        vici {{
            socket = unix://{dir}/charon.vici
        }}
    }}
}}
swanctl {{
    socket = unix://{dir}/charon.vici
}}
"""

_SWANCTL_CONF = """connections {{
    net {{
        local_addrs = {local}
        remote_addrs = {remote}
        proposals = aes256gcm16-prfsha256-x25519
        encap = yes
        local {{
            auth = psk
            id = {me}
        }}
        remote {{
            auth = psk
            id = {peer}
        }}
        children {{
            net {{
                local_ts = {local_ts}
                remote_ts = {remote_ts}
                esp_proposals = aes256gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-1 {{
        id-1 = left
        id-2 = right
        secret = "{secret}"
    }}
}}
"""


def _iperf(topo: Any, seconds: int, parallel: int = 1, tcp_only: bool = False,
           pids: list[int] | None = None) -> dict[str, float]:
    """iperf3 runs; with ``pids`` also the CPU seconds those processes (and children) used during the TCP run,
    per byte received (``cpu_ns_per_byte``)."""
    results: dict[str, float] = {}
    target = str(topo.right.subnet_address)
    client = ["iperf3", "-c", target, "-t", str(seconds), "-J", "-P", str(parallel)]
    runs: list[tuple[str, list[str]]] = [("tcp_mbit_s", []),
                                         ("udp1328_kpps", ["-u", "-b", "0", "-l", "1328"]),
                                         ("udp92_kpps", ["-u", "-b", "0", "-l", "92"])]
    for label, extra in runs[:1] if tcp_only else runs:
        server = topo.right.namespace.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        before = _cpu_seconds(pids or [])
        out = topo.left.namespace.run(*client, *extra, timeout=seconds + 30)
        cpu = _cpu_seconds(pids or []) - before
        server.wait(timeout=10)
        data = json.loads(out.stdout)["end"]
        if label.startswith("tcp"):
            results[label] = data["sum_received"]["bits_per_second"] / 1e6
            received = data["sum_received"]["bytes"]
            results["cpu_ns_per_byte"] = cpu / received * 1e9 if received else 0.0
        else:
            end = data["sum"]
            results[label] = (end["packets"] - end["lost_packets"]) / end["seconds"] / 1000
    return results


def strongswan_through_tunnel(parallel: int = 1, tcp_only: bool = False) -> dict[str, float]:
    """The same iperf3 runs between two strongSwan charons with kernel-libipsec (userspace ESP over TUN)."""
    from ikeguard.tools.netns import NetnsLab, Topology

    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, "bsl", "bsr")
        secret = os.urandom(16).hex()
        charons: list[subprocess.Popen[bytes]] = []
        for side, host, peer in (("left", topo.left, topo.right), ("right", topo.right, topo.left)):
            d = Path(tmp) / side
            (d / "swanctl").mkdir(parents=True)
            (d / "strongswan.conf").write_text(_STRONGSWAN_CONF.format(dir=d))
            (d / "swanctl" / "swanctl.conf").write_text(_SWANCTL_CONF.format(
                local=host.address, remote=peer.address, me=side, peer="right" if side == "left" else "left",
                local_ts=host.subnet, remote_ts=peer.subnet, secret=secret))
            env = {"STRONGSWAN_CONF": str(d / "strongswan.conf"), "SWANCTL_DIR": str(d / "swanctl")}
            charons.append(host.namespace.popen(["/usr/sbin/charon-systemd"], env=env))
            deadline = time.monotonic() + 15
            while not (d / "charon.vici").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"charon ({side}) did not start: {(d / 'charon.log')}")
                time.sleep(0.1)
            host.namespace.run("swanctl", "--load-all", "--noprompt", env=env)
        left_env = {"STRONGSWAN_CONF": str(Path(tmp) / "left" / "strongswan.conf"),
                    "SWANCTL_DIR": str(Path(tmp) / "left" / "swanctl")}
        topo.left.namespace.run("swanctl", "--initiate", "--child", "net", env=left_env, timeout=30)
        return _iperf(topo, SECONDS, parallel, tcp_only=tcp_only, pids=[p.pid for p in charons])


def cpu_mhz() -> float:
    """The clock the kernel reports for the first CPU (0 when unknown)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1])
    return 0.0


def main() -> None:
    mhz = cpu_mhz()
    for name in ("aes256gcm16", "chacha20poly1305", "aes256-sha512"):
        for size in (64, 1400):
            enc, dec = per_packet_cost(name, size)
            cpb = f"  ({enc * mhz / size:5.1f} / {dec * mhz / size:5.1f} cycles/byte at {mhz:.0f} MHz)"
            print(f"{name:18} {size:5} B inner: protect {enc:6.2f} µs  unprotect {dec:6.2f} µs"
                  + (cpb if mhz and size == 1400 else ""))
    if os.geteuid() != 0 or shutil.which("iperf3") is None or not Path("/dev/net/tun").exists():
        print("iperf3 through the tunnel: skipped (needs root, /dev/net/tun and iperf3)")
        return
    have_ss = shutil.which("swanctl") is not None and Path("/usr/sbin/charon-systemd").exists()
    workers = int(os.environ.get("IKG_DP_WORKERS", "2"))
    parallel = int(os.environ.get("IKG_DP_PARALLEL", "4"))
    r = iperf_through_tunnel()
    print(f"ikeguard<->ikeguard aes256gcm16, 1 process, {SECONDS} s: TCP {r['tcp_mbit_s']:.0f} Mbit/s, "
          f"UDP 1328 B {r['udp1328_kpps']:.1f} kpps, UDP 92 B {r['udp92_kpps']:.1f} kpps (received); "
          f"planes' CPU {r['cpu_ns_per_byte']:.1f} ns/byte of TCP "
          f"({r['cpu_ns_per_byte'] * mhz / 1000:.1f} cycles/byte)")
    w = iperf_through_tunnel(workers, parallel)
    print(f"ikeguard<->ikeguard aes256gcm16, {workers} workers + {workers} per-resource SAs, {SECONDS} s, "
          f"{parallel} TCP streams: TCP {w['tcp_mbit_s']:.0f} Mbit/s; planes' CPU "
          f"{w['cpu_ns_per_byte']:.1f} ns/byte ({w['cpu_ns_per_byte'] * mhz / 1000:.1f} cycles/byte); "
          f"packets per outbound SA {w['packets_per_sa']}")
    o = iperf_through_tunnel(workers, parallel, offload=True)
    print(f"  the same with tun_offload (decrypted TCP runs written into the TUN as GSO packets): TCP "
          f"{o['tcp_mbit_s']:.0f} Mbit/s; planes' CPU {o['cpu_ns_per_byte']:.1f} ns/byte "
          f"({o['cpu_ns_per_byte'] * mhz / 1000:.1f} cycles/byte); "
          f"packets per outbound SA {o['packets_per_sa']}")
    if not have_ss:
        print("strongSwan side: skipped (needs charon-systemd and swanctl)")
        return
    try:
        ss = strongswan_through_tunnel()
        ssp = strongswan_through_tunnel(parallel, tcp_only=True)
    except Exception as exc:  # a benchmark reports, it does not crash
        print(f"strongSwan side: failed: {exc}")
        return
    print(f"strongSwan<->strongSwan kernel-libipsec aes256gcm16, {SECONDS} s: "
          f"TCP {ss['tcp_mbit_s']:.0f} Mbit/s, "
          f"UDP 1328 B {ss['udp1328_kpps']:.1f} kpps, UDP 92 B {ss['udp92_kpps']:.1f} kpps (received); "
          f"charons' CPU {ss['cpu_ns_per_byte']:.1f} ns/byte of TCP "
          f"({ss['cpu_ns_per_byte'] * mhz / 1000:.1f} cycles/byte)")
    print(f"strongSwan<->strongSwan, {parallel} TCP streams: TCP {ssp['tcp_mbit_s']:.0f} Mbit/s; "
          f"charons' CPU {ssp['cpu_ns_per_byte']:.1f} ns/byte "
          f"({ssp['cpu_ns_per_byte'] * mhz / 1000:.1f} cycles/byte)")
    print("ratio ikeguard/strongSwan, 1 process: " + ", ".join(
        f"{k} {r[k] / ss[k]:.2f}x" for k in ("tcp_mbit_s", "udp1328_kpps", "udp92_kpps") if ss[k]))
    if ssp["tcp_mbit_s"]:
        print(f"ratio ikeguard ({workers} workers)/strongSwan, {parallel} TCP streams: "
              f"{w['tcp_mbit_s'] / ssp['tcp_mbit_s']:.2f}x, with tun_offload "
              f"{o['tcp_mbit_s'] / ssp['tcp_mbit_s']:.2f}x; CPU per byte strongSwan/ikeguard "
              f"{ssp['cpu_ns_per_byte'] / w['cpu_ns_per_byte']:.2f}x, with tun_offload "
              f"{ssp['cpu_ns_per_byte'] / o['cpu_ns_per_byte']:.2f}x")


if __name__ == "__main__":
    main()
    sys.exit(0)
