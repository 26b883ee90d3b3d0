"""Stateless COOKIE generation and verification with rotating secrets (RFC 7296 §2.6).

``Cookie = <VersionIDofSecret> | HMAC-SHA256(secret, Ni | IPi | SPIi)``. The current and previous secret are
accepted, so a rotation never invalidates a cookie handed out just before it. ``share(seed)``: the secret of
period ``k = floor(now / period)`` is ``HMAC-SHA256(seed, k)`` and its version ``k mod 256``, so processes
that share the seed (the workers of one gateway, issue 22) agree on every secret without talking to each
other.

Under a flood of spoofed IKE_SA_INIT requests (issue 22) two more things live here:

* :class:`CookieMode`, the hysteresis on ``cookie_threshold``: cookies go on when the half-open count
  reaches the threshold and stay on until it has fallen to half of it *and* no pressure was seen for
  :data:`COOKIE_HOLD` seconds (strongSwan keeps cookies on for its ``COOKIE_CALMDOWN_DELAY`` of 10 s in the
  same way). Without it the mode flapped: the spoofed half-open SAs made while cookies were off timed out
  together, the count fell under the threshold and the next burst of spoofed requests cost a Diffie-Hellman
  each.
* the COOKIE answer (``HDR(SPIi, 0), N(COOKIE)``, RFC 7296 §2.6 and §3.10) built from the request's SPI and
  the cookie with precomputed octets (:func:`cookie_answer`), and the offered cookie read from the raw payload
  chain (:func:`offered_cookie`), so that neither a cookie-less request nor a forged cookie costs more than
  walking the generic payload headers and one HMAC.
"""

from __future__ import annotations

import hmac as _hmac
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE_VERSION_LEN = 1
COOKIE_DIGEST_LEN = 32
MAX_COOKIE_LEN = 64  # RFC 7296 §2.6: the responder chooses, 1..64 octets
COOKIE_HOLD = 10.0  # seconds without pressure before cookies go off (strongSwan's COOKIE_CALMDOWN_DELAY)

_NOTIFY, _NONCE, _COOKIE = 41, 40, 16390  # RFC 7296 §3.2 payload types, §3.10.1 COOKIE
_IKE_SA_INIT = 34
# RFC 7296 §3.1: next payload N, version 2.0, IKE_SA_INIT, flags Response (0x20), message ID 0, Length
_ANSWER_HEAD = struct.Struct("!8xBBBBII")  # SPIr zero, then the rest of the header
_NOTIFY_HEAD = struct.Struct("!BBHBBH")  # §3.2 generic header + §3.10 Protocol ID, SPI Size, type
_GENERIC = struct.Struct("!BBH")  # §3.2: Next Payload, Critical + reserved, Payload Length
_ZERO8, _ZERO4 = bytes(8), bytes(4)
_MAX_WALK = 32  # payloads walked looking for the nonce (wire/message.py allows no more per chain)


@dataclass
class _Secret:
    version: int
    value: bytes = field(repr=False)


