"""IKE transport of the gateway: one socket per ``listen`` address on 500 and on 4500 (RFC 7296 §2.23,
RFC 3948), or the userspace data plane's socket where it owns 4500 (ESP and IKE share it; IKE arrives through
its ``on_ike`` callback and leaves through ``send_ike``).

Every listen address and port is a pair of sockets: the kernel steers new IKE_SA_INIT requests without a
COOKIE to the bulk one and everything else to the priority one, which is read first (service/reuseport.py,
service/sockets.py: the half-open flood of issue 22); with ``[gateway] workers`` the pair is this worker's
members of the supervisor's groups.

On 4500 every IKE message carries the non-ESP marker (four zero octets, RFC 3948 §2.2): stripped on receive,
added on send; a single 0xFF octet is a NAT keepalive (§2.3) and is ignored; anything else is ESP, which only
a data plane that owns the socket can use (with ``none`` it is counted and dropped).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ikeguard.dataplane.base import DataPlane, IkeShare
from ikeguard.engine.events import Endpoint, IpAddress
from ikeguard.engine.settings import ConnectionSettings
from ikeguard.service.errors import GatewayCommandError
from ikeguard.service.reuseport import open_group
from ikeguard.service.sockets import KEEPALIVE, NON_ESP_MARKER, QuickAnswer, UdpListener, route_source
from ikeguard.service.stats import GatewayStats
from ikeguard.wire.natt import Udp4500, demux_udp4500

if TYPE_CHECKING:
    from ikeguard.service.plan import GatewayPlan

log = logging.getLogger("ikeguard.service")
Receiver = Callable[[bytes, Endpoint, Endpoint], None]
_ROUTE_CACHE_MAX = 4096


def _unspecified(version: int) -> IpAddress:
    return ipaddress.ip_address("::" if version == 6 else "0.0.0.0")  # noqa: S104 (a lookup key, not a bind)


def _is_range(text: str) -> bool:
    start, sep, end = text.partition("-")
    if not sep:
        return False
    try:
        ipaddress.ip_address(start)
        ipaddress.ip_address(end)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> IpAddress | None:
    """An address from ``remote_addrs``: a literal, else the first DNS answer (ranges/CIDRs: None)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if "/" in host or _is_range(host):
        return None
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    return ipaddress.ip_address(info[0][4][0]) if info else None


