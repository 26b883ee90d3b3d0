"""``start_action``, ``dpd_action`` and ``close_action`` (swanctl semantics) of a running gateway.

``start``: initiate when the gateway starts and keep trying with exponential backoff (1 s doubling to 60 s)
until the IKE SA is up. ``trap`` needs kernel acquires (traffic-triggered initiation, traps.py): with
``dataplane = "xfrm"`` a trap policy is installed; other data planes treat it as ``start`` (logged once).
When an established IKE SA dies (DPD or retransmission timeout) its children's ``dpd_action`` applies
(``restart``/``trap``: bring it up again, or leave it to the trap policy; ``clear``/``none``: nothing); when
the peer deletes it, ``close_action`` (``start``/``trap``: likewise). SAs we delete ourselves (admin,
shutdown, rekey, expiry) trigger nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.engine.events import Endpoint, IkeSaStateChanged
from ikeguard.engine.states import IkeState
from ikeguard.service.errors import GatewayCommandError

if TYPE_CHECKING:
    from ikeguard.service.gateway import Gateway

log = logging.getLogger("ikeguard.service")
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
_RESTARTING = {"restart", "trap", "start"}


@dataclass(frozen=True)
class _UpSa:
    connection: str
    remote: Endpoint


class ActionPolicy:
    """Turns start-up and IKE SA deaths into (re)initiations."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._up: dict[int, _UpSa] = {}
        self._dead: set[int] = set()
        self._forgotten: set[int] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._trap_logged: set[str] = set()

    # ------------------------------------------------------------------ triggers
    def start_connections(self) -> None:
        """``start_action = "start"``: bring those children up now. ``trap`` installs a trap policy where the
        data plane raises acquires (kernel XFRM), else it is treated as ``start`` (logged once)."""
        plan = self.gateway.plan
        traps = self.gateway.traps
        for name, conn in plan.connections.items():
            wanted = []
            for c in conn.children:
                actions = plan.child_actions.get((name, c.name))
                if actions is None:
                    continue
                trapped = "trap" in (actions.start_action, actions.dpd_action, actions.close_action)
                if trapped and traps.available and traps.install(name, c.name):
                    continue
                if actions.start_action == "trap" and name not in self._trap_logged:
                    self._trap_logged.add(name)
                    log.info("%s: start_action = trap needs kernel acquires (dataplane = \"xfrm\"); "
                             "initiating now instead", name)
                if actions.start_action in ("start", "trap"):
                    wanted.append(c.name)
            if wanted:
                self.bring_up(name, wanted, None, "start_action")

    def ike_state(self, event: IkeSaStateChanged) -> None:
        """Track established IKE SAs; apply dpd_action / close_action when one ends."""
        uid = event.ike_uniqueid
        if event.new is IkeState.ESTABLISHED:
            sa = self.gateway.engine.get(uid)
            if sa is not None and sa.name:
                self._up[uid] = _UpSa(sa.name, sa.remote)
            return
        if event.new is not IkeState.CLOSED:
            return
        up = self._up.pop(uid, None)
        dead = uid in self._dead
        self._dead.discard(uid)
        forgotten = uid in self._forgotten
        self._forgotten.discard(uid)
        if up is None or forgotten or self.gateway.stopping:
            return
        reason = event.reason
        if dead or reason.startswith("peer unreachable") or reason.startswith("dpd timeout"):
            kind = "dpd_action"
        elif reason == "deleted by peer":
            kind = "close_action"
        else:
            return
        plan = self.gateway.plan
        conn = plan.connections.get(up.connection)
        if conn is None:
            return
        children = []
        for c in conn.children:
            actions = plan.child_actions.get((up.connection, c.name))
            value = getattr(actions, kind, "none") if actions is not None else "none"
            if value == "trap" and self.gateway.traps.has_trap(up.connection, c.name):
                continue  # the trap policy brings it up with the next packet
            if value in _RESTARTING:
                children.append(c.name)
        if children:
            log.info("%s: IKE SA %d ended (%s): %s brings %s up again", up.connection, uid, reason, kind,
                     ", ".join(children))
            self.bring_up(up.connection, children, up.remote, kind)

    def audit(self, event: AuditEvent) -> None:
        """``dpd.timeout`` marks the IKE SA as dead (its close follows)."""
        if event.event is EventName.DPD_TIMEOUT and event.ike_uniqueid is not None:
            self._dead.add(event.ike_uniqueid)

    def forget(self, uid: int) -> None:
        """An admin terminate: no action when this IKE SA goes."""
        self._forgotten.add(uid)

    # ------------------------------------------------------------------ (re)initiation with backoff
    def bring_up(self, conn: str, children: list[str], last_remote: Endpoint | None, why: str) -> None:
        """Start (once per connection at a time) a task that initiates until the IKE SA is up."""
        running = self._tasks.get(conn)
        if running is not None and not running.done():
            return
        self._tasks[conn] = asyncio.get_running_loop().create_task(
            self._keep_trying(conn, children, last_remote, why), name=f"initiate-{conn}")

    async def _keep_trying(self, conn: str, children: list[str], last_remote: Endpoint | None,
                           why: str) -> None:
        gateway = self.gateway
        delay = RETRY_FIRST
        while not gateway.stopping:
            try:
                uid = gateway.start_ike(conn, children, remote=last_remote)
                await gateway.wait_established(uid)
                return
            except GatewayCommandError as exc:
                if gateway.stopping:
                    return
                log.warning("%s (%s): %s; next attempt in %.0f s", conn, why, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def cancel_all(self) -> None:
        """Stop every pending (re)initiation."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Wait for the pending tasks (tests)."""
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
