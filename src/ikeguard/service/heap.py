"""Short garbage-collector pauses on a gateway holding many SAs (issue 22, docs/performance.md).

CPython's cyclic garbage collector runs a full collection whenever a quarter more objects survived since the
last one, and a full collection visits every tracked object: with 100,000 IKE SAs (~37 objects each, 3.7
million in all) that is 1.6 s with the event loop stopped, unloaded; far more on a busy machine (a 17 s stall
was measured). Nothing else in the gateway blocks the loop that long.

The SAs do not need the cyclic collector: a closed IKE SA and its Child SAs are freed by reference
counting alone (tests/service/test_heap.py checks it). So once the gateway holds ``FREEZE_FROM`` IKE SAs,
and again each time their number grew by a quarter, :class:`HeapFreezer` calls :func:`gc.freeze`: every
object alive then moves to the permanent generation, which collections skip; objects in it are still freed
by reference counting. What the permanent generation cannot do is reclaim *cyclic* garbage among its
objects, so every ``THAW_AFTER`` seconds (and at stop) it is handed back with :func:`gc.unfreeze` and the
next full collection reclaims whatever cycles died meanwhile (one long pause an hour instead of many). The
standard library offers the mechanism (``gc.freeze``); no library decides when to use it, hence this module.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("ikeguard.service")

FREEZE_FROM = 10_000  # IKE SAs: below this a full collection takes well under 0.2 s
GROWTH = 1.25  # freeze again once the SAs grew by a quarter since the last freeze
THAW_AFTER = 3600.0  # seconds: cyclic garbage among frozen objects is reclaimed at least this often
CHECK_EVERY = 5.0  # seconds between checks (the gateway's timer)


class HeapFreezer:
    """Decides when to :func:`gc.freeze` and :func:`gc.unfreeze`; :meth:`check` runs on the gateway's loop."""

    def __init__(self, count_sas: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count_sas
        self._clock = clock
        self.frozen_sas = 0  # IKE SAs at the last freeze; 0 = nothing frozen by us
        self.frozen_at = 0.0
        self.freezes = 0

    def check(self) -> None:
        """Freeze when the SAs reached ``FREEZE_FROM`` or grew by ``GROWTH``; thaw after ``THAW_AFTER``."""
        now = self._clock()
        if self.frozen_sas and now - self.frozen_at >= THAW_AFTER:
            self.thaw()
            return  # freeze again at a later check: the next full collection reclaims the cycles first
        count = self._count()
        if count >= FREEZE_FROM and count >= self.frozen_sas * GROWTH:
            gc.freeze()
            self.freezes += 1
            if not self.frozen_sas:
                self.frozen_at = now
            self.frozen_sas = count
            log.debug("gc.freeze at %d IKE SAs (%d objects frozen)", count, gc.get_freeze_count())

    def thaw(self) -> None:
        """Hand the frozen objects back to the collector (also at stop)."""
        if self.frozen_sas:
            gc.unfreeze()
            self.frozen_sas = 0