class Transport:
    """Sockets of one gateway: receive IKE into ``receive``, send the engine's datagrams and keepalives."""

    def __init__(self, plan: GatewayPlan, receive: Receiver, stats: GatewayStats,
                 prepare: Callable[[socket.socket, bool], None] | None = None) -> None:
        self.plan = plan
        self.prepare = prepare  # per-socket set-up the data plane needs (kernel ESP: bypass, ESP-in-UDP)
        self.receive = receive
        self.stats = stats
        self.listeners: dict[tuple[IpAddress, int], UdpListener] = {}
        self.planes: dict[int, IkeShare] = {}  # IP version -> the data plane's 4500 socket of that family
        self._plane_addresses: dict[int, IpAddress] = {}
        self._route_cache: dict[IpAddress, IpAddress] = {}
        # [gateway] workers: this worker's members of the supervisor's SO_REUSEPORT groups (service/workers):
        # (priority socket, bulk socket) per address and port
        self.inherited: dict[tuple[IpAddress, int], tuple[socket.socket, socket.socket | None]] = {}
        self.quick: QuickAnswer | None = None  # the stateless COOKIE answer for bulk sockets (sockets.py)
        self.keepalives_in = 0
        self.esp_dropped = 0

    # ------------------------------------------------------------------ set-up
    def start(self, loop: asyncio.AbstractEventLoop, dataplane: DataPlane) -> None:
        """Bind 500 and 4500 on every listen address (4500 of a family whose data plane owns it: its own)."""
        plan = self.plan
        for plane in dataplane.ike_shares():
            address = ipaddress.ip_address(plane.sock.getsockname()[0])
            self.planes[address.version] = plane
            self._plane_addresses[address.version] = address
            plane.on_ike = self._plane_ike
        try:
            for text in plan.listen:
                address = ipaddress.ip_address(text)
                self._bind(loop, address, plan.ike_port, self.receive)
                if self._plane_covers(address) or plan.natt_port == plan.ike_port:
                    continue
                self._bind(loop, address, plan.natt_port, self._natt)
        except OSError:
            self.close()
            raise

    def _plane_covers(self, address: IpAddress) -> bool:
        owned = self._plane_addresses.get(address.version)
        if owned is None:
            return False
        return owned.is_unspecified or owned == address

    def _bind(self, loop: asyncio.AbstractEventLoop, address: IpAddress, port: int,
              handler: Receiver) -> None:
        sock, bulk = self.inherited.get((address, port), (None, None))
        try:
            if sock is None:  # one process: a group of our own, priority and bulk (service/reuseport.py)
                sock, bulk = open_group(str(address), port, 1, natt=handler == self._natt, priority=True)
            listener = UdpListener(address, port, handler, sock, bulk=bulk, quick=self.quick,
                                   marker=handler == self._natt)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind {address} port {port}: {exc.strerror}") from None
        if self.prepare is not None:
            try:
                for member in listener.sockets():
                    self.prepare(member, port == self.plan.natt_port)
            except OSError:
                listener.close()
                raise
        listener.start(loop)
        self.listeners[(address, port)] = listener

    def close(self) -> None:
        """Close our sockets (the plane closes its own)."""
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        for plane in self.planes.values():
            plane.on_ike = lambda data, addr: None

    def describe(self) -> str:
        """``192.0.2.1:500, 192.0.2.1:4500 (data plane), ...`` for the start-up log line."""
        parts = [f"{a}:{p}" if a.version == 4 else f"[{a}]:{p}" for a, p in self.listeners]
        for a in self._plane_addresses.values():
            parts.append((f"{a}" if a.version == 4 else f"[{a}]") + f":{self.plan.natt_port} (data plane)")
        return ", ".join(parts)

    # ------------------------------------------------------------------ receive
    def _natt(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        kind = demux_udp4500(data)
        if kind is Udp4500.IKE:
            self.receive(data[4:], local, remote)
        elif kind is Udp4500.KEEPALIVE:
            self.keepalives_in += 1
        else:
            self.esp_dropped += 1
            if self.stats.drop("ESP on a socket without a data plane"):
                log.info("dropped ESP from %s: no data plane owns %s (further drops are only counted)",
                         remote, local)

    def _plane_ike(self, data: bytes, addr: tuple[str, int]) -> None:
        remote_addr = ipaddress.ip_address(addr[0].split("%", 1)[0])
        local_addr = self._plane_addresses.get(remote_addr.version)
        if local_addr is None or local_addr.is_unspecified:
            local_addr = self._source_for(remote_addr) or local_addr
        if local_addr is None:
            return
        self.receive(data, Endpoint(local_addr, self.plan.natt_port), Endpoint(remote_addr, int(addr[1])))

    def _source_for(self, remote: IpAddress) -> IpAddress | None:
        cached = self._route_cache.get(remote)
        if cached is None:
            cached = route_source(remote)
            if cached is not None:
                if len(self._route_cache) >= _ROUTE_CACHE_MAX:
                    self._route_cache.clear()
                self._route_cache[remote] = cached
        return cached

    # ------------------------------------------------------------------ send
    def _listener(self, local: Endpoint) -> UdpListener | None:
        found = self.listeners.get((local.address, local.port))
        if found is None:
            found = self.listeners.get((_unspecified(local.address.version), local.port))
        if found is None:
            found = next((lst for (a, p), lst in self.listeners.items()
                          if p == local.port and a.version == local.address.version), None)
        return found

    def _plane_sends(self, local: Endpoint) -> bool:
        return local.port == self.plan.natt_port and self._plane_covers(local.address)

    def send_ike(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        """Send one IKE message; on 4500 with the non-ESP marker (RFC 3948 §2.2)."""
        natt = local.port == self.plan.natt_port
        self.stats.datagrams_out += 1
        if self._plane_sends(local):
            try:
                self.planes[local.address.version].send_ike(data, (str(remote.address), remote.port))
            except OSError as exc:
                self.stats.send_errors += 1
                log.debug("send to %s failed: %s", remote, exc)
            return
        listener = self._listener(local)
        if listener is None:
            self.stats.send_errors += 1
            log.warning("no socket for %s: cannot send to %s", local, remote)
            return
        if not listener.send(NON_ESP_MARKER + data if natt else data, local, remote):
            self.stats.send_errors += 1

    def send_keepalive(self, local: Endpoint, remote: Endpoint) -> None:
        """A one-octet NAT keepalive from our 4500 socket (RFC 3948 §2.3)."""
        if self._plane_sends(local):
            try:
                self.planes[local.address.version].send_keepalive((str(remote.address), remote.port))
            except OSError:
                self.stats.send_errors += 1
            return
        listener = self._listener(local)
        if listener is not None:
            listener.send(KEEPALIVE, local, remote)

    # ------------------------------------------------------------------ initiating
    def endpoints_for(self, name: str, conn: ConnectionSettings,
                      remote: Endpoint | None = None) -> tuple[Endpoint, Endpoint]:
        """(local, remote) to initiate ``name`` from/to: ``remote``'s address or the first usable
        ``remote_addrs`` entry, and ``local_addrs`` or the address the routing table picks towards it."""
        remote_addr = next((a for a in (_resolve(h, conn.remote_port) for h in conn.remote_addrs
                                        if h != "%any") if a is not None), None)
        if remote is not None and remote_addr is None:
            remote_addr = remote.address
        if remote_addr is None:
            raise GatewayCommandError(f"connection {name!r} has no remote address to initiate to "
                                      f"(remote_addrs = {', '.join(conn.remote_addrs)})")
        local_addr = None
        for text in self.plan.local_addrs.get(name, ()):
            candidate = _resolve(text, 0)
            if candidate is not None and candidate.version == remote_addr.version:
                local_addr = candidate
                break
        if local_addr is None:
            local_addr = self._source_for(remote_addr)
            bound = [a for a, port in self.listeners if port == self.plan.ike_port
                     and a.version == remote_addr.version]
            if bound and not any(a.is_unspecified for a in bound) and local_addr not in bound:
                local_addr = bound[0]  # we can only send from an address we listen on
        if local_addr is None:
            raise GatewayCommandError(f"connection {name!r}: no route to {remote_addr}")
        return Endpoint(local_addr, self.plan.ike_port), Endpoint(remote_addr, conn.remote_port)
