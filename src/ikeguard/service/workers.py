"""IKE on every core (issue 22 item 1): ``[gateway] workers = N`` processes behind one UDP port 500/4500.

The supervisor (``ikeguard run``) opens every socket: per listen address one ``SO_REUSEPORT`` group on 500 and
one on 4500, 2N members each, with the steering program of :mod:`ikeguard.service.reuseport` (our SPI's first
octet names the worker; IKE_SA_INIT requests spread by source address; new requests without a COOKIE to the
workers' bulk sockets, everything else to their priority sockets). Worker ``i`` is a full gateway process
(``Gateway``, its engine with ``worker_id = i``) on members ``i`` (priority) and ``N + i`` (bulk) of each
group. The supervisor keeps its
copies of the sockets open, so a worker that dies leaves the group unchanged: its successor inherits the same
sockets (and the datagrams queued meanwhile) while the other workers, their SAs and their sockets are
untouched.

What must be global is kept by the supervisor:

* audit: one trail writer, the supervisor's ``IsolatedAuditService`` process. Each worker hands its records
  straight to it over its own channel (:class:`AuditRelay`; the supervisor's :class:`AuditHub` passes the
  channel on at the worker's start, and keeps it for a restarted successor); ``flush`` waits until the audit
  process has them on disk; the store's health (PCI DSS 10.7: refuse new SAs while events cannot be
  recorded) is published to the workers in shared memory.
* half-open SAs and cookies (RFC 7296 §2.6): every worker publishes its half-open count in shared memory and
  turns cookies on when the sum over all workers reaches ``cookie_threshold``; the cookie secret is derived
  from one seed per period (``CookieJar.share``), so every worker makes and accepts the same cookies.
  ``block_threshold`` (per peer address) needs no sharing: one address's IKE_SA_INIT requests reach one
  worker.
* INITIAL_CONTACT and ``unique``: an ``ike.up`` from one worker whose peer sent INITIAL_CONTACT, or whose
  connection has ``unique = replace`` or ``keep`` in the worker's current configuration, is told to the
  other workers through the supervisor (with the relay's next batch): they drop that peer's IKE SAs of that
  connection without a DELETE after INITIAL_CONTACT (RFC 7296 §2.4) and delete them for ``replace``; for
  ``keep`` one holding an older IKE SA with the peer answers, and the supervisor has the new one deleted
  (within a worker the engine does all of this as before).
* virtual IP pools (RFC 7296 §3.15): the supervisor owns every lease and persists ``leases.json``; workers ask
  it over an owner-only socket (:mod:`ikeguard.service.pool_broker`, which says why not a partition); a dead
  worker's leases go offline, kept for their users.
* control socket, reload: the control layer's proxy (``control/workers_run.py``) answers on
  ``state_dir/control.sock`` for all workers, each of which serves a private socket
  ``state_dir/workers/I/control.sock``.
* the userspace data plane (one TUN and one set of ESP sockets per machine): the supervisor runs it
  (service/workerplane.py, with ``[gateway] esp_workers`` ESP processes) and every worker installs its SAs
  there over a pipe; ``xfrm`` is global in the kernel, ``none`` has nothing to share.
* metrics: one endpoint, served by the supervisor, merging the workers' expositions
  (``control/metrics_workers.py``).
* vici: one socket, served by the supervisor through the control proxy (``control/vici_workers.py``).

Not shared yet, so refused with ``workers`` > 1 (:func:`unsupported`): ``[ha]``.
``[ha]`` (docs/ha.md "Workers"): HA replication is one node's view (``EtcdStore.sync`` deletes every record it
did not write, one sync mark per node), fencing and the heartbeat would have to move to the supervisor with
"may send"/fenced published to every worker, and a takeover would have to restore each SA in the worker its
SPI names (the control proxy sends ``ha`` to worker 0 only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import multiprocessing as mp
import os
import pickle
import secrets
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent, EventName, event_from_fields
from ikeguard.audit.isolated import CHANNEL_MESSAGE, PendingRecord, PendingRecords
from ikeguard.audit.store import parse_time, rfc3339, utc_now
from ikeguard.engine.identity import peer_identity
from ikeguard.service.reuseport import open_group

log = logging.getLogger("ikeguard.service")

_REFUSE = 0  # shared slot: the audit store cannot write (1) or can (0)
_HALF_OPEN = 1  # shared slots _HALF_OPEN + i: worker i's half-open IKE SAs
PUBLISH_INTERVAL = 0.1  # seconds between a worker's half-open count updates
RESTART_DELAY = 0.5  # seconds before a dead worker is restarted; longer when it keeps dying
CRASH_WINDOW, CRASH_LIMIT, CRASH_DELAY = 60.0, 5, 10.0
SEND_DELAY = 0.02  # the relay gathers records this long while they keep coming (as IsolatedAuditService)


def worker_count(value: int | str) -> int:
    """``[gateway] workers`` as a number ("auto": the cores this process may run on)."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return int(value)


