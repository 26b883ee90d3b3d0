"""RADIUS over TLS (RFC 6614, "RadSec") for the RADIUS client (service/radius.py).

pyrad builds, signs and verifies the packets (Message-Authenticator, Response Authenticator, attribute
encryption) but only sends them over UDP; no maintained Python library offers a RadSec client. So this
module only adds the transport, with the standard library's ``ssl``: a TLS 1.2+ connection to the server
(mutual certificates: the server's chain must reach the configured CA and name ``server_name``, ours is
presented), the request written as is, and the reply read by its RADIUS Length field (RFC 6614 §2.3: the
stream carries plain RADIUS packets back to back). The shared secret is "radsec" (RFC 6614 §2.3 item 4):
TLS protects the packets, the secret only keeps the RADIUS checksums working.

No retransmission over TLS (RFC 6614 §2.5: TCP retransmits; a RadSec client must not): one try, with the
whole ``timeout * retries`` budget, then failover to the next server like an unanswered UDP server.
Connections are kept open and reused (``ConnectionPool``, RFC 6614 §2.5 long-lived connections): one
request at a time per connection, up to ``POOL_SIZE`` idle ones per server; a reused connection the
server has closed meanwhile (FreeRADIUS ``idle_timeout``) is replaced by a new one once.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RADSEC_SECRET = b"radsec"
RADSEC_PORT = 2083
_MAX_PACKET = 4096  # RFC 2865 §3


@dataclass(frozen=True)
class TlsSettings:
    """The TLS side of one RadSec server: its CA, the name its certificate must carry, our certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path = field(repr=False)
    server_name: str
    port: int = RADSEC_PORT

    def context(self) -> ssl.SSLContext:
        """A client context: TLS >= 1.2, server verified against ``ca_file`` and ``server_name``, our chain
        presented (FreeRADIUS' ``require_client_cert = yes``). Raises OSError/ssl.SSLError on bad files."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _read(conn: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError(0, "the RadSec server closed the connection before its reply")
        data += chunk
    return data


POOL_SIZE = 4


class ConnectionPool:
    """Idle RadSec connections per server (``address:port``), shared by the RADIUS worker threads."""

    def __init__(self) -> None:
        self._idle: dict[str, list[ssl.SSLSocket]] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections made (tests, metrics)

    def take(self, key: str) -> ssl.SSLSocket | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: str, conn: ssl.SSLSocket) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < POOL_SIZE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _round_trip(conn: ssl.SSLSocket, request: bytes, timeout: float) -> bytes:
    conn.settimeout(timeout)
    conn.sendall(request)
    header = _read(conn, 4)
    length = int.from_bytes(header[2:4], "big")
    if not 20 <= length <= _MAX_PACKET:
        raise OSError(0, f"RadSec reply with an impossible RADIUS length {length}")
    return header + _read(conn, length - 4)


def exchange(context: ssl.SSLContext, address: str, tls: TlsSettings, request: bytes,
             timeout: float, pool: ConnectionPool | None = None) -> bytes:
    """Send one RADIUS packet over TLS (an idle pooled connection, else a new one) and return the reply
    packet (blocking: a worker thread's). TLS failures become OSError with the reason (certificate,
    handshake), never key material."""
    key = f"{address}:{tls.port}"
    reused = pool.take(key) if pool is not None else None
    if pool is not None and reused is not None:
        try:
            reply = _round_trip(reused, request, timeout)
        except OSError:  # closed by the server while idle: once more on a new connection
            reused.close()
        else:
            pool.give(key, reused)
            return reply
    try:
        raw = socket.create_connection((address, tls.port), timeout=timeout)
        try:
            conn = context.wrap_socket(raw, server_hostname=tls.server_name)
        except BaseException:
            raw.close()
            raise
        if pool is not None:
            pool.opened += 1
        try:
            reply = _round_trip(conn, request, timeout)
        except BaseException:
            conn.close()
            raise
    except ssl.SSLCertVerificationError as exc:
        raise OSError(0, f"TLS: server certificate refused: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise OSError(0, f"TLS: {exc.reason or type(exc).__name__}") from None
    if pool is not None:
        pool.give(key, conn)
    else:
        conn.close()
    return reply


def tls_send(client: Any, pkt: Any, context: ssl.SSLContext, tls: TlsSettings, timeout: float,
             pool: ConnectionPool | None = None) -> Any:
    """pyrad's ``_SendPacket`` over RadSec: one try, the reply verified by pyrad (``client._VerifyReply``:
    Response Authenticator and the required Message-Authenticator). Returns the reply or raises pyrad's
    Timeout when it does not verify (``client.discarded`` says why)."""
    from pyrad.client import Timeout
    from pyrad.packet import PacketError

    raw = pkt.RequestPacket()
    authenticators = [getattr(pkt, "authenticator", None)]
    rawreply = exchange(context, client.server, tls, raw, timeout, pool)
    try:
        reply = pkt.CreateReply(packet=rawreply)
    except PacketError:
        client.discarded = "malformed RadSec reply"
        raise Timeout from None
    valid, authenticator = client._VerifyReply(pkt, reply, rawreply, authenticators)
    if not valid:
        raise Timeout
    if hasattr(pkt, "authenticator"):
        reply.request_authenticator = authenticator
    return reply
