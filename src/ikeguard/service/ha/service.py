"""The HA node inside the running gateway (docs/ha.md): replicates while active, takes over when keepalived's
notify script says MASTER (``ikeguard ha role master``), and reports ``ha.role``, ``ha.takeover`` and
``ha.sync_failed`` audit records.

ESP sequence state: the data plane's outbound packet counter plus the number the SA started at on this node
(0, or the replicated value plus the margin after a takeover) gives the last number sent (RFC 4303 §3.3.3);
the inbound packet counter is used the same way as a lower bound for the replay window (§3.4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.dataplane.base import DataPlane, SaDirection
from ikeguard.engine.ha_state import EspSequence
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.replicator import HaNode, TakeoverResult

log = logging.getLogger(__name__)

ROLES = {"master": "active", "active": "active", "backup": "standby", "standby": "standby",
         "fault": "standby", "stop": "standby"}


class HaGateway(Protocol):
    """What the HA service needs of the gateway (service/gateway.py)."""

    engine: IkeManager
    dataplane: DataPlane

    def record(self, event: AuditEvent) -> None: ...
    def pump(self) -> None: ...


class HaService:
    """Role, replication loop and takeover of one node."""

    def __init__(self, gateway: HaGateway, node: HaNode, *, sync_interval: float = 1.0) -> None:
        self.gateway = gateway
        self.node = node
        self.sync_interval = sync_interval
        self._task: asyncio.Task[None] | None = None
        self._base_out: dict[int, int] = {}  # outbound SPI -> sequence number it started after here
        self._failing = False
        self.sync_failures = 0
        self.last_takeover: TakeoverResult | None = None

    def _event(self, name: EventName, outcome: Outcome, reason: str, **details: str | int | float) -> None:
        fields = {"node": self.node.node, **{k: str(v) for k, v in details.items()}}
        self.gateway.record(AuditEvent(name, outcome, reason=reason, details=fields))

    def esp_state(self) -> dict[int, EspSequence]:
        """Sequence state by inbound SPI from the data plane's counters (see the module docstring)."""
        out: dict[int, EspSequence] = {}
        plane = self.gateway.dataplane
        for sa in self.gateway.engine.ike_sas():
            for child in sa.children.values():
                sent = plane.counters(child.spi_out, SaDirection.OUTBOUND, child.uniqueid)
                got = plane.counters(child.spi_in, SaDirection.INBOUND, child.uniqueid)
                base = self._base_out.get(child.spi_out, 0)
                out[child.spi_in] = EspSequence(base + (sent.packets if sent else 0),
                                                got.packets if got else 0)
        return out

    async def sync_once(self) -> bool:
        """One replication (active only); ``ha.sync_failed`` once per outage."""
        ok = await self.node.sync(self.gateway.engine, self.esp_state())
        if not ok and not self._failing:
            self._event(EventName.HA_SYNC_FAILED, Outcome.FAILURE, self.node.sync_error,
                        last_sync=self.node.last_sync or 0)
        self._failing = not ok
        self.sync_failures += 0 if ok else 1
        return ok

    async def _loop(self) -> None:
        while True:
            if self.node.role == "active":
                await self.sync_once()
            await asyncio.sleep(self.sync_interval)

    def start(self) -> None:
        """Start the replication loop (it writes only while active)."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop replicating."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def set_role(self, state: str) -> dict[str, Any]:
        """keepalived's state (MASTER/BACKUP/FAULT/STOP) or active/standby. Becoming active restores the
        replicated SAs (refused when they are too old: the node then stays standby and says why)."""
        role = ROLES.get(state.lower())
        if role is None:
            raise ValueError(f"unknown HA role {state!r} (master, backup, fault, stop, active, standby)")
        previous = self.node.role
        if role == previous:
            return self.status()
        if role == "active":
            result = await self.node.take_over(self.gateway.engine)
            self.last_takeover = result
            self._note_bases()
            self.gateway.pump()  # install the restored Child SAs, send the liveness checks
            outcome = Outcome.FAILURE if result.refused else Outcome.SUCCESS
            reason = result.refused or f"{len(result.restored)} SAs restored"
            self._event(EventName.HA_TAKEOVER, outcome, reason,
                        restored=len(result.restored), failed=len(result.failed),
                        state_age=round(result.state_age or 0.0, 3), seconds=round(result.seconds, 3))
            if result.refused:
                log.warning("HA takeover refused: %s", result.refused)
                return self.status()
        self.node.role = role
        self._event(EventName.HA_ROLE, Outcome.SUCCESS, f"{previous} -> {role}", role=role, previous=previous)
        return self.status()

    def _note_bases(self) -> None:
        """The outbound numbers the restored SAs start after (the engine's InstallChildSa carried them)."""
        for event in list(self.gateway.engine.ctx.outputs):
            sa = getattr(event, "sa", None)
            if sa is not None and getattr(event, "direction", None) is not None and sa.seq_out:
                self._base_out[sa.spi] = sa.seq_out

    def status(self) -> dict[str, Any]:
        """``ikeguard ha status``."""
        t = self.last_takeover
        return {
            "node": self.node.node, "role": self.node.role, "last_sync": self.node.last_sync,
            "sync_error": self.node.sync_error, "synced_sas": self.node.synced_sas,
            "max_state_age": self.node.max_state_age, "sync_failures": self.sync_failures,
            "last_takeover": None if t is None else {
                "restored": len(t.restored), "failed": t.failed, "refused": t.refused,
                "state_age": t.state_age, "seconds": t.seconds},
        }


def start_ha(gateway: Any, config: Any, resolve: Any) -> HaService | None:
    """Build and start the HA service from ``[ha]`` (None when disabled); ``resolve`` makes config-relative
    paths absolute. The node starts as standby: keepalived's notify makes it active."""
    from ikeguard.service.ha.seal import ClusterKey
    from ikeguard.service.ha.store import EtcdStore

    if not config.enabled:
        return None
    paths = {name: (str(resolve(getattr(config, name))) if getattr(config, name) else None)
             for name in ("etcd_ca", "etcd_cert", "etcd_key")}
    store = EtcdStore(list(config.etcd_endpoints), config.prefix, ca=paths["etcd_ca"],
                      cert=paths["etcd_cert"], key=paths["etcd_key"])
    node = HaNode(config.node, store, ClusterKey.from_file(resolve(config.key_file)),
                  max_state_age=config.max_state_age, seq_margin=config.seq_margin)
    service = HaService(gateway, node, sync_interval=config.sync_interval)
    service.start()
    return service