def _not_shared(plan: Any) -> list[str]:
    """What this configuration uses that worker processes do not share yet (issue 22)."""
    reasons = []
    if getattr(plan.config.model, "ha", None) is not None and getattr(plan.config.model.ha, "enabled", False):
        reasons.append("[ha] (replication, fencing and takeover are per process: docs/ha.md \"Workers\")")
    return reasons


def unsupported(plan: Any, workers: int) -> str | None:
    """Why this configuration cannot run with ``workers`` processes yet (None: it can)."""
    reasons = _not_shared(plan) if workers > 1 else []
    if not reasons:
        return None
    return (f"workers = {workers} cannot be used with " + ", ".join(reasons)
            + " yet (issue 22); set workers = 1")


def effective_workers(plan: Any) -> tuple[int, str | None]:
    """The number of worker processes to run, and why ``"auto"`` (the default) settled for one.

    ``workers = "auto"`` means one process per core this gateway may run on, unless the configuration uses
    something that is not yet shared across workers (:func:`unsupported`: ``[ha]``); then one process, and
    the reason is logged. An explicit number is taken as given (and refused by the supervisor when
    :func:`unsupported` says so).
    """
    value = plan.config.model.gateway.workers
    workers = worker_count(value)
    if value != "auto" or workers <= 1:
        return workers, None
    reasons = _not_shared(plan)
    return (1, ", ".join(reasons)) if reasons else (workers, None)


def worker_socket_path(state_dir: Path, index: int) -> Path:
    """The private control socket of worker ``index``."""
    return Path(state_dir) / "workers" / str(index) / "control.sock"


# ---------------------------------------------------------------------------------------------- sockets
def open_groups(listen: Sequence[str], ike_port: int, natt_port: int, workers: int,
                esp_sockets: int = 0) -> dict[tuple[str, int], list[socket.socket]]:
    """Every (listen address, port) -> its group's sockets in worker order (port 0: the kernel's choice, the
    same for the whole group). ``esp_sockets``: the NAT-T group of the first address of each IP version gets
    that many more members for the machine's one userspace data plane (service/workerplane.py), after the
    workers' ones; ESP in UDP goes to them (service/reuseport.py)."""
    groups: dict[tuple[str, int], list[socket.socket]] = {}
    families: set[int] = set()
    try:
        for text in listen:
            ip = ipaddress.ip_address(text)
            address = str(ip)
            ike = open_group(address, ike_port, workers, natt=False, priority=True)
            groups[(address, ike[0].getsockname()[1])] = ike
            if natt_port != ike_port:
                esp = esp_sockets if ip.version not in families else 0
                families.add(ip.version)
                natt = open_group(address, natt_port, workers, natt=True, priority=True, esp_sockets=esp)
                groups[(address, natt[0].getsockname()[1])] = natt
    except OSError:
        close_groups(groups)
        raise
    return groups


def close_groups(groups: dict[tuple[str, int], list[socket.socket]]) -> None:
    """Close every socket of every group."""
    for socks in groups.values():
        for sock in socks:
            sock.close()
    groups.clear()


