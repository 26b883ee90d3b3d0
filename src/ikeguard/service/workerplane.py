"""The machine's one userspace data plane under ``ikeguard run`` with ``[gateway] workers`` > 1 (issue 22).

A TUN device, its routes and the ESP sockets exist once per machine, so the IKE workers cannot each open a
plane. The supervisor runs it instead: one standalone plane process per IP version of ``listen``
(``python -m ikeguard.dataplane.userspace``, its TUN ``ikg0``/``ikg6``) with ``[gateway] esp_workers`` ESP
worker processes (dataplane/userspace/workers.py: a multi-queue TUN, one sender per outbound SA). Its ESP
sockets are members of the supervisor's ``SO_REUSEPORT`` group on 4500 (after the IKE workers' ones; the
group's program sends ESP there by SPI, IKE by our IKE SPI to the IKE workers: service/reuseport.py); they
are handed over as inherited descriptors (``socket_fds``).

Every IKE worker's gateway sees a :class:`PlaneClient` as its data plane: each call is one request over a pipe
to the supervisor (:class:`PlaneHost`), which applies it with the plane's JSON commands and answers; as with
xfrm's netlink calls, the engine waits for the answer (a local round trip). Counters (``sas``, accounting at
delete) come back in the answers; lifetime upcalls are polled from the plane every ``EVENT_POLL`` seconds and
sent to the worker that owns the Child SA (``(child uniqueid - 1) mod N``, the workers' numbering).

* An outbound SA is sent by one ESP worker (:meth:`PlaneClient.esp_worker`), the only process drawing its
  sequence numbers (one sender per SA); the inbound SA sits in ESP worker ``SPI mod M``, where ESP steers.
* Inbound SPIs are unique across IKE workers by construction: worker ``i`` of ``N`` only picks SPIs with
  ``(SPI div M) mod N == i`` (``M`` ESP workers; ``SPI mod M`` names the ESP worker, as the plane steers).
* An IKE worker that dies: its pipe closes and the host removes every SA and policy that worker installed
  (its peers re-establish, as with xfrm after a crash); the other workers' SAs are not touched. Its
  successor starts with an empty set (the same uniqueid numbering: the old Child SAs are gone first).
* NAT-T keepalives (RFC 3948 §2.3) go out of the IKE workers' own members of the 4500 group: the same
  address and port as the ESP, so the NAT keeps one mapping.

A plane process that ends on its own stops the gateway (exit code 1: the service manager restarts it; no ESP
without it). Limits: more than one ESP worker needs ESP in UDP (plain ESP, protocol 50, is not steered: the
plane refuses such SAs; peers behind NAT, or ``encap = true``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    DataPlaneFeatures,
    EventCallback,
    IkeShare,
    LifetimeReached,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
    SequenceNearOverflow,
)
from ikeguard.dataplane.userspace.config import sa_to_json, selector_fields
from ikeguard.dataplane.userspace.plane import FEATURES, REKEYED_INBOUND_LINGER
from ikeguard.policy.ts import TrafficSelector

log = logging.getLogger("ikeguard.service")
EVENT_POLL = 1.0  # seconds between polls of the plane's lifetime upcalls
READY_TIMEOUT = 30.0
TUN_NAMES = {4: "ikg0", 6: "ikg6"}


def _endpoint(ep: SaEndpoint) -> str:
    return f"[{ep.address}]:{ep.port}" if ep.address.version == 6 else f"{ep.address}:{ep.port}"


def _counters(obj: dict[str, Any] | None) -> SaCounters | None:
    if not obj:
        return None
    return SaCounters(bytes=int(obj.get("bytes", 0)), packets=int(obj.get("packets", 0)),
                      drops={str(k): int(v) for k, v in dict(obj.get("drops", {})).items()})


def event_from_json(obj: dict[str, Any]) -> DataPlaneEvent | None:
    """A plane upcall from its ``events`` answer (None: a kind the gateway does not act on)."""
    kind = obj.get("type")
    if kind == "LifetimeReached":
        return LifetimeReached(spi=int(obj["spi"]), direction=SaDirection(obj["direction"]),
                               hard=bool(obj["hard"]), kind=str(obj["kind"]),
                               child_uniqueid=int(obj.get("child_uniqueid", 0)))
    if kind == "SequenceNearOverflow":
        return SequenceNearOverflow(spi=int(obj["spi"]), hard=bool(obj["hard"]),
                                    child_uniqueid=int(obj.get("child_uniqueid", 0)))
    return None


# ---------------------------------------------------------------------------------------------- supervisor
def _child_environment() -> dict[str, str]:
    """Our environment with our import path as PYTHONPATH, so that ``python -m ikeguard...`` finds the package
    wherever this process found it (a console script that sets ``sys.path`` itself, as multiprocessing's
    spawn passes ``sys.path`` to its children)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


