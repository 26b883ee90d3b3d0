"""Network-namespace labs: addressing, reachability, NAT rewriting and teardown on every way out."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.tools.netns import CommandError, NetnsLab, Topology, live_namespaces, started_pids

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]

# A one-shot UDP server: answers each datagram with the source address it saw (what the far side observes).
UDP_REFLECTOR = textwrap.dedent("""
    import socket, sys
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(peer[0].encode(), peer)
""")
UDP_ASK = textwrap.dedent("""
    import socket, sys
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"who am i", (sys.argv[1], int(sys.argv[2])))
    print(s.recvfrom(2048)[0].decode())
""")


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_namespace_names_are_unique_and_prepared(netns_lab: NetnsLab) -> None:
    ns = netns_lab.namespace("gw")
    assert re.fullmatch(r"ikg-gw-[0-9a-f]{6}", ns.name)
    assert ns.name in _netns_list().split()
    with NetnsLab() as other:
        assert other.namespace("gw").name != ns.name  # parallel runs never collide
    assert "state UNKNOWN" in ns.ip("link", "show", "lo").stdout or "UP" in ns.ip("link", "show", "lo").stdout
    assert ns.run("sysctl", "-n", "net.ipv6.conf.all.accept_dad").stdout.strip() == "0"
    with pytest.raises(ValueError):
        netns_lab.namespace("Bad Role")


def test_direct_topology_addresses_and_ping(netns_topology: Callable[..., Topology]) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    assert {left.address, left.address6, left.subnet_address, left.subnet_address6} <= set(
        left.namespace.addresses()
    )
    assert ipaddress.ip_address("198.51.100.1") in right.namespace.addresses("lo")
    for target in (right.address, right.address6):
        result = left.namespace.run("ping", "-n", "-c", "1", "-W", "2", str(target), check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    # protected subnets are not routed without a tunnel
    result = left.namespace.run(
        "ping",
        "-n",
        "-c",
        "1",
        "-W",
        "1",
        "-I",
        str(left.subnet_address),
        str(right.subnet_address),
        check=False,
    )
    assert result.returncode != 0
    with pytest.raises(CommandError) as info:
        left.namespace.run("false")
    assert info.value.returncode == 1


@pytest.mark.parametrize("family", [4, 6])
def test_nat_router_masquerades_the_source(netns_topology: Callable[..., Topology], family: int) -> None:
    topo = netns_topology("nat")
    server = str(topo.right.address if family == 4 else topo.right.address6)
    reflector = topo.right.namespace.popen(
        [sys.executable, "-c", UDP_REFLECTOR, server, "4500"], stdout=subprocess.PIPE, text=True
    )
    assert reflector.stdout is not None and reflector.stdout.readline().strip() == "ready"
    seen = topo.left.namespace.run(sys.executable, "-c", UDP_ASK, server, "4500").stdout.strip()
    expected = topo.public_address if family == 4 else topo.public_address6
    inside = topo.left.address if family == 4 else topo.left.address6
    assert ipaddress.ip_address(seen) == expected  # the far side sees the router, not 203.0.113.2
    assert ipaddress.ip_address(seen) != inside
    # and it cannot reach the inside address directly
    assert (
        topo.right.namespace.run("ping", "-n", "-c", "1", "-W", "1", str(inside), check=False).returncode != 0
    )
    assert topo.router is not None
    assert "masquerade" in topo.router.run("nft", "list", "ruleset").stdout


def test_teardown_on_exception_stops_processes_and_deletes_namespaces() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), NetnsLab() as lab:
        topo = Topology.two_hosts(lab)
        names = [ns.name for ns in lab.namespaces]
        proc = topo.left.namespace.popen(["sleep", "60"])
        assert proc.pid in started_pids()
        raise RuntimeError("boom")
    assert proc.poll() is not None
    assert not _pid_alive(proc.pid)
    assert not set(names) & set(_netns_list().split())
    assert not set(names) & set(live_namespaces())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_teardown_when_the_owner_is_signalled(sig: signal.Signals, tmp_path: Path) -> None:
    """A separate Python process builds a lab and is killed by SIGTERM or Ctrl-C: it must clean up itself."""
    script = textwrap.dedent("""
        import signal, sys, time
        from ikeguard.tools.netns import NetnsLab, Topology, install_signal_handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when backgrounded
        install_signal_handlers()
        lab = NetnsLab()  # no with-block: the atexit/signal path must do the work
        topo = Topology.behind_nat(lab)
        child = topo.left.namespace.popen(["sleep", "60"])
        print(" ".join(ns.name for ns in lab.namespaces), child.pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    names: list[str] = []
    child_pid = "0"
    try:
        assert owner.stdout is not None
        *names, child_pid = owner.stdout.readline().split()
        assert len(names) == 3 and set(names) <= set(_netns_list().split())
        owner.send_signal(sig)
        assert owner.wait(timeout=20) != 0
    finally:
        if owner.poll() is None:  # the test failed: remove what the owner could not (ours, by PID and name)
            owner.kill()
            owner.wait()
            if int(child_pid) and _pid_alive(int(child_pid)):
                os.kill(int(child_pid), signal.SIGKILL)
            for name in names:
                subprocess.run(["ip", "netns", "del", name], check=False)
    deadline = time.monotonic() + 5
    while _pid_alive(int(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(int(child_pid))
    assert not set(names) & set(_netns_list().split())
