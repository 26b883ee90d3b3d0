"""Where a sink's bytes go: a mutually authenticated TLS connection (RFC 5425 §5) or an append-only file.

RFC 5425 has no application-level acknowledgement, so a channel reports ``settled`` when the receiver's TCP
has acknowledged every byte (``TIOCOUTQ`` = 0); the forwarder confirms a record only once it was settled for a
while on a connection that is still open, and resends from the durable cursor after any reconnect.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import ssl
import struct
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Channel(Protocol):
    """A connected sink."""

    def send(self, data: bytes) -> None:
        """Write all of ``data`` (raises ``OSError`` when the channel broke)."""

    def settled(self) -> bool:
        """Everything sent so far has reached the receiver (as far as the transport can tell)."""

    def alive(self) -> bool:
        """The receiver has not closed the channel."""

    def close(self) -> None:
        """Close it."""


@dataclass(frozen=True)
class TlsTarget:
    """A TLS receiver: address, trust anchor, our client certificate (mutual TLS) and the expected name."""

    host: str
    port: int
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None
    timeout: float = 5.0

    def context(self) -> ssl.SSLContext:
        """Client context: server certificate verified against ``ca`` and its name checked (RFC 5425 §5.1)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9662
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx


class TlsChannel:
    """A connected RFC 5425 sender."""

    def __init__(self, target: TlsTarget) -> None:
        raw = socket.create_connection((target.host, target.port), timeout=target.timeout)
        try:
            self._sock = target.context().wrap_socket(raw, server_hostname=target.server_name or target.host)
        except BaseException:
            raw.close()
            raise
        self._sock.settimeout(target.timeout)

    def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        self._sock.sendall(data)

    def settled(self) -> bool:
        """No byte left unacknowledged in our TCP send queue."""
        buf = fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("i", buf)[0]) == 0

    def alive(self) -> bool:
        """The receiver has not closed (a syslog receiver never sends application data)."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return True
            self._sock.setblocking(False)
            try:
                return self._sock.recv(1024) != b""
            finally:
                self._sock.setblocking(True)
        except ssl.SSLWantReadError:
            return True  # e.g. a TLS 1.3 session ticket was consumed
        except OSError:
            return False

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self._sock.close()


class FileChannel:
    """Append to a file; ``send`` returns once the bytes are fsynced."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def send(self, data: bytes) -> None:
        """Append and fsync."""
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def settled(self) -> bool:
        """Always: fsynced in ``send``."""
        return True

    def alive(self) -> bool:
        """Always."""
        return True

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
