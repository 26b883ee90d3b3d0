"""``start_action = "trap"`` with kernel ESP: trap policies and ACQUIRE-driven initiation (RFC 4301 §5.2.1:
traffic matching a policy with no SA triggers the key manager).

With ``dataplane = "xfrm"`` every child whose ``start_action`` (or ``dpd_action``/``close_action``) is
``trap`` gets a trap policy at start (its configured selectors, ``dynamic`` = our address); the kernel drops
matching packets (fail closed) and sends an ACQUIRE, on which the gateway initiates the connection (or adds
the child to an established IKE SA). The trap stays after the tunnel goes, so the next packet brings it up
again. Data planes without acquires (userspace, none) treat ``trap`` as ``start`` (see actions.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ikeguard.dataplane.base import DataPlane, DataPlaneError
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.policy.ts import resolve
from ikeguard.service.actions import ActionPolicy
from ikeguard.service.errors import GatewayCommandError
from ikeguard.service.plan import GatewayPlan
from ikeguard.service.transport import Transport


class GatewayView(Protocol):
    """What the trap manager uses of the gateway (``service.gateway.Gateway`` implements it): defined here so
    this module does not import the gateway that builds it."""

    dataplane: DataPlane
    plan: GatewayPlan
    transport: Transport
    engine: IkeManager
    actions: ActionPolicy

    def add_child_now(self, ike_uid: int, child: str) -> None: ...

log = logging.getLogger("ikeguard.service")
TRAP_ID_BASE = 1 << 30  # trap policies get ids far above the engine's Child SA uniqueids


@dataclass(frozen=True)
class Trap:
    """One installed trap policy."""

    connection: str
    child: str


def supports_traps(dataplane: object) -> bool:
    """Does this data plane raise ACQUIREs (kernel XFRM)?"""
    return all(callable(getattr(dataplane, name, None)) for name in ("add_trap", "subscribe_acquire"))


class TrapManager:
    """Installs trap policies and turns ACQUIREs into initiations."""

    def __init__(self, gateway: GatewayView) -> None:
        self.gateway = gateway
        self.traps: dict[int, Trap] = {}
        self.acquires = 0
        plane: Any = gateway.dataplane
        self._plane: Any = plane if supports_traps(plane) else None
        if self._plane is not None:
            self._plane.subscribe_acquire(self._on_acquire)

    @property
    def available(self) -> bool:
        """True with a data plane that raises ACQUIREs."""
        return self._plane is not None

    def has_trap(self, connection: str, child: str) -> bool:
        """Is a trap installed for this child (then ``trap`` actions wait for traffic)?"""
        return Trap(connection, child) in self.traps.values()

    def install(self, connection: str, child: str) -> bool:
        """Install the trap policy of one child; False (logged) when it cannot be trapped."""
        if self._plane is None:
            return False
        settings = self.gateway.plan.connections.get(connection)
        child_settings = next((c for c in settings.children if c.name == child), None) if settings else None
        if settings is None or child_settings is None:
            return False
        if "%peer" in child_settings.remote_ts:
            log.info("%s/%s: a %%peer child cannot be trapped (the peer is not known before it connects)",
                     connection, child)
            return False
        try:
            local, remote = self.gateway.transport.endpoints_for(connection, settings)
        except GatewayCommandError as exc:
            log.warning("%s/%s: no trap: %s", connection, child, exc)
            return False
        local_ts = resolve(child_settings.local_ts, own_address=local.address)
        remote_ts = resolve(child_settings.remote_ts, own_address=remote.address)
        trap_id = TRAP_ID_BASE + len(self.traps)
        try:
            self._plane.add_trap(trap_id, local_ts, remote_ts, local.address, remote.address)
        except (DataPlaneError, OSError) as exc:
            log.warning("%s/%s: trap policy refused: %s", connection, child, exc)
            return False
        self.traps[trap_id] = Trap(connection, child)
        log.info("%s/%s: trap installed (%s <-> %s): traffic starts the tunnel", connection, child,
                 ", ".join(map(str, local_ts)), ", ".join(map(str, remote_ts)))
        return True

    def _on_acquire(self, event: Any) -> None:
        """The kernel dropped a packet for a trapped child: bring that child up."""
        wanted = [self.traps[c] for c in getattr(event, "child_uniqueids", ()) if c in self.traps]
        gateway = self.gateway
        for trap in wanted:
            self.acquires += 1
            established = [sa for sa in gateway.engine.ike_sas() if sa.name == trap.connection]
            if any(c.name == trap.child for sa in established for c in sa.children.values()):
                continue  # already up or being negotiated
            up = next((sa for sa in established if sa.state is IkeState.ESTABLISHED), None)
            log.info("%s/%s: traffic hit the trap: starting the tunnel", trap.connection, trap.child)
            if up is not None:
                gateway.add_child_now(up.uniqueid, trap.child)
            elif not established:
                gateway.actions.bring_up(trap.connection, [trap.child], None, "trap")

    def remove_all(self) -> None:
        """Gateway stop: remove the trap policies."""
        if self._plane is None:
            return
        for trap_id in list(self.traps):
            try:
                self._plane.remove_policy(trap_id)
            except (DataPlaneError, OSError) as exc:
                log.warning("trap %d not removed: %s", trap_id, exc)
        self.traps.clear()
