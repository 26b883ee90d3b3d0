"""Network namespaces joined by veth (optionally through a NAT router) for the demo and the tests.

In the installed product because `ikeguard demo` builds its network with it.

Written by hand over iproute2 and nftables via subprocess (transparent, no netlink library needed).
Everything a `NetnsLab` creates carries a per-run random suffix (``ikg-<role>-<6 hex>``) so parallel runs
on one machine never collide, and is removed again on success, on an exception, on Ctrl-C and on SIGTERM
(context manager + atexit + a SIGTERM handler that unwinds like Ctrl-C). Processes are stopped by the PID this
module started them with; deleting a namespace also removes the veth ends and TUN devices inside it.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

__all__ = [
    "CommandError",
    "Host",
    "Namespace",
    "NetnsError",
    "NetnsLab",
    "Topology",
    "VethLink",
    "cleanup_all",
    "created_namespaces",
    "install_signal_handlers",
    "live_namespaces",
    "started_pids",
    "stop_process",
    "wait_until",
]

IP = "ip"
NFT = "nft"
NETNS_DIR = Path("/run/netns")
_ROLE_RE = re.compile(r"^[a-z0-9]{1,12}\Z")
_STOP_TIMEOUT_S = 5.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetnsError(RuntimeError):
    """A namespace operation could not be carried out."""


class CommandError(NetnsError):
    """A command run for (or inside) a namespace exited non-zero; carries argv, exit code and output."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(self.argv)} exited {returncode}: {stderr.strip() or stdout.strip()}")


# Process-wide bookkeeping, so a session-end check can prove nothing was left behind.
_registry_lock = threading.RLock()
_live_labs: list[NetnsLab] = []
_created_names: list[str] = []
_started: list[subprocess.Popen[Any]] = []
_cleanup_running = threading.Event()


def created_namespaces() -> list[str]:
    """Names of every namespace any NetnsLab in this process created (deleted or not)."""
    with _registry_lock:
        return list(_created_names)


def live_namespaces() -> list[str]:
    """Those namespaces created by this process that still exist on the machine."""
    existing = set(_list_netns())
    return [name for name in created_namespaces() if name in existing]


def started_pids() -> list[int]:
    """PIDs of processes started through a Namespace in this process that are still running."""
    with _registry_lock:
        return [p.pid for p in _started if p.poll() is None]


def _list_netns() -> list[str]:
    result = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout, result.stderr)
    return result


