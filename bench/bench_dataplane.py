"""Userspace ESP data plane: per-packet cost in-process, and iperf3 through ikeguard <-> ikeguard.

Run: `.venv/bin/python -m bench bench_dataplane` (the iperf3 part needs root, /dev/net/tun and iperf3; it
builds two network namespaces with static AES-256-GCM SAs and removes them again), then the same iperf3 runs
between two strongSwan charons with kernel-libipsec (PSK, aes256gcm16 ESP-in-UDP), side by side, as ratios.
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


def iperf_through_tunnel() -> dict[str, float]:
    """iperf3 TCP (and UDP 1328 B / 92 B) from left to right through two userspace data planes."""
    from tests.dataplane.netns_helpers import SaPair, start_planes

    from ikeguard.tools.netns import NetnsLab, Topology

    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, "bdl", "bdr")
        left, right = start_planes(topo, SaPair(0x1001, 0x2001), Path(tmp))
        try:
            return _iperf(topo, SECONDS)
        finally:
            left.stop()
            right.stop()


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


def _iperf(topo: Any, seconds: int) -> dict[str, float]:
    results: dict[str, float] = {}
    target = str(topo.right.subnet_address)
    client = ["iperf3", "-c", target, "-t", str(seconds), "-J"]
    for label, extra in (("tcp_mbit_s", []), ("udp1328_kpps", ["-u", "-b", "0", "-l", "1328"]),
                         ("udp92_kpps", ["-u", "-b", "0", "-l", "92"])):
        server = topo.right.namespace.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        out = topo.left.namespace.run(*client, *extra, timeout=seconds + 30)
        server.wait(timeout=10)
        data = json.loads(out.stdout)["end"]
        if label.startswith("tcp"):
            results[label] = data["sum_received"]["bits_per_second"] / 1e6
        else:
            end = data["sum"]
            results[label] = (end["packets"] - end["lost_packets"]) / end["seconds"] / 1000
    return results


def strongswan_through_tunnel() -> dict[str, float]:
    """The same iperf3 runs between two strongSwan charons with kernel-libipsec (userspace ESP over TUN)."""
    from ikeguard.tools.netns import NetnsLab, Topology

    with NetnsLab() as lab, tempfile.TemporaryDirectory() as tmp:
        topo = Topology.two_hosts(lab, "bsl", "bsr")
        secret = os.urandom(16).hex()
        for side, host, peer in (("left", topo.left, topo.right), ("right", topo.right, topo.left)):
            d = Path(tmp) / side
            (d / "swanctl").mkdir(parents=True)
            (d / "strongswan.conf").write_text(_STRONGSWAN_CONF.format(dir=d))
            (d / "swanctl" / "swanctl.conf").write_text(_SWANCTL_CONF.format(
                local=host.address, remote=peer.address, me=side, peer="right" if side == "left" else "left",
                local_ts=host.subnet, remote_ts=peer.subnet, secret=secret))
            env = {"STRONGSWAN_CONF": str(d / "strongswan.conf"), "SWANCTL_DIR": str(d / "swanctl")}
            host.namespace.popen(["/usr/sbin/charon-systemd"], env=env)
            deadline = time.monotonic() + 15
            while not (d / "charon.vici").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"charon ({side}) did not start: {(d / 'charon.log')}")
                time.sleep(0.1)
            host.namespace.run("swanctl", "--load-all", "--noprompt", env=env)
        left_env = {"STRONGSWAN_CONF": str(Path(tmp) / "left" / "strongswan.conf"),
                    "SWANCTL_DIR": str(Path(tmp) / "left" / "swanctl")}
        topo.left.namespace.run("swanctl", "--initiate", "--child", "net", env=left_env, timeout=30)
        return _iperf(topo, SECONDS)


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
    if shutil.which("swanctl") is None or not Path("/usr/sbin/charon-systemd").exists():
        print("strongSwan side: skipped (needs charon-systemd and swanctl)")
        return
    try:
        ss = strongswan_through_tunnel()
    except Exception as exc:  # a benchmark reports, it does not crash
        print(f"strongSwan side: failed: {exc}")
        return
    print(f"strongSwan<->strongSwan kernel-libipsec aes256gcm16, {SECONDS} s: "
          f"TCP {ss['tcp_mbit_s']:.0f} Mbit/s, "
          f"UDP 1328 B {ss['udp1328_kpps']:.1f} kpps, UDP 92 B {ss['udp92_kpps']:.1f} kpps (received)")
    print("ratio ikeguard/strongSwan: " + ", ".join(
        f"{k} {r[k] / ss[k]:.2f}x" for k in ("tcp_mbit_s", "udp1328_kpps", "udp92_kpps") if ss[k]))


if __name__ == "__main__":
    main()
    sys.exit(0)
