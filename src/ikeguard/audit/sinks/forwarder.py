"""Delivers the trail to one sink, in order, at least once, with ``seq`` as the de-duplication key.

The store is the spool: a durable per-sink cursor (``cursors`` table) records the last confirmed ``seq``. The
forwarder runs in its own thread with its own SQLite connection, so a slow or absent SIEM never stalls the
producer. While the sink is unreachable it reconnects with exponential back-off and emits ``audit.sink.down``
once, then ``audit.sink.up`` (with the outage length) when it is back; records flow out from the cursor.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ikeguard.audit import metrics
from ikeguard.audit.chain import Record
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.sinks.transport import Channel
from ikeguard.audit.store import AuditStore

Emit = Callable[[AuditEvent], None]


@dataclass
class ForwarderSettings:
    """Tuning knobs (defaults suit production; tests shorten them)."""

    batch: int = 500
    confirm_delay: float = 1.0
    backoff_min: float = 0.2
    backoff_max: float = 30.0
    idle_poll: float = 0.2
    spool_limit: int = 1_000_000
    spool_high: float = 0.8


class Forwarder:
    """One sink's delivery thread."""

    def __init__(self, name: str, state_dir: Path, connect: Callable[[], Channel],
                 encode: Callable[[Record], bytes], emit: Emit,
                 settings: ForwarderSettings | None = None) -> None:
        self.name = name
        self._state_dir = state_dir
        self._connect = connect
        self._encode = encode
        self._emit = emit
        self.settings = settings or ForwarderSettings()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.spool_depth = 0
        self.connected = False
        self.last_error: str | None = None
        self.sent_records = 0

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread = threading.Thread(target=self._run, name=f"audit-sink-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New records were committed."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (unconfirmed records are resent next time)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        store = AuditStore(self._state_dir, create=False)
        try:
            self._loop(store)
        finally:
            store.close()

    def _check_spool(self, store: AuditStore, confirmed: int, alarmed: bool) -> bool:
        last, _ = store.head()
        self.spool_depth = max(0, last - confirmed)
        metrics.SPOOL_DEPTH.labels(self.name).set(self.spool_depth)
        metrics.SINK_CONNECTED.labels(self.name).set(1 if self.connected else 0)
        limit = self.settings.spool_limit
        if not alarmed and self.spool_depth >= limit * self.settings.spool_high:
            self._emit(AuditEvent(EventName.AUDIT_SPOOL_HIGH, Outcome.FAILURE,
                                  reason=f"{self.spool_depth} records not yet delivered to sink {self.name}",
                                  details={"sink": self.name, "depth": self.spool_depth, "limit": limit}))
            return True
        return alarmed and self.spool_depth >= limit * self.settings.spool_high / 2

    def _loop(self, store: AuditStore) -> None:
        s = self.settings
        confirmed = sent = store.cursor(self.name)
        channel: Channel | None = None
        pending: deque[tuple[int, float]] = deque()
        backoff = s.backoff_min
        down_since: float | None = None
        alarmed = False
        while not self._stop.is_set():
            alarmed = self._check_spool(store, confirmed, alarmed)
            if channel is None:
                try:
                    channel = self._connect()
                except (OSError, ValueError) as exc:
                    self.last_error = str(exc)
                    if down_since is None:
                        down_since = time.monotonic()
                        self._emit(AuditEvent(EventName.AUDIT_SINK_DOWN, Outcome.FAILURE,
                                              reason=f"sink {self.name} unreachable: {exc}"[:500],
                                              details={"sink": self.name}))
                    self._sleep(backoff)
                    backoff = min(backoff * 2, s.backoff_max)
                    continue
                self.connected, backoff, sent, pending = True, s.backoff_min, confirmed, deque()
                if down_since is not None:
                    outage = int(time.monotonic() - down_since)
                    down_since = None
                    self._emit(AuditEvent(EventName.AUDIT_SINK_UP, reason=f"sink {self.name} reachable again",
                                          details={"sink": self.name, "outage_seconds": outage}))
            try:
                records = store.records(sent + 1, limit=s.batch)
                if records:
                    channel.send(b"".join(self._encode(r) for r in records))
                    sent = records[-1].seq
                    self.sent_records += len(records)
                    pending.append((sent, time.monotonic()))
                now = time.monotonic()
                alive = channel.alive()
                if pending and alive and channel.settled():
                    ready = [seq for seq, at in pending if now - at >= s.confirm_delay]
                    if ready:
                        while pending and pending[0][0] <= ready[-1]:
                            pending.popleft()
                        confirmed = ready[-1]
                        store.set_cursor(self.name, confirmed)
                elif not alive:
                    raise ConnectionResetError("receiver closed the connection")
            except OSError as exc:
                self.last_error = str(exc)
                channel.close()
                channel, self.connected = None, False
                down_since = time.monotonic()
                self._emit(AuditEvent(EventName.AUDIT_SINK_DOWN, Outcome.FAILURE,
                                      reason=f"sink {self.name} connection lost: {exc}"[:500],
                                      details={"sink": self.name}))
                continue
            if not records:
                self._sleep(min(s.idle_poll, s.confirm_delay / 2 if pending else s.idle_poll))
        if channel is not None:
            channel.close()
