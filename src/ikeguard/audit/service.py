"""What the gateway runs: a writer thread (group commit into the store) and one forwarder per configured sink.

``record()`` never blocks the caller (IKE keeps running while the disk or the SIEM is slow); ``flush()`` waits
until everything recorded so far is on disk. ``healthy`` is False while the store cannot write: the gateway
must refuse new SAs and keep existing ones (PCI DSS 10.7.2); ``refuse_new_sas`` says so in one place.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeguard.audit import metrics
from ikeguard.audit.chain import Record
from ikeguard.audit.clock import ClockStatus, read_clock_status
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.sinks import ecs, syslog
from ikeguard.audit.sinks.forwarder import Forwarder, ForwarderSettings
from ikeguard.audit.sinks.transport import Channel, FileChannel, TlsChannel, TlsTarget
from ikeguard.audit.store import AuditStore, AuditStoreError, utc_now

MAX_QUEUED = 200_000
LINGER_BATCH = 200  # group commit: a batch this large is written without lingering
CLOCK_CHECK_SECONDS = 60.0


def admin_command_event(command: str, uid: int, *, outcome: Outcome = Outcome.SUCCESS, reason: str = "",
                        connection: str = "") -> AuditEvent:
    """``admin.command`` for a control-socket command; ``uid`` from SO_PEERCRED (PCI DSS 10.2.1.2)."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid:{uid}"
    return AuditEvent(EventName.ADMIN_COMMAND, outcome, reason=reason or command, admin=user,
                      connection=connection, details={"command": command, "uid": uid})


def lost_records_event(lost: int, why: str) -> AuditEvent:
    """The record that stands for ``lost`` events a full queue could not keep (``MAX_QUEUED``): the loss is
    itself on the trail (PCI DSS 10.7), written with the next batch that gets through."""
    return AuditEvent(EventName.AUDIT_STORE_FAILED, Outcome.FAILURE, reason=f"{lost} events lost: {why}",
                      details={"lost": lost})


@dataclass(frozen=True)
class SinkSpec:
    """One ``[[audit.sinks]]`` entry with paths resolved."""

    name: str
    type: str  # "syslog-tls" | "json"
    tls: TlsTarget | None = None
    path: Path | None = None

    @classmethod
    def from_config(cls, index: int, sink: Any, base_dir: Path) -> SinkSpec:
        """From the policy model's ``AuditSink`` (paths relative to the config file)."""

        def rel(p: str | None) -> Path | None:
            return None if p is None else (base_dir / p)

        tls = None
        if sink.address is not None:
            host, _, port = str(sink.address).rpartition(":")
            ca = rel(sink.ca)
            if ca is None:
                raise ValueError("a TLS sink needs ca")
            tls = TlsTarget(host.strip("[]"), int(port), ca, rel(sink.cert), rel(sink.key))
        name = f"{sink.type}-{index}"
        return cls(name, str(sink.type), tls, rel(sink.path))

    def connector(self) -> Callable[[], Channel]:
        """A function opening this sink's channel."""
        if self.tls is not None:
            target = self.tls
            return lambda: TlsChannel(target)  # also for "json" with an address: JSON lines over TLS
        path = self.path
        if path is None:
            raise ValueError(f"sink {self.name}: neither address nor path")
        return lambda: FileChannel(path)

    def encoder(self) -> Callable[[Record], bytes]:
        """Record -> bytes for this sink type."""
        if self.type == "syslog-tls":
            host, pid = socket.gethostname(), str(os.getpid())
            return lambda r: syslog.frame(syslog.format_message(r, hostname=host, procid=pid))
        return ecs.encode_line


