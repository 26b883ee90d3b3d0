"""Anti-replay window (RFC 4303 §3.4.3) with 64-bit ESN inference (RFC 4303 Appendix A).

Written by hand: no library provides it. Usage per packet: ``seq = window.check(seq_low)`` before the
ICV check (None = replayed or too old: drop without spending crypto); after the ICV verified,
``window.update(seq)``.
The bitmap is a Python int: bit ``i`` set = sequence number ``top - i`` was received.
"""

from __future__ import annotations

_LOW = 1 << 32
_MASK32 = _LOW - 1


class ReplayWindow:
    """Sliding window of ``size`` sequence numbers; ``size == 0`` turns replay checks off (not seq 0)."""

    __slots__ = ("_bitmap", "esn", "size", "top")

    def __init__(self, size: int = 32, esn: bool = False) -> None:
        if size < 0:
            raise ValueError("replay window size must be >= 0")
        self.size = size
        self.esn = esn
        self.top = 0  # highest authenticated sequence number (64-bit with ESN)
        self._bitmap = 0

    def seed(self, top: int) -> None:
        """Start at ``top`` with the whole window marked seen: an SA taken over from another node (HA), which
        may have received any of those numbers after its last replication."""
        self.top = top
        self._bitmap = (1 << self.size) - 1

    def infer(self, seq_low: int) -> int:
        """The full sequence number for the received low 32 bits (RFC 4303 Appendix A2.2)."""
        if not self.esn:
            return seq_low
        w = max(self.size, 1)
        tl, th = self.top & _MASK32, self.top >> 32
        if tl >= w - 1:  # Case A: window within one sequence number subspace
            seq_high = th if seq_low >= tl - w + 1 else th + 1
        else:  # Case B: window spans two subspaces
            seq_high = th - 1 if seq_low >= (tl - w + 1) & _MASK32 else th
            if seq_high < 0:
                seq_high = 0
        return (seq_high << 32) | seq_low

    def check(self, seq_low: int) -> int | None:
        """Full sequence number if it may be new, else None (replayed, left of the window, or 0)."""
        seq = self.infer(seq_low)
        if seq == 0:
            return None  # the first packet sent carries 1 (RFC 4303 §3.3.3)
        if self.size == 0 or seq > self.top:
            return seq
        offset = self.top - seq
        if offset >= self.size or (self._bitmap >> offset) & 1:
            return None
        return seq

    def update(self, seq: int) -> bool:
        """Mark an authenticated ``seq`` received; False (and no change) when it is a replay after all."""
        if self.size == 0:
            self.top = max(self.top, seq)
            return True
        if seq > self.top:
            shift = seq - self.top
            self._bitmap = ((self._bitmap << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = seq
            return True
        offset = self.top - seq
        if offset >= self.size or (self._bitmap >> offset) & 1:
            return False
        self._bitmap |= 1 << offset
        return True
