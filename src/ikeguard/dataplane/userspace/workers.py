"""ESP on every core: the standalone userspace data plane as N worker processes (issue 22, ``workers``).

Layout (all created by the supervisor before it forks the workers, so indices and queues never shift):

* one multi-queue TUN device (``IFF_MULTI_QUEUE``), one queue per worker: the kernel picks the queue of an
  outgoing packet by its flow hash (and keeps a flow on the queue its replies were written to), so the flows
  of one tunnel spread over the workers;
* one ``SO_REUSEPORT`` group on the NAT-T port, one socket per worker, with the classic-BPF program of
  :mod:`.steering` sending each ESP packet to worker ``SPI mod N`` -- the worker holding that inbound SA;
* one datagram socket pair per worker for hand-offs.

One sender per SA (RFC 4106 §3.1: the sequence number is the AES-GCM nonce, RFC 4303 §3.3.3): every outbound
SA lives in exactly one worker (``"worker"`` in its description, default ``(child - 1) mod N``), the only
process that draws its sequence numbers. A worker reading a packet for a policy whose SA is elsewhere hands it
to the owner (:class:`~ikeguard.dataplane.table.Forward`); with RFC 9611 per-resource SAs (one Child SA per
worker, the same selectors) every worker has its own SA for the tunnel and nothing is handed over.

The supervisor installs routes, reads the JSON commands on stdin (as the one-process plane) and passes each to
the worker(s) concerned; ``counters`` answers every SA with the worker that holds it, and per-worker stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any, TextIO

from ikeguard.dataplane.base import DataPlaneError, DataPlaneEvent, SaDirection
from ikeguard.dataplane.userspace.commands import handle, start_keepalives
from ikeguard.dataplane.userspace.config import endpoint, sa_from_json, selectors
from ikeguard.dataplane.userspace.plane import UserspaceDataPlane
from ikeguard.dataplane.userspace.routes import install_routes, remove_routes
from ikeguard.dataplane.userspace.steering import open_group, worker_of_spi
from ikeguard.dataplane.userspace.tun import configure_tun, open_tun

WORST_OVERHEAD = 28 + 8 + 16 + 15 + 2 + 32  # as UserspaceDataPlane.tun_mtu
# tun_offload (coalesce.py) unless configured: measured faster and with less CPU per byte in every two-worker
# benchmark run (docs/performance.md, "ESP on every core")
TUN_OFFLOAD_DEFAULT = True


def owner(sa: dict[str, Any], workers: int) -> int:
    """The worker that holds SA ``sa`` (JSON): inbound by its SPI (steering), outbound as configured."""
    spi = sa["spi"]
    spi = int(spi, 0) if isinstance(spi, str) else int(spi)
    if sa["direction"] == SaDirection.INBOUND.value:
        return worker_of_spi(spi, workers)
    if "worker" in sa:
        return int(sa["worker"]) % workers
    return (int(sa.get("child", 1)) - 1) % workers


# --- a worker -------------------------------------------------------------------------------------------
async def _serve_worker(index: int, plane: UserspaceDataPlane, control: socket.socket,
                        keepalive: dict[str, Any] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    events: list[DataPlaneEvent] = []
    plane.subscribe(events.append)
    plane.start(loop)
    reader = control.makefile("r")
    writer = control.makefile("w")

    def on_control() -> None:
        line = reader.readline()
        if not line:
            loop.remove_reader(control.fileno())
            stop.set()
            return
        cmd = json.loads(line)
        if cmd.get("op") == "forward":
            worker = None if cmd.get("worker") is None else int(cmd["worker"])
            plane.table.set_forward(int(cmd["child"]), selectors(cmd["local_ts"]),
                                    selectors(cmd["remote_ts"]), worker)
            reply: dict[str, Any] = {"ok": True}
        else:
            reply = handle(plane, cmd, events)
            if cmd.get("op") == "counters":
                reply["worker"] = index
        writer.write(json.dumps(reply) + "\n")
        writer.flush()

    control.setblocking(True)
    loop.add_reader(control.fileno(), on_control)
    task = start_keepalives(plane, keepalive) if index == 0 else None
    await stop.wait()
    if task is not None:
        task.cancel()
    plane.close()


def _worker_main(index: int, config: dict[str, Any], tun: tuple[int, str], sock: socket.socket,
                 control: socket.socket, handoff: dict[int, socket.socket], handoff_in: socket.socket) -> int:
    plane = UserspaceDataPlane(tun[1], sock, path_mtu=int(config.get("path_mtu", 1500)),
                               tun_mtu=int(config["tun_mtu"]) if "tun_mtu" in config else None,
                               rekeyed_inbound_linger=float(config.get("rekeyed_inbound_linger", 0.0)),
                               tun_fd=tun[0], manage_routes=False, handoff=handoff, handoff_in=handoff_in,
                               tun_offload=bool(config.get("tun_offload", TUN_OFFLOAD_DEFAULT)))
    try:
        asyncio.run(_serve_worker(index, plane, control, config.get("keepalive")))
    except (DataPlaneError, OSError) as exc:
        print(f"ikeguard data plane worker {index}: {exc}", file=sys.stderr)
        return 1
    return 0


# --- the supervisor -------------------------------------------------------------------------------------
class Supervisor:
    """Forks the workers and routes control commands to them (module docstring)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.n = int(config["workers"])
        self.pids: list[int] = []
        self.controls: list[tuple[TextIO, TextIO]] = []
        self.routes: dict[tuple[Any, ...], tuple[list[str], set[int]]] = {}  # selectors -> (nets, children)
        self.policy_of: dict[int, tuple[Any, ...]] = {}  # child -> its selectors key
        self.outbound_owner: dict[tuple[int, int], int] = {}  # (child, SPI) -> worker
        self.tun_name = str(config.get("tun", "ikg0"))
        self.sources: dict[int, str] = {}

    def start(self) -> None:
        """Create the queues, sockets and pairs; fork the workers; keep only the control ends."""
        import ipaddress

        cfg = self.config
        listen = endpoint(f"{cfg['listen']}:{cfg.get('port', 4500)}")
        queues: list[int] = []
        name = self.tun_name
        offload = bool(cfg.get("tun_offload", TUN_OFFLOAD_DEFAULT))
        for k in range(self.n):
            try:
                fd, name = open_tun(name, multi_queue=True, vnet_hdr=offload)
            except OSError:
                if not offload or k or "tun_offload" in cfg:
                    raise
                offload = False  # a kernel without IFF_VNET_HDR: the default falls back to plain reads/writes
                fd, name = open_tun(name, multi_queue=True)
            queues.append(fd)
        cfg["tun_offload"] = offload
        self.tun_name = name
        mtu = int(cfg["tun_mtu"]) if "tun_mtu" in cfg else int(cfg.get("path_mtu", 1500)) - WORST_OVERHEAD
        addresses = tuple(cfg.get("tun_addresses", ()))
        configure_tun(name, mtu, addresses)
        for cidr in addresses:
            iface = ipaddress.ip_interface(cidr)
            self.sources.setdefault(iface.version, str(iface.ip))
        if cfg.get("socket_fds"):  # ikeguard run: members of its group on 4500, its program attached
            socks = [socket.socket(fileno=int(fd)) for fd in cfg["socket_fds"]]
            if len(socks) != self.n:
                raise DataPlaneError(f"{len(socks)} sockets handed over for {self.n} workers")
        else:
            socks = open_group(str(listen.address), listen.port, self.n)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(self.n)]
        for rx, tx in pairs:
            for s in (rx, tx):
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        controls = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(self.n)]
        sys.stdout.flush()
        sys.stderr.flush()
        for k in range(self.n):
            pid = os.fork()
            if pid == 0:  # the worker: keep its own queue, socket and pair ends only
                code = 1
                try:
                    for j in range(self.n):
                        if j != k:
                            os.close(queues[j])
                            socks[j].close()
                            pairs[j][0].close()
                        controls[j][0].close()
                        if j != k:
                            controls[j][1].close()
                    handoff = {j: pairs[j][1] for j in range(self.n) if j != k}
                    pairs[k][1].close()
                    code = _worker_main(k, cfg, (queues[k], name), socks[k], controls[k][1], handoff,
                                        pairs[k][0])
                finally:
                    os._exit(code)
            self.pids.append(pid)
        for k in range(self.n):
            os.close(queues[k])
            socks[k].close()
            pairs[k][0].close()
            pairs[k][1].close()
            controls[k][1].close()
            self.controls.append((controls[k][0].makefile("r"), controls[k][0].makefile("w")))
            controls[k][0].close()  # the file objects keep the descriptor

    def ask(self, k: int, cmd: dict[str, Any]) -> dict[str, Any]:
        """One command to worker ``k``, its reply."""
        reader, writer = self.controls[k]
        writer.write(json.dumps(cmd) + "\n")
        writer.flush()
        line = reader.readline()
        if not line:
            return {"ok": False, "error": f"worker {k} exited"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _all(self, cmd: dict[str, Any]) -> dict[str, Any]:
        replies = [self.ask(k, cmd) for k in range(self.n)]
        bad = next((r for r in replies if not r.get("ok")), None)
        return bad if bad is not None else {"ok": True}

    def _policy(self, child: int, lts: list[Any], rts: list[Any]) -> None:
        key = (_freeze(lts), _freeze(rts))
        self.policy_of[child] = key
        if key in self.routes:
            self.routes[key][1].add(child)
            return
        nets = install_routes(self.tun_name, selectors(rts), self.sources)
        self.routes[key] = (nets, {child})

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command (the ops of ``python -m ikeguard.dataplane.userspace``)."""
        op = cmd.get("op")
        try:
            if op == "add_sa":
                sa = cmd["sa"]
                if not sa.get("encap", True):
                    raise DataPlaneError("workers > 1 need ESP in UDP (encap): plain ESP is not steered")
                sa_from_json(sa).wipe_keys()  # validated here; the worker gets the description
                k = owner(sa, self.n)
                reply = self.ask(k, cmd)
                if not reply.get("ok") or sa["direction"] != SaDirection.OUTBOUND.value:
                    return reply
                child = int(sa.get("child", 1))
                described = sa_from_json(sa)
                self.outbound_owner[(child, described.spi)] = k
                described.wipe_keys()
                self._policy(child, sa["local_ts"], sa["remote_ts"])
                fwd = {"op": "forward", "child": child, "local_ts": sa["local_ts"],
                       "remote_ts": sa["remote_ts"], "worker": k}
                for j in range(self.n):
                    if j != k:
                        self.ask(j, fwd)
                return reply
            if op == "delete_sa":
                replies = [self.ask(k, cmd) for k in range(self.n)]
                final = next((r["counters"] for r in replies if r.get("counters")), None)
                reply = next((r for r in replies if not r.get("ok")), {"ok": True, "counters": final})
                spi = cmd["spi"]
                spi = int(spi, 0) if isinstance(spi, str) else int(spi)
                if cmd["direction"] == SaDirection.OUTBOUND.value:
                    for child, s in [key for key in self.outbound_owner if key[1] == spi]:
                        if cmd.get("child") is None or int(cmd["child"]) == child:
                            del self.outbound_owner[(child, s)]
                            self._unforward(child)
                return reply
            if op == "remove_policy":
                child = int(cmd["child"])
                reply = self._all(cmd)
                key = self.policy_of.pop(child, None)
                if key is not None and key in self.routes:
                    nets, children = self.routes[key]
                    children.discard(child)
                    if not children:
                        del self.routes[key]
                        remove_routes(self.tun_name, nets)
                return reply
            if op == "set_path_mtu":
                self.config["path_mtu"] = int(cmd["mtu"])
                reply = self._all(cmd)
                if "tun_mtu" not in self.config:
                    configure_tun(self.tun_name, int(cmd["mtu"]) - WORST_OVERHEAD)
                return reply
            if op == "counters":
                return self._counters()
            if op == "sa_counters":
                replies = [self.ask(k, cmd) for k in range(self.n)]
                return {"ok": True, "counters": next((r["counters"] for r in replies if r.get("counters")),
                                                     None)}
            if op == "add_policy":
                child = int(cmd["child"])
                self._policy(child, list(cmd["local_ts"]), list(cmd["remote_ts"]))
                held = next((k for (c, _spi), k in self.outbound_owner.items() if c == child), None)
                return self._all({"op": "forward", "child": child, "local_ts": cmd["local_ts"],
                                  "remote_ts": cmd["remote_ts"], "worker": held})
            if op == "update_sa_addresses":
                return self._all(cmd)
            if op == "events":
                events: list[Any] = []
                for k in range(self.n):
                    events += self.ask(k, cmd).get("events", [])
                return {"ok": True, "events": events}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except (DataPlaneError, KeyError, ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}

    def _unforward(self, child: int) -> None:
        key = self.policy_of.get(child)
        if key is None:
            return
        fwd = {"op": "forward", "child": child, "local_ts": list(key[0]), "remote_ts": list(key[1]),
               "worker": None}
        for j in range(self.n):
            self.ask(j, fwd)

    def _counters(self) -> dict[str, Any]:
        sas: list[dict[str, Any]] = []
        drops: dict[str, int] = {}
        stats: dict[str, int] = {}
        workers: list[dict[str, Any]] = []
        for k in range(self.n):
            reply = self.ask(k, {"op": "counters"})
            for sa in reply.get("sas", []):
                sas.append({**sa, "worker": k})
            for name, value in reply.get("drops", {}).items():
                drops[name] = drops.get(name, 0) + value
            for name, value in reply.get("stats", {}).items():
                stats[name] = stats.get(name, 0) + value
            workers.append({"worker": k, "stats": reply.get("stats", {}), "drops": reply.get("drops", {})})
        return {"ok": True, "sas": sas, "drops": drops, "stats": stats, "workers": workers}

    def stop(self) -> None:
        """Stop the workers (by PID) and remove the routes; the TUN goes with the last queue."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()
        for nets, _children in self.routes.values():
            remove_routes(self.tun_name, nets)
        self.routes.clear()


def _freeze(items: list[Any]) -> tuple[Any, ...]:
    """Selectors (strings or field lists) as a hashable key."""
    return tuple(tuple(i) if isinstance(i, list) else i for i in items)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def run_supervisor(config: dict[str, Any]) -> int:
    """Serve ``config`` with ``config["workers"]`` worker processes until SIGTERM or stdin closes."""
    sup = Supervisor(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    try:
        sup.start()
        for pol in config.get("policies", ()):
            sup._policy(int(pol["child"]), list(pol["local_ts"]), list(pol["remote_ts"]))
            sup._all({"op": "forward", "child": int(pol["child"]), "local_ts": pol["local_ts"],
                      "remote_ts": pol["remote_ts"], "worker": None})
        for sa in config.get("sas", ()):
            reply = sup.handle({"op": "add_sa", "sa": sa})
            if not reply.get("ok"):
                raise DataPlaneError(str(reply.get("error")))
        sys.stdout.write(json.dumps({"ready": True, "tun": sup.tun_name, "workers": sup.n}) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError as exc:
                reply = {"ok": False, "error": f"bad JSON: {exc}"}
            else:
                reply = sup.handle(cmd)
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    except _Stop:
        pass
    except (DataPlaneError, OSError) as exc:
        print(f"ikeguard data plane: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.stop()
    return 0
