"""What the tests read about IKE worker processes (``[gateway] workers``, issue 22): the worker an SA lives in
and the workers the supervisor started."""

from __future__ import annotations

import re
from collections.abc import Mapping

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def worker_of(sa: Mapping[str, object]) -> int:
    """The worker named by the first octet of our (responder) IKE SPI (service/reuseport.py)."""
    return int(str(sa["spi_r"]).removeprefix("0x")[:2], 16)


def worker_pids(log: str) -> dict[int, int]:
    """worker index -> pid of its latest start, from the supervisor's log (empty: one process)."""
    return {int(index): int(pid) for index, pid in _STARTED.findall(log)}