# ---------------------------------------------------------------------------------------------- audit
class AuditRelay:
    """A worker's audit recorder (the gateway's AuditRecorder).

    Records go straight to the audit process over the worker's channel (``IsolatedAuditService.channel``,
    handed over by the supervisor's :class:`AuditHub` on the pipe as the first message); without one (an
    audit recorder in the supervisor's own process) through the supervisor as before. An ``ike.up`` the
    other workers must hear of (:func:`uniqueness_notice`) is told to the supervisor on the pipe with the
    next batch; :meth:`tell_kept` answers another worker's ``unique = keep`` notice."""

    def __init__(self, conn: Connection, shared: Any,
                 unique: Callable[[str], str] = lambda connection: "no") -> None:
        self._conn = conn
        self._shared = shared
        self.unique = unique  # a connection's ``unique`` policy now (the gateway's current plan)
        self._channel: socket.socket | None = None
        with contextlib.suppress(EOFError, OSError):
            if conn.poll(30.0) and conn.recv() == ("channel", True):
                self._channel = socket.socket(fileno=recv_handle(conn))
        self._flushes = 0
        self._pending = PendingRecords()
        self._notices: list[dict[str, Any]] = []  # uniqueness notices for the supervisor, sent with a batch
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._closing = False
        self._idle = False  # the sender waits to be notified of the next record
        self._sender = threading.Thread(target=self._send_loop, name="audit-relay", daemon=True)
        self._sender.start()

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None:
        """Queue an event for the trail writer; never blocks on it (bounded: ``PendingRecords``)."""
        fields = event.fields_dict()
        notice = uniqueness_notice(event, self.unique) if event.event is EventName.IKE_UP else None
        with self._cond:
            if notice is not None:  # sent with the next batch (not a pipe message and wake-up per SA)
                self._notices.append(notice)
            if not self._pending.add((fields, rfc3339(now or utc_now()))):
                return
            if self._idle:
                self._idle = False
                self._cond.notify()

    def tell_kept(self, kept: list[dict[str, Any]]) -> None:
        """Tell the supervisor which new IKE SAs of other workers ``unique = keep`` refuses, because this
        worker holds an older one with the same peer (``{"worker", "uniqueid", "reason"}``)."""
        with contextlib.suppress(OSError), self._send_lock:
            self._conn.send(("kept", kept))

    def _take(self) -> list[PendingRecord]:
        """The waiting records; the waiting uniqueness notices are sent to the supervisor on the way (the
        caller holds the send lock)."""
        with self._cond:
            batch = self._pending.take()
            notices, self._notices = self._notices, []
        if notices:
            with contextlib.suppress(OSError):
                self._conn.send(("up", notices))
        return batch

    def _send(self, batch: list[PendingRecord]) -> None:
        """Hand ``batch`` over (the caller holds the send lock)."""
        if self._channel is None:
            self._conn.send(("records", batch))
            return
        data = pickle.dumps(("records", batch), pickle.HIGHEST_PROTOCOL)
        if len(data) <= CHANNEL_MESSAGE:
            self._channel.send(data)
        elif len(batch) > 1:
            half = len(batch) // 2
            self._send(batch[:half])
            self._send(batch[half:])
        else:  # one record larger than a channel message: the supervisor's pipe takes any size
            self._conn.send(("records", batch))

    def _send_loop(self) -> None:
        # While records keep coming the sender only sleeps SEND_DELAY between batches; it waits to be woken
        # (record() notifies) only after a batch window without records, so that a busy worker's IKE thread
        # does not pay a thread wake-up (futex, context switch) per batch.
        busy = False
        while True:
            with self._cond:
                if not busy:
                    self._idle = True
                    self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                    self._idle = False
                closing = self._closing
            time.sleep(0 if closing else SEND_DELAY)
            try:
                with self._send_lock:
                    batch = self._take()
                    busy = bool(batch)
                    if batch:
                        self._send(batch)
            except OSError:
                return
            if closing:
                return

    @property
    def refuse_new_sas(self) -> bool:
        """PCI DSS 10.7, as the supervisor's trail writer reports it."""
        return bool(self._shared[_REFUSE])

    @property
    def healthy(self) -> bool:
        """False while the supervisor's store cannot write."""
        return not self.refuse_new_sas

    @property
    def failure(self) -> str | None:
        """Why events cannot be recorded (None while healthy)."""
        return "audit store cannot write (supervisor)" if self.refuse_new_sas else None

    @property
    def pending(self) -> int:
        """Records not yet handed to the trail writer."""
        return len(self._pending)

    def spool_depth(self) -> dict[str, int]:
        """Sinks belong to the supervisor's writer."""
        return {}

    def sink_connected(self) -> dict[str, bool]:
        """Sinks belong to the supervisor's writer."""
        return {}

    def flush(self, timeout: float = 10.0) -> bool:
        """Hand everything over and wait until the trail writer has it on disk."""
        try:
            with self._send_lock:
                batch = self._take()
                if batch:
                    self._send(batch)
                if self._channel is None:
                    self._conn.send(("flush", timeout))
                    if not self._conn.poll(timeout + 1.0):
                        return False
                    return bool(self._conn.recv())
                return self._flush_channel(self._channel, timeout)
        except (OSError, EOFError):
            return False

    def _flush_channel(self, channel: socket.socket, timeout: float) -> bool:
        # the channel outlives this process: an answer to a predecessor's flush may still be queued
        self._flushes += 1
        token = (os.getpid(), self._flushes)
        channel.send(pickle.dumps(("flush", token, timeout)))
        deadline = time.monotonic() + timeout + 1.0
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([channel], [], [], left)[0]:
                break
            answer, ok = pickle.loads(channel.recv(CHANNEL_MESSAGE))  # noqa: S301 - our own channel
            if answer == token:
                return bool(ok)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Send what is left."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._sender.join(timeout)