class AuditService:
    """The audit trail of a running gateway."""

    def __init__(self, state_dir: str | os.PathLike[str], sinks: Sequence[SinkSpec] = (), *,
                 settings: ForwarderSettings | None = None, linger: float = 0.0) -> None:
        """``linger``: group commit - a writer woken by fewer than LINGER_BATCH events waits up to this long
        for more before committing (one fsync for many events when they trickle in; 0 = commit at once)."""
        self.store = AuditStore(state_dir)
        self.linger = linger
        self._queue: deque[tuple[AuditEvent, dt.datetime]] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._stop = False
        self._retry = threading.Event()
        self.dropped = 0
        self.committed = 0
        self.forwarders = [Forwarder(s.name, self.store.state_dir, s.connector(), s.encoder(), self.record,
                                     settings) for s in sinks]
        self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
        self.clock: ClockStatus | None = None

    def check_clock(self) -> None:
        """Record ``clock.status`` at start and whenever synchronisation changes (PCI DSS 10.6)."""
        status = read_clock_status()
        if self.clock is None or status.synchronised != self.clock.synchronised:
            self.record(status.event())
        self.clock = status

    def start(self) -> None:
        """Start the writer and the forwarders; record the clock's state."""
        if self.store.initialised_fingerprint:
            print(f"ikeguard: new audit trail; verification key {self.store.verification_key_path} "
                  f"(move it off-host), fingerprint {self.store.initialised_fingerprint}", file=sys.stderr)
        self.record(AuditEvent(EventName.SERVICE_STARTED, reason="audit logging started",
                               details={"sinks": len(self.forwarders)}))
        self.check_clock()
        self._writer.start()
        for f in self.forwarders:
            f.start()

    @property
    def healthy(self) -> bool:
        """False while the store cannot write."""
        return self.store.healthy

    @property
    def failure(self) -> str | None:
        """Why the store cannot write."""
        return self.store.failure

    @property
    def refuse_new_sas(self) -> bool:
        """PCI DSS 10.7: no new SA may be set up while its events could not be recorded."""
        return not self.store.healthy

    def spool_depth(self) -> dict[str, int]:
        """Undelivered records per sink (the metric ``ikeguard_audit_spool_depth``)."""
        return {f.name: f.spool_depth for f in self.forwarders}

    def sink_connected(self) -> dict[str, bool]:
        """Whether each sink's TLS connection is up (``check --socket``)."""
        return {f.name: f.connected for f in self.forwarders}

    @property
    def pending(self) -> int:
        """Events recorded but not yet on disk."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None:
        """Queue an event for the store; never blocks (bounded: beyond MAX_QUEUED the loss is counted)."""
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                return
            self._queue.append((event, now or utc_now()))
            # wake the writer only when it can act: it waits for a first record, or (lingering for a group
            # commit) for LINGER_BATCH of them; a wake-up per record cost a thread switch per record
            if len(self._queue) in (1, LINGER_BATCH):
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded so far is on disk; False on timeout (e.g. the store is failing)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def _write_loop(self) -> None:
        next_clock = time.monotonic() + CLOCK_CHECK_SECONDS
        while True:
            if time.monotonic() >= next_clock:
                self.check_clock()
                next_clock = time.monotonic() + CLOCK_CHECK_SECONDS
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stop, CLOCK_CHECK_SECONDS)
                if self._stop and not self._queue:
                    return
                if not self._queue:
                    continue
                if self.linger > 0 and len(self._queue) < LINGER_BATCH and not self._stop:
                    self._cond.wait_for(lambda: len(self._queue) >= LINGER_BATCH or self._stop, self.linger)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 1000))]
                self._in_flight = len(batch)
                dropped, self.dropped = self.dropped, 0
            if dropped:
                batch.append((lost_records_event(dropped, "the store could not keep up"), utc_now()))
            try:
                self.store.append_batch(batch)
            except AuditStoreError:
                metrics.STORE_HEALTHY.set(0)
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._in_flight = 0
                self._retry.wait(0.5)  # retry later; the store records failure and recovery itself
                continue
            metrics.STORE_HEALTHY.set(1)
            metrics.RECORDS.inc(len(batch))
            with self._cond:
                self._in_flight = 0
                self.committed += len(batch)
                self._cond.notify_all()
            for f in self.forwarders:
                f.wake()

    def close(self, timeout: float = 5.0, *, reason: str = "audit logging stopped",
              outcome: Outcome = Outcome.SUCCESS) -> None:
        """Record ``service.stopped``, flush, stop the threads, close the store (PCI DSS 10.2.1.6)."""
        if self._writer.is_alive():
            self.record(AuditEvent(EventName.SERVICE_STOPPED, outcome, reason=reason))
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._retry.set()
        self._writer.join(timeout)
        for f in self.forwarders:
            f.stop(timeout)
        self.store.close()
