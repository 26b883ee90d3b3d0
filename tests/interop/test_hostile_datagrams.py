"""Issue 13 S2 through the running gateway: `ikeguard run` in a namespace receives a flood of crafted
unauthenticated datagrams (raw UDP from another namespace: the reported 1,468-octet Delete datagram and the
worst cases of tests/wire/hostile.py up to 64 KiB, on ports 500 and 4500), its CPU time for the flood stays
bounded (read from /proc/<pid>/stat), it keeps no half-open state for them, and a strongSwan peer on the same
address still establishes promptly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.netns import Namespace, Topology
from tests.harness.interop_pair import (
    GatewayFactory,
    PeerFactory,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
    wait_one_sa,
)
from tests.wire.hostile import (
    MAX_UDP,
    datagram,
    init_request_chains,
    the_reported_datagram,
    worst_case_chains,
)

pytestmark = [pytest.mark.root, pytest.mark.interop]

PER_DATAGRAM = 0.01
"""CPU seconds the gateway may spend on one rejected datagram: the engine's bound (5 ms, tests/engine/
test_bounded_cost.py) plus the service around it (socket, event loop, trace event)."""
SLACK = 1.0
"""CPU seconds the gateway may spend meanwhile on everything else (timers, control socket, logging)."""

_SENDER = (
    "import socket,sys,time\n"
    "src,dst,path=sys.argv[1],sys.argv[2],sys.argv[3]\n"
    "socks={p:socket.socket(socket.AF_INET,socket.SOCK_DGRAM) for p in (500,4500)}\n"
    "for s in socks.values():\n"
    "    s.setsockopt(socket.SOL_SOCKET,socket.SO_SNDBUF,1<<22); s.bind((src,0))\n"
    "n=0\n"
    "for line in open(path):\n"
    "    port,hexdata=line.split()\n"
    "    socks[int(port)].sendto(bytes.fromhex(hexdata),(dst,int(port))); n+=1\n"
    "    time.sleep(0.002)  # paced: no datagram may be lost to a full receive buffer\n"
    "print(n)\n"
)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settled_cpu(pid: int, timeout: float = 20.0) -> float:
    """The process's CPU time once it stopped growing (the flood is processed), within ``timeout``."""
    deadline = time.monotonic() + timeout
    last = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        if now - last < 0.02:
            return now
        last = now
    return _cpu_seconds(pid)


def _udp_counters(ns: Namespace) -> dict[str, int]:
    """The namespace's UDP counters (InDatagrams, RcvbufErrors, ...) from /proc/net/snmp."""
    lines = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return {name: int(value) for name, value in zip(lines[0][1:], lines[1][1:], strict=True)}


def _flood() -> list[tuple[int, bytes]]:
    reported = the_reported_datagram()
    crafted = [datagram(c) for c in {**worst_case_chains(), **init_request_chains()}.values()]
    assert all(len(d) <= MAX_UDP for d in crafted)
    flood = [(500, reported)] * 300 + [(4500, b"\0\0\0\0" + reported)] * 100
    flood += [(500, d) for d in crafted] * 3
    flood += [(4500, b"\0\0\0\0" + d) for d in crafted if len(d) <= MAX_UDP - 4]
    return flood


def _send(ns: Namespace, source: str, target: str, flood: list[tuple[int, bytes]], workdir: Path) -> int:
    path = workdir / "flood.txt"
    path.write_text("".join(f"{port} {data.hex()}\n" for port, data in flood))
    result = ns.run("python3", "-c", _SENDER, source, target, str(path), timeout=120)
    return int(result.stdout.strip())


def test_a_flood_of_crafted_datagrams_costs_bounded_cpu_and_strongswan_still_connects(
    netns_topology: Callable[..., Topology],
    strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("direct")
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, remote_addr="%any")
    peer = strongswan_side(strongswan_peer, topo.left, topo.right)
    assert gw.pid is not None
    before = _settled_cpu(gw.pid)
    udp_before = _udp_counters(topo.right.namespace)
    flood = _flood()
    sent = _send(topo.left.namespace, str(topo.left.address), str(topo.right.address), flood, tmp_path)
    assert sent == len(flood)
    udp = {k: v - udp_before[k] for k, v in _udp_counters(topo.right.namespace).items()}
    # every datagram reached the gateway's sockets (none lost to a full buffer): all of them were processed
    assert udp["InDatagrams"] >= len(flood) and udp["RcvbufErrors"] == 0, udp
    started = time.monotonic()
    peer.initiate(child="net", ike="ikg", timeout=15)  # queued behind the flood, from the flood's address
    ss_sa = peer.wait_established("ikg", "net", timeout=15)
    established_after = time.monotonic() - started
    assert_same_sa(ss_sa, wait_one_sa(gw))
    spent = _settled_cpu(gw.pid) - before
    bound = len(flood) * PER_DATAGRAM + SLACK
    # before the fix, each reported datagram alone cost ~2.5 s of CPU (300 of them: minutes)
    print(f"gateway CPU {spent:.3f} s for {len(flood)} datagrams; strongSwan: {established_after:.2f} s")
    assert spent < bound, f"{spent:.2f} s of gateway CPU for {len(flood)} datagrams (bound {bound:.2f} s)"
    assert established_after < 10, f"strongSwan needed {established_after:.1f} s"
    sas = gw.sas()
    assert len(sas) == 1, sas  # the flood left no half-open IKE SA behind
    assert gw.running
