"""The one owner of an outbound SA's sequence numbers (the "one sender per SA" invariant).

A repeated sequence number is a repeated AES-GCM / ChaCha20-Poly1305 nonce (the IV is the sequence number,
RFC 4106 §3.1), which breaks the key; so every sender of an SA draws numbers from exactly one counter:

- :class:`SequenceCounter`: in one process, a lock around a plain int (threads, asyncio).
- :class:`SharedSequenceCounter`: across processes (one worker per TUN queue), a 64-bit counter in shared
  memory behind a process-shared lock; workers lease blocks of numbers (``take_block``) so the lock is taken
  once per block, and a leased block is never handed out again, even when its worker dies.

Numbers never wrap: after the limit (2^32-1, or 2^64-1 with ESN) ``take`` raises
:class:`SequenceExhausted` and the SA must be rekeyed (RFC 4303 §3.3.3).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.sharedctypes
import threading
from typing import Any


class SequenceExhausted(Exception):
    """The SA has used its last sequence number (RFC 4303 §3.3.3: no cycling)."""


def sequence_limit(esn: bool) -> int:
    """The highest sequence number an SA may send."""
    return (1 << 64) - 1 if esn else (1 << 32) - 1


class SequenceCounter:
    """Thread-safe counter: ``take()`` returns 1, 2, 3, ... up to the limit, each number once."""

    __slots__ = ("_lock", "_next", "limit")

    def __init__(self, esn: bool = False, start: int = 1, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self._next = start
        self.limit = sequence_limit(esn) if limit is None else limit

    def take(self) -> int:
        """The next unused sequence number."""
        with self._lock:
            seq = self._next
            if seq > self.limit:
                raise SequenceExhausted
            self._next = seq + 1
            return seq

    @property
    def last(self) -> int:
        """The last number handed out (0 before the first)."""
        return self._next - 1


class SharedSequenceCounter:
    """Process-shared counter; create before forking/spawning workers and pass it to them."""

    def __init__(self, esn: bool = False, limit: int | None = None,
                 context: Any = None) -> None:
        ctx = context if context is not None else multiprocessing.get_context()
        self._value: Any = ctx.Value(ctypes.c_uint64, 0, lock=True)  # the last number leased
        self.limit = sequence_limit(esn) if limit is None else limit

    def take_block(self, size: int) -> range:
        """Lease ``size`` consecutive numbers (fewer at the limit); SequenceExhausted when none is left."""
        with self._value.get_lock():
            last = int(self._value.value)
            if last >= self.limit:
                raise SequenceExhausted
            end = min(last + size, self.limit)
            self._value.value = end
            return range(last + 1, end + 1)

    def take(self) -> int:
        """One number (a block of one)."""
        return self.take_block(1)[0]
