"""Local address changes of a running gateway: an IKE SA whose local address disappeared moves to the
address the routing table now picks towards its peer (MOBIKE UPDATE_SA_ADDRESSES, RFC 4555 §3.5, through
``IkeManager.update_local_endpoint``; an SA that cannot move is closed there with the reason).

The kernel announces address changes on a NETLINK_ROUTE socket subscribed to RTMGRP_IPV4_IFADDR and
RTMGRP_IPV6_IFADDR (rtnetlink(7)). Written by hand: only the netlink message types are read (no address
parsing, no netlink library needed); what is local is then asked of the kernel itself (bind() to the address
fails with EADDRNOTAVAIL once it is gone), and the new source address comes from the routing table.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING

from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.events import Endpoint, IpAddress
from ikeguard.engine.states import IkeState
from ikeguard.service.sockets import route_source

if TYPE_CHECKING:
    from ikeguard.service.gateway import Gateway

log = logging.getLogger("ikeguard.service")

RTMGRP_IPV4_IFADDR = 0x10  # linux/rtnetlink.h
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR = 20
RTM_DELADDR = 21
_NLMSGHDR = struct.Struct("=IHHII")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid
SETTLE = 0.2  # seconds: the several messages of one change (address gone, new one added) act once
_MOVABLE = (IkeState.ESTABLISHED, IkeState.REKEYING)


def address_events(datagram: bytes) -> int:
    """How many RTM_NEWADDR / RTM_DELADDR messages one netlink datagram carries (malformed tail ignored)."""
    count, offset = 0, 0
    while offset + _NLMSGHDR.size <= len(datagram):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(datagram, offset)
        if length < _NLMSGHDR.size:
            break
        if kind in (RTM_NEWADDR, RTM_DELADDR):
            count += 1
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return count


def address_is_local(address: IpAddress) -> bool:
    """True while ``address`` is configured on this host (namespace): the kernel lets us bind to it."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL
    return True


class AddressMonitor:
    """Watches address events and moves the gateway's IKE SAs off addresses that disappeared."""

    def __init__(self, gateway: Gateway, *, settle: float = SETTLE) -> None:
        self.gateway = gateway
        self.settle = settle
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        self.moves = 0

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Subscribe to address events; False (logged) where netlink is unavailable."""
        loop = loop or asyncio.get_running_loop()
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                 socket.NETLINK_ROUTE)
        except (OSError, AttributeError) as exc:
            log.warning("local address changes are not followed (no netlink: %s)", exc)
            return False
        try:
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError as exc:
            sock.close()
            log.warning("local address changes are not followed (netlink bind: %s)", exc)
            return False
        self.sock, self._loop = sock, loop
        loop.add_reader(sock.fileno(), self._readable)
        return True

    def close(self) -> None:
        """Stop watching."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        assert self.sock is not None
        changed = False
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ENOBUFS: events were lost; check anyway
                log.debug("netlink receive: %s", exc)
                changed = True
                break
            changed = changed or address_events(data) > 0
        if changed and self._pending is None and self._loop is not None:
            self._pending = self._loop.call_later(self.settle, self._settled)

    def _settled(self) -> None:
        self._pending = None
        self.check()

    def check(self) -> int:
        """Move every IKE SA whose local address is gone to the current route source; how many moved."""
        gateway = self.gateway
        if gateway.stopping:
            return 0
        moved = 0
        for sa in gateway.engine.ike_sas():
            if sa.state not in _MOVABLE or address_is_local(sa.local.address):
                continue
            new = route_source(sa.remote.address)
            if new is None or new == sa.local.address:
                log.info("IKE SA %d: local address %s is gone and no other address reaches %s yet",
                         sa.uniqueid, sa.local.address, sa.remote.address)
                continue
            log.info("IKE SA %d: local address %s is gone: moving to %s (MOBIKE)", sa.uniqueid,
                     sa.local.address, new)
            try:
                gateway.engine.update_local_endpoint(sa.uniqueid, Endpoint(new, sa.local.port), time.time())
            except LocalProtocolError as exc:
                log.info("IKE SA %d not moved: %s", sa.uniqueid, exc)
                continue
            moved += 1
        self.moves += moved
        gateway.pump()  # send the UPDATE_SA_ADDRESSES (or apply the closes) now
        return moved
