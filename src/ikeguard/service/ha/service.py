"""The HA node inside the running gateway (docs/ha.md): replicates while active, takes over when keepalived's
notify script says MASTER (``ikeguard ha role master``), and reports ``ha.role``, ``ha.takeover`` and
``ha.sync_failed`` audit records.

ESP sequence state: the data plane's outbound packet counter plus the number the SA started at on this node
(0, or the replicated value plus the margin after a takeover) gives the last number sent (RFC 4303 §3.3.3);
the inbound packet counter is used the same way as a lower bound for the replay window (§3.4.3).

Fencing (fence.py, docs/ha.md "Split brain"): with a fence the node is active only while it holds the etcd
leader lease. Becoming active first takes the lease (waiting up to ``acquire_wait`` for a dead holder's lease
to expire), then restores; the gateway sends IKE only while :meth:`HaService.may_send`; when the lease cannot
be renewed before its local deadline, or etcd refuses a write for a stale token, the node is fenced: every
SA is dropped locally (Child SAs leave the data plane, no DELETE is sent) and it is standby again, retrying
the lease while keepalived still wants it active. ``healthy`` (keepalived's track script,
``ha_notify --check``) turns false when a node wanted active has not held the lease for longer than a dead
holder's lease can last, so keepalived moves the address to the node that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.dataplane.base import DataPlane, SaDirection
from ikeguard.engine.ha_state import EspSequence
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.fence import Fence
from ikeguard.service.ha.peer import PeerLink
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
    """Role, replication loop, leadership and takeover of one node."""

    def __init__(self, gateway: HaGateway, node: HaNode, *, sync_interval: float = 1.0,
                 acquire_wait: float | None = None, peer: PeerLink | None = None,
                 keep_serving: bool = True) -> None:
        self.gateway = gateway
        self.node = node
        self.fence: Fence | None = node.fence
        self.peer = peer  # the direct heartbeat to the other node (peer.py), None when not configured
        self.keep_serving = keep_serving and peer is not None
        self.serving_on_peer = False  # active past the lease deadline on the standby's promise
        self.sync_interval = sync_interval
        ttl = self.fence.ttl if self.fence is not None else 0
        self.acquire_wait = ttl + 1.0 if acquire_wait is None else acquire_wait
        self._task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._peer_task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._base_out: dict[int, int] = {}  # outbound SPI -> sequence number it started after here
        self._failing = False
        self._busy = asyncio.Lock()  # one role change at a time
        self.wanted = "standby"  # what keepalived said last
        self._wanted_since = time.monotonic()
        self._retry = False  # keepalived wants us active but the lease was not ours: keep trying
        self.fenced = ""  # why the node was fenced last
        self.sync_failures = 0
        self.last_takeover: TakeoverResult | None = None

    def _event(self, name: EventName, outcome: Outcome, reason: str, **details: str | int | float) -> None:
        fields = {"node": self.node.node, **{k: str(v) for k, v in details.items()}}
        self.gateway.record(AuditEvent(name, outcome, reason=reason, details=fields))

    def may_send(self) -> bool:
        """True when this node may send IKE (and hold ESP SAs): active, and with a fence, holding the lease
        for certain (its local deadline not passed)."""
        return self.node.role == "active" and (self.fence is None or self.fence.valid() or self._covered())

    def _covered(self) -> bool:
        """Past the lease deadline, the active may go on sending while its standby promised (fresh
        heartbeat) not to take over (docs/ha.md "Split brain")."""
        return self.keep_serving and self.peer is not None and self.peer.covered()

    def healthy(self) -> bool:
        """False when keepalived wants this node active but it was fenced, or has not held the lease for
        longer than a dead holder's lease can last (``acquire_wait``): the track script then fails and
        keepalived moves the address away."""
        if self.fence is None or self.wanted != "active" or self.may_send():
            return True
        if self.fenced:  # it lost the lease while active: let keepalived move the address now
            return False
        return time.monotonic() - self._wanted_since < self.acquire_wait + 1.0

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
        """One replication (active only); ``ha.sync_failed`` once per outage. A write refused for a stale
        fencing token fences the node at once."""
        ok = await self.node.sync(self.gateway.engine, self.esp_state())
        if not ok and not self._failing:
            self._event(EventName.HA_SYNC_FAILED, Outcome.FAILURE, self.node.sync_error,
                        last_sync=self.node.last_sync or 0)
        self._failing = not ok
        self.sync_failures += 0 if ok else 1
        if (not ok and self.fence is not None and self.fence.held is None and self.node.role == "active"
                and not (self._covered() and await asyncio.to_thread(self.fence.acquire))):
                self._fence_now(self.node.sync_error)
        return ok

    async def _loop(self) -> None:
        while True:
            if self.may_send():
                await self.sync_once()
            await asyncio.sleep(self.sync_interval)

    async def _lease_loop(self) -> None:
        """Renew the lease while active (every quarter TTL); retry taking it while keepalived wants us active
        and it was another node's."""
        fence = self.fence
        assert fence is not None
        while True:
            if self.node.role == "active":
                renewed = await asyncio.to_thread(fence.renew)
                if not renewed and fence.held is None and self._covered():
                    # etcd is back but our lease expired while we served on the peer's promise: the
                    # standby did not take the key, so take it again (a new fencing token)
                    if await asyncio.to_thread(fence.acquire):
                        self._note_recovered()
                        self._arm_deadline()
                    elif fence.held is None and fence.holder and fence.holder != self.node.node:
                        self._fence_now(f"the lease is held by {fence.holder}")
                elif not renewed and fence.held is None:
                    self._fence_now(fence.error or "the lease expired")
                elif renewed:
                    self._note_recovered()
                    self._arm_deadline()
                elif self.node.role == "active":
                    self._arm_deadline()
            elif self._retry and self.wanted == "active" and not self._busy.locked():
                async with self._busy:
                    if (self.peer is None or not self.peer.holding()) and \
                            await asyncio.to_thread(fence.acquire):
                        await self._take_over()
            await asyncio.sleep(fence.ttl / 4)

    def _arm_deadline(self) -> None:
        """Fence at the lease's local deadline unless a renewal moves it."""
        if self._deadline is not None:
            self._deadline.cancel()
        if self.fence is not None and self.fence.held is not None:
            self._deadline = asyncio.get_running_loop().call_later(self.fence.remaining(), self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        fence = self.fence
        if fence is None or self.node.role != "active":
            return
        if fence.valid():
            self._arm_deadline()
            return
        if self._covered():
            assert self.peer is not None
            if not self.serving_on_peer:
                self.serving_on_peer = True
                why = (f"etcd unreachable past the lease deadline ({fence.error or 'no answer'}); still "
                       f"serving: the standby {self.peer.peer_node or '?'} confirmed it will not take over")
                log.warning("HA: %s", why)
                self._event(EventName.HA_SYNC_FAILED, Outcome.FAILURE, why,
                            last_sync=self.node.last_sync or 0)
            self._deadline = asyncio.get_running_loop().call_later(
                max(0.01, self.peer.confirmed_until - self.peer.clock()), self._on_deadline)
            return
        self._fence_now(f"the lease was not renewed in time ({fence.error or 'no answer from etcd yet'})")

    def _note_recovered(self) -> None:
        if self.serving_on_peer:
            self.serving_on_peer = False
            log.warning("HA: etcd reachable again, the lease is held")
            self._event(EventName.HA_SYNC_FAILED, Outcome.SUCCESS, "etcd reachable again: lease renewed",
                        last_sync=self.node.last_sync or 0)

    def _drop_sas(self, reason: str) -> None:
        """Close every SA locally: Child SAs leave the data plane, nothing is sent (the peer keeps its SAs for
        the node that takes over)."""
        for sa in self.gateway.engine.ike_sas():
            sa.close(f"HA: {reason}", local_decision=True)
        self.gateway.pump()
        self._base_out.clear()

    def _fence_now(self, reason: str) -> None:
        """Leadership lost: stop sending at once (see the module docstring)."""
        if self.node.role != "active":
            return
        self.node.role = "standby"
        self.serving_on_peer = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.fence is not None:
            self.fence.drop()
        self.fenced = reason
        self._retry = self.wanted == "active"
        self._wanted_since = time.monotonic()
        log.error("HA: fenced, this node stops sending: %s", reason)
        self._drop_sas(f"fenced ({reason})")
        self._event(EventName.HA_ROLE, Outcome.FAILURE, f"active -> standby: fenced ({reason})",
                    role="standby", previous="active")

    def start(self) -> None:
        """Start the replication loop (it writes only while active) and, with a fence, the lease loop."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop())
        if self.fence is not None:
            self._lease_task = loop.create_task(self._lease_loop())
        if self.peer is not None:
            self._peer_task = loop.create_task(self.peer.start())

    async def stop(self) -> None:
        """Stop replicating; when active with a fence: a last replication, SAs dropped locally (no DELETE,
        the other node continues them), lease given up."""
        for task in (self._task, self._lease_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._deadline is not None:
            self._deadline.cancel()
        if self.fence is not None and self.node.role == "active":
            # stopping is not a hand-over to the peer: no DELETE, the other node continues the SAs
            await self._step_down()
        if self.peer is not None:
            await self.peer.stop()

    async def set_role(self, state: str) -> dict[str, Any]:
        """keepalived's state (MASTER/BACKUP/FAULT/STOP) or active/standby. Becoming active takes the lease
        (with a fence) and restores the replicated SAs (refused when they are too old: the node then stays
        standby and says why); becoming standby drops the SAs and gives the lease up."""
        role = ROLES.get(state.lower())
        if role is None:
            raise ValueError(f"unknown HA role {state!r} (master, backup, fault, stop, active, standby)")
        if role != self.wanted:  # keepalived acted (on our health, too): a new start
            self.wanted, self._wanted_since, self.fenced = role, time.monotonic(), ""
        async with self._busy:
            previous = self.node.role
            if role == previous:
                self._retry = False
                return self.status()
            if role == "standby":
                self._retry = False
                await self._step_down()
                return self.status()
            holding = "" if self.peer is None else self.peer.holding()
            if holding:
                self._retry = True
                why = f"{holding}: not taking over"
                self.last_takeover = TakeoverResult(refused=why)
                self._event(EventName.HA_TAKEOVER, Outcome.FAILURE, why, restored=0, failed=0)
                log.warning("HA takeover refused: %s", why)
                return self.status()
            if self.fence is not None and not await self._acquire():
                self._retry = True
                why = (f"the lease is held by {self.fence.holder}" if self.fence.holder
                       else f"no lease: {self.fence.error}")
                self.last_takeover = TakeoverResult(refused=why)
                self._event(EventName.HA_TAKEOVER, Outcome.FAILURE, why, restored=0, failed=0)
                log.warning("HA takeover postponed: %s", why)
                return self.status()
            await self._take_over()
        return self.status()

    async def _acquire(self) -> bool:
        """Take the lease, waiting up to ``acquire_wait`` for a dead holder's to expire."""
        fence = self.fence
        assert fence is not None
        deadline = time.monotonic() + self.acquire_wait
        while ((self.peer is not None and self.peer.holding())
               or not await asyncio.to_thread(fence.acquire)):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def _take_over(self) -> None:
        """Restore (we hold the lease when fenced), become active, install and send."""
        previous = self.node.role
        result = await self.node.take_over(self.gateway.engine)
        self.last_takeover = result
        self._retry = False
        self._note_bases()
        outcome = Outcome.FAILURE if result.refused else Outcome.SUCCESS
        reason = result.refused or f"{len(result.restored)} SAs restored"
        self._event(EventName.HA_TAKEOVER, outcome, reason,
                    restored=len(result.restored), failed=len(result.failed),
                    state_age=round(result.state_age or 0.0, 3), seconds=round(result.seconds, 3))
        if result.refused:
            log.warning("HA takeover refused: %s", result.refused)
            if self.fence is not None:
                await asyncio.to_thread(self.fence.release)
            self.gateway.pump()
            return
        self.node.role = "active"
        self.fenced = ""
        if self.fence is not None:
            self._arm_deadline()
        self.gateway.pump()  # install the restored Child SAs, send the liveness checks
        self._event(EventName.HA_ROLE, Outcome.SUCCESS, f"{previous} -> active", role="active",
                    previous=previous)

    async def _step_down(self) -> None:
        """Active -> standby on keepalived's word: a last replication for the successor, SAs dropped
        locally, lease released."""
        previous = self.node.role
        if self.may_send():
            await self.sync_once()
        self.node.role = "standby"
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.fence is not None:
            self._drop_sas("standby")
            await asyncio.to_thread(self.fence.release)
        self._event(EventName.HA_ROLE, Outcome.SUCCESS, f"{previous} -> standby", role="standby",
                    previous=previous)

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
            "node": self.node.node, "role": self.node.role, "wanted": self.wanted, "healthy": self.healthy(),
            "fenced": self.fenced, "lease": None if self.fence is None else self.fence.status(),
            "heartbeat": None if self.peer is None else self.peer.status(),
            "serving_on_peer": self.serving_on_peer,
            "last_sync": self.node.last_sync,
            "sync_error": self.node.sync_error, "synced_sas": self.node.synced_sas,
            "max_state_age": self.node.max_state_age, "sync_failures": self.sync_failures,
            "last_takeover": None if t is None else {
                "restored": len(t.restored), "failed": t.failed, "refused": t.refused,
                "state_age": t.state_age, "seconds": t.seconds},
        }


