"""The audit writer and forwarders in a child process, so their CPU work (JSON, hashing, sealing, TLS)
never competes with IKE for the parent's GIL. Same interface as ``AuditService`` (record, flush, healthy,
refuse_new_sas, close).

The parent only appends ``(fields, time)`` to a buffer; a sender thread pickles whole batches down a pipe.
The child records them through an ``AuditService`` and publishes how many are on disk and whether the store is
healthy in shared memory, with the undelivered records per sink (``spool_depth()``, for the metrics).
An event counts as acknowledged only once the child reports it on disk; the child exits when the parent is
gone.

Channels (issue 22, ``[gateway] workers`` > 1): ``channels = N`` gives the child N more writers, one
``SOCK_SEQPACKET`` socket pair each (:meth:`IsolatedAuditService.channel`), so that worker processes hand
their batches straight to the one trail writer instead of through the parent (which unpickled and re-pickled
every record). A sequenced packet arrives whole or not at all, so a writer killed mid-send cannot leave a torn
message for its successor on the same channel. Messages: ``("records", [(fields, time), ...])`` and
``("flush", token, timeout)``, answered with ``(token, on_disk)`` on the same channel once the child's store
has everything it received so far on disk. The child records in arrival order, so the hash chain is one
sequence as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import os
import pickle
import socket
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from ikeguard.audit.events import AuditEvent, Outcome, event_from_fields
from ikeguard.audit.service import MAX_QUEUED, AuditService, SinkSpec, lost_records_event
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
CHANNEL_BUFFER = 1 << 20  # SO_SNDBUF/SO_RCVBUF of a channel (the kernel caps it at net.core.[wr]mem_max)
CHANNEL_MESSAGE = 1 << 16  # a writer splits batches above this many pickled bytes
CHANNEL_RECV = 1 << 20  # the child reads a message into this much (larger ones are refused by the writer)
GATHER = 0.02  # with channels the child reads at most this often (every writer's queued batches at once)
PendingRecord = tuple[dict[str, Any], str]  # a record's fields and its RFC 3339 time


class PendingRecords:
    """Records waiting for a sender to hand them to the audit process: at most ``MAX_QUEUED``; beyond, the
    loss is counted and :meth:`take` adds one ``audit.store.failed`` record naming it (PCI DSS 10.7: the loss
    itself is on the trail). A process whose audit process stalled or died keeps bounded memory. The
    caller holds its own lock (``IsolatedAuditService``, a worker's ``AuditRelay``)."""

    __slots__ = ("items", "lost")

    def __init__(self) -> None:
        self.items: list[PendingRecord] = []
        self.lost = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: PendingRecord) -> bool:
        """Queue ``item``; False when it was counted as lost instead."""
        if len(self.items) >= MAX_QUEUED:
            self.lost += 1
            return False
        self.items.append(item)
        return True

    def take(self) -> list[PendingRecord]:
        """Everything waiting, with the loss record when records were lost since the last take."""
        batch, self.items = self.items, []
        if self.lost:
            batch.append((lost_records_event(self.lost, "the audit process did not take them").fields_dict(),
                          rfc3339(utc_now())))
            self.lost = 0
        return batch


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(writer's end, child's end) of one channel."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in pair:
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, CHANNEL_BUFFER)
    return pair


def _serve_channel(service: AuditService, sock: socket.socket, buffer: bytearray) -> bool:
    """Every message queued on a channel (read into ``buffer``: no allocation of CHANNEL_RECV bytes per
    message); False once the channel is closed."""
    flags = 0  # the first read: the channel is readable
    while True:
        try:
            size = sock.recv_into(buffer, 0, flags)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not size:
            return False
        flags = socket.MSG_DONTWAIT
        try:
            message = pickle.loads(memoryview(buffer)[:size])  # noqa: S301 - our own socket pair, as mp's
        except Exception:  # not a message of ours: nothing to record from it
            message = ("",)
        if message[0] == "records":
            for fields, when in message[1]:
                service.record(event_from_fields(fields), parse_time(when))
        elif message[0] == "flush":
            ok = service.flush(float(message[2]))
            with contextlib.suppress(OSError):
                sock.send(pickle.dumps((message[1], ok)))


