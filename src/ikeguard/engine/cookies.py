"""Stateless COOKIE generation and verification with rotating secrets (RFC 7296 §2.6).

``Cookie = <VersionIDofSecret> | HMAC-SHA256(secret, Ni | IPi | SPIi)``. The current and previous secret are
accepted, so a rotation never invalidates a cookie handed out just before it. ``share(seed)``: the secret of
period ``k = floor(now / period)`` is ``HMAC-SHA256(seed, k)`` and its version ``k mod 256``, so processes
that share the seed (the workers of one gateway, issue 22) agree on every secret without talking to each
other.
"""

from __future__ import annotations

import hmac as _hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

COOKIE_VERSION_LEN = 1
COOKIE_DIGEST_LEN = 32
MAX_COOKIE_LEN = 64  # RFC 7296 §2.6: the responder chooses, 1..64 octets


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
        mac = HMAC(secret, hashes.SHA256())
        mac.update(len(nonce).to_bytes(2, "big") + nonce + address.encode() + b"|" + spi_i)
        return mac.finalize()

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