class AuditHub:
    """The supervisor's side: hands each worker its channel to the audit process (when the trail writer has
    one), then reads the worker's pipe: uniqueness notices (``up``: :func:`uniqueness_notice`, ``kept``:
    :meth:`AuditRelay.tell_kept`), and records and flushes of a worker without a channel."""

    def __init__(self, audit: Any, on_notice: Callable[[int, str, list[dict[str, Any]]], None]) -> None:
        self.audit = audit
        self.on_notice = on_notice  # (worker, "up" | "kept", notices): uniqueness across workers

    def attach(self, index: int, conn: Connection, pid: int | None = None) -> threading.Thread:
        """Give worker ``index`` its channel, then read its pipe until it closes."""
        channel = getattr(self.audit, "channel", None)
        try:
            if channel is not None:
                conn.send(("channel", True))
                send_handle(conn, channel(index).fileno(), pid or 0)
            else:
                conn.send(("channel", False))
        except OSError:
            log.warning("worker %d: could not hand over its audit channel", index)
        thread = threading.Thread(target=self._read, args=(index, conn), name=f"audit-hub-{index}",
                                  daemon=True)
        thread.start()
        return thread

    def _read(self, index: int, conn: Connection) -> None:
        while True:
            try:
                kind, body = conn.recv()
            except (EOFError, OSError, ValueError):
                return
            except Exception:  # a worker killed mid-message: a truncated pickle
                log.warning("worker %d: unreadable audit hand-off; dropped the rest of its pipe", index)
                return
            if kind in ("up", "kept"):
                with contextlib.suppress(Exception):
                    self.on_notice(index, kind, body)
            elif kind == "records":
                for fields, when in body:
                    self.audit.record(event_from_fields(fields), parse_time(when))
            elif kind == "flush":
                ok = self.audit.flush(float(body))
                with contextlib.suppress(OSError):
                    conn.send(ok)


# ---------------------------------------------------------------------------------------------- global state
class SharedState:
    """Shared memory between the supervisor and the workers (no lock: one writer per slot)."""

    def __init__(self, workers: int, seed: bytes | None = None) -> None:
        self.workers = workers
        self.slots: Any = mp.get_context("spawn").Array("q", _HALF_OPEN + workers, lock=False)
        self.cookie_seed = seed or secrets.token_bytes(32)


def join_worker(gateway: Any, index: int, workers: int, shared: Any, cookie_seed: bytes,
                sockets: dict[tuple[str, int], tuple[socket.socket, socket.socket]]) -> Callable[[], None]:
    """Make ``gateway`` (not started yet) worker ``index``: our SPIs name it, it binds the inherited sockets,
    cookies follow the global half-open count and the shared secret. Returns the publisher to call
    periodically (half-open count into shared memory)."""
    engine = gateway.engine
    engine.ctx.worker_id = index
    engine.ctx.number_uniqueids(index + 1, workers)  # (uniqueid - 1) % workers == index: routing
    gateway.actions.starts_connections = index == 0  # start_action, reload starts: one IKE SA, not N
    gateway.records_admin_changes = index == 0  # a reload or an inventory change: one record, not N
    gateway.transport.inherited = {(ipaddress.ip_address(a), p): pair for (a, p), pair in sockets.items()}
    engine.share_cookie_secret(cookie_seed)
    slot = _HALF_OPEN + index

    def elsewhere() -> int:
        return sum(int(shared[_HALF_OPEN + i]) for i in range(workers) if i != index)

    engine.ctx.half_open_elsewhere = elsewhere

    def publish() -> None:
        shared[slot] = engine.half_open_count()

    return publish


