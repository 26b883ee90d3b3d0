"""UDP sockets for IKE on ports 500 and 4500 (RFC 7296 §2, RFC 3948), IPv4 and IPv6.

Each socket is read with ``recvmsg`` from an asyncio reader (``add_reader``) rather than a
``DatagramProtocol``, because the engine needs the local address of every datagram: on a wildcard-bound socket
that comes from ``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``, and replies leave from the same address (the source is
set with the same ancillary data on ``sendmsg``). IPv6 sockets are ``IPV6_V6ONLY`` so one family never sees
the other's datagrams as mapped addresses. No SO_REUSEADDR (SO_REUSEPORT only for the worker groups
of :mod:`ikeguard.service.reuseport`, all opened by one supervisor): a second gateway on the same address
fails to bind instead of silently sharing (and stealing) IKE traffic. Hand-written: asyncio has no API for
ancillary data.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from ikeguard.engine.events import Endpoint, IpAddress
from ikeguard.wire import natt

log = logging.getLogger("ikeguard.service")

IP_PKTINFO = 8  # linux/in.h (absent from Python's socket module)
BATCH = 64  # datagrams read per wake-up
MAX_DATAGRAM = 65535
SOCKET_BUFFER = 1 << 20
_CMSG_SPACE = socket.CMSG_SPACE(20)  # in_pktinfo (12) / in6_pktinfo (20)
NON_ESP_MARKER = natt.NON_ESP_MARKER  # RFC 3948 §2.2 (wire/natt.py)
KEEPALIVE = natt.NAT_KEEPALIVE  # RFC 3948 §2.3

DatagramHandler = Callable[[bytes, Endpoint, Endpoint], None]  # (data, local, remote)


def _is_wildcard(address: IpAddress) -> bool:
    return address.is_unspecified


def open_udp(address: IpAddress, port: int, *, reuseport: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``address``:``port`` with PKTINFO reception enabled; ``reuseport``:
    a member of an ``SO_REUSEPORT`` group (``[gateway] workers``, :mod:`ikeguard.service.reuseport`)."""
    v6 = address.version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(address), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _local_from_cmsg(ancillary: list[tuple[int, int, bytes]], fallback: IpAddress) -> IpAddress:
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            return ipaddress.IPv4Address(value[8:12])  # in_pktinfo.ipi_addr: the header's destination
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
            return ipaddress.IPv6Address(value[:16])  # in6_pktinfo.ipi6_addr
    return fallback


def route_source(remote: IpAddress) -> IpAddress | None:
    """The source address the kernel would use towards ``remote`` (a connected UDP socket sends nothing)."""
    family = socket.AF_INET6 if remote.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(remote), 9))
            return ipaddress.ip_address(probe.getsockname()[0])
    except OSError:
        return None


class UdpListener:
    """One bound UDP socket on the event loop; ``natt`` sockets (4500) carry the non-ESP marker."""

    def __init__(self, address: IpAddress, port: int, handler: DatagramHandler,
                 sock: socket.socket | None = None) -> None:
        self.address = address
        self.port = port
        self.handler = handler
        self.sock = sock if sock is not None else open_udp(address, port)  # sock: a worker's inherited one
        self.port = self.sock.getsockname()[1]  # port 0 (tests): the kernel's choice
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_errors = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading."""
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _on_readable(self) -> None:
        sock, version = self.sock, self.address.version
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                log.debug("receive error on %s:%d: %s", self.address, self.port, exc)
                continue
            try:
                remote_addr = ipaddress.ip_address(addr[0].split("%", 1)[0])
                local_addr = _local_from_cmsg(ancillary, self.address)
                if remote_addr.version != version:
                    continue
                self.handler(data, Endpoint(local_addr, self.port), Endpoint(remote_addr, int(addr[1])))
            except Exception:  # a handler bug must never stop the socket (ARCHITECTURE rule 3)
                log.exception("error while handling a datagram from %s", addr)

    def send(self, data: bytes, local: Endpoint, remote: Endpoint) -> bool:
        """Send ``data`` to ``remote`` from ``local``'s address (PKTINFO when this socket is a wildcard)."""
        try:
            if _is_wildcard(self.address) and not local.address.is_unspecified:
                if local.address.version == 6:
                    cmsg = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                            local.address.packed + struct.pack("=I", 0))
                else:
                    cmsg = (socket.IPPROTO_IP, IP_PKTINFO,
                            struct.pack("=I", 0) + local.address.packed + b"\0\0\0\0")
                self.sock.sendmsg([data], [cmsg], 0, (str(remote.address), remote.port))
            else:
                self.sock.sendto(data, (str(remote.address), remote.port))
        except OSError as exc:
            self.send_errors += 1
            log.debug("send to %s failed: %s", remote, exc)
            return False
        return True