def stop_process(proc: subprocess.Popen[Any], timeout: float = _STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the process we started, SIGKILL it after `timeout` s; returns its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


class Namespace:
    """One network namespace created by a NetnsLab: run commands and start processes inside it."""

    def __init__(self, lab: NetnsLab, name: str, role: str) -> None:
        self.lab = lab
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    # -- commands ----------------------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside this namespace (``ip netns exec NAME ...``)."""
        return [IP, "netns", "exec", self.name, *argv]

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace; raises CommandError on non-zero when `check`."""
        full_env = {**os.environ, **env} if env is not None else None
        return _run(self.exec_argv(argv), check=check, timeout=timeout, input=input, env=full_env)

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        text: bool = False,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[Any]:
        """Start a long-running process inside the namespace; its PID is tracked and stopped on teardown.

        ``ip netns exec`` execs the command in place, so ``Popen.pid`` is the process itself. It runs in its
        own session so a terminal Ctrl-C reaches only us, and we stop it in order.
        """
        full_env = {**os.environ, **env} if env is not None else None
        proc = subprocess.Popen(
            self.exec_argv(argv),
            env=full_env,
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            text=text,
            cwd=cwd,
            start_new_session=True,
        )
        self.lab._track(proc)
        return proc

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME args`` (iproute2 acting on this namespace)."""
        return _run([IP, "-n", self.name, *args], check=check)

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a sysctl inside the namespace (net.* sysctls are per namespace)."""
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    # -- addressing --------------------------------------------------------------------------------
    def set_up(self, ifname: str) -> None:
        """Bring an interface up."""
        self.ip("link", "set", ifname, "up")

    def add_address(self, ifname: str, cidr: str) -> None:
        """Add an address; IPv6 addresses are added with ``nodad`` so they are usable at once."""
        iface = ipaddress.ip_interface(cidr)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip("addr", "add", str(iface), "dev", ifname, *extra)

    def add_subnet_address(self, address: str | Address) -> None:
        """Put one protected-subnet address on ``lo`` as /32 or /128 (this kernel has no dummy devices)."""
        addr = ipaddress.ip_address(address)
        self.add_address("lo", f"{addr}/{addr.max_prefixlen}")

    def add_route(
        self, destination: str, *, via: str | None = None, dev: str | None = None, table: int | None = None
    ) -> None:
        """Add a route (``default`` or a prefix) via a gateway and/or out of a device."""
        net = "default" if destination == "default" else str(ipaddress.ip_network(destination, strict=False))
        family = ["-6"] if (via and ":" in via) or ":" in destination else []
        argv = [*family, "route", "add", net]
        if via:
            argv += ["via", via]
        if dev:
            argv += ["dev", dev]
        if table is not None:
            argv += ["table", str(table)]
        self.ip(*argv)

    def addresses(self, ifname: str | None = None) -> list[Address]:
        """Addresses currently configured (all interfaces or one)."""
        argv = ["-o", "addr", "show"] + (["dev", ifname] if ifname else [])
        out = self.ip(*argv).stdout
        found: list[Address] = []
        for line in out.splitlines():
            fields = line.split()
            for i, word in enumerate(fields[:-1]):
                if word in ("inet", "inet6"):
                    found.append(ipaddress.ip_interface(fields[i + 1]).ip)
        return found

    def pids(self) -> list[int]:
        """PIDs of every process currently inside this namespace."""
        out = _run([IP, "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]


@dataclass(frozen=True)
class VethLink:
    """A veth pair: `a_ifname` inside namespace `a`, `b_ifname` inside `b`."""

    a: Namespace
    a_ifname: str
    b: Namespace
    b_ifname: str


class NetnsLab:
    """Owns a set of namespaces and the processes started in them; removes all of it on close().

    Use as a context manager. Names are ``<prefix>-<role>-<token>`` with one random 6-hex token per lab.
    """

    def __init__(self, prefix: str = "ikg") -> None:
        if not re.fullmatch(r"[a-z]{1,4}", prefix):
            raise ValueError("prefix must be 1-4 lowercase letters")
        self.prefix = prefix
        self.token = secrets.token_hex(3)
        self.namespaces: list[Namespace] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._closed = False
        with _registry_lock:
            _live_labs.append(self)

    def __repr__(self) -> str:
        return f"NetnsLab(token={self.token!r}, namespaces={[n.name for n in self.namespaces]!r})"

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _track(self, proc: subprocess.Popen[Any]) -> None:
        with _registry_lock:
            self._processes.append(proc)
            _started.append(proc)

    # -- building ----------------------------------------------------------------------------------
    def namespace(self, role: str) -> Namespace:
        """Create a namespace ``<prefix>-<role>-<token>`` with lo up and IPv6 DAD off (no late addresses)."""
        if self._closed:
            raise NetnsError("lab is closed")
        if not _ROLE_RE.match(role):
            raise ValueError(f"role must match {_ROLE_RE.pattern}: {role!r}")
        name = f"{self.prefix}-{role}-{self.token}"
        if any(ns.name == name for ns in self.namespaces) or (NETNS_DIR / name).exists():
            raise NetnsError(f"namespace {name} already exists")
        _run([IP, "netns", "add", name])
        ns = Namespace(self, name, role)
        with _registry_lock:
            self.namespaces.append(ns)
            _created_names.append(name)
        # strongswan-peer.md pitfall 4: a late (DAD) IPv6 address triggers MOBIKE updates right after setup.
        ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
        ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
        ns.set_up("lo")
        return ns

    def veth(self, a: Namespace, b: Namespace, a_ifname: str = "eth0", b_ifname: str = "eth0") -> VethLink:
        """Join two namespaces with a veth pair (created directly inside them) and bring both ends up."""
        for ifname in (a_ifname, b_ifname):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", ifname):
                raise ValueError(f"bad interface name {ifname!r}")
        a.ip("link", "add", a_ifname, "type", "veth", "peer", "name", b_ifname, "netns", b.name)
        a.set_up(a_ifname)
        b.set_up(b_ifname)
        return VethLink(a, a_ifname, b, b_ifname)

    def enable_masquerade(self, router: Namespace, out_ifname: str) -> None:
        """Make `router` forward and source-NAT (nftables masquerade) everything leaving `out_ifname`."""
        router.sysctl("net.ipv4.ip_forward", 1)
        router.sysctl("net.ipv6.conf.all.forwarding", 1)
        ruleset = (
            "table inet ikg_nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "{out_ifname}" masquerade\n'
            "  }\n"
            "}\n"
        )
        router.run(NFT, "-f", "-", input=ruleset)

    # -- teardown ----------------------------------------------------------------------------------
    def stop_processes(self) -> None:
        """Stop every process this lab started (SIGTERM, then SIGKILL after a timeout), newest first."""
        with _registry_lock:
            procs = list(reversed(self._processes))
        for proc in procs:
            with contextlib.suppress(Exception):
                stop_process(proc)

    def close(self) -> None:
        """Stop our processes, then delete our namespaces (which removes their veths and TUN devices)."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        self.stop_processes()
        for ns in reversed(self.namespaces):
            # Descendants of our processes (scripts, pings) can only live in our private namespace; a netns
            # outlives `ip netns del` while any process is inside it, so they are stopped too.
            for pid in ns.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            result = _run([IP, "netns", "del", ns.name], check=False)
            if result.returncode != 0 and (NETNS_DIR / ns.name).exists():
                errors.append(f"{ns.name}: {result.stderr.strip()}")
        with _registry_lock:
            if self in _live_labs:
                _live_labs.remove(self)
        if errors:
            raise NetnsError("could not delete namespaces: " + "; ".join(errors))


def cleanup_all() -> None:
    """atexit / signal path: close every lab still open in this process."""
    if _cleanup_running.is_set():
        return
    _cleanup_running.set()
    try:
        with _registry_lock:
            labs = list(_live_labs)
        for lab in labs:
            with contextlib.suppress(Exception):
                lab.close()
    finally:
        _cleanup_running.clear()


atexit.register(cleanup_all)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C so context managers and pytest fixture finalisers run; atexit is the backstop.
    if _cleanup_running.is_set():
        return
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt (main thread, only where the default handler is set)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_sigterm)


