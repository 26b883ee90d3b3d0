"""``start_action``, ``dpd_action`` and ``close_action`` (swanctl semantics) of a running gateway.

``start``: initiate when the gateway starts and keep trying with exponential backoff (1, 2, 4 ... s up to
``[gateway] initiate_retry_max``, 60 s by default) until the IKE SA is up. An attempt never opens a second
IKE SA: when the connection already has one up or being set up (an operator's ``initiate``, the peer's own
attempt) the retry waits for that one and adds the children it lacks (``Gateway.ike_sa_of``).
``trap`` needs kernel acquires (traffic-triggered initiation, traps.py): with ``dataplane = "xfrm"`` a trap
policy is installed; other data planes treat it as ``start`` (logged once).
When an established IKE SA dies (DPD or retransmission timeout) its children's ``dpd_action`` applies
(``restart``/``trap``: bring it up again, or leave it to the trap policy; ``clear``/``none``: nothing); when
the peer deletes it, ``close_action`` (``start``/``trap``: likewise). SAs we delete ourselves (admin,
shutdown, rekey, expiry) trigger nothing.

Repeated authentication failures of these automatic attempts are counted, not written one by one: the first
failed attempt's records (``auth.failure``, ``cert.rejected`` ...) go into the audit trail as they are; a
later attempt that fails with exactly the same records (event, outcome, reason) is only counted, and one
``auth.failure`` summary with ``details.repeated`` (how many attempts were counted) is written when the
series ends (the SA comes up, the failure changes, the gateway stops) and every ``REPEAT_SUMMARY_EVERY``
seconds while it lasts. Nothing is dropped from the count; a different failure is written in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.engine.events import Endpoint, IkeSaStateChanged
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.service.errors import GatewayCommandError
from ikeguard.service.plan import GatewayPlan


class TrapView(Protocol):
    """What the actions use of the trap manager (``service.traps.TrapManager``)."""

    @property
    def available(self) -> bool: ...

    def install(self, connection: str, child: str) -> bool: ...

    def has_trap(self, connection: str, child: str) -> bool: ...


class GatewayView(Protocol):
    """What the actions use of the gateway (``service.gateway.Gateway`` implements it): defined here so this
    module does not import the gateway that builds it."""

    @property
    def plan(self) -> GatewayPlan: ...

    @property
    def engine(self) -> IkeManager: ...

    @property
    def traps(self) -> TrapView: ...

    @property
    def stopping(self) -> bool: ...

    def record(self, event: AuditEvent) -> None: ...

    def ike_sa_of(self, conn: str, remote: Endpoint | None = None) -> IkeSa | None: ...

    def ensure_children(self, uid: int, children: list[str]) -> None: ...

    def start_ike(self, conn: str, children: list[str] | None = None, *,
                  remote: Endpoint | None = None) -> int: ...

    async def wait_established(self, uid: int, timeout: float | None = None) -> None: ...

log = logging.getLogger("ikeguard.service")
RETRY_FIRST = 1.0
RETRY_MAX = 60.0  # default of [gateway] initiate_retry_max
REPEAT_SUMMARY_EVERY = 600.0  # a long series of repeated failures is summarised at least this often
_RESTARTING = {"restart", "trap", "start"}


@dataclass(frozen=True, slots=True)  # one per established IKE SA
class _UpSa:
    connection: str
    remote: Endpoint


_Key = tuple[str, str, str]  # (event, outcome, reason) of one audit record


@dataclass
class _Attempt:
    """The audit records of one automatic initiation attempt (one IKE SA)."""

    written: list[AuditEvent] = field(default_factory=list)
    counted: list[AuditEvent] = field(default_factory=list)  # repeats of the series' records, not written

    def failed_authentication(self) -> bool:
        return any(e.event is EventName.AUTH_FAILURE and e.outcome is Outcome.FAILURE
                   for e in (*self.written, *self.counted))


@dataclass
class _Series:
    """Attempts of one connection that failed authentication in the same way, one after another."""

    connection: str
    first: AuditEvent  # the first attempt's auth.failure record (its fields head the summary)
    keys: frozenset[_Key]  # every record of the first failed attempt
    since: float  # wall clock of the first failure
    attempts: int = 1  # failed attempts in the series so far
    repeated: int = 0  # attempts counted since the last summary
    summarised_at: float = 0.0


def _key(event: AuditEvent) -> _Key:
    return (event.event.value, event.outcome.value, event.reason)


def retry_ceiling(gateway: GatewayView) -> float:
    """``[gateway] initiate_retry_max`` of the loaded configuration (seconds, >= 1)."""
    return float(gateway.plan.config.model.gateway.initiate_retry_max)


class ActionPolicy:
    """Turns start-up and IKE SA deaths into (re)initiations."""

    def __init__(self, gateway: GatewayView) -> None:
        self.gateway = gateway
        self._up: dict[int, _UpSa] = {}
        self._dead: set[int] = set()
        self._forgotten: set[int] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._trap_logged: set[str] = set()
        self._attempts: dict[int, tuple[str, _Attempt]] = {}  # IKE uniqueid -> (connection, its records)
        self._awaited: dict[int, str] = {}  # IKE uniqueid an automatic (re)initiation waits for -> connection
        self._series: dict[str, _Series] = {}
        # False in workers other than 0 (issue 22): start_action and the starts of a reload are theirs only,
        # one IKE SA per connection, not one per worker; dpd_action/close_action stay with the SA's worker
        self.starts_connections = True

    # ------------------------------------------------------------------ triggers
    def start_connections(self) -> None:
        """``start_action = "start"``: bring those children up now. ``trap`` installs a trap policy where the
        data plane raises acquires (kernel XFRM), else it is treated as ``start`` (logged once)."""
        if not self.starts_connections:
            return
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
        """An admin terminate: no action when this IKE SA goes, and when it is the IKE SA an automatic
        (re)initiation is waiting for, that retry ends too (the operator ended the attempt; it is no
        failure to retry, nor to count in the failure series)."""
        self._forgotten.add(uid)
        conn = self._awaited.get(uid)
        task = self._tasks.get(conn) if conn is not None else None
        if conn is not None and task is not None and not task.done():
            log.info("%s: automatic initiation stopped: IKE SA %d terminated by an operator", conn, uid)
            self._attempts.pop(uid, None)
            task.cancel()

    # ------------------------------------------------------------------ repeated failures in the audit trail
    def absorb(self, event: AuditEvent) -> bool:
        """True when ``event`` repeats, for an automatic attempt, a record of the failure series it
        continues: the gateway then counts it instead of writing it (the series' summary carries the count).
        Records of automatic attempts are remembered so that the attempt can be classified when it ends."""
        uid = event.ike_uniqueid
        tracked = self._attempts.get(uid) if uid is not None else None
        if tracked is None:
            return False
        conn, attempt = tracked
        series = self._series.get(conn)
        if series is not None and _key(event) in series.keys:
            attempt.counted.append(event)
            return True
        attempt.written.append(event)
        return False

    def _attempt_ended(self, conn: str, uid: int, established: bool) -> None:
        """Fold a finished automatic attempt into the connection's failure series."""
        _, attempt = self._attempts.pop(uid, (conn, _Attempt()))
        series = self._series.get(conn)
        if established or not attempt.failed_authentication():
            self._end_series(conn)
            return
        now = time.time()
        if series is not None and not attempt.written:  # the same failure again: counted only
            series.attempts += 1
            series.repeated += 1
            if now - series.summarised_at >= REPEAT_SUMMARY_EVERY:
                self._summarise(series, now)
            return
        self._end_series(conn)  # a different failure (written in full above) starts a new series
        first = next(e for e in attempt.written if e.event is EventName.AUTH_FAILURE)
        self._series[conn] = _Series(conn, first, frozenset(_key(e) for e in attempt.written), now,
                                     summarised_at=now)

    def _end_series(self, conn: str) -> None:
        series = self._series.pop(conn, None)
        if series is not None and series.repeated:
            self._summarise(series, time.time(), ended=True)

    def _summarise(self, series: _Series, now: float, *, ended: bool = False) -> None:
        """One ``auth.failure`` record for the attempts counted since the last summary."""
        first = series.first
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(series.since))
        state = "series ended" if ended else "still failing"
        reason = (f"{first.reason} (the same failure repeated in {series.repeated} more automatic "
                  f"attempt(s); {series.attempts} failed attempts since {since}, {state})")
        summary = AuditEvent(
            event=EventName.AUTH_FAILURE, outcome=Outcome.FAILURE, reason=reason, connection=first.connection,
            local_addr=first.local_addr, local_id=first.local_id, remote_addr=first.remote_addr,
            remote_id=first.remote_id, cert_subject=first.cert_subject, cert_serial=first.cert_serial,
            cert_issuer=first.cert_issuer, proposal=first.proposal,
            details={"repeated": series.repeated, "attempts": series.attempts, "first_failure": since,
                     "series_ended": ended})
        series.repeated = 0
        series.summarised_at = now
        self.gateway.record(summary)

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
        try:
            while not gateway.stopping:
                uid: int | None = None
                try:
                    existing = gateway.ike_sa_of(conn, last_remote)
                    if existing is not None:  # one connection, one IKE SA: wait for the one already there
                        uid = existing.uniqueid
                        self._awaited[uid] = conn
                        await gateway.wait_established(uid)
                        gateway.ensure_children(uid, children)
                        self._attempt_ended(conn, uid, established=True)
                        return
                    uid = gateway.start_ike(conn, children, remote=last_remote)
                    self._attempts[uid] = (conn, _Attempt())
                    self._awaited[uid] = conn
                    await gateway.wait_established(uid)
                    self._attempt_ended(conn, uid, established=True)
                    return
                except GatewayCommandError as exc:
                    if uid is not None:
                        self._awaited.pop(uid, None)
                        self._attempt_ended(conn, uid, established=False)
                    if gateway.stopping:
                        return
                    log.warning("%s (%s): %s; next attempt in %.0f s", conn, why, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_ceiling(gateway))  # RFC 7296 §2.4 spirit: no tight loops
        finally:
            for stale in [u for u, (c, _) in self._attempts.items() if c == conn]:
                del self._attempts[stale]
            for stale in [u for u, c in self._awaited.items() if c == conn]:
                del self._awaited[stale]
            self._end_series(conn)

    def cancel_all(self) -> None:
        """Stop every pending (re)initiation (summarising their failure series first)."""
        for conn in list(self._series):
            self._end_series(conn)
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Wait for the pending tasks (tests)."""
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