def derive_secret(seed: bytes, label: str) -> bytes:
    """A per-purpose key from the supervisor's seed."""
    return hmac.new(seed, label.encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class _Worker:
    index: int
    process: Any = None
    audit_conn: Connection | None = None  # supervisor's end
    command_conn: Connection | None = None  # supervisor's end (commands to the worker)
    plane_conn: Connection | None = None  # supervisor's end (data-plane requests, service/workerplane.py)
    starts: list[float] = field(default_factory=list)
    reader: threading.Thread | None = None


WorkerTarget = Callable[..., None]


class WorkerPool:
    """Start, watch and restart the worker processes (``target(index, workers, sockets, audit_conn,
    command_conn, shared_slots, cookie_seed, plane_conn, *args)`` in a spawned process; ``plane_conn`` is
    None without ``plane``, the supervisor's data plane (``PlaneHost.attach``))."""

    def __init__(self, workers: int, target: WorkerTarget, args: tuple[Any, ...],
                 groups: dict[tuple[str, int], list[socket.socket]], hub: AuditHub,
                 state: SharedState, plane: Any = None) -> None:
        self.plane = plane
        self.count = workers
        self.target = target
        self.args = args
        self.groups = groups
        self.hub = hub
        self.state = state
        self.workers = [_Worker(i) for i in range(workers)]
        self.restarts = 0
        self.started = False  # set by the supervisor once every worker answered: later deaths are restarted
        self.early_exit: tuple[int, int | None] | None = None  # (worker, exit code) of one that died before
        self._ctx = mp.get_context("spawn")
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    def sockets_of(self, index: int) -> dict[tuple[str, int], tuple[socket.socket, socket.socket]]:
        """Worker ``index``'s members of every group: (priority, bulk)."""
        return {key: (socks[index], socks[self.count + index]) for key, socks in self.groups.items()}

    def pids(self) -> list[int | None]:
        """The worker processes' ids (None while one is being restarted)."""
        return [w.process.pid if w.process is not None and w.process.is_alive() else None
                for w in self.workers]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every worker and watch them."""
        self._loop = loop
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        if self._stopping or self._loop is None:
            return
        for conn in (worker.audit_conn, worker.command_conn, worker.plane_conn):
            if conn is not None:
                conn.close()
        plane_there = None
        if self.plane is not None:
            worker.plane_conn, plane_there = self._ctx.Pipe(duplex=True)
        audit_here, audit_there = self._ctx.Pipe(duplex=True)
        command_here, command_there = self._ctx.Pipe(duplex=False)  # (reader, writer)
        worker.audit_conn, worker.command_conn = audit_here, command_there
        process = self._ctx.Process(
            target=self.target, name=f"ikeguard-worker-{worker.index}", daemon=False,
            args=(worker.index, self.count, self.sockets_of(worker.index), audit_there, command_here,
                  self.state.slots, self.state.cookie_seed, plane_there, *self.args))
        process.start()
        audit_there.close()
        command_here.close()
        if plane_there is not None:
            plane_there.close()
            assert worker.plane_conn is not None
            self.plane.attach(worker.index, worker.plane_conn)
        worker.process = process
        worker.starts.append(time.monotonic())
        worker.reader = self.hub.attach(worker.index, audit_here, process.pid)
        self._loop.add_reader(process.sentinel, self._exited, worker)
        log.info("worker %d started (pid %d)", worker.index, process.pid)

    def _exited(self, worker: _Worker) -> None:
        assert self._loop is not None
        process = worker.process
        self._loop.remove_reader(process.sentinel)
        process.join(0)
        code = process.exitcode
        if self._stopping:
            return
        if not self.started:  # it could not start (the configuration, the data plane): not worth retrying
            log.error("worker %d (pid %d) ended with %s before it was ready", worker.index, process.pid, code)
            self.early_exit = (worker.index, code)
            return
        self.state.slots[_HALF_OPEN + worker.index] = 0
        recent = [t for t in worker.starts if time.monotonic() - t < CRASH_WINDOW]
        worker.starts = recent
        delay = CRASH_DELAY if len(recent) >= CRASH_LIMIT else RESTART_DELAY
        log.warning("worker %d (pid %d) ended with %s; restarting it in %.1f s (the other workers go on)",
                    worker.index, process.pid, code, delay)
        self.restarts += 1
        handle = self._loop.call_later(delay, self._restart, worker)
        self._pending.add(handle)

    def _restart(self, worker: _Worker) -> None:
        self._pending = {h for h in self._pending if not h.cancelled()}
        self._spawn(worker)

    def command(self, index: int, message: tuple[Any, ...]) -> None:
        """Send a command to worker ``index`` (dropped while it is being restarted)."""
        conn = self.workers[index].command_conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(message)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every running worker."""
        for pid in self.pids():
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker (each deletes its SAs), wait, SIGKILL what is left."""
        self._stopping = True
        for handle in self._pending:
            handle.cancel()
        self.signal_all(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(process.sentinel)
            await loop.run_in_executor(None, process.join, timeout)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 5.0)
            for conn in (worker.audit_conn, worker.command_conn, worker.plane_conn):
                if conn is not None:
                    conn.close()


def uniqueness_notice(event: AuditEvent, unique: Callable[[str], str]) -> dict[str, Any] | None:
    """What the other workers must hear of an ``ike.up``, or None: the peer said it rebooted
    (INITIAL_CONTACT, RFC 7296 §2.4: their SAs with it are dead), or its connection has ``unique = replace``
    (theirs are deleted) or ``keep`` (one holding an older SA with the peer answers, and this one is deleted).
    The peer is found by ``key``, the name the engine's uniqueness index gives it (``peer_key`` of the
    identity and EAP user, from the record: the recorded identity is made printable and cannot be looked up);
    ``peer`` is the recorded text, for the reasons; ``since``: when the SA came up, to tell which of two is
    the older under ``keep``."""
    initial_contact = event.details.get("initial_contact") == "yes"
    policy = unique(event.connection)
    key = event.details.get("peer_key")
    if not isinstance(key, str) or not (initial_contact or policy in ("replace", "keep")):
        return None
    eap = event.details.get("eap_identity")
    return {"connection": event.connection, "initial_contact": initial_contact, "unique": policy,
            "uniqueid": event.ike_uniqueid, "since": time.time(), "key": key,
            "peer": peer_identity(event.remote_id, eap if isinstance(eap, str) else "")}


def answer_uniqueness(gateway: Any, notices: list[dict[str, Any]], where: int,
                      index: int) -> list[dict[str, Any]]:
    """Worker ``index`` acting on worker ``where``'s :func:`uniqueness_notice` batch, as the engine does
    within one process: the peer's IKE SAs here are dropped after INITIAL_CONTACT and deleted under
    ``replace``; under ``keep`` the answers (for :meth:`AuditRelay.tell_kept`) name the new SAs to delete
    because this worker holds an older one with the peer."""
    def why(notice: dict[str, Any]) -> str:
        if notice["initial_contact"]:
            return f"INITIAL_CONTACT from {notice['peer']} in an IKE SA of worker {where}"
        return f"unique=replace: superseded by an IKE SA in worker {where}"

    gateway.superseded_elsewhere(
        (n["connection"], n["key"], why(n), bool(n["initial_contact"]), float(n["since"]))
        for n in notices if n["initial_contact"] or n["unique"] == "replace")
    kept = []
    for n in notices:
        if n["initial_contact"] or n["unique"] != "keep":
            continue
        held = gateway.held_before(n["connection"], n["key"], float(n["since"]))
        if held is not None:
            kept.append({"worker": where, "uniqueid": n["uniqueid"],
                         "reason": f"unique=keep: {n['peer']} already has IKE SA {held} in worker {index}"})
    return kept
