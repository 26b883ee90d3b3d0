"""Sending IKE_SA_INIT probes to one responder and classifying its answers (RFC 7296 §1.2, §2.6, §2.7).

One probe = one IKE_SA_INIT request with a fresh initiator SPI, sent over a connected UDP socket (so only
the target's datagrams arrive) and retransmitted ``retries`` times when unanswered (RFC 7296 §2.1). The
transport is polite by construction: datagrams (retransmissions included) leave at most ``rate`` per second,
a COOKIE request is answered once with the cookie (§2.6), and once the responder stops answering, keeps asking
for cookies or a probe would leave more half-open SAs than allowed, every later probe is skipped and the
reason kept (:attr:`Transport.stop_reason`).

Answers are parsed by ``wire`` only; anything that does not parse as an IKEv2 response to our SPI is counted
as garbage and ignored (hostile input never raises out of here and costs one bounded parse per datagram).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.message import Message, encode_message, parse_message
from ikeguard.wire.natt import NON_ESP_MARKER
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import KePayload, NoncePayload, NotifyPayload
from ikeguard.wire.sa import Proposal, SaPayload

ReplyKind = Literal["sa", "notify", "timeout", "garbage", "unreachable", "skipped"]

MAX_DATAGRAM = 65535
NONCE_LEN = 32  # RFC 7296 §2.10: at least half the PRF key size, at least 128 bits
CONSECUTIVE_SILENT_LIMIT = 3
"""After the responder has answered once, this many unanswered probes in a row stop the scan (it is blocking
or rate-limiting us: going on would only add load and produce 'not verified' rows)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What one probe got back."""

    kind: ReplyKind
    message: Message | None = None
    notify: int | None = None
    """The error notify type of a ``notify`` reply (e.g. NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD)."""
    notify_data: bytes = b""
    cookie_used: bool = False
    rtt: float = 0.0

    @property
    def requested_group(self) -> int | None:
        """The KE method an INVALID_KE_PAYLOAD asks for (RFC 7296 §3.10.1: two octets), else None."""
        if self.notify == NotifyType.INVALID_KE_PAYLOAD and len(self.notify_data) == 2:
            return int.from_bytes(self.notify_data, "big")
        return None


@dataclass
class TransportStats:
    """Counters the report shows (probes, datagrams, half-open SAs we left behind, garbage)."""

    probes: int = 0
    datagrams: int = 0
    answered: int = 0
    half_open: int = 0
    garbage: int = 0
    cookies: int = 0
    first_half_open_at: float | None = None
    last_half_open_at: float | None = None


@dataclass
class Transport:
    """A connected UDP socket to ``address`` with pacing, retransmission, COOKIE handling and stop rules."""

    address: tuple[str, int]
    rate: float = 10.0
    timeout: float = 2.0
    retries: int = 1
    max_half_open: int = 2
    stats: TransportStats = field(default_factory=TransportStats)
    stop_reason: str | None = None
    _silent: int = 0
    _last_send: float = 0.0
    _sockets: dict[int, socket.socket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.timeout <= 0 or self.retries < 0:
            raise ValueError("rate and timeout must be positive, retries not negative")
        v6 = ipaddress.ip_address(self.address[0]).version == 6
        self.family = socket.AF_INET6 if v6 else socket.AF_INET

    def close(self) -> None:
        """Close every socket."""
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _socket(self, port: int) -> socket.socket:
        sock = self._sockets.get(port)
        if sock is None:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            sock.connect((self.address[0], port))
            self._sockets[port] = sock
        return sock

    def local_endpoint(self, port: int | None = None) -> tuple[str, int]:
        """Our address and UDP port towards the target (for NAT detection, RFC 7296 §2.23)."""
        name = self._socket(port or self.address[1]).getsockname()
        return str(name[0]), int(name[1])

    def pace(self) -> None:
        """Wait until the rate allows the next datagram."""
        gap = 1.0 / self.rate - (time.monotonic() - self._last_send)
        if gap > 0:
            time.sleep(gap)
        self._last_send = time.monotonic()

    def _receive(self, sock: socket.socket, spi_i: bytes, deadline: float, marker: bool) -> Message | str:
        """The first datagram that parses as an IKE_SA_INIT response to ``spi_i``; 'timeout'/'unreachable'."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            sock.settimeout(left)
            try:
                data = sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                return "timeout"
            except OSError as exc:  # ICMP port unreachable on a connected socket
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    return "unreachable"
                raise
            if marker:
                if not data.startswith(NON_ESP_MARKER):
                    self.stats.garbage += 1
                    continue
                data = data[len(NON_ESP_MARKER):]
            try:
                message = parse_message(data)
            except (ParseError, ValueError):
                self.stats.garbage += 1
                continue
            header = message.header
            if (header.spi_i != spi_i or not header.is_response
                    or header.exchange_type != ExchangeType.IKE_SA_INIT or header.message_id != 0):
                self.stats.garbage += 1
                continue
            return message

    def probe(self, proposals: Sequence[Proposal], ke_group: int, ke_data: bytes,
              extra: Sequence[Payload] = (), *, port: int | None = None,
              expect_half_open: bool = False, spi_i: bytes | None = None) -> Reply:
        """Send one IKE_SA_INIT (SA, KE, Ni, ``extra``) and classify the answer.

        ``expect_half_open``: an accepting answer will leave a half-open SA at the responder; refused
        (skipped) when :attr:`max_half_open` are already left.
        """
        if self.stop_reason is not None:
            return Reply("skipped")
        if expect_half_open and self.stats.half_open >= self.max_half_open:
            return Reply("skipped")
        target_port = port or self.address[1]
        marker = target_port == 4500  # RFC 3948 §2.2: IKE on 4500 follows the non-ESP marker
        sock = self._socket(target_port)
        spi_i = spi_i or os.urandom(8)
        body: list[Payload] = [SaPayload(tuple(proposals)), KePayload(ke_group, ke_data),
                               NoncePayload(os.urandom(NONCE_LEN)), *extra]
        self.stats.probes += 1
        cookie: bytes | None = None
        reply: Message | str = "timeout"
        started = time.monotonic()
        for _round in range(2):  # the second round only after a COOKIE request (RFC 7296 §2.6)
            payloads = body if cookie is None else [NotifyPayload(NotifyType.COOKIE,
                                                                  cookie), *body]
            datagram = encode_message(Message(
                IkeHeader(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlags.INITIATOR, 0),
                tuple(payloads)))
            if marker:
                datagram = NON_ESP_MARKER + datagram
            for _attempt in range(self.retries + 1):
                self.pace()
                self.stats.datagrams += 1
                try:
                    sock.send(datagram)
                except OSError as exc:
                    if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                        reply = "unreachable"
                        break
                    raise
                reply = self._receive(sock, spi_i, time.monotonic() + self.timeout, marker)
                if reply != "timeout":
                    break
            if not isinstance(reply, Message):
                break
            asked = reply.notify(NotifyType.COOKIE)
            if asked is None:
                break
            self.stats.cookies += 1
            if cookie is not None:
                self.stop_reason = ("the responder asked for a COOKIE again after we returned it "
                                    "(RFC 7296 §2.6)")
                return Reply("skipped", cookie_used=True)
            cookie = asked.data
        rtt = time.monotonic() - started
        if not isinstance(reply, Message):
            kind: ReplyKind = "garbage" if reply == "timeout" and self.stats.garbage else reply  # type: ignore[assignment]
            if reply == "unreachable":
                kind = "unreachable"
            self._silent += 1
            if self.stats.answered == 0:
                self.stop_reason = (f"no IKEv2 answer from {self.address[0]} port {target_port}"
                                    + (" (ICMP unreachable)" if reply == "unreachable" else "")
                                    + (f"; {self.stats.garbage} datagram(s) that are not IKEv2 responses"
                                       if self.stats.garbage else ""))
            elif self._silent >= CONSECUTIVE_SILENT_LIMIT:
                self.stop_reason = (f"the responder stopped answering after {self.stats.answered} answered "
                                    f"probes ({self._silent} unanswered in a row: blocking or rate limiting)")
            return Reply(kind, cookie_used=cookie is not None, rtt=rtt)
        self._silent = 0
        self.stats.answered += 1
        errors = [p for p in reply.get_all(NotifyPayload) if p.is_error]
        if errors:
            first = errors[0]
            return Reply("notify", reply, int(first.notify_type), first.data, cookie is not None, rtt)
        if reply.get(SaPayload) is not None:
            self.stats.half_open += 1
            now = time.monotonic()
            self.stats.first_half_open_at = self.stats.first_half_open_at or now
            self.stats.last_half_open_at = now
            return Reply("sa", reply, cookie_used=cookie is not None, rtt=rtt)
        return Reply("garbage", reply, cookie_used=cookie is not None, rtt=rtt)


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP address | port) (SHA-1 is what the RFC fixes here)."""
    packed = ipaddress.ip_address(address).packed
    return hashlib.sha1(spi_i + spi_r + packed + port.to_bytes(2, "big"), usedforsecurity=False).digest()
