"""The audit writer and forwarders in a child process, so their CPU work (JSON, hashing, sealing, TLS)
never competes with IKE for the parent's GIL. Same interface as ``AuditService`` (record, flush, healthy,
refuse_new_sas, close).

The parent only appends ``(fields, time)`` to a buffer; a sender thread pickles whole batches down a pipe.
The child records them through an ``AuditService`` and publishes how many are on disk and whether the store is
healthy in shared memory, with the undelivered records per sink (``spool_depth()``, for the metrics).
An event counts as acknowledged only once the child reports it on disk; the child exits when the parent is
gone.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from ikeguard.audit.events import AuditEvent, Outcome, event_from_fields
from ikeguard.audit.service import AuditService, SinkSpec
from ikeguard.audit.sinks.forwarder import ForwarderSettings
from ikeguard.audit.store import parse_time, rfc3339, utc_now

_ACKED, _HEALTHY, _READY = 0, 1, 2
_SPOOL = 3  # slots _SPOOL + i: undelivered records of sink i
# While records keep coming (the last send was less than SEND_DELAY ago) the sender lets them gather up to
# SEND_DELAY seconds (or SEND_BATCH records) before it takes the GIL to pickle them: one hand-off per batch
# instead of one per record, which otherwise stalls the IKE loop's every sendto() on a busy machine. A record
# after a quiet spell, flush() and close() go at once; acknowledgement still means "on disk".
SEND_DELAY = 0.02
SEND_BATCH = 512
# Group commit in the child: records trickling in (e.g. 175 auth failures/s) are committed every COMMIT_LINGER
# seconds instead of every SEND_DELAY, so the fixed cost of a commit (transaction, fsyncs, sealing-key
# overwrite, forwarder wake-up) is paid for many records; acknowledgement (on disk) comes that much later.
COMMIT_LINGER = 0.1


def _child_main(
    state_dir: str,
    sinks: Sequence[SinkSpec],
    settings: ForwarderSettings | None,
    conn: Connection,
    status: Any,
    parent: int,
) -> None:
    service = AuditService(state_dir, sinks, settings=settings, linger=COMMIT_LINGER)
    service.start()
    received = 0
    status[_READY] = 1
    try:
        while os.getppid() == parent:
            if conn.poll(0.02):
                batch = conn.recv()
                if batch is None:
                    break
                for fields, when in batch:
                    service.record(event_from_fields(fields), parse_time(when))
                received += len(batch)
            status[_ACKED] = received - service.pending
            status[_HEALTHY] = 1 if service.healthy else 0
            n = len(service.forwarders)
            for i, forwarder in enumerate(service.forwarders):
                status[_SPOOL + i] = forwarder.spool_depth
                status[_SPOOL + n + i] = 1 if forwarder.connected else 0
        service.flush(10)
    finally:
        if os.getppid() == parent:
            service.close()
        else:  # the gateway vanished without closing us: say so, do not claim an orderly stop
            service.close(reason="gateway process ended without a clean stop (killed or crashed); "
                                 "audit logging stopped", outcome=Outcome.FAILURE)
        status[_ACKED] = received - service.pending
        status[_READY] = 2


class IsolatedAuditService:
    """``AuditService`` in a child process."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        sinks: Sequence[SinkSpec] = (),
        *,
        settings: ForwarderSettings | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=False)[::-1]
        self._sink_names = [s.name for s in sinks]
        # slots _SPOOL + i: undelivered records of sink i; _SPOOL + n + i: sink i connected (1) or not (0)
        self._status: Any = ctx.Array("q", _SPOOL + 2 * len(self._sink_names), lock=False)
        self._proc = ctx.Process(
            target=_child_main,
            name="ikeguard-audit",
            daemon=True,
            args=(os.fspath(state_dir), list(sinks), settings, child_conn, self._status, os.getpid()),
        )
        self._buf: list[tuple[dict[str, Any], str]] = []
        self._cond = threading.Condition()
        self._submitted = 0
        self._closing = False
        self._urgent = False  # flush() waits: send what is buffered now
        self._sender = threading.Thread(target=self._send_loop, name="audit-sender", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until its store is open."""
        self._proc.start()
        self._status[_HEALTHY] = 1
        self._sender.start()
        deadline = utc_now() + dt.timedelta(seconds=timeout)
        while self._status[_READY] == 0 and self._proc.is_alive() and utc_now() < deadline:
            self._proc.join(0.02)
        if self._status[_READY] == 0:
            raise RuntimeError("audit process did not start")

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None:
        """Queue an event; never blocks on the disk or the SIEM."""
        item = (event.fields_dict(), rfc3339(now or utc_now()))
        with self._cond:
            self._buf.append(item)
            self._submitted += 1
            if len(self._buf) in (1, SEND_BATCH):
                self._cond.notify()

    def _send_loop(self) -> None:
        last_send = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._buf) or self._closing)
                if time.monotonic() - last_send < SEND_DELAY:  # busy: gather the rest of the burst
                    self._cond.wait_for(lambda: len(self._buf) >= SEND_BATCH or self._closing or self._urgent,
                                        SEND_DELAY)
                self._urgent = False
                batch, self._buf = self._buf, []
                closing = self._closing
            if batch:
                self._conn.send(batch)
                last_send = time.monotonic()
            if closing and not batch:
                self._conn.send(None)
                return

    @property
    def healthy(self) -> bool:
        """False while the child's store cannot write."""
        return bool(self._status[_HEALTHY]) and self._proc.is_alive()

    @property
    def refuse_new_sas(self) -> bool:
        """PCI DSS 10.7: refuse new SAs while events cannot be recorded."""
        return not self.healthy

    @property
    def failure(self) -> str | None:
        """Why events cannot be recorded (None while healthy); the cause itself is in the child's log."""
        if not self._proc.is_alive():
            return "audit process not running"
        return None if self._status[_HEALTHY] else "audit store cannot write"

    @property
    def pending(self) -> int:
        """Events recorded but not yet on disk (the metric ``ikeguard_audit_queue_depth``)."""
        return max(0, self._submitted - int(self._status[_ACKED]))

    def spool_depth(self) -> dict[str, int]:
        """Undelivered records per sink (the metric ``ikeguard_audit_spool_depth``), as the child last saw."""
        return {name: int(self._status[_SPOOL + i]) for i, name in enumerate(self._sink_names)}

    def sink_connected(self) -> dict[str, bool]:
        """Whether each sink's TLS connection is up, as the child last saw (``check --socket``)."""
        n = len(self._sink_names)
        return {name: bool(self._status[_SPOOL + n + i]) for i, name in enumerate(self._sink_names)}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event recorded so far is on disk."""
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify()
        deadline = utc_now() + dt.timedelta(seconds=timeout)
        while self._status[_ACKED] < target:
            if utc_now() >= deadline or not self._proc.is_alive():
                return False
            self._proc.join(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the child."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._sender.join(timeout)
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
