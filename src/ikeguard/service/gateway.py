"""The running gateway: UDP 500/4500 sockets driving the sans-IO engine, one timer, outputs applied in order.

Clock: the engine's ``now`` is epoch seconds (``time.time()``; ``sas`` shows its deadlines as RFC 3339), and
the single timer is re-armed from ``engine.get_timer()`` after every input, its delay computed on that clock.
Outputs (ARCHITECTURE rule 2) are applied in the order emitted: datagrams, Child SAs in the data plane
(:mod:`ikeguard.service.outputs`), audit records, state changes that drive ``dpd_action``/``close_action``
(:mod:`ikeguard.service.actions`). While the audit store cannot write, no new IKE SA is accepted or started
and existing ones keep running (PCI DSS 10.7).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.crypto.errors import CryptoError
from ikeguard.crypto.pkcs11_key import ACCESS_LOG
from ikeguard.crypto.random import SystemRandom
from ikeguard.crypto.signatures import sign_auth
from ikeguard.dataplane.base import (
    DataPlane,
    DataPlaneEvent,
    InstallFailed,
    LifetimeReached,
    SaDirection,
    SequenceNearOverflow,
)
from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.events import (
    ChildSaStateChanged,
    DatagramDropped,
    DeleteChildSa,
    Endpoint,
    EngineEvent,
    IkeSaStateChanged,
    InstallChildSa,
    RadiusRound,
    RevocationFetch,
    SendDatagram,
    SendNatKeepalive,
    SignAnswer,
    SignatureJob,
    SignRequest,
    UpdateSaAddresses,
)
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.engine.tasks.child_create import ChildCreateTask
from ikeguard.engine.tasks.ike_rekey import IkeRekeyTask
from ikeguard.pki.hsm_log import access_events
from ikeguard.service.accounting import Accounting
from ikeguard.service.actions import ActionPolicy
from ikeguard.service.dataplane import esp_supported
from ikeguard.service.errors import GatewayCommandError
from ikeguard.service.heap import CHECK_EVERY as HEAP_CHECK_EVERY
from ikeguard.service.heap import HeapFreezer
from ikeguard.service.leases import LeaseStore
from ikeguard.service.ocsp_staple import OcspStapler
from ikeguard.service.outputs import ChildSaDriver
from ikeguard.service.queries import conn_infos, sa_info_chunks, sa_infos, select_sas
from ikeguard.service.radius import RadiusRelay
from ikeguard.service.revocation_fetch import RevocationFetcher
from ikeguard.service.stats import GatewayStats
from ikeguard.service.transport import Transport
from ikeguard.service.traps import TrapManager
from ikeguard.wire.iana import AuthMethod

if TYPE_CHECKING:
    from ikeguard.engine.child_sa import ChildSa
    from ikeguard.engine.eap_relay import EapRelayAnswer
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.service.plan import GatewayPlan

log = logging.getLogger("ikeguard.service")
STOP_WAIT = 2.0  # seconds stop() waits for the peers to answer our DELETEs
HSM_LOG_INTERVAL = 60.0  # hsm.sign aggregation period (issue 18: per minute)
_UP = (IkeState.ESTABLISHED, IkeState.REKEYING)
_UP_OR_PENDING = (*_UP, IkeState.CREATED, IkeState.INIT_SENT, IkeState.HALF_OPEN, IkeState.AUTH_SENT)




def _make_signature(request: SignRequest) -> SignAnswer:
    """In a worker thread: the RFC 7427 AUTH data for ``request`` (a token key may block), or the error."""
    try:
        data = sign_auth(request.key, request.octets, AuthMethod.DIGITAL_SIGNATURE, request.scheme)
    except CryptoError as exc:
        return SignAnswer(request.octets, error=str(exc))
    return SignAnswer(request.octets, data)

class AuditRecorder(Protocol):
    """What the gateway needs of the audit trail (AuditService / IsolatedAuditService)."""

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None: ...

    @property
    def refuse_new_sas(self) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...


# audit events that also get an INFO line on stderr (failures always get a WARNING line)
_LOGGED_EVENTS = frozenset({
    EventName.IKE_UP, EventName.IKE_DOWN, EventName.IKE_REAUTH, EventName.DPD_TIMEOUT,
    EventName.DOS_COOKIES_ON, EventName.DOS_COOKIES_OFF, EventName.CONFIG_LOADED, EventName.CONFIG_REJECTED,
    EventName.WAIVER_APPLIED,
    EventName.PEER_ADDED, EventName.PEER_DISABLED, EventName.PEER_ENABLED, EventName.ADMIN_COMMAND,
    EventName.AUDIT_SINK_DOWN, EventName.AUDIT_SINK_UP, EventName.AUDIT_STORE_FAILED,
    EventName.AUDIT_STORE_RECOVERED, EventName.CLOCK_STATUS,
})


# records of an administrative change every worker applies alike (a reload, an inventory change): worker 0's
# to record, once (issue 22; Gateway.records_admin_changes)
_ADMIN_CHANGES = frozenset({
    EventName.CONFIG_LOADED, EventName.CONFIG_REJECTED, EventName.WAIVER_APPLIED,
    EventName.PEER_ADDED, EventName.PEER_DISABLED, EventName.PEER_ENABLED,
})


def _is_new_ike_sa_init(data: bytes) -> bool:
    """An IKE_SA_INIT request opening a new IKE SA (responder SPI zero), RFC 7296 §3.1."""
    return len(data) >= 28 and data[18] == 34 and data[19] & 0x28 == 0x08 and data[8:16] == bytes(8)


class Gateway:
    """One gateway instance (CONTRACTS §2)."""

    def __init__(self, plan: GatewayPlan, *, audit: AuditRecorder, dataplane: DataPlane) -> None:
        self.plan = plan
        self.audit = audit
        self.dataplane = dataplane
        self.ha: Any = None  # service/ha/service.py HaService when [ha] is enabled (the runner sets it)
        self.acme: Any = None  # service/cert_renewal.py CertificateRenewer of [acme] (the runner sets it)
        self.scep: Any = None  # ... and of [scep]
        self.stats = GatewayStats()
        plan.restrict_esp(esp_supported(dataplane.features))
        self.engine = IkeManager(plan.connections.values(), plan.engine_settings, random=SystemRandom(),
                                 validator=plan.validator, peer_selectors=plan.selectors)
        self.children = ChildSaDriver(dataplane, self.stats, lambda name: name in self.plan.connections)
        self.transport = Transport(plan, self._receive, self.stats, dataplane.prepare_ike_socket)
        self.transport.quick = self._quick
        self.actions = ActionPolicy(self)
        self.records_admin_changes = True  # False in workers other than 0 (issue 22): see _ADMIN_CHANGES
        self.traps = TrapManager(self)
        self.revocation = RevocationFetcher(self._revocation_fetched)
        self.ocsp_stapler = OcspStapler(self.engine.ctx.ocsp_staples)  # RFC 4806: our OCSP status, fetched
        self.ocsp_stapler.configure(plan.connections.values(), plan.validator.connections)
        self.radius = RadiusRelay(self._radius_answered, plan.radius)
        self.accounting = Accounting(self.radius, plan.radius_accounting and plan.radius is not None,
                                     plan.radius_interval)
        self.accounting.live = self._live_traffic
        self.children.counted = self.accounting.counts
        self.leases = LeaseStore(plan.state_dir) if any(c.pools for c in plan.connections.values()) else None
        if self.leases is not None:
            self.engine.restore_leases(self.leases.load())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._hsm_timer: asyncio.TimerHandle | None = None
        self.heap = HeapFreezer(self.engine.ike_sa_count)  # short GC pauses with many SAs (service/heap.py)
        self._heap_timer: asyncio.TimerHandle | None = None
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._waiters: dict[int, asyncio.Future[int]] = {}  # IKE uniqueid -> resolved at ESTABLISHED/CLOSED
        self._refusing = False
        self._child_refusal: str | None = None  # last refusal given to the engine
        self.stopping = False
        self.started_at: float | None = None
        dataplane.subscribe(self._on_dataplane_event)

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Bind the sockets, start the data plane and the timer, run ``start_action = "start"``."""
        self._loop = asyncio.get_running_loop()
        self.transport.start(self._loop, self.dataplane)
        self.dataplane.start(self._loop)
        self.started_at = time.time()
        log.info("gateway up: listening on %s, data plane %s, %d connection(s)",
                 self.transport.describe(), self.dataplane.features.name, len(self.plan.connections))
        self.actions.start_connections()
        self.accounting.start_interim(self.children.ike_traffic, self._loop)
        self.ocsp_stapler.start()
        self._rearm()
        self._hsm_log()
        self._heap_check()

    async def stop(self, reason: str = "gateway shutdown") -> None:
        """DELETE every IKE SA, wait up to 2 s for the answers, remove data-plane state, close the audit."""
        if self.stopping:
            return
        self.stopping = True
        self.actions.cancel_all()
        now = time.time()
        for sa in self.engine.ike_sas():
            with contextlib.suppress(LocalProtocolError):
                self.engine.terminate_ike(sa.uniqueid, now, reason)
        self.pump()
        deadline = time.monotonic() + STOP_WAIT
        while self.engine.has_ike_sas() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = self.engine.ike_sas()
        if left:
            log.info("%d IKE SA(s) did not confirm the DELETE within %.0f s", len(left), STOP_WAIT)
        for sa in left:  # close locally: Child SAs leave the data plane, ike.down is audited
            sa.close(f"{reason} (peer did not confirm the DELETE)")
        self.pump()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._hsm_timer is not None:
            self._hsm_timer.cancel()
        self._hsm_log(rearm=False)
        if self._heap_timer is not None:
            self._heap_timer.cancel()
        self.heap.thaw()
        self.children.remove_everything()
        self.traps.remove_all()
        self.revocation.close()
        await self.ocsp_stapler.close()
        self.accounting.close()
        self.radius.close()
        if self.leases is not None:
            self.leases.save_now(self.engine.leases())
        self.transport.close()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(GatewayCommandError("gateway stopping"))
        self.audit.flush(5.0)
        closer = getattr(self.audit, "close", None)
        if callable(closer):
            closer()
        log.info("gateway stopped")

    # ------------------------------------------------------------------ inputs
    def _receive(self, data: bytes, local: Endpoint, remote: Endpoint) -> None:
        """One IKE message (non-ESP marker removed) from the transport."""
        self.stats.datagrams_in += 1
        if self.stopping and (self._loop is None or _is_new_ike_sa_init(data)):
            return  # while stopping only the answers to our DELETEs matter
        if _is_new_ike_sa_init(data) and self.audit.refuse_new_sas:
            self.stats.drop("audit store unavailable")
            if not self._refusing:
                self._refusing = True
                log.error("audit trail cannot be written: refusing new IKE SAs, keeping existing ones "
                          "(PCI DSS 10.7)")
            return
        if self._refusing and not self.audit.refuse_new_sas:
            self._refusing = False
            log.warning("audit trail writable again: accepting new IKE SAs")
        if len(data) > 18 and data[18] == 36:  # CREATE_CHILD_SA: the engine refuses new Child SAs itself
            self.sync_new_child_refusal()
        self.engine.receive_datagram(data, local, remote, time.time())
        self.pump()

    def _quick(self, data: bytes, host: str, port: int) -> bytes | None:
        """A bulk socket's datagram (service/sockets.py): the engine's stateless COOKIE answer to a new
        IKE_SA_INIT request without a cookie while cookies are demanded (RFC 7296 §2.6, issue 22), or None
        for :meth:`_receive` — which also keeps the rules for stopping, a failed audit store and HA fencing,
        so those cases never take this path."""
        if len(data) < 28 or data[18] != 34:  # not IKE_SA_INIT (every datagram of a lone socket comes here)
            return None
        if self.stopping or self.ha is not None or self.audit.refuse_new_sas:
            return None
        remote = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # str(Endpoint), wire/endpoint.py
        answer = self.engine.answer_cookieless_init(data, remote, host, time.time())
        if answer is not None:
            self.stats.datagrams_in += 1
            self.stats.datagrams_out += 1 if answer else 0
        return answer

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self.engine.handle_timer(time.time())
        self.pump()

    def _on_dataplane_event(self, event: DataPlaneEvent) -> None:
        """Upcalls may come from a data-plane thread: handled on the loop."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self._handle_dataplane_event, event)
        else:
            loop.call_soon_threadsafe(self._handle_dataplane_event, event)

    def _handle_dataplane_event(self, event: DataPlaneEvent) -> None:
        if self.stopping or isinstance(event, InstallFailed):
            return  # install failures are handled where add_sa raised
        direction = event.direction if isinstance(event, LifetimeReached) else None
        spi_in = self.children.inbound_spi_for(event.spi, direction or SaDirection.OUTBOUND,
                                               event.child_uniqueid)
        if spi_in is None:
            return
        hard = event.hard
        what = (f"{event.kind} lifetime" if isinstance(event, LifetimeReached)
                else "sequence number near overflow" if isinstance(event, SequenceNearOverflow) else "")
        log.info("Child SA %08x: %s %s reached", spi_in, "hard" if hard else "soft", what)
        self.engine.child_lifetime_reached(spi_in, hard=hard, now=time.time(),
                                           child_uniqueid=event.child_uniqueid)
        self.pump()

    # ------------------------------------------------------------------ outputs
    def pump(self) -> None:
        """Apply every pending engine output in order, then re-arm the timer."""
        engine = self.engine
        while (event := engine.next_event()) is not None:
            try:
                self._apply(event)
            except Exception:  # a bug applying one output must not stop the gateway
                log.exception("error applying %s", type(event).__name__)
        self._rearm()

    def _apply(self, event: EngineEvent) -> None:
        if (isinstance(event, (SendDatagram, SendNatKeepalive)) and self.ha is not None
                and not self.ha.may_send()):
            self.stats.drop("HA: not the active node holding the lease")  # fencing, docs/ha.md
            return
        if isinstance(event, SendDatagram):
            self.transport.send_ike(event.data, event.local, event.remote)
        elif isinstance(event, SendNatKeepalive):
            self.transport.send_keepalive(event.local, event.remote)
        elif isinstance(event, InstallChildSa):
            sa = self.engine.get(event.ike_uniqueid)
            error = self.children.install(event, sa.name if sa is not None else "")
            if error is not None:
                log.warning("data plane refused Child SA %s (%08x %s): %s", event.child_name, event.sa.spi,
                            event.direction.value, error.reason)
                self.engine.install_failed(error.ike_uniqueid, error.child_uniqueid, error.reason,
                                           time.time())
        elif isinstance(event, DeleteChildSa):
            self.children.delete(event)
        elif isinstance(event, UpdateSaAddresses):
            self.children.update_addresses(event)
        elif isinstance(event, IkeSaStateChanged):
            self._ike_state(event)
        elif isinstance(event, ChildSaStateChanged):
            log.debug("Child SA %s[%d] of IKE SA %d: %s -> %s %s", event.child_name, event.child_uniqueid,
                      event.ike_uniqueid, event.old.value, event.new.value, event.reason)
            if event.new is ChildState.DELETED:
                self.children.child_gone(event.child_uniqueid)
        elif isinstance(event, AuditEvent):
            self.record(event)
        elif isinstance(event, RevocationFetch):
            assert self._loop is not None
            self.revocation.submit(event, self._loop)
        elif isinstance(event, RadiusRound):
            assert self._loop is not None
            self.radius.submit(event, self._loop)
        elif isinstance(event, SignatureJob):
            assert self._loop is not None
            job = event
            future = self._loop.run_in_executor(None, _make_signature, job.request)
            future.add_done_callback(lambda done: self._signature_made(job, done.result()))
        elif isinstance(event, DatagramDropped):
            first = self.stats.drop(event.reason.split(" from ", 1)[0][:60])
            log.log(logging.INFO if first else logging.DEBUG, "dropped datagram from %s: %s%s", event.remote,
                    event.reason, " (further drops of this kind are only counted)" if first else "")

    def _revocation_fetched(self, event: RevocationFetch, body: bytes | None) -> None:
        """A revocation fetch ended (on the loop): the waiting IKE_AUTH goes on."""
        if self.stopping:
            return
        self.engine.revocation_fetched(event.ike_uniqueid, event.token, body, time.time())
        self.pump()

    def _live_traffic(self, sa: IkeSa) -> list[int]:
        """[in octets, out octets, in packets, out packets] of ``sa``'s installed Child SAs right now."""
        totals = [0, 0, 0, 0]
        for child in sa.children.values():
            for inbound, spi in ((True, child.spi_in), (False, child.spi_out)):
                counters = self.children.counters(spi, inbound, child.uniqueid)
                if counters is not None:
                    totals[0 if inbound else 1] += counters.bytes
                    totals[2 if inbound else 3] += counters.packets
        return totals

    def _signature_made(self, job: SignatureJob, answer: SignAnswer) -> None:
        """Our AUTH signature was made in a worker (on the loop again): the waiting IKE_AUTH goes on."""
        if self.stopping:
            return
        self.engine.signature_made(job.ike_uniqueid, job.token, answer, time.time())
        self.pump()

    def _radius_answered(self, event: RadiusRound, answer: EapRelayAnswer) -> None:
        """A RADIUS round ended (on the loop): the waiting EAP conversation goes on."""
        if self.stopping:
            return
        self.engine.radius_answered(event.ike_uniqueid, event.token, answer, time.time())
        self.pump()

    def _ike_state(self, event: IkeSaStateChanged) -> None:
        log.debug("IKE SA %s[%d]: %s -> %s %s", event.connection, event.ike_uniqueid, event.old.value,
                  event.new.value, event.reason)
        self.actions.ike_state(event)
        self.accounting.ike_state(event, self.engine.get(event.ike_uniqueid), self.children.ike_traffic,
                                  self._loop)
        if self.leases is not None and event.new in (IkeState.ESTABLISHED, IkeState.CLOSED):
            self.leases.save_soon(self.engine.leases())
        final = event.new in (IkeState.ESTABLISHED, IkeState.CLOSED)
        waiter = self._waiters.pop(event.ike_uniqueid, None) if final else None
        if waiter is not None and not waiter.done():
            if event.new is IkeState.ESTABLISHED:
                waiter.set_result(event.ike_uniqueid)
            elif event.new is IkeState.CLOSED:
                waiter.set_exception(GatewayCommandError(
                    f"IKE SA {event.ike_uniqueid} of {event.connection or 'connection'} failed: "
                    f"{event.reason or 'closed'}"))

    def record(self, event: AuditEvent) -> None:
        """Audit one event: the store, the counters, the event stream, one log line."""
        if not self.records_admin_changes and event.event in _ADMIN_CHANGES:
            return  # worker 0 records it
        if self.actions.absorb(event):  # an automatic retry repeating a known failure: counted, summarised
            self.stats.count_audit(event)
            return
        try:
            self.audit.record(event)
        except Exception:  # the trail's own failure handling reports it; IKE goes on
            log.exception("audit record failed")
        self.stats.count_audit(event)
        self.actions.audit(event)
        if event.outcome is Outcome.FAILURE:
            level = logging.WARNING
        elif event.event in _LOGGED_EVENTS:
            level = logging.INFO
        else:
            level = logging.DEBUG  # in the audit trail anyway; one INFO line per tunnel up/down is enough
        if log.isEnabledFor(level):
            peer = event.remote_id or event.remote_addr
            who = f" peer={peer}" if peer else ""
            conn = f" conn={event.connection}" if event.connection else ""
            uid = f" ike={event.ike_uniqueid}" if event.ike_uniqueid is not None else ""
            log.log(level, "%s %s%s%s%s%s", event.event.value, event.outcome.value, conn, uid, who,
                    f": {event.reason}" if event.reason else "")
        if self._subscribers:
            data: dict[str, Any] = {"time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                                    **event.fields_dict()}
            for callback in list(self._subscribers):
                try:
                    callback(data)
                except Exception:
                    log.exception("event subscriber failed")

    def _hsm_log(self, *, rearm: bool = True) -> None:
        """HSM access log: token logins, errors and signatures per key since the last call (docs/pki.md),
        recorded at start, once a minute and at stop."""
        for event in access_events(ACCESS_LOG.drain()):
            self.record(event)
        if rearm and self._loop is not None and not self.stopping:
            self._hsm_timer = self._loop.call_later(HSM_LOG_INTERVAL, self._hsm_log)

    def _heap_check(self) -> None:
        self.heap.check()
        if self._loop is not None and not self.stopping:
            self._heap_timer = self._loop.call_later(HEAP_CHECK_EVERY, self._heap_check)

    def _rearm(self) -> None:
        loop = self._loop
        if loop is None or (self.stopping and not self.engine.has_ike_sas()):
            return
        deadline = self.engine.get_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, None
        if deadline is None:
            return
        delay = max(0.0, deadline - time.time())
        self._timer = loop.call_later(delay + 0.0005, self._on_timer)  # never fire a hair early
        self._timer_at = deadline

    # ------------------------------------------------------------------ queries
    def sas(self, *, conn: str | None = None, peer: str | None = None,
            uniqueid: int | None = None) -> list[dict[str, Any]]:
        """IKE SAs with their Child SAs (``sas --json``, docs/reference.md), counters from the data plane."""
        return sa_infos(self, select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid))

    def sa_page(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page of :meth:`sas` and how many SAs match: the page is cut before the data plane is asked
        for counters (with XFRM one netlink round trip per SA), so `sas --limit` stays fast at any size."""
        chunks, total = self.sa_chunks(conn=conn, peer=peer, uniqueid=uniqueid, offset=offset, limit=limit)
        return [info for chunk in chunks for info in chunk], total

    def sa_uniqueids(self, *, conn: str | None = None, peer: str | None = None,
                     uniqueid: int | None = None) -> list[int]:
        """The uniqueids of the IKE SAs :meth:`sas` would show, without building their views."""
        chosen = select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid)
        return [sa.uniqueid for sa in chosen]

    def sa_chunks(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                  offset: int = 0, limit: int | None = None,
                  size: int = 256) -> tuple[Iterator[list[dict[str, Any]]], int]:
        """:meth:`sa_page` as views built ``size`` SAs at a time when the iterator is advanced (the control
        socket writes each chunk and lets the event loop run before building the next), and the count."""
        chosen = select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid)
        end = None if limit is None else offset + limit
        return sa_info_chunks(self, chosen[offset:end], size), len(chosen)

    def conns(self) -> list[dict[str, Any]]:
        """Configured connections (also quarantined ones) and whether each is up."""
        return conn_infos(self)

    def pools(self) -> dict[str, list[tuple[str, str, bool]]]:
        """Leases of each configured pool as (address, user, online); a pool not used yet has none."""
        status = self.engine.pool_status()
        return {name: status.get(name, []) for name in self.plan.config.model.pools}

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback`` with every audit event (as its JSON dict); returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ commands
    def refuse_reason(self) -> str | None:
        """Why no new IKE SA may be started now (None: allowed)."""
        if self.stopping:
            return "the gateway is stopping"
        if self.audit.refuse_new_sas:
            return "the audit trail cannot be written: no new SAs (PCI DSS 10.7)"
        return None

    def sync_new_child_refusal(self) -> None:
        """Tell the engine whether new Child SAs on existing IKE SAs are refused now (PCI DSS 10.7)."""
        why = self.refuse_reason()
        if why != self._child_refusal:
            self._child_refusal = why
            self.engine.set_new_child_refusal(why)

    def start_ike(self, conn: str, children: list[str] | None = None, *,
                  remote: Endpoint | None = None) -> int:
        """Start an IKE SA for ``conn`` now (no waiting); GatewayCommandError when it cannot start.
        ``remote`` overrides ``remote_addrs`` (restarting a responder's SA towards its last peer address)."""
        why = self.refuse_reason()
        if why is not None:
            raise GatewayCommandError(why)
        settings = self.plan.connections.get(conn)
        if settings is None:
            raise GatewayCommandError(f"no connection {conn!r} is loaded")
        local, target = self.transport.endpoints_for(conn, settings, remote)
        try:
            uid = self.engine.initiate(conn, local=local, remote=target, now=time.time(), children=children)
        except LocalProtocolError as exc:
            raise GatewayCommandError(str(exc)) from None
        log.info("initiating IKE SA %d for %s to %s", uid, conn, target)
        self.pump()
        return uid

    async def wait_established(self, uid: int, timeout: float | None = None) -> None:
        """Wait until IKE SA ``uid`` is established; GatewayCommandError when it fails or times out."""
        sa = self.engine.get(uid)
        if sa is not None and sa.state in _UP:
            return
        if sa is None:
            raise GatewayCommandError(f"IKE SA {uid} is gone")
        waiter = self._waiters.get(uid)
        if waiter is None:
            waiter = self._waiters[uid] = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "not retrieved"
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise GatewayCommandError(f"IKE SA {uid} not established within {timeout:g} s") from None
        finally:
            if waiter.done():
                self._waiters.pop(uid, None)

    def ike_sa_of(self, conn: str, remote: Endpoint | None = None) -> IkeSa | None:
        """The IKE SA ``conn`` already has (established or rekeying first) or is setting up (either role),
        towards ``remote`` when given; None when there is none. One connection has one IKE SA whatever
        starts it (``initiate``, ``start_action``, a retry, the peer), as charon's ``checkout_by_config``
        reuses an established or connecting IKE SA for ``swanctl --initiate`` (RFC 7296 §2.4: no second
        IKE SA with the same peer for the same purpose)."""
        candidates = [sa for sa in self.engine.ike_sas()
                      if sa.name == conn and sa.state in _UP_OR_PENDING
                      and (remote is None or sa.remote.address == remote.address)]
        up = [sa for sa in candidates if sa.state in _UP]
        return (up or candidates)[0] if candidates else None

    @staticmethod
    def _children_wanted_on(sa: IkeSa) -> set[str]:
        """Child configurations ``sa`` has (not being deleted) or is creating (queued or in flight)."""
        names = {c.name for c in sa.children.values()
                 if c.state in (ChildState.CREATING, ChildState.INSTALLED, ChildState.REKEYING)}
        pending = [*sa.queue, *([sa.active] if sa.active is not None else [])]
        for exchange in pending:
            for task in exchange.tasks:
                settings = getattr(task, "settings", None)
                if isinstance(task, ChildCreateTask) and task.rekeyed is None and settings is not None:
                    names.add(settings.name)
        return names

    def ensure_children(self, uid: int, children: list[str]) -> None:
        """Add those of ``children`` that the established IKE SA ``uid`` neither has nor is creating."""
        sa = self.engine.get(uid)
        if sa is None or sa.state not in _UP:
            return
        have = self._children_wanted_on(sa)
        for name in children:
            if name not in have:
                self.add_child_now(uid, name)

    async def initiate(self, conn: str, child: str | None = None, timeout: float = 15.0) -> list[int]:
        """Bring ``conn`` (or one child) up; returns the IKE SA uniqueid and the Child SA uniqueids.

        An IKE SA the connection already has or is setting up (a pending ``start_action`` retry, the
        peer's attempt, an earlier ``initiate``) is reused: the command waits for it and adds only the
        children it lacks, so no second IKE SA and no duplicate Child SA is created."""
        settings = self.plan.connections.get(conn)
        if settings is None:
            raise GatewayCommandError(f"no connection {conn!r} is loaded")
        if child is not None and child not in {c.name for c in settings.children}:
            raise GatewayCommandError(f"connection {conn!r} has no child {child!r}")
        wanted = [child] if child is not None else [c.name for c in settings.children]
        deadline = time.monotonic() + timeout
        while True:
            existing = self.ike_sa_of(conn)
            if existing is None:
                uid = self.start_ike(conn, wanted if child is not None else None)
                missing: list[str] = []  # requested in IKE_AUTH / queued; a failed one is not retried
            else:
                uid = existing.uniqueid
                have = self._children_wanted_on(existing)
                missing = [name for name in wanted if name not in have]
                log.info("initiate %s: reusing IKE SA %d (%s)", conn, uid, existing.state.value)
            try:
                await self.wait_established(uid, max(0.1, deadline - time.monotonic()))
                break
            except GatewayCommandError:
                if existing is None or time.monotonic() >= deadline:
                    raise
                # the attempt joined (a start_action retry, the peer's) failed: start one ourselves
        sa = self.engine.get(uid)
        if sa is None:
            raise GatewayCommandError(f"IKE SA {uid} is gone")
        ids = [uid]
        for name in missing:
            if name not in self._children_wanted_on(sa):
                ids += (await self._add_child(uid, name, max(0.1, deadline - time.monotonic())))[1:]
        while time.monotonic() < deadline and any(  # children still being created: report them installed
                c.state is ChildState.CREATING for c in sa.children.values() if c.name in wanted):
            await asyncio.sleep(0.02)
        ids += [c.uniqueid for c in sa.children.values()
                if c.name in wanted and c.uniqueid not in ids and c.state is not ChildState.DELETED]
        return ids

    def add_child_now(self, ike_uid: int, child: str) -> None:
        """Add a configured child to an established IKE SA (CREATE_CHILD_SA) without waiting."""
        self.sync_new_child_refusal()
        try:
            self.engine.create_child(ike_uid, child, time.time())
        except LocalProtocolError as exc:
            log.info("child %s not added to IKE SA %d: %s", child, ike_uid, exc)
        self.pump()

    async def _add_child(self, ike_uid: int, child: str, timeout: float) -> list[int]:
        sa = self.engine.get(ike_uid)
        before = set(sa.children) if sa is not None else set()
        failures: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            details = event.get("details") or {}
            if (event.get("event") == "child.failed" and event.get("ike_uniqueid") == ike_uid
                    and details.get("child") == child):
                failures.append(str(event.get("reason", "")))

        unsubscribe = self.subscribe(on_event)  # the peer's refusal ends the wait at once
        try:
            self.sync_new_child_refusal()
            try:
                self.engine.create_child(ike_uid, child, time.time())
            except LocalProtocolError as exc:
                raise GatewayCommandError(str(exc)) from None
            self.pump()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if failures:
                    raise GatewayCommandError(f"Child SA {child} refused: {failures[0]}")
                sa = self.engine.get(ike_uid)
                if sa is None:
                    raise GatewayCommandError(f"IKE SA {ike_uid} closed while creating {child}")
                new = [c for c in sa.children.values() if c.uniqueid not in before and c.name == child]
                if any(c.state is ChildState.INSTALLED for c in new):
                    return [ike_uid, *(c.uniqueid for c in new)]
                await asyncio.sleep(0.02)
        finally:
            unsubscribe()
        raise GatewayCommandError(f"Child SA {child} not installed within {timeout:g} s")

    def terminate(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
                  child: str | None = None, reason: str = "terminated by admin") -> int:
        """DELETE the selected IKE SAs (or only their Child SAs named ``child``); how many were acted on."""
        return self._act("terminate", uniqueid, peer, conn, child, reason)

    def superseded_elsewhere(self, superseded: Iterable[tuple[str, str, str, bool, float]]) -> int:
        """Another worker set up IKE SAs that supersede our older ones, each ``(connection, peer key, reason,
        initial_contact, since)`` (INITIAL_CONTACT or ``unique = replace``:
        ``IkeManager.superseded_elsewhere``; the key: ``engine.identity.peer_key``); how many of ours
        ended."""
        now = time.time()
        count = sum(self.engine.superseded_elsewhere(conn, key, reason, initial_contact=contact, since=since,
                                                     now=now)
                    for conn, key, reason, contact, since in superseded)
        if count:
            self.pump()
        return count

    def held_before(self, conn: str, key: str, since: float) -> int | None:
        """The unique id of our IKE SA with the peer named ``key`` (``engine.identity.peer_key``) of ``conn``
        established before ``since`` (epoch), which ``unique = keep`` keeps against a newer one in another
        worker; None if we hold none."""
        sa = self.engine.kept_before(conn, key, since)
        return sa.uniqueid if sa is not None else None

    def rekey(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
              child: str | None = None) -> int:
        """Rekey the selected IKE SAs (or their Child SAs named ``child``); how many were acted on."""
        return self._act("rekey", uniqueid, peer, conn, child, "rekey requested by admin")

    async def rekey_sas(self, *, uniqueid: int | None = None, peer: str | None = None,
                        conn: str | None = None, child: str | None = None, ike: bool = False,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
        """Rekey the selected SAs as ``swanctl --rekey`` chooses them and say which: ``child`` names the
        Child SAs to rekey (RFC 7296 §1.3.3), ``ike`` the IKE SAs (§1.3.2); without either, ``uniqueid`` of a
        Child SA rekeys that Child SA and any other selection the IKE SA. Waits up to ``timeout`` s for each
        exchange and reports per SA its type, unique ids and SPIs before and after (``status``: ``rekeyed``,
        ``pending`` when not finished in time, ``failed``)."""
        if uniqueid is None and peer is None and conn is None:
            raise GatewayCommandError("rekey: select SAs with --uniqueid, --peer or --conn")
        targets: list[tuple[IkeSa, ChildSa | None]] = []
        for sa in select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid):
            named = uniqueid is not None and uniqueid != sa.uniqueid and uniqueid in sa.children
            for kid in sa.children.values():
                chosen = kid.name == child if child is not None else named and kid.uniqueid == uniqueid
                if kid.state is ChildState.INSTALLED and chosen:
                    targets.append((sa, kid))
            if (ike or (child is None and not named)) and sa.state is IkeState.ESTABLISHED:
                targets.append((sa, None))
        rekeyed: dict[str, str] = {}  # old inbound SPI -> new inbound SPI (child.rekeyed records)

        def on_event(event: dict[str, Any]) -> None:
            details = event.get("details") or {}
            if event.get("event") == "child.rekeyed" and "old_spi_in" in details:
                rekeyed[str(details["old_spi_in"])] = str(details.get("new_spi_in", ""))

        unsubscribe = self.subscribe(on_event)
        try:
            started: list[tuple[IkeSa, ChildSa | None, dict[str, Any]]] = []
            now = time.time()
            for sa, c in targets:
                try:
                    if c is None:
                        self.engine.rekey_ike(sa.uniqueid, now)
                    else:
                        self.engine.rekey_child(sa.uniqueid, c.uniqueid, now)
                except LocalProtocolError as exc:
                    log.info("rekey of IKE SA %d skipped: %s", sa.uniqueid, exc)
                    continue
                started.append((sa, c, _rekey_before(sa, c)))
            self.pump()
            if not started:
                raise GatewayCommandError("rekey: no SA matches the selection")
            deadline = time.monotonic() + timeout
            while True:
                reports = [self._rekey_after(sa, c, before, rekeyed) for sa, c, before in started]
                if all(r["status"] != "pending" for r in reports) or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.02)
        finally:
            unsubscribe()
        log.info("rekey: %s", "; ".join(f"{r['type']} SA {r['old_uniqueid']} {r['status']}" for r in reports))
        return reports

    def _rekey_after(self, sa: IkeSa, child: ChildSa | None, before: dict[str, Any],
                     rekeyed: dict[str, str]) -> dict[str, Any]:
        """``before`` completed with the new SA's ids and SPIs once the rekey finished."""
        report = dict(before)
        if child is None:
            new = sa.rekeyed_by
            if new is not None:
                report.update(status="rekeyed", new_uniqueid=new.uniqueid, new_spi_i=new.spi_i.hex(),
                              new_spi_r=new.spi_r.hex())
            elif sa.state is IkeState.CLOSED or (sa.state is IkeState.ESTABLISHED
                                                 and not sa.has_queued(IkeRekeyTask)):
                report["status"] = "failed"
            return report
        new_in = rekeyed.get(f"{child.spi_in:08x}")
        if new_in is not None:
            found = next(((owner, c) for owner in self.engine.ike_sas() for c in owner.children.values()
                          if f"{c.spi_in:08x}" == new_in), None)
            report.update(status="rekeyed", new_spi_in=new_in)
            if found is not None:
                report.update(new_uniqueid=found[1].uniqueid, new_spi_out=f"{found[1].spi_out:08x}",
                              ike_uniqueid=found[0].uniqueid)
        elif child.state in (ChildState.INSTALLED, ChildState.DELETED) or sa.state is IkeState.CLOSED:
            report["status"] = "failed"  # the rekey was aborted (refused, timed out) or the SA is gone
        return report

    def _act(self, what: str, uniqueid: int | None, peer: str | None, conn: str | None, child: str | None,
             reason: str) -> int:
        if uniqueid is None and peer is None and conn is None:
            raise GatewayCommandError(f"{what}: select SAs with --uniqueid, --peer or --conn")
        now = time.time()
        count = 0
        for sa in select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid):
            targets = [c for c in sa.children.values()
                       if (child is None and uniqueid is not None and c.uniqueid == uniqueid and sa.uniqueid
                           != uniqueid) or (child is not None and c.name == child)]
            # a Child SA already rekeyed or being deleted is not acted on (nor counted)
            live = (ChildState.INSTALLED,) if what == "rekey" else (
                ChildState.INSTALLED, ChildState.CREATING, ChildState.REKEYING)
            try:
                if targets:
                    for c in (c for c in targets if c.state in live):
                        if what == "terminate":
                            self.engine.terminate_child(sa.uniqueid, c.uniqueid, now, reason)
                        else:
                            self.engine.rekey_child(sa.uniqueid, c.uniqueid, now)
                        count += 1
                elif child is None:
                    if what == "terminate":
                        self.actions.forget(sa.uniqueid)
                        self.engine.terminate_ike(sa.uniqueid, now, reason)
                    else:
                        self.engine.rekey_ike(sa.uniqueid, now)
                    count += 1
            except LocalProtocolError as exc:
                log.info("%s of IKE SA %d skipped: %s", what, sa.uniqueid, exc)
        self.pump()
        if count == 0:
            raise GatewayCommandError(f"{what}: no SA matches the selection")
        log.info("%s: %d SA(s) (%s)", what, count, reason)
        return count

    def redirect(self, gateway: str, *, uniqueid: int | None = None, peer: str | None = None,
                 conn: str | None = None, reason: str = "redirected by admin") -> int:
        """Send the peers of the selected established IKE SAs to ``gateway`` (RFC 5685 §5, INFORMATIONAL);
        how many were redirected. GatewayCommandError names why none was (no match, no peer support)."""
        if uniqueid is None and peer is None and conn is None:
            raise GatewayCommandError("redirect: select IKE SAs by name, unique id or peer")
        count = 0
        errors: list[str] = []
        for sa in select_sas(self.engine.ike_sas(), conn=conn, peer=peer, uniqueid=uniqueid):
            try:
                self.engine.redirect(sa.uniqueid, gateway, time.time(), reason)
                count += 1
            except LocalProtocolError as exc:
                errors.append(str(exc))
        self.pump()
        if count == 0:
            raise GatewayCommandError(errors[0] if errors else "redirect: no IKE SA matches the selection")
        log.info("redirect: %d IKE SA(s) to %s (%s)", count, gateway, reason)
        return count

    def adopt_settings(self, conn: str) -> int:
        """Running SAs of ``conn`` take the loaded plan's settings from their next rekey (reload)."""
        settings = self.plan.connections.get(conn)
        return self.engine.adopt_settings(settings) if settings is not None else 0

    def reauthenticate(self, uid: int) -> bool:
        """Make-before-break: a new IKE SA with the loaded settings, then the old one is deleted (RFC 7296
        §2.8.3); a responder that cannot reach its peer deletes the SA instead. False when ``uid`` is not
        established."""
        sa = self.engine.get(uid)
        if sa is None or sa.state is not IkeState.ESTABLISHED:
            return False
        self.sync_new_child_refusal()
        try:
            self.engine.reauthenticate(uid, time.time())
        except LocalProtocolError as exc:
            log.info("reauthentication of IKE SA %d skipped: %s", uid, exc)
            return False
        self.pump()
        return True

    def apply_plan(self, plan: GatewayPlan) -> None:
        """Swap connections, validator, selectors and engine settings; touches no SA (reload decides that)."""
        plan.restrict_esp(esp_supported(self.dataplane.features))
        self.plan = plan
        ctx = self.engine.ctx
        self.engine.set_connections(plan.connections.values())
        ctx.validator = plan.validator
        ctx.peer_selectors = plan.selectors
        ctx.settings = plan.engine_settings
        self.ocsp_stapler.configure(plan.connections.values(), plan.validator.connections)
        self.children.release_unconfigured()


def _rekey_before(sa: IkeSa, child: ChildSa | None) -> dict[str, Any]:
    """One ``rekey --json`` entry before the exchange: the SA's type, ids and SPIs (RFC 7296 §2.8)."""
    if child is None:
        return {"type": "ike", "connection": sa.name, "status": "pending", "old_uniqueid": sa.uniqueid,
                "old_spi_i": sa.spi_i.hex(), "old_spi_r": sa.spi_r.hex(), "new_uniqueid": None,
                "new_spi_i": None, "new_spi_r": None}
    return {"type": "child", "connection": sa.name, "child": child.name, "ike_uniqueid": sa.uniqueid,
            "status": "pending", "old_uniqueid": child.uniqueid, "old_spi_in": f"{child.spi_in:08x}",
            "old_spi_out": f"{child.spi_out:08x}", "new_uniqueid": None, "new_spi_in": None,
            "new_spi_out": None}


def config_event(event: EventName, reason: str, *, outcome: Outcome = Outcome.SUCCESS, connection: str = "",
                 **details: str | int | bool) -> AuditEvent:
    """A ``config.*`` / ``waiver.applied`` record for the runner and reload."""
    return AuditEvent(event, outcome, reason=reason, connection=connection, details=details)