def start_ha(gateway: Any, config: Any, resolve: Any) -> HaService | None:
    """Build and start the HA service from ``[ha]`` (None when disabled); ``resolve`` makes config-relative
    paths absolute. The node starts as standby: keepalived's notify makes it active."""
    from ikeguard.service.ha.fence import Fence
    from ikeguard.service.ha.peer import parse_addr
    from ikeguard.service.ha.seal import ClusterKey
    from ikeguard.service.ha.store import EtcdStore

    if not config.enabled:
        return None
    paths = {name: (str(resolve(getattr(config, name))) if getattr(config, name) else None)
             for name in ("etcd_ca", "etcd_cert", "etcd_key")}
    store = EtcdStore(list(config.etcd_endpoints), config.prefix, ca=paths["etcd_ca"],
                      cert=paths["etcd_cert"], key=paths["etcd_key"])
    node = HaNode(config.node, store, ClusterKey.from_file(resolve(config.key_file)),
                  max_state_age=config.max_state_age, seq_margin=config.seq_margin,
                  fence=Fence(store, config.node, ttl=config.lease_ttl))
    peer = None
    if config.peer_heartbeat:
        fence = node.fence
        peer = PeerLink(node.key, config.node, parse_addr(config.heartbeat_listen),
                        parse_addr(config.peer_heartbeat),
                        role=lambda: node.role,
                        token=lambda: None if fence is None or fence.held is None else fence.held.token,
                        interval=config.heartbeat_interval, hold=config.heartbeat_hold)
    service = HaService(gateway, node, sync_interval=config.sync_interval, peer=peer,
                        keep_serving=config.keep_serving)
    service.start()
    return service
