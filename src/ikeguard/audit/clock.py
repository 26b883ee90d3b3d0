"""The clock's synchronisation state for ``clock.status`` events (PCI DSS 10.6, NIST AU-8).

Reads the kernel's NTP state with ``adjtimex(2)`` (via ctypes; no Python binding exists): ``STA_UNSYNC``
clear means a time daemon (chrony, ntpd, systemd-timesyncd) disciplines the clock; ``maxerror`` is the
kernel's error bound. The source is named when a known daemon's state is visible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from dataclasses import dataclass

from ikeguard.audit.events import AuditEvent, EventName, Outcome

STA_UNSYNC = 0x0040
TIME_ERROR = 5


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockStatus:
    """Synchronised or not, the kernel's error bound, and the daemon when known."""

    synchronised: bool | None
    max_error_us: int | None
    source: str

    def event(self) -> AuditEvent:
        """The ``clock.status`` record."""
        if self.synchronised is None:
            state = "unknown"
        else:
            state = "synchronised" if self.synchronised else "not synchronised"
        details: dict[str, str | int | bool] = {
            "source": "kernel adjtimex",
            "daemon": self.source,
            "state": state,
        }
        if self.synchronised is not None:
            details["synchronised"] = self.synchronised
        if self.max_error_us is not None:
            details["max_error_us"] = self.max_error_us
        outcome = Outcome.SUCCESS if self.synchronised else Outcome.FAILURE
        return AuditEvent(
            EventName.CLOCK_STATUS,
            outcome,
            reason=f"clock {state} (kernel NTP state; time daemon: {self.source})",
            details=details,
        )


def _source() -> str:
    for daemon in ("chronyd", "ntpd", "systemd-timesyncd"):
        if shutil.which(daemon) or shutil.which(daemon, path="/usr/sbin:/lib/systemd:/usr/lib/systemd"):
            return daemon
    return "unknown"


def read_clock_status() -> ClockStatus:
    """The current state (``synchronised=None`` when the kernel cannot be asked)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return ClockStatus(None, None, _source())
    if state < 0:
        return ClockStatus(None, None, _source())
    synced = not (tx.status & STA_UNSYNC) and state != TIME_ERROR
    return ClockStatus(synced, int(tx.maxerror), _source())
