"""The vici socket of a multi-worker gateway (``[gateway] workers`` > 1 with ``vici``, issue 22).

The supervisor serves the vici protocol itself (:class:`ikeguard.control.vici_server.ViciServer`, unchanged
in what it answers and audits) over :class:`WorkersGateway`, a gateway whose every question goes through the
control proxy (:meth:`ikeguard.control.workers_proxy.WorkerControlProxy.dispatch`) exactly as a control
client's would. So the rules are written once, there: ``list-sas`` is the merged ``sas`` of every worker,
``list-conns`` worker 0's connections with the IKE SAs of all; ``terminate``/``rekey`` by ``ike-id`` or
``child-id`` go to the worker that numbered the SA (``(uniqueid - 1) % workers``), by name to every worker;
``initiate`` to worker 0 (initiated SAs live there, as ``start_action``); ``reload-settings`` and what
``load-conn``/``load-shared``/... write (``<state_dir>/vici-loaded.toml``, :mod:`ikeguard.control.vici_load`)
are reloaded by every worker (control ``reload`` with ``file``; a refusal by any is the answer). Events
(``ike-updown``, ``child-updown``, ``ike-rekey``, ``child-rekey``, ``log``) are the workers' event streams
interleaved (:meth:`WorkerControlProxy.subscribe`); for an SA event a vici client asked for, the SA's view is
fetched from the worker that sent it before the event is delivered (charon's sections carry the SA).

The supervisor keeps the configuration plan the workers run (rebuilt after each accepted reload: vici,
``ikeguard reload``, SIGHUP) for what vici answers from the configuration (``list-conns``, ``get-conns``,
``list-authorities``, the credential commands). Every vici command is recorded by the supervisor's audit
writer with the vici client's user (``admin.command``, PCI DSS 10.2.1.2); the workers record none for the
requests the proxy sends them (their control sockets are delegated). ``redirect`` goes as the control
``redirect`` (routed like ``terminate``). ``get-pools`` leases come from the supervisor's lease broker
(:mod:`ikeguard.service.pool_broker`), which holds every worker's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeguard.control.server import CommandError
from ikeguard.control.workers_proxy import WorkerControlProxy

log = logging.getLogger("ikeguard.control.vici")

VIEW_EVENTS = frozenset({"ike.up", "ike.down", "child.up", "child.down", "ike.rekeyed", "child.rekeyed"})
VIEW_TIMEOUT = 5.0  # seconds to fetch an SA's view for an event


@dataclass
class Reloaded:
    """What :meth:`ViciServer._reload_for` reads of a reload."""

    refused: str | None = None


class WorkersGateway:
    """What :class:`ViciServer` needs of a gateway, answered by the workers through the control proxy."""

    engine = None  # the engines are in the workers
    stats = None

    def __init__(self, proxy: WorkerControlProxy, plan: Any, audit: Any, config_path: Path,
                 profile_override: str | None) -> None:
        self.proxy = proxy
        self.plan = plan
        self.audit = audit
        self.workers = proxy.workers
        self.config_path = config_path
        self.profile_override = profile_override
        self.started_at = time.time()
        self.view_wanted: Any = lambda event: True  # set by the runner to the vici server's wants_view
        self.leases: Any = None  # the supervisor's LeaseBroker (get-pools), set by the runner
        self._tasks: set[asyncio.Task[Any]] = set()
        proxy.on_reload = self._reloaded

    def pools(self) -> dict[str, list[tuple[str, str, bool]]]:
        """Leases of each configured pool as (address, user, online), every worker's (the lease broker)."""
        return {name: self.leases.status(name) if self.leases is not None else []
                for name in self.plan.config.model.pools}

    # -- requests through the proxy -------------------------------------------------------------------
    async def _ask(self, cmd: str, **args: Any) -> Any:
        answer = await self.proxy.dispatch({"id": 0, "cmd": cmd,
                                            "args": {k: v for k, v in args.items() if v is not None}})
        if not answer.get("ok"):
            raise CommandError(str(answer.get("error", f"{cmd} failed")))
        return answer.get("result")

    async def sas(self, *, conn: str | None = None, peer: str | None = None,
                  uniqueid: int | None = None) -> list[dict[str, Any]]:
        """Every worker's SAs (merged in uniqueid order by the proxy)."""
        result = await self._ask("sas", conn=conn, peer=peer, uniqueid=uniqueid)
        return list(result) if isinstance(result, list) else []

    async def conns(self) -> list[dict[str, Any]]:
        """The connections with the IKE SAs of all workers."""
        result = await self._ask("conns")
        return list(result) if isinstance(result, list) else []

    async def initiate(self, conn: str, child: str | None = None, timeout: float = 15.0) -> list[int]:
        """Initiate in worker 0."""
        result = await self._ask("initiate", conn=conn, child=child, timeout=max(0.1, min(timeout, 120.0)))
        return [int(u) for u in result.get("ike_uniqueids", [])] if isinstance(result, dict) else []

    def start_ike(self, conn: str, children: list[str] | None = None) -> None:
        """Initiate without waiting (vici ``timeout`` < 0)."""
        task = asyncio.ensure_future(self.initiate(conn, children[0] if children else None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def terminate(self, *, uniqueid: int | None = None, peer: str | None = None,
                        conn: str | None = None, child: str | None = None, reason: str = "") -> int:
        """Terminate in the worker that owns ``uniqueid``, else in every worker (counts added)."""
        result = await self._ask("terminate", uniqueid=uniqueid, peer=peer, conn=conn, child=child)
        return int(result.get("terminated", 0)) if isinstance(result, dict) else 0

    async def rekey(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
                    child: str | None = None) -> int:
        """Start the rekeys without waiting for them (as charon's vici ``rekey``)."""
        result = await self._ask("rekey", uniqueid=uniqueid, peer=peer, conn=conn, child=child, timeout=0)
        return int(result.get("rekeyed", 0)) if isinstance(result, dict) else 0

    async def redirect(self, gateway: str, *, uniqueid: int | None = None, peer: str | None = None,
                       conn: str | None = None, reason: str = "") -> int:
        """RFC 5685 redirect in the worker that owns ``uniqueid``, else in every worker (counts added)."""
        result = await self._ask("redirect", gateway=gateway, uniqueid=uniqueid, peer=peer, conn=conn)
        return int(result.get("redirected", 0)) if isinstance(result, dict) else 0

    async def reload_file(self, path: Path, admin: str) -> Reloaded:
        """Every worker reloads ``path`` (the configuration file or ``vici-loaded.toml``)."""
        answer = await self.proxy.dispatch({"id": 0, "cmd": "reload", "args": {"file": str(path)}})
        if not answer.get("ok"):
            return Reloaded(str(answer.get("error", "reload failed")))
        return Reloaded()

    def record(self, event: Any) -> None:
        """The supervisor's audit writer."""
        self.audit.record(event)

    # -- the plan the workers run -----------------------------------------------------------------------
    async def _reloaded(self, args: dict[str, Any]) -> None:
        await self.refresh(Path(args["file"]) if isinstance(args.get("file"), str) else self.config_path)

    async def refresh(self, path: Path) -> None:
        """Rebuild the plan from ``path`` after the workers accepted it (off the loop: it reads files)."""
        from ikeguard.service.plan import build_plan

        loop = asyncio.get_running_loop()
        try:
            self.plan = await loop.run_in_executor(None, lambda: build_plan(
                path, now=dt.datetime.now(dt.UTC), profile_override=self.profile_override))
        except Exception as exc:
            log.warning("vici: could not rebuild the configuration view from %s: %s", path, exc)

    # -- events ---------------------------------------------------------------------------------------
    def subscribe(self, callback: Any) -> Any:
        """Every worker's events; SA events with the SA's view (``sa_view``) when a client wants them."""

        async def deliver(index: int, event: dict[str, Any]) -> None:
            uid = event.get("ike_uniqueid")
            view = None
            if event.get("event") in VIEW_EVENTS and isinstance(uid, int) and self.view_wanted(event):
                answer = await self.proxy.ask(index, {"id": 0, "cmd": "sas", "args": {"uniqueid": uid}},
                                              timeout=VIEW_TIMEOUT)
                views = answer.get("result") if answer.get("ok") else None
                view = next((v for v in views or [] if v.get("uniqueid") == uid), None)
            callback({**event, "sa_view": view})

        return self.proxy.subscribe(deliver)