class _Plane:
    """One standalone plane process (one IP version) and its JSON command channel."""

    def __init__(self, version: int, process: subprocess.Popen[str]) -> None:
        self.version = version
        self.process = process
        self.lock = threading.Lock()

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        with self.lock:
            try:
                stdin.write(json.dumps(cmd) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (OSError, ValueError):
                line = ""
        if not line:
            return {"ok": False, "error": f"the IPv{self.version} data plane is gone"}
        reply: dict[str, Any] = json.loads(line)
        return reply


class PlaneHost:
    """The supervisor's side (module docstring): the plane processes, one request thread per IKE worker,
    what each worker installed, and the upcall poller."""

    def __init__(self, sockets: dict[int, tuple[str, int, list[socket.socket]]], esp_workers: int,
                 ike_workers: int, state_dir: Path,
                 deliver: Callable[[int, dict[str, Any]], None]) -> None:
        self.sockets = sockets  # IP version -> (address, port, the ESP members of its 4500 group)
        self.esp_workers = esp_workers
        self.ike_workers = ike_workers
        self.state_dir = Path(state_dir)
        self.deliver = deliver  # (IKE worker, upcall as JSON): called from the poller thread
        self.planes: dict[int, _Plane] = {}
        self._lock = threading.Lock()  # the books below
        self.sas: dict[int, set[tuple[int, int, str, int]]] = {}  # worker -> (version, SPI, direction, child)
        self.policies: dict[int, set[tuple[int, int]]] = {}  # worker -> (version, child)
        self._forgetting: dict[int, threading.Lock] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        """Start one plane process per IP version; wait for each to say it is ready."""
        folder = self.state_dir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        for version, (address, port, socks) in sorted(self.sockets.items()):
            config = {"tun": TUN_NAMES[version], "listen": f"[{address}]" if version == 6 else address,
                      "port": port,
                      "socket_fds": [s.fileno() for s in socks], "workers": self.esp_workers,
                      "rekeyed_inbound_linger": REKEYED_INBOUND_LINGER}
            path = folder / f"plane-ipv{version}.json"
            path.write_text(json.dumps(config))  # no secrets: SAs come over the channel
            process = subprocess.Popen(
                [sys.executable, "-m", "ikeguard.dataplane.userspace", str(path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                pass_fds=[s.fileno() for s in socks], env=_child_environment())
            plane = _Plane(version, process)
            self.planes[version] = plane
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line or not json.loads(line).get("ready"):
                raise DataPlaneError(f"the IPv{version} data plane did not start (see its error above)")
            log.info("data plane IPv%d: pid %d, %d ESP worker(s), TUN %s", version, process.pid,
                     self.esp_workers, json.loads(line).get("tun"))
        self._poller = threading.Thread(target=self._poll, name="plane-events", daemon=True)
        self._poller.start()

    def ended(self) -> str | None:
        """Which plane process ended on its own (None while all run): the supervisor stops then."""
        for plane in self.planes.values():
            code = plane.process.poll()
            if code is not None and not self._stop.is_set():
                return f"the IPv{plane.version} data plane (pid {plane.process.pid}) ended with {code}"
        return None

    def pids(self) -> list[int]:
        """The plane processes' ids."""
        return [p.process.pid for p in self.planes.values()]

    # --- requests from the IKE workers ------------------------------------------------------------
    def attach(self, index: int, conn: Connection) -> threading.Thread:
        """Serve worker ``index``'s requests on ``conn`` (a fresh worker: whatever its predecessor left in
        the plane goes first)."""
        self.forget(index)
        thread = threading.Thread(target=self._serve, args=(index, conn), name=f"plane-hub-{index}",
                                  daemon=True)
        thread.start()
        return thread

    def _serve(self, index: int, conn: Connection) -> None:
        while True:
            try:
                version, cmd = conn.recv()
            except (EOFError, OSError, ValueError):
                break
            except Exception:  # a worker killed mid-message: a truncated pickle
                break
            reply = self.apply(index, int(version), cmd)
            try:
                conn.send(reply)
            except (OSError, ValueError):
                break
        self.forget(index)

    def apply(self, index: int, version: int, cmd: dict[str, Any]) -> dict[str, Any]:
        """One command of worker ``index`` to the IPv``version`` plane; the books follow its success."""
        plane = self.planes.get(version)
        if plane is None:
            return {"ok": False, "error": f"no userspace data plane for IPv{version} outer addresses"}
        reply = plane.ask(cmd)
        if not reply.get("ok"):
            return reply
        op = cmd.get("op")
        with self._lock:
            sas, policies = self.sas.setdefault(index, set()), self.policies.setdefault(index, set())
            if op == "add_sa":
                sa = cmd["sa"]
                sas.add((version, int(sa["spi"]), str(sa["direction"]), int(sa["child"])))
                if sa["direction"] == SaDirection.OUTBOUND.value:
                    policies.add((version, int(sa["child"])))
            elif op == "delete_sa":
                spi, direction, child = int(cmd["spi"]), str(cmd["direction"]), cmd.get("child")
                sas -= {k for k in sas if k[:3] == (version, spi, direction)
                        and (child is None or k[3] == int(child))}
            elif op == "add_policy":
                policies.add((version, int(cmd["child"])))
            elif op == "remove_policy":
                policies.discard((version, int(cmd["child"])))
        return reply

    def forget(self, index: int) -> None:
        """Remove every SA and policy worker ``index`` installed (it is gone). Serialised per worker: a
        successor attached while its predecessor's SAs are still being removed waits for that (it numbers its
        Child SAs as the predecessor did, and a late ``remove_policy`` would hit its new Child SA)."""
        with self._lock:
            serial = self._forgetting.setdefault(index, threading.Lock())
        with serial:
            self._forget(index)

    def _forget(self, index: int) -> None:
        with self._lock:
            sas, policies = self.sas.pop(index, set()), self.policies.pop(index, set())
        if not sas and not policies:
            return
        removed = [0, 0]
        for version, spi, direction, child in sorted(sas):
            plane = self.planes.get(version)
            if plane is not None and plane.ask({"op": "delete_sa", "spi": spi, "direction": direction,
                                                "child": child}).get("ok"):
                removed[0] += 1
        for version, child in sorted(policies):
            plane = self.planes.get(version)
            if plane is not None and plane.ask({"op": "remove_policy", "child": child}).get("ok"):
                removed[1] += 1
        log.warning("worker %d gone: removed its %d of %d SA(s) and %d of %d policy(ies) from the data plane",
                    index, removed[0], len(sas), removed[1], len(policies))

    # --- upcalls ---------------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(EVENT_POLL):
            for plane in list(self.planes.values()):
                reply = plane.ask({"op": "events"})
                for event in reply.get("events", []):
                    child = int(event.get("child_uniqueid", 0) or 0)
                    if child > 0:
                        with contextlib.suppress(Exception):
                            self.deliver((child - 1) % self.ike_workers, event)

    @staticmethod
    def _log_stats(plane: _Plane) -> None:
        """Each ESP worker's packet stats at stop (hand-offs show the flows were read by several workers)."""
        if plane.process.poll() is not None:
            return
        reply = plane.ask({"op": "counters"})
        per_worker = reply.get("workers") or [{"worker": 0, "stats": reply.get("stats", {})}]
        for entry in per_worker:
            stats = entry.get("stats", {})
            log.info("data plane IPv%d ESP worker %s at stop: %s", plane.version, entry.get("worker"),
                     " ".join(f"{k}={v}" for k, v in sorted(stats.items())))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the plane processes (SIGTERM, by PID; SIGKILL after ``timeout``): their TUNs and routes go."""
        self._stop.set()
        for plane in self.planes.values():
            self._log_stats(plane)
            with contextlib.suppress(ProcessLookupError):
                plane.process.terminate()
        for plane in self.planes.values():
            try:
                plane.process.wait(timeout)
            except subprocess.TimeoutExpired:
                plane.process.kill()
                plane.process.wait(5.0)
            for stream in (plane.process.stdin, plane.process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.planes.clear()


# ---------------------------------------------------------------------------------------------- worker
class PlaneChannel:
    """A worker's end of the pipe to the supervisor: one request, one answer (shared by its clients)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def ask(self, version: int, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send ``cmd`` for the IPv``version`` plane, wait for its answer."""
        with self.lock:
            try:
                self.conn.send((version, cmd))
                reply: dict[str, Any] = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise DataPlaneError(f"the supervisor's data plane is unreachable: {exc}") from None
        return reply


class PlaneClient:
    """One IP version of the machine's plane, as an IKE worker's :class:`~ikeguard.dataplane.base.DataPlane`
    (several versions: ``FamilyPlanes`` of clients)."""

    def __init__(self, channel: PlaneChannel, version: int, worker: int, workers: int,
                 esp_workers: int) -> None:
        self.channel = channel
        self.version = version
        self.worker, self.workers, self.esp_workers = worker, workers, esp_workers
        self._callbacks: list[EventCallback] = []
        self._inbound: set[int] = set()  # SPIs allocated or installed by this worker

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        reply = self.channel.ask(self.version, cmd)
        if not reply.get("ok"):
            raise DataPlaneError(str(reply.get("error", "refused")))
        return reply

    @property
    def features(self) -> DataPlaneFeatures:
        """The userspace plane's transforms."""
        return FEATURES

    def alloc_spi(self) -> int:
        """A fresh inbound SPI of this worker's share: ``(SPI div M) mod N`` names it (module docstring)."""
        m, n = self.esp_workers, self.workers
        while True:
            spi = secrets.randbits(32)
            quotient = spi // m
            quotient += (self.worker - quotient % n) % n
            spi = quotient * m + spi % m
            if 0x100 <= spi <= 0xFFFFFFFF and spi not in self._inbound:
                self._inbound.add(spi)
                return spi

    def add_sa(self, sa: SaConfig) -> None:
        """Install one direction in the machine's plane."""
        described = sa_to_json(sa)
        if sa.direction is SaDirection.OUTBOUND:
            described["worker"] = self.esp_worker(sa.child_uniqueid)
        self._ask({"op": "add_sa", "sa": described})
        if sa.direction is SaDirection.INBOUND:
            self._inbound.add(sa.spi)

    def esp_worker(self, child_uniqueid: int) -> int:
        """The ESP worker that sends on Child SA ``child_uniqueid``'s outbound SA: by this IKE worker's own
        count of Child SAs (its uniqueids step by N), so its consecutive Child SAs -- RFC 9611 per-resource
        SAs of one tunnel among them -- alternate over the ESP workers (``(uniqueid - 1) mod M`` would put
        every Child SA of IKE worker i on ESP worker i when N = M)."""
        return ((child_uniqueid - 1) // self.workers) % self.esp_workers

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            encap: bool, children: Collection[int] | None = None) -> None:
        """Move SAs to new outer endpoints (MOBIKE, NAT port changes)."""
        self._ask({"op": "update_sa_addresses", "spis": list(spis), "local": _endpoint(local),
                   "remote": _endpoint(remote), "encap": encap,
                   "children": None if children is None else sorted(children)})

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Remove one direction; its final counters."""
        reply = self._ask({"op": "delete_sa", "spi": spi, "direction": direction.value,
                           "child": child_uniqueid})
        if direction is SaDirection.INBOUND:
            self._inbound.discard(spi)
        return _counters(reply.get("counters"))

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Route the remote selectors into the TUN."""
        self._ask({"op": "add_policy", "child": child_uniqueid, "local_ts": selector_fields(local_ts),
                   "remote_ts": selector_fields(remote_ts)})

    def remove_policy(self, child_uniqueid: int) -> None:
        """Remove a Child SA's policy and routes."""
        self._ask({"op": "remove_policy", "child": child_uniqueid})

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """Live counters of one SA."""
        reply = self._ask({"op": "sa_counters", "spi": spi, "direction": direction.value,
                           "child": child_uniqueid})
        return _counters(reply.get("counters"))

    def subscribe(self, callback: EventCallback) -> None:
        """Upcalls for this worker's Child SAs (:meth:`deliver`)."""
        self._callbacks.append(callback)

    def deliver(self, obj: dict[str, Any]) -> None:
        """An upcall the supervisor sent this worker."""
        event = event_from_json(obj)
        if event is not None:
            for callback in self._callbacks:
                callback(event)

    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """The worker's IKE sockets need nothing."""

    def ike_shares(self) -> Sequence[IkeShare]:
        """None: the worker's own members of the 4500 group carry its IKE and keepalives."""
        return ()

    def start(self, loop: Any) -> None:
        """Nothing runs in the worker."""

    def close(self) -> None:
        """The plane belongs to the supervisor."""


def open_client(conn: Connection, versions: Sequence[int], worker: int, workers: int,
                esp_workers: int) -> tuple[Any, list[PlaneClient]]:
    """A worker's data plane (one client, or ``FamilyPlanes`` of one per version) and its clients."""
    from ikeguard.service.familyplanes import FamilyPlanes

    channel = PlaneChannel(conn)
    clients = [PlaneClient(channel, v, worker, workers, esp_workers) for v in sorted(set(versions))]
    if len(clients) == 1:
        return clients[0], clients
    return FamilyPlanes({c.version: c for c in clients}), clients
