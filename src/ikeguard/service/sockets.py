"""UDP sockets for IKE on ports 500 and 4500 (RFC 7296 §2, RFC 3948), IPv4 and IPv6.

Each socket is read with ``recvmsg`` from an asyncio reader (``add_reader``) rather than a
``DatagramProtocol``, because the engine needs the local address of every datagram: on a wildcard-bound socket
that comes from ``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``, and replies leave from the same address (the source is
set with the same ancillary data on ``sendmsg``). IPv6 sockets are ``IPV6_V6ONLY`` so one family never sees
the other's datagrams as mapped addresses. No SO_REUSEADDR (SO_REUSEPORT only for the groups of
:mod:`ikeguard.service.reuseport`, each made by one process on a port nobody holds): a second gateway on the
same address fails to bind instead of silently sharing (and stealing) IKE traffic. Hand-written: asyncio has
no API for ancillary data.

A listener may have a second, *bulk* socket (``[gateway] workers``: the kernel steers new IKE_SA_INIT requests
that offer no COOKIE there, service/reuseport.py). The priority socket is drained first on every wake-up, the
bulk one after it in bounded batches, so a flood in the bulk socket never delays an IKE_AUTH or a cookie retry
by more than one batch and still gets its turn. A bulk datagram — or any datagram of a listener without a
bulk socket — goes first to the ``quick`` answerer (the engine's stateless COOKIE answer, issue 22): when it
answers, the answer leaves on the same socket without the datagram ever becoming ``Endpoint`` objects or
engine events; anything else takes the regular path.

Receive buffers: ``SOCKET_BUFFER`` is asked for with ``SO_RCVBUFFORCE`` (root / CAP_NET_ADMIN may exceed
``net.core.rmem_max``), else with ``SO_RCVBUF``, which the kernel caps at ``net.core.rmem_max``; what the
kernel granted is read back and a smaller buffer is logged once with the sysctl to raise
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from ikeguard.engine.events import Endpoint, IpAddress
from ikeguard.wire import natt

log = logging.getLogger("ikeguard.service")

IP_PKTINFO = 8  # linux/in.h (absent from Python's socket module)
BATCH = 64  # datagrams read per wake-up (and per socket and round with a bulk socket)
ROUNDS = 4  # priority batch + bulk batch, repeated while either had datagrams
SO_RCVBUFFORCE = 33  # asm-generic/socket.h (absent from Python's socket module)
MAX_DATAGRAM = 65535
SOCKET_BUFFER = 1 << 20
_CMSG_SPACE = socket.CMSG_SPACE(20)  # in_pktinfo (12) / in6_pktinfo (20)
NON_ESP_MARKER = natt.NON_ESP_MARKER  # RFC 3948 §2.2 (wire/natt.py)
KEEPALIVE = natt.NAT_KEEPALIVE  # RFC 3948 §2.3

DatagramHandler = Callable[[bytes, Endpoint, Endpoint], None]  # (data, local, remote)
# (IKE message without the non-ESP marker, sender's address as text, sender's port) -> the answer to send
# back; b"": handled, nothing to send; None: not for the quick path (the regular handler gets it)
QuickAnswer = Callable[[bytes, str, int], bytes | None]
_small_buffer_logged = False


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
        _receive_buffer(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(address), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _receive_buffer(sock: socket.socket) -> int:
    """Ask for ``SOCKET_BUFFER`` octets of receive buffer (module docstring); what the kernel granted."""
    global _small_buffer_logged
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    except OSError:  # no CAP_NET_ADMIN: capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # the kernel reports it doubled
    if granted < SOCKET_BUFFER and not _small_buffer_logged:
        _small_buffer_logged = True
        log.warning("IKE socket receive buffer is %d KiB, not the %d KiB asked for: raise the sysctl "
                    "net.core.rmem_max to at least %d (a flood of IKE_SA_INIT requests overflows small "
                    "buffers sooner)", granted // 1024, SOCKET_BUFFER // 1024, SOCKET_BUFFER)
    return granted


def _local_from_cmsg(ancillary: list[tuple[int, int, bytes]], fallback: IpAddress) -> IpAddress:
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            return ipaddress.IPv4Address(value[8:12])  # in_pktinfo.ipi_addr: the header's destination
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
            return ipaddress.IPv6Address(value[:16])  # in6_pktinfo.ipi6_addr
    return fallback


def _reply_cmsg(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """PKTINFO for an answer from the address a datagram was sent to (wildcard sockets)."""
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            return [(level, kind, struct.pack("=I", 0) + value[8:12] + b"\0\0\0\0")]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
            return [(level, kind, value[:16] + struct.pack("=I", 0))]
    return []


def route_source(remote: IpAddress) -> IpAddress | None:
    """The source address the kernel would use towards ``remote`` (a connected UDP socket sends nothing)."""
    family = socket.AF_INET6 if remote.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(remote), 9))
            return ipaddress.ip_address(probe.getsockname()[0])
    except OSError:
        return None


# Every datagram's peer address is parsed from the kernel's text and every reply's written back as text; an
# IKE SA's few datagrams come from one address, and parsing or printing an IPv6 address costs microseconds
# (ipaddress is pure Python), so both conversions are memoised (bounded: a flood of spoofed sources only
# evicts).
ADDRESS_CACHE = 4096


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def peer_address(text: str) -> IpAddress:
    """The address of a received datagram (``recvmsg`` text, an IPv6 scope dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def address_text(address: IpAddress) -> str:
    """``str(address)``, memoised."""
    return str(address)


class UdpListener:
    """One bound UDP socket on the event loop, optionally with a bulk socket and a quick answerer (module
    docstring); ``marker``: 4500, whose IKE messages carry the non-ESP marker (the quick path strips it from
    the request and adds it to the answer; the regular handler gets the datagram as it came)."""

    def __init__(self, address: IpAddress, port: int, handler: DatagramHandler,
                 sock: socket.socket | None = None, *, bulk: socket.socket | None = None,
                 quick: QuickAnswer | None = None, marker: bool = False) -> None:
        self.address = address
        self.port = port
        self.handler = handler
        self.sock = sock if sock is not None else open_udp(address, port)  # sock: a worker's inherited one
        self.bulk = bulk
        self.quick = quick
        self.marker = marker
        self.port = self.sock.getsockname()[1]  # port 0 (tests): the kernel's choice
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_errors = 0
        self.quick_answers = 0

    def sockets(self) -> list[socket.socket]:
        """The priority (or only) socket and the bulk one, if any."""
        return [self.sock] if self.bulk is None else [self.sock, self.bulk]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading."""
        self._loop = loop
        for sock in self.sockets():
            loop.add_reader(sock.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop reading and close the socket(s)."""
        if self._loop is not None:
            for sock in self.sockets():
                self._loop.remove_reader(sock.fileno())
            self._loop = None
        for sock in self.sockets():
            sock.close()

    def _on_readable(self) -> None:
        bulk = self.bulk
        if bulk is None:  # one socket (workers = 1): every datagram may take the quick path
            self._drain_bulk(self.sock) if self.quick is not None else self._drain(self.sock, BATCH)
            return
        for _ in range(ROUNDS):  # the priority socket first, then a bounded batch of the bulk one
            read = self._drain(self.sock, BATCH)
            read += self._drain_bulk(bulk) if self.quick is not None else self._drain(bulk, BATCH)
            if not read:
                return

    def _drain(self, sock: socket.socket, limit: int) -> int:
        """Read up to ``limit`` datagrams into the handler; how many were read."""
        read = 0
        for _ in range(limit):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return read
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                log.debug("receive error on %s:%d: %s", self.address, self.port, exc)
                continue
            read += 1
            self._deliver(data, ancillary, addr)
        return read

    def _deliver(self, data: bytes, ancillary: list[tuple[int, int, bytes]], addr: tuple[str, int]) -> None:
        try:
            remote_addr = peer_address(addr[0])
            local_addr = _local_from_cmsg(ancillary, self.address)
            if remote_addr.version != self.address.version:
                return
            self.handler(data, Endpoint(local_addr, self.port), Endpoint(remote_addr, int(addr[1])))
        except Exception:  # a handler bug must never stop the socket (ARCHITECTURE rule 3)
            log.exception("error while handling a datagram from %s", addr)

    def _drain_bulk(self, sock: socket.socket) -> int:
        """Like :meth:`_drain`, each datagram offered to the quick answerer first."""
        quick = self.quick
        assert quick is not None
        wildcard, v6, marker = _is_wildcard(self.address), self.address.version == 6, self.marker
        read = 0
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return read
            except OSError as exc:
                log.debug("receive error on %s:%d: %s", self.address, self.port, exc)
                continue
            read += 1
            answer: bytes | None = None
            try:
                if not marker or data[:4] == NON_ESP_MARKER:
                    # the kernel's text for an IPv4 address is ipaddress's; IPv6 is normalised (scope, case)
                    host = address_text(peer_address(addr[0])) if v6 else addr[0]
                    answer = quick(data[4:] if marker else data, host, addr[1])
                if answer is None:
                    self._deliver(data, ancillary, addr)
                elif answer:
                    self.quick_answers += 1
                    out = NON_ESP_MARKER + answer if marker else answer
                    if wildcard:
                        sock.sendmsg([out], _reply_cmsg(ancillary), 0, addr)
                    else:
                        sock.sendto(out, addr)
            except OSError as exc:
                self.send_errors += 1
                log.debug("send to %s failed: %s", addr, exc)
            except Exception:  # rule 3, as in _deliver
                log.exception("error while handling a datagram from %s", addr)
        return read

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
                self.sock.sendmsg([data], [cmsg], 0, (address_text(remote.address), remote.port))
            else:
                self.sock.sendto(data, (address_text(remote.address), remote.port))
        except OSError as exc:
            self.send_errors += 1
            log.debug("send to %s failed: %s", remote, exc)
            return False
        return True
