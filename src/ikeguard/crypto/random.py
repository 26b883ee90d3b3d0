"""Injectable randomness for nonces, SPIs, cookies, IVs and ephemeral keys (deterministic in tests)."""

from __future__ import annotations

import secrets
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes


@runtime_checkable
class RandomSource(Protocol):
    """Source of random octets; production uses :class:`SystemRandom`."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` random octets."""
        ...


class SystemRandom:
    """The operating system CSPRNG (``secrets.token_bytes`` = ``os.urandom``)."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` octets from the OS CSPRNG."""
        if n < 0:
            raise ValueError("negative length")
        return secrets.token_bytes(n)

    def __repr__(self) -> str:
        return "SystemRandom()"


class DeterministicRandom:
    """Reproducible stream for tests only: SHAKE-256(seed || counter) blocks. Never use for real keys."""

    def __init__(self, seed: bytes | str | int = 0) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(8, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = bytes(seed)
        self._counter = 0
        self._buffer = b""

    def bytes(self, n: int) -> bytes:
        """Return the next ``n`` octets of the stream."""
        if n < 0:
            raise ValueError("negative length")
        while len(self._buffer) < n:
            digest = hashes.Hash(hashes.SHAKE256(136))
            digest.update(self._seed + self._counter.to_bytes(8, "big"))
            self._buffer += digest.finalize()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def __repr__(self) -> str:
        return "DeterministicRandom(<seed>)"
