"""The engine as a one-SA IKEv2 initiator over UDP, for the credentialed scan (``scan.authenticated``).

A scan with credentials needs a real IKE SA with the target: IKE_AUTH, then CREATE_CHILD_SA exchanges that
probe the ESP suites (RFC 7296 §1.3, §2.7). The protocol is the engine's (the same sans-IO ``IkeManager`` the
gateway runs); this module only carries its datagrams and timers, synchronously and with the scan's pacing,
the way the service's event loop does for the gateway. NAT traversal: when the engine moves to port 4500
(RFC 7296 §2.23) its datagrams go out of a second socket with the non-ESP marker (RFC 3948 §2.2) and what
comes back there without the marker (ESP) is dropped.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from ipaddress import ip_address

from ikeguard.crypto.random import SystemRandom
from ikeguard.crypto.zeroize import wipe
from ikeguard.engine.events import Endpoint, EngineEvent, InstallChildSa, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import ConnectionSettings, EngineSettings
from ikeguard.engine.validator import CertificateValidator

NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
MAX_DATAGRAM = 65535


class EngineClient:
    """One ``IkeManager`` with one connection, one target, two sockets (500 path and 4500 path)."""

    def __init__(self, target: tuple[str, int], conn: ConnectionSettings, settings: EngineSettings,
                 validator: CertificateValidator, *, pace: Callable[[], None] | None = None) -> None:
        self.target = target
        self.conn = conn
        self.manager = IkeManager([conn], settings, random=SystemRandom(), validator=validator)
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self._family = family
        self._ike = socket.socket(family, socket.SOCK_DGRAM)
        self._ike.connect(target)
        self._natt: socket.socket | None = None
        address = self._ike.getsockname()
        self.local = Endpoint(ip_address(address[0]), int(address[1]))
        self.remote = Endpoint(ip_address(target[0]), int(target[1]))
        self._pace = pace or (lambda: None)
        self.datagrams = 0
        self.events: list[EngineEvent] = []

    def close(self) -> None:
        """Close both sockets (the IKE SA is deleted by the caller first)."""
        self._ike.close()
        if self._natt is not None:
            self._natt.close()

    def initiate(self) -> int:
        """Start the IKE SA with every child of the connection's first one (IKE_SA_INIT + IKE_AUTH)."""
        first = [self.conn.children[0].name] if self.conn.children else []
        uid = self.manager.initiate(self.conn.name, local=self.local, remote=self.remote,
                                    now=time.monotonic(), children=first)
        self._flush()
        return uid

    def _natt_socket(self, port: int) -> socket.socket:
        if self._natt is None:
            self._natt = socket.socket(self._family, socket.SOCK_DGRAM)
            self._natt.connect((self.target[0], port))
        return self._natt

    def _flush(self) -> None:
        """Send what the engine queued; keep every other event for the caller."""
        for event in self.manager.events():
            if isinstance(event, SendDatagram):
                self._pace()
                self.datagrams += 1
                try:
                    if event.local.port == NATT_PORT:
                        self._natt_socket(event.remote.port).send(NON_ESP_MARKER + event.data)
                    else:
                        self._ike.send(event.data)
                except OSError:
                    pass  # ICMP unreachable from an earlier datagram: the retransmission timer decides
            else:
                if isinstance(event, InstallChildSa):  # the scan installs nothing: its copy of the keys goes
                    wipe(event.sa.encr_key)  # (docs/key-hygiene.md)
                    wipe(event.sa.integ_key)
                self.events.append(event)

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Pump datagrams and timers until ``done()`` or ``timeout`` seconds; True when ``done()``."""
        deadline = time.monotonic() + timeout
        self._flush()  # what a command (initiate, create_child, terminate) just queued
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return False
            wait = deadline - now
            timer = self.manager.get_timer()
            if timer is not None:
                wait = min(wait, max(0.0, timer - now))
            self._receive(wait)
            now = time.monotonic()
            timer = self.manager.get_timer()
            if timer is not None and timer <= now:
                self.manager.handle_timer(now)
            self._flush()
        return True

    def _receive(self, wait: float) -> None:
        """Hand every datagram that arrives within ``wait`` seconds to the engine."""
        socks = [self._ike] + ([self._natt] if self._natt is not None else [])
        readable, _, _ = select.select(socks, [], [], wait)
        for sock in readable:
            try:
                data = sock.recv(MAX_DATAGRAM)
            except OSError:
                continue  # ICMP port unreachable reported on the connected socket
            local = self.local
            if sock is self._natt:
                if not data.startswith(NON_ESP_MARKER):
                    continue  # ESP (or a NAT keepalive): the scan installs no Child SA
                data = data[len(NON_ESP_MARKER):]
                local = Endpoint(self.local.address, NATT_PORT)
            remote = Endpoint(self.remote.address, int(sock.getpeername()[1]))
            self.manager.receive_datagram(data, local, remote, time.monotonic())
