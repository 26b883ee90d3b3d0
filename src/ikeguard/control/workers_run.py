"""``ikeguard run`` with ``[gateway] workers`` > 1 (issue 22 item 1): the supervisor and the worker processes.

The supervisor opens the SO_REUSEPORT groups and the one audit trail writer, starts the workers
(:class:`ikeguard.service.workers.WorkerPool`: a dead worker is restarted, the others are not touched), serves
the control socket for all of them (:mod:`ikeguard.control.workers_proxy`), forwards SIGHUP (reload) and
stops them on SIGTERM/SIGINT. Readiness (systemd ``READY=1``) once every worker answers on its socket.

A worker is a gateway (``service/gateway.py``) on its inherited sockets with its private control socket; it
reads the configuration itself (the same file), records straight to the supervisor's audit process and
ends when the supervisor is gone. Layering: this module composes control and service, as
``service/runner.py`` does for one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ikeguard.control.server import ControlServer
from ikeguard.control.workers_proxy import WorkerControlProxy
from ikeguard.dataplane.base import DataPlaneError
from ikeguard.service.errors import GatewayCommandError
from ikeguard.service.leases import LeaseStore
from ikeguard.service.pool_broker import BrokerClient, BrokerServer, LeaseBroker, broker_path, use_broker
from ikeguard.service.runner import configure_logging
from ikeguard.service.sdnotify import notify
from ikeguard.service.startup import startup_records
from ikeguard.service.workerplane import PlaneHost, open_client
from ikeguard.service.workers import (
    _REFUSE,
    AuditHub,
    AuditRelay,
    SharedState,
    WorkerPool,
    answer_uniqueness,
    close_groups,
    derive_secret,
    join_worker,
    open_groups,
    unsupported,
    worker_count,
    worker_socket_path,
)

log = logging.getLogger("ikeguard.service")
READY_TIMEOUT = 60.0
METRICS_ASK = 7.0  # seconds a scrape waits for one worker (its snapshot gives up after 5 s)
HEALTH_INTERVAL = 0.5


def run_workers(plan: Any, workers: int, config_path: Path, profile_override: str | None) -> int:
    """The supervisor in the foreground; the process exit code."""
    from ikeguard.service.dataplane import DataPlaneUnavailable, check_dataplane

    reason = unsupported(plan, workers)
    if reason is not None:
        print(f"ikeguard run: {reason}", file=sys.stderr)
        return 1
    esp_workers = worker_count(plan.config.model.gateway.esp_workers) if plan.dataplane == "userspace" else 0
    try:
        check_dataplane(plan.dataplane)
    except DataPlaneUnavailable as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    try:
        groups = open_groups(plan.listen, plan.ike_port, plan.natt_port, workers, esp_workers)
    except OSError as exc:
        print(f"ikeguard run: cannot bind the IKE ports for {workers} workers: {exc}", file=sys.stderr)
        return 1
    from ikeguard.service.runner import _open_audit

    try:
        audit = _open_audit(plan, channels=workers)
    except Exception as exc:
        close_groups(groups)
        print(f"ikeguard run: cannot open the audit trail in {plan.state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_supervise(plan, workers, groups, audit, config_path, profile_override,
                                      esp_workers))
    finally:
        close_groups(groups)
        with contextlib.suppress(Exception):
            audit.close()


def _plane_sockets(plan: Any, groups: dict[tuple[str, int], list[socket.socket]], workers: int,
                   esp_workers: int) -> dict[int, tuple[str, int, list[socket.socket]]]:
    """IP version -> (address, port, the data plane's members of that 4500 group) (open_groups)."""
    import ipaddress

    out: dict[int, tuple[str, int, list[socket.socket]]] = {}
    for (address, port), socks in groups.items():
        version = ipaddress.ip_address(address).version
        if len(socks) == 2 * workers + esp_workers and esp_workers and version not in out:
            out[version] = (address, port, socks[2 * workers:])
    return out


async def _supervise(plan: Any, workers: int, groups: dict[tuple[str, int], list[socket.socket]], audit: Any,
                     config_path: Path, profile_override: str | None, esp_workers: int = 0) -> int:
    loop = asyncio.get_running_loop()
    state = SharedState(workers)
    plane: PlaneHost | None = None
    pools: list[WorkerPool] = []
    if esp_workers:
        def deliver(index: int, event: dict[str, Any]) -> None:  # the poller thread: to the owning worker
            for pool in pools:
                loop.call_soon_threadsafe(pool.command, index, ("plane_event", event))

        plane = PlaneHost(_plane_sockets(plan, groups, workers, esp_workers), esp_workers, workers,
                          plan.state_dir, deliver)
        try:
            await loop.run_in_executor(None, plane.start)
        except (DataPlaneError, OSError) as exc:
            plane.close()
            print(f"ikeguard run: the data plane: {exc}", file=sys.stderr)
            return 1
    try:
        return await _supervise_workers(plan, workers, groups, audit, config_path, profile_override, state,
                                        plane, pools)
    finally:
        if plane is not None:
            await loop.run_in_executor(None, plane.close)


async def _supervise_workers(plan: Any, workers: int, groups: dict[tuple[str, int], list[socket.socket]],
                             audit: Any, config_path: Path, profile_override: str | None, state: SharedState,
                             plane: PlaneHost | None, pools: list[WorkerPool]) -> int:
    loop = asyncio.get_running_loop()
    pool: WorkerPool | None = None

    def uniqueness(index: int, kind: str, notices: list[dict[str, Any]]) -> None:  # an audit hub thread
        """``up``: ``ike.up`` records of worker ``index`` the others must hear of (``uniqueness_notice``; one
        message per batch of the worker's audit relay); ``kept``: new IKE SAs of other workers that
        ``unique = keep`` refuses because worker ``index`` holds an older one, to their workers."""
        if pool is None:
            return
        if kind == "up":
            for other in range(workers):
                if other != index:
                    loop.call_soon_threadsafe(pool.command, other, ("superseded", notices, index))
        else:
            for owner in {int(n["worker"]) for n in notices}:
                loop.call_soon_threadsafe(pool.command, owner,
                                          ("keep_refused", [n for n in notices if n["worker"] == owner]))

    for record in startup_records(plan):
        audit.record(record)
    hub = AuditHub(audit, uniqueness)
    pool = WorkerPool(workers, worker_main, (str(config_path), profile_override), groups, hub, state, plane)
    pools.append(pool)
    stop_metrics: Callable[[], None] | None = None
    proxy = WorkerControlProxy(plan.state_dir / "control.sock", workers,
                               lambda i: worker_socket_path(plan.state_dir, i), record=audit.record)
    broker = BrokerServer(broker_path(plan.state_dir), derive_secret(state.cookie_seed, "leases"),
                          LeaseBroker(LeaseStore(plan.state_dir)))
    try:
        broker.start()
        await proxy.start()
    except Exception as exc:
        broker.close()
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    vici = None
    try:
        stop_metrics = _start_metrics(plan, workers, proxy, audit, loop)
        vici = await _start_vici(plan, proxy, audit, config_path, profile_override, broker.broker)
    except Exception as exc:
        if stop_metrics is not None:
            await loop.run_in_executor(None, stop_metrics)
        await proxy.close()
        broker.close()
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    pool.start(loop)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    def reload() -> None:
        log.info("SIGHUP: reloading every worker")
        pool.signal_all(signal.SIGHUP)
        if vici is not None:
            refresh = loop.create_task(vici.gateway.refresh(config_path))
            refreshes.add(refresh)
            refresh.add_done_callback(refreshes.discard)

    refreshes: set[asyncio.Task[Any]] = set()

    loop.add_signal_handler(signal.SIGHUP, reload)

    failed: list[str] = []

    async def health() -> None:
        while True:
            state.slots[_REFUSE] = 1 if audit.refuse_new_sas else 0
            ended = plane.ended() if plane is not None else None
            if ended is not None and not failed:  # no ESP without it: stop, the service manager restarts us
                log.error("%s: stopping the gateway", ended)
                failed.append(ended)
                stopping.set()
            await asyncio.sleep(HEALTH_INTERVAL)

    watcher = loop.create_task(health())
    try:
        if not await proxy.ready(READY_TIMEOUT, given_up=lambda: pool.early_exit is not None):
            if pool.early_exit is not None:
                index, code = pool.early_exit
                print(f"ikeguard run: worker {index} could not start (exit code {code}; its reason is "
                      "logged above)", file=sys.stderr)
            else:
                print(f"ikeguard run: the workers did not come up within {READY_TIMEOUT:.0f} s",
                      file=sys.stderr)
            return 1
        pool.started = True
        if vici is not None and not await proxy.following(READY_TIMEOUT):
            log.warning("vici: not every worker's event stream is open; events may be missed until it is")
        await loop.run_in_executor(None, audit.flush, 5.0)
        notify(f"READY=1\nSTATUS=gateway running, {workers} workers")
        log.info("ready (%d workers: pids %s)", workers, ", ".join(str(p) for p in pool.pids()))
        await stopping.wait()
        notify("STOPPING=1")
        log.info("stopping")
        return 1 if failed else 0
    finally:
        watcher.cancel()
        if vici is not None:
            await vici.close()
        if stop_metrics is not None:
            await loop.run_in_executor(None, stop_metrics)
        await proxy.close()
        await pool.stop()
        broker.close()
        broker.broker.save_now()


def _start_metrics(plan: Any, workers: int, proxy: WorkerControlProxy, audit: Any,
                   loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """The one metrics endpoint for every worker (control/metrics_workers.py), when configured."""
    if plan.metrics is None:
        return None
    from ikeguard.control.metrics_workers import WorkersCollector, audit_families, start_workers_metrics

    async def ask(index: int) -> dict[str, Any]:
        return await proxy.ask(index, {"id": 0, "cmd": "metrics"}, timeout=METRICS_ASK)

    host, port = plan.metrics
    collector = WorkersCollector(workers, ask, loop, lambda: audit_families(audit))
    return start_workers_metrics(host, port, collector)


# ---------------------------------------------------------------------------------------------- worker
def worker_main(index: int, workers: int,
                sockets: dict[tuple[str, int], tuple[socket.socket, socket.socket]],
                audit_conn: Connection, command_conn: Connection, shared: Any, cookie_seed: bytes,
                plane_conn: Connection | None, config_path: str, profile_override: str | None) -> None:
    """A worker process (spawned by the pool): build the plan from the same file, run a gateway (with
    ``plane_conn``: on the supervisor's userspace data plane, service/workerplane.py)."""
    from ikeguard.service.dataplane import DataPlaneUnavailable, open_dataplane
    from ikeguard.service.plan import build_plan

    configure_logging()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s"))
    parent = os.getppid()
    try:
        plan = build_plan(Path(config_path), now=dt.datetime.now(dt.UTC), profile_override=profile_override)
        if plane_conn is not None:
            import ipaddress

            versions = [ipaddress.ip_address(a).version for a in plan.listen]
            dataplane, clients = open_client(plane_conn, versions, index, workers,
                                             worker_count(plan.config.model.gateway.esp_workers))
            close = plane_conn.close
        else:
            opened = open_dataplane(plan.dataplane, plan.listen, plan.natt_port)
            dataplane, clients, close = opened.plane, [], opened.close
    except (Exception, DataPlaneUnavailable) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)
    audit = AuditRelay(audit_conn, shared)
    try:
        asyncio.run(_serve_worker(index, workers, sockets, audit, command_conn, shared, cookie_seed, plan,
                                  dataplane, Path(config_path), profile_override, parent, clients))
    finally:
        close()
        audit.close()


async def _serve_worker(index: int, workers: int,
                        sockets: dict[tuple[str, int], tuple[socket.socket, socket.socket]],
                        audit: AuditRelay, command_conn: Connection, shared: Any, cookie_seed: bytes,
                        plan: Any, dataplane: Any, config_path: Path, profile_override: str | None,
                        parent: int, clients: list[Any]) -> None:
    from ikeguard.service.addresses import AddressMonitor
    from ikeguard.service.gateway import Gateway

    gateway = Gateway(plan, audit=audit, dataplane=dataplane)

    def unique(connection: str) -> str:  # the current plan: a reload may change ``unique``
        conn = gateway.plan.connections.get(connection)
        return conn.unique if conn is not None else "no"

    audit.unique = unique
    publish = join_worker(gateway, index, workers, shared, cookie_seed, sockets)
    leases = BrokerClient.connect(broker_path(plan.state_dir), derive_secret(cookie_seed, "leases"), index)
    use_broker(gateway, leases)  # virtual IPs: the supervisor holds every worker's leases
    await gateway.start()
    loop = asyncio.get_running_loop()
    addresses = AddressMonitor(gateway)
    addresses.start(loop)
    stopping = asyncio.Event()
    reloads: set[asyncio.Task[Any]] = set()

    def reload() -> None:
        from ikeguard.service.reload import reload_gateway

        task = loop.create_task(reload_gateway(gateway, config_path, admin="SIGHUP",
                                               profile_override=profile_override))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def command() -> None:
        try:
            message = command_conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(command_conn.fileno())
            return
        if message[0] == "superseded":  # peers that came up in another worker (INITIAL_CONTACT, unique)
            _, notices, where = message
            try:
                kept = answer_uniqueness(gateway, notices, where, index)
                if kept:
                    audit.tell_kept(kept)
            except Exception:
                log.exception("worker %d: could not act on worker %s's uniqueness notices", index, where)
        elif message[0] == "keep_refused":  # unique = keep: another worker holds an older SA with the peer
            for refused in message[1]:
                with contextlib.suppress(GatewayCommandError):
                    gateway.terminate(uniqueid=int(refused["uniqueid"]), reason=str(refused["reason"]))
        elif message[0] == "plane_event" and clients:  # a lifetime upcall for one of our Child SAs
            clients[0].deliver(message[1])

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_reader(command_conn.fileno(), command)
    control = ControlServer(gateway, worker_socket_path(plan.state_dir, index), config_path=config_path,
                            profile_override=profile_override, delegated=True)
    await control.start()
    log.info("worker %d ready", index)
    try:
        while not stopping.is_set():
            publish()
            if os.getppid() != parent:  # the supervisor is gone
                log.warning("supervisor gone: stopping")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.1)
    finally:
        for task in reloads:
            task.cancel()
        await control.close()
        addresses.close()
        await gateway.stop()
        leases.close()


async def _start_vici(plan: Any, proxy: WorkerControlProxy, audit: Any, config_path: Path,
                      profile_override: str | None, leases: Any) -> Any:
    """``[gateway] vici``: the supervisor's vici server for every worker (control/vici_workers.py)."""
    path = plan.config.model.gateway.vici
    if not path:
        return None
    from ikeguard.control.vici_server import ViciServer
    from ikeguard.control.vici_workers import WorkersGateway

    gateway = WorkersGateway(proxy, plan, audit, config_path, profile_override)
    gateway.leases = leases
    server = ViciServer(gateway, plan.config.resolve(path), config_path=config_path,  # type: ignore[arg-type]
                        profile_override=profile_override)
    gateway.view_wanted = server.wants_view
    await server.start()
    return server