def _child_main(
    state_dir: str,
    sinks: Sequence[SinkSpec],
    settings: ForwarderSettings | None,
    conn: Connection,
    status: Any,
    parent: int,
    channels: Sequence[socket.socket] = (),
) -> None:
    service = AuditService(state_dir, sinks, settings=settings, linger=COMMIT_LINGER)
    service.start()
    received = 0  # the parent's records (the channels' writers have their own flush)
    status[_READY] = 1
    sources: list[Any] = [conn, *channels]
    buffer = bytearray(CHANNEL_RECV)
    try:
        while os.getppid() == parent:
            done = False
            for ready in wait(sources, 0.02):
                if ready is not conn:
                    if not _serve_channel(service, cast(socket.socket, ready), buffer):
                        sources.remove(ready)
                    continue
                batch = conn.recv()
                if batch is None:
                    done = True
                    break
                for fields, when in batch:
                    service.record(event_from_fields(fields), parse_time(when))
                received += len(batch)
            if done:
                break
            if len(sources) > 1:  # writers' batches queue meanwhile: one wake-up per GATHER, not per writer
                time.sleep(GATHER)
            # records are committed in arrival order: at most ``pending`` of the parent's are not on disk yet
            status[_ACKED] = max(0, received - service.pending)
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
        status[_ACKED] = max(0, received - service.pending)
        status[_READY] = 2


class IsolatedAuditService:
    """``AuditService`` in a child process."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        sinks: Sequence[SinkSpec] = (),
        *,
        settings: ForwarderSettings | None = None,
        channels: int = 0,
    ) -> None:
        ctx = mp.get_context("spawn")
        pairs = [channel_pair() for _ in range(channels)]
        self._channels = [writer for writer, _ in pairs]
        self._conn, child_conn = ctx.Pipe(duplex=False)[::-1]
        self._sink_names = [s.name for s in sinks]
        # slots _SPOOL + i: undelivered records of sink i; _SPOOL + n + i: sink i connected (1) or not (0)
        self._status: Any = ctx.Array("q", _SPOOL + 2 * len(self._sink_names), lock=False)
        self._proc = ctx.Process(
            target=_child_main,
            name="ikeguard-audit",
            daemon=True,
            args=(os.fspath(state_dir), list(sinks), settings, child_conn, self._status, os.getpid(),
                  [reader for _, reader in pairs]),
        )
        self._child_ends = [reader for _, reader in pairs]
        self._pending = PendingRecords()
        self._cond = threading.Condition()
        self._submitted = 0
        self._closing = False
        self._urgent = False  # flush() waits: send what is buffered now
        self._sender = threading.Thread(target=self._send_loop, name="audit-sender", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until its store is open."""
        self._proc.start()
        for sock in self._child_ends:  # the child has its copies
            sock.close()
        self._status[_HEALTHY] = 1
        self._sender.start()
        deadline = utc_now() + dt.timedelta(seconds=timeout)
        while self._status[_READY] == 0 and self._proc.is_alive() and utc_now() < deadline:
            self._proc.join(0.02)
        if self._status[_READY] == 0:
            raise RuntimeError("audit process did not start")

    def channel(self, index: int) -> socket.socket:
        """The writer's end of channel ``index`` (hand it to the writer process; it outlives that process,
        so a successor gets the same channel)."""
        return self._channels[index]

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None:
        """Queue an event; never blocks on the disk or the SIEM (bounded: beyond ``MAX_QUEUED`` waiting
        records the loss is counted and recorded with the next batch that gets through)."""
        item = (event.fields_dict(), rfc3339(now or utc_now()))
        with self._cond:
            if not self._pending.add(item):
                return
            self._submitted += 1
            if len(self._pending) in (1, SEND_BATCH):
                self._cond.notify()

    def _send_loop(self) -> None:
        last_send = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                if time.monotonic() - last_send < SEND_DELAY:  # busy: gather the rest of the burst
                    self._cond.wait_for(lambda: len(self._pending) >= SEND_BATCH or self._closing
                                        or self._urgent, SEND_DELAY)
                self._urgent = False
                waiting = len(self._pending)
                batch = self._pending.take()
                self._submitted += len(batch) - waiting  # the loss record, when one was added
                closing = self._closing
            try:
                if batch:
                    self._conn.send(batch)
                    last_send = time.monotonic()
                if closing and not batch:
                    self._conn.send(None)
                    return
            except OSError:  # the audit process is gone: ``healthy`` says so, new SAs are refused
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
        for sock in self._channels:
            sock.close()