class CookieJar:
    """Creates and checks cookies; secrets from the injected random, rotating every ``period``."""

    def __init__(self, random_bytes: Callable[[int], bytes], period: float = 120.0) -> None:
        self._random_bytes = random_bytes
        self._period = period
        self._current = _Secret(0, random_bytes(32))
        self._previous: _Secret | None = None
        self._rotated_at: float | None = None
        self._seed: bytes | None = None
        self._index: int | None = None

    def share(self, seed: bytes) -> None:
        """Secrets from ``seed`` and the period number from now on (module docstring)."""
        self._seed = seed
        self._index = None

    def _seeded(self, index: int) -> _Secret:
        assert self._seed is not None
        value = _hmac.new(self._seed, index.to_bytes(8, "big", signed=True), "sha256").digest()
        return _Secret(index % 256, value)

    def _rotate_if_due(self, now: float) -> None:
        if self._seed is not None:
            index = int(now // self._period)
            if index != self._index:
                self._index = index
                self._current, self._previous = self._seeded(index), self._seeded(index - 1)
            return
        if self._rotated_at is None:
            self._rotated_at = now
        elif now - self._rotated_at >= self._period:
            self._previous = self._current
            self._current = _Secret((self._current.version + 1) % 256, self._random_bytes(32))
            self._rotated_at = now

    @staticmethod
    def _digest(secret: bytes, nonce: bytes, address: str, spi_i: bytes) -> bytes:
        # one-shot HMAC (OpenSSL through hashlib): a flood answers every request with one of these
        message = len(nonce).to_bytes(2, "big") + nonce + address.encode() + b"|" + spi_i
        return _hmac.digest(secret, message, "sha256")

    def make(self, nonce: bytes, address: str, spi_i: bytes, now: float) -> bytes:
        """The cookie to send in N(COOKIE) for this initiator nonce, address and SPI."""
        self._rotate_if_due(now)
        cur = self._current
        return bytes([cur.version]) + self._digest(cur.value, nonce, address, spi_i)

    def verify(self, cookie: bytes, nonce: bytes, address: str, spi_i: bytes, now: float) -> bool:
        """True when ``cookie`` was made by the current or previous secret for these values."""
        self._rotate_if_due(now)
        if len(cookie) != COOKIE_VERSION_LEN + COOKIE_DIGEST_LEN:
            return False
        for secret in (self._current, self._previous):
            if secret is not None and cookie[0] == secret.version:
                expected = self._digest(secret.value, nonce, address, spi_i)
                return _hmac.compare_digest(expected, cookie[1:])
        return False


class CookieMode:
    """Whether cookies are demanded, with hysteresis (module docstring).

    ``update(count, threshold, now)`` with the half-open count (over every worker) gives the mode: on at
    ``count >= threshold``; once on, off only when ``count <= threshold // 2`` and the last pressure lies
    ``hold`` seconds back. Pressure: the count at or over the threshold, or ``threshold`` cookie-less
    requests answered with a cookie (:meth:`demanded`) within one ``hold`` window — as many as would have
    put the count over the threshold had cookies been off."""

    def __init__(self, hold: float = COOKIE_HOLD) -> None:
        self.hold = hold
        self.on = False
        self._pressure_at = -math.inf
        self._window_at = -math.inf
        self._demands = 0

    def update(self, count: int, threshold: int, now: float) -> bool:
        """The mode for this half-open ``count`` (``threshold`` 0: cookies never demanded)."""
        if threshold <= 0:
            self.on = False
            return False
        if count >= threshold:
            self._pressure_at = now
            self.on = True
        elif self.on and count <= threshold // 2 and now - self._pressure_at >= self.hold:
            self.on = False
            self._demands = 0
        return self.on

    def demanded(self, threshold: int, now: float) -> None:
        """A request without a (valid) cookie was answered with one."""
        if now - self._window_at >= self.hold:
            self._window_at, self._demands = now, 0
        self._demands += 1
        if self._demands >= threshold:
            self._pressure_at = now


def offered_cookie(first: bytes) -> bytes | None:
    """The cookie of ``first`` when it is the body of a COOKIE notify (RFC 7296 §3.10: Protocol ID, SPI Size,
    Notify Message Type, SPI, data), else None."""
    if len(first) < 4:
        return None
    spi_size = first[1]
    if int.from_bytes(first[2:4], "big") != _COOKIE or len(first) < 4 + spi_size:
        return None
    return first[4 + spi_size:]


def offers_cookie(data: bytes) -> bool:
    """Whether an IKE message's first payload is a COOKIE notify (the one place RFC 7296 §2.6 allows it): the
    check the kernel's steering program makes too (service/reuseport.py)."""
    return len(data) >= 36 and data[16] == _NOTIFY and data[34] == _COOKIE >> 8 and data[35] == _COOKIE & 0xFF


def is_fresh_init_request(data: bytes) -> bool:
    """An IKE_SA_INIT request that starts a new IKE SA (RFC 7296 §3.1: version 2, responder SPI zero,
    Initiator set, Response clear, message ID 0, Length = the datagram's)."""
    return (len(data) >= 28 and data[18] == _IKE_SA_INIT and data[17] >> 4 == 2
            and data[19] & 0x28 == 0x08 and data[8:16] == _ZERO8 and data[20:24] == _ZERO4
            and int.from_bytes(data[24:28], "big") == len(data))


def find_nonce(data: bytes) -> bytes | None:
    """The Ni data of an IKE_SA_INIT request (RFC 7296 §3.9: 16..256 octets), walking the generic payload
    headers up to it without looking at any other payload (no object per payload: a flood's requests,
    issue 22). None when a length before it does not fit or there is none. Only the quick COOKIE answer
    uses this lax walk: a request that gets further is checked in full (wire/message.py)."""
    ptype, pos, end = data[16], 28, len(data)
    for _ in range(_MAX_WALK):
        if ptype == 0 or end - pos < 4:
            return None
        next_type, _flags, length = _GENERIC.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            return None
        if ptype == _NONCE:
            return data[pos + 4:pos + length] if 20 <= length <= 260 else None
        ptype, pos = next_type, pos + length
    return None


def cookie_answer(spi_i: bytes, cookie: bytes) -> bytes:
    """``HDR(SPIi, 0), N(COOKIE)``: the stateless answer of RFC 7296 §2.6 (what the message encoder made for
    it, octet for octet; tests/engine/test_cookie_flood.py compares)."""
    notify_len = 8 + len(cookie)
    return (spi_i + _ANSWER_HEAD.pack(_NOTIFY, 0x20, _IKE_SA_INIT, 0x20, 0, 28 + notify_len)
            + _NOTIFY_HEAD.pack(0, 0, notify_len, 0, 0, _COOKIE) + cookie)
