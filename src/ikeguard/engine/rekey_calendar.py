"""Spreading rekeys so that SAs set up together do not all rekey together (issue 22, rekey storms).

strongSwan (and ikeguard before this) rekeys each SA at ``rekey_time`` minus a random ``rand_time`` jitter.
After a morning reconnect wave, a reload or a failover, thousands of SAs come up within a minute and then
rekey within the jitter window: 10,000 SAs with strongSwan's defaults (1 h, 6 min of jitter) gave a busiest
second of 2.6x the mean of their rekey window and ~24x the mean over the hour (bench/bench_rekey_storm.py).

The calendar counts the rekeys scheduled in each second. An SA's jittered rekey moment stays as it is while
its second holds fewer than ``cap`` rekeys; otherwise the rekey moves to the latest earlier second that has
room, never before half the lifetime (``earliest``) and never later than planned: an SA is only ever rekeyed
sooner, which shortens its key's life and is always allowed. ``cap`` is twice the mean rate the scheduled
rekeys need over one rekey period (``2 * count / rekey_time``, at least 2 a second), so a burst spreads over
the second half of the lifetime and the next generation inherits that spread. Seconds in the past are
forgotten; a Child SA deleted before its rekey releases its slot.

Full seconds are skipped with pointers to the next candidate below them (a union-find with path compression),
so placing one rekey costs amortised constant time even when the calendar is crowded.
"""

from __future__ import annotations

import math

MIN_CAP = 2  # rekeys per second any gateway may start without moving one


class RekeyCalendar:
    """Scheduled rekeys per whole second (``int(deadline)``) of one engine."""

    def __init__(self) -> None:
        self._load: dict[int, int] = {}
        self._skip: dict[int, int] = {}  # full second -> a lower second to try next
        self._count = 0
        self._cap = MIN_CAP
        self._oldest = 0  # seconds below this are forgotten

    def __len__(self) -> int:
        return self._count

    def place(self, planned: float, earliest: float, rekey_time: float, now: float) -> float:
        """The deadline to use for a rekey planned at ``planned`` (see the module docstring); records it."""
        self._forget_before(int(now))
        cap = max(MIN_CAP, math.ceil(2 * (self._count + 1) / rekey_time)) if rekey_time > 0 else MIN_CAP
        if cap != self._cap:
            self._cap = cap
            self._skip.clear()  # a higher cap may free seconds the pointers jump over
        second = int(planned)
        low = max(math.ceil(min(earliest, planned)), int(now) + 1)
        chosen = self._latest_free(second, low)
        if chosen is None or chosen == second:
            chosen, deadline = second, planned
        else:
            deadline = chosen + (planned - second)  # keep the sub-second part of the jitter
        self._load[chosen] = self._load.get(chosen, 0) + 1
        self._count += 1
        return deadline

    def release(self, deadline: float) -> None:
        """A scheduled rekey will not happen (its SA is gone): free its slot if it is still ahead."""
        second = int(deadline)
        load = self._load.get(second)
        if not load:
            return
        if load == 1:
            del self._load[second]
        else:
            self._load[second] = load - 1
        self._count -= 1
        self._skip.pop(second, None)

    def _latest_free(self, second: int, low: int) -> int | None:
        path: list[int] = []
        while second >= low and self._load.get(second, 0) >= self._cap:
            path.append(second)
            second = self._skip.get(second, second - 1)
        for full in path:
            self._skip[full] = second
        return second if second >= low else None

    def _forget_before(self, second: int) -> None:
        if second <= self._oldest:
            return
        if second - self._oldest > len(self._load):  # a long quiet time: sweep the few entries instead
            for old in [s for s in self._load if s < second]:
                self._count -= self._load.pop(old)
                self._skip.pop(old, None)
        else:
            for old in range(self._oldest, second):
                self._count -= self._load.pop(old, 0)
                self._skip.pop(old, None)
        self._oldest = second