@dataclass(frozen=True)
class Host:
    """One end host of a Topology: its namespace, outer interface/addresses and protected subnets."""

    namespace: Namespace
    ifname: str
    address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Address
    subnet: ipaddress.IPv4Network
    subnet_address: ipaddress.IPv4Address
    subnet6: ipaddress.IPv6Network
    subnet_address6: ipaddress.IPv6Address


@dataclass(frozen=True)
class Topology:
    """The common test layouts: `left` (client/initiator) and `right` (gateway), directly or through a NAT.

    Direct: left 192.0.2.2 / 2001:db8:0:1::2 ---- right 192.0.2.1 / 2001:db8:0:1::1.
    NAT: left 203.0.113.2 / 2001:db8:0:2::2 -- router (203.0.113.1 | 192.0.2.2) -- right 192.0.2.1; the router
    masquerades, so the right side sees the left host as `public_address` (192.0.2.2 / 2001:db8:0:1::2).
    Protected subnets: right 198.51.100.0/25 + 2001:db8:0:a::/64, left 198.51.100.128/25 + 2001:db8:0:b::/64,
    each with its first address on ``lo``.
    """

    lab: NetnsLab
    left: Host
    right: Host
    router: Namespace | None = None
    public_address: ipaddress.IPv4Address | None = None
    public_address6: ipaddress.IPv6Address | None = None

    @staticmethod
    def _host(ns: Namespace, ifname: str, addr: str, addr6: str, subnet: str, subnet6: str) -> Host:
        net = ipaddress.IPv4Network(subnet)
        net6 = ipaddress.IPv6Network(subnet6)
        iface = ipaddress.IPv4Interface(addr)
        iface6 = ipaddress.IPv6Interface(addr6)
        ns.add_address(ifname, str(iface))
        ns.add_address(ifname, str(iface6))
        sub_addr = net.network_address + 1
        sub_addr6 = net6.network_address + 1
        ns.add_subnet_address(sub_addr)
        ns.add_subnet_address(sub_addr6)
        return Host(ns, ifname, iface.ip, iface6.ip, net, sub_addr, net6, sub_addr6)

    @classmethod
    def two_hosts(cls, lab: NetnsLab, left_role: str = "client", right_role: str = "gw") -> Topology:
        """Two namespaces on one veth link."""
        left_ns = lab.namespace(left_role)
        right_ns = lab.namespace(right_role)
        lab.veth(left_ns, right_ns)
        right = cls._host(
            right_ns, "eth0", "192.0.2.1/24", "2001:db8:0:1::1/64", "198.51.100.0/25", "2001:db8:0:a::/64"
        )
        left = cls._host(
            left_ns, "eth0", "192.0.2.2/24", "2001:db8:0:1::2/64", "198.51.100.128/25", "2001:db8:0:b::/64"
        )
        return cls(lab, left, right)

    @classmethod
    def behind_nat(
        cls, lab: NetnsLab, left_role: str = "client", right_role: str = "gw", router_role: str = "nat"
    ) -> Topology:
        """Left host behind a masquerading router namespace; the right host has no route to the inside."""
        left_ns = lab.namespace(left_role)
        router = lab.namespace(router_role)
        right_ns = lab.namespace(right_role)
        lab.veth(left_ns, router, "eth0", "inside")
        lab.veth(router, right_ns, "outside", "eth0")
        router.add_address("inside", "203.0.113.1/24")
        router.add_address("inside", "2001:db8:0:2::1/64")
        router.add_address("outside", "192.0.2.2/24")
        router.add_address("outside", "2001:db8:0:1::2/64")
        lab.enable_masquerade(router, "outside")
        right = cls._host(
            right_ns, "eth0", "192.0.2.1/24", "2001:db8:0:1::1/64", "198.51.100.0/25", "2001:db8:0:a::/64"
        )
        left = cls._host(
            left_ns, "eth0", "203.0.113.2/24", "2001:db8:0:2::2/64", "198.51.100.128/25", "2001:db8:0:b::/64"
        )
        left_ns.add_route("default", via="203.0.113.1")
        left_ns.add_route("default", via="2001:db8:0:2::1")
        return cls(
            lab,
            left,
            right,
            router,
            ipaddress.IPv4Address("192.0.2.2"),
            ipaddress.IPv6Address("2001:db8:0:1::2"),
        )


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout` s passed; returns the last result as bool."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
