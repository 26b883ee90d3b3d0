"""The engine's entry point: SPI demultiplexing, half-open limits and stateless cookies (RFC 7296 §2.6),
commands, and the aioquic-style sans-IO surface ``receive_datagram`` / ``handle_timer`` / ``get_timer`` /
``next_event``. Nothing here reads a clock or a socket: ``now`` is always a parameter.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable

from ikeguard.audit.events import EventName, Outcome
from ikeguard.crypto.random import RandomSource
from ikeguard.engine import commands
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.context import EngineContext
from ikeguard.engine.cookies import (
    CookieJar,
    CookieMode,
    cookie_answer,
    find_nonce,
    is_fresh_init_request,
    offered_cookie,
    offers_cookie,
)
from ikeguard.engine.eap_relay import EapRelayAnswer
from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.events import AuditEvent, DatagramDropped, Endpoint, EngineEvent, SignAnswer
from ikeguard.engine.exchanges import RULES, initiator_setup
from ikeguard.engine.ha_restore import DEFAULT_SEQ_MARGIN, restore_ike_sa
from ikeguard.engine.ha_state import EspSequence, IkeSaRecord, RecordError, export_ike_sa, exportable
from ikeguard.engine.identity import peer_identity, peer_key
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.message import InMessage, MessageError, decode_message
from ikeguard.engine.pending import answered, relay_answered, signature_made
from ikeguard.engine.pools import AddressPool
from ikeguard.engine.settings import ConnectionSettings, EngineSettings, PeerSelectors
from ikeguard.engine.states import IKE_UP, IkeState
from ikeguard.engine.tasks.mobike import MobikeUpdateTask
from ikeguard.engine.tasks.redirect import RedirectError, RedirectTask, gateway_identity
from ikeguard.engine.timers import Timer
from ikeguard.engine.validator import CertificateValidator, RejectAllValidator
from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import HEADER_LEN, decode_header
from ikeguard.wire.iana import ExchangeType, PayloadType
from ikeguard.wire.message import scan_payloads

ZERO_SPI = b"\0" * 8
ELSEWHERE_TTL = 0.01  # seconds the quick path reuses the other workers' half-open count


class IkeManager:
    """All IKE SAs of one gateway instance, driven by datagrams, timers and commands."""

    def __init__(
        self,
        connections: Iterable[ConnectionSettings],
        settings: EngineSettings | None = None,
        *,
        random: RandomSource,
        validator: CertificateValidator | None = None,
        peer_selectors: PeerSelectors | None = None,
    ) -> None:
        conns = {c.name: c for c in connections}
        self.ctx = EngineContext(
            settings or EngineSettings(), random, validator or RejectAllValidator(), conns, peer_selectors
        )
        self.ctx.reauth_hook = self._reauthenticate
        self.ctx.adopt_hook = self._adopt
        self.ctx.established_hook = self._enforce_uniqueness
        self.ctx.ike_sa_count = lambda: len(self._peer_key)
        self.ctx.redirect_hook = self._follow_redirect  # established IKE SAs (RFC 5685 redirect)
        self._by_spi: dict[bytes, IkeSa] = {}
        self._half_open_index: dict[tuple[bytes, str], IkeSa] = {}  # (SPIi, peer) -> SA: INIT replays
        self._init_key: dict[int, tuple[bytes, str]] = {}  # uniqueid -> its key in _half_open_index
        self._half_open: dict[int, str] = {}  # responder SAs not yet authenticated -> peer address
        self._half_open_per_addr: Counter[str] = Counter()
        self._by_uniqueid: dict[int, IkeSa] = {}
        # (connection, peer_key of the remote identity) -> established IKE SAs by uniqueid: INITIAL_CONTACT
        # and ``unique`` look here instead of scanning every SA (both are fixed once an SA is established)
        self._by_peer: dict[tuple[str, str], dict[int, IkeSa]] = {}
        self._peer_key: dict[int, tuple[str, str]] = {}  # uniqueid -> its key in _by_peer
        self._cookies = CookieJar(random.bytes, self.ctx.settings.cookie_secret_period)
        self._cookies_on = False
        self._cookie_mode = CookieMode()  # hysteresis on cookie_threshold (engine/cookies.py)
        self._elsewhere, self._elsewhere_at = 0, -1.0  # the other workers' half-open count, when read

    # ------------------------------------------------------------------ sans-IO surface
    def next_event(self) -> EngineEvent | None:
        """The next output to apply, in order; None when there is none."""
        return self.ctx.outputs.popleft() if self.ctx.outputs else None

    def events(self) -> list[EngineEvent]:
        """Drain every pending output."""
        out = list(self.ctx.outputs)
        self.ctx.outputs.clear()
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline across all SAs (None: nothing scheduled)."""
        heap = self.ctx.timer_heap
        while heap:
            deadline, uid = heap[0]
            sa = self._by_uniqueid.get(uid)
            if sa is not None and deadline in sa.timers.values():
                return deadline
            heapq.heappop(heap)  # stale: the SA is gone or the deadline was moved/cancelled
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``."""
        self.ctx.now = now
        heap = self.ctx.timer_heap
        due: list[int] = []
        while heap and heap[0][0] <= now:
            uid = heapq.heappop(heap)[1]
            if uid not in due:
                due.append(uid)
        for uid in due:
            sa = self._by_uniqueid.get(uid)
            if sa is None:
                continue
            try:
                sa.handle_timer(now)
            except Exception as exc:  # rule 3: nothing a peer sends (or an engine bug) may crash the gateway
                if self.ctx.settings.raise_internal_errors:
                    raise
                sa.close(f"internal error in a timer: {type(exc).__name__}: {exc}", failure=True)
            self._forget_if_closed(sa)

    def revocation_fetched(self, ike_uniqueid: int, token: int, body: bytes | None, now: float) -> None:
        """Input: the outcome of a ``RevocationFetch`` (``body`` None: the fetch failed or timed out). The
        waiting exchange continues; an answer for an SA that is gone or no longer waits is ignored."""
        self.ctx.now = now

        self._resume(ike_uniqueid, "a revocation fetch", lambda sa: answered(sa, token, body))

    def signature_made(self, ike_uniqueid: int, token: int, answer: SignAnswer, now: float) -> None:
        """Input: the outcome of a ``SignatureJob`` (our AUTH signature made off the loop). The waiting
        IKE_AUTH goes on with it; an answer for an SA that is gone or no longer waits is ignored."""
        self.ctx.now = now

        self._resume(ike_uniqueid, "a signature", lambda sa: signature_made(sa, token, answer))

    def radius_answered(self, ike_uniqueid: int, token: int, answer: EapRelayAnswer, now: float) -> None:
        """Input: the outcome of a ``RadiusRound`` (docs/remote-access.md). The waiting IKE_AUTH exchange
        goes on with it; an answer for an SA that is gone or no longer waits is ignored."""
        self.ctx.now = now

        self._resume(ike_uniqueid, "a RADIUS round", lambda sa: relay_answered(sa, token, answer))

    def _resume(self, ike_uniqueid: int, what: str, answer: Callable[[IkeSa], None]) -> None:
        """Hand the answer of work done outside the engine (engine/pending.py) to the IKE SA waiting for it
        and let the SA go on; as for datagrams and timers, an engine bug closes that SA, never the gateway."""
        sa = self._by_uniqueid.get(ike_uniqueid)
        if sa is None:
            return
        try:
            answer(sa)
            sa.start_next()
        except Exception as exc:
            if self.ctx.settings.raise_internal_errors:
                raise
            sa.close(f"internal error after {what}: {type(exc).__name__}: {exc}", failure=True)
        self._forget_if_closed(sa)

    def receive_datagram(self, data: bytes, local: Endpoint, remote: Endpoint, now: float) -> None:
        """One IKE message (non-ESP marker already removed) received on ``local`` from ``remote``.

        Never raises for anything the peer sent: malformed input is dropped with a trace event.
        """
        self.ctx.now = now
        try:
            header, _first, _length = decode_header(data)
        except (ParseError, ValueError) as exc:
            self._trace(f"unparsable IKE header from {remote}: {exc}", remote)
            return
        try:
            exchange = ExchangeType(int(header.exchange_type))
        except ValueError:
            self._trace(f"unknown exchange type {int(header.exchange_type)} from {remote}", remote)
            return
        if (
            exchange is ExchangeType.IKE_SA_INIT
            and not header.is_response
            and header.is_initiator
            and header.spi_r == ZERO_SPI
        ):
            self._receive_init_request(data, header.spi_i, header.message_id, local, remote, now)
            return
        our_spi = header.spi_r if header.is_initiator else header.spi_i
        sa = self._by_spi.get(our_spi)
        if sa is None:
            self._trace(f"message for unknown IKE SPI {our_spi.hex()} from {remote}", remote)
            return
        if sa.initiator == header.is_initiator:
            self._trace("I flag does not match our role", remote)
            return
        if exchange is ExchangeType.IKE_SA_INIT and header.is_response and sa.spi_r == ZERO_SPI:
            pass  # the responder's SPI becomes known in IkeInitTask.process_i
        elif (header.spi_r if sa.initiator else header.spi_i) != (sa.spi_r if sa.initiator else sa.spi_i):
            self._trace("peer SPI does not match the IKE SA", remote)
            return
        try:
            sa.receive(data, exchange, header.message_id, header.is_response, local, remote, now)
        except Exception as exc:  # rule 3: nothing a peer sends (or an engine bug) may crash the gateway
            if self.ctx.settings.raise_internal_errors:
                raise
            sa.close(f"internal error while processing a message: {type(exc).__name__}: {exc}", failure=True)
        if sa.initiator and sa.spi_r != ZERO_SPI:
            self._by_spi.setdefault(sa.spi_local, sa)
        self._forget_if_closed(sa)

    # ------------------------------------------------------------------ high availability (docs/ha.md)
    def export_state(self, now: float, esp: dict[int, EspSequence] | None = None) -> list[IkeSaRecord]:
        """Records of every established IKE SA (engine/ha_state.py); ``esp``: data-plane sequence state by
        inbound SPI. The records hold key copies: the caller encrypts them and wipes them when done."""
        return [export_ike_sa(sa, now, esp) for sa in self._by_uniqueid.values() if exportable(sa)]

    def restore(self, record: IkeSaRecord, now: float, *, seq_margin: int = DEFAULT_SEQ_MARGIN,
                check_liveness: bool = True) -> int:
        """Continue the IKE SA of ``record`` here (HA takeover, engine/ha_restore.py); its uniqueid.
        RecordError if its connection is not configured or the SPI is already in use. ``check_liveness``
        False: no first exchange (message ID sync or liveness probe) is queued."""
        self.ctx.now = now
        if self._by_spi.get(record.spi_i if record.initiator else record.spi_r) is not None:
            raise RecordError(f"IKE SA {record.key} already exists here")
        sa = restore_ike_sa(self.ctx, record, now, RULES, seq_margin=seq_margin,
                            check_liveness=check_liveness)
        self._adopt(sa)
        sa.start_next()
        return sa.uniqueid

    # ------------------------------------------------------------------ IKE_SA_INIT requests
    def half_open_count(self, address: str | None = None) -> int:
        """Responder SAs waiting for IKE_AUTH (optionally from one address)."""
        return len(self._half_open) if address is None else self._half_open_per_addr[address]

    def _leave_half_open(self, sa: IkeSa) -> None:
        address = self._half_open.pop(sa.uniqueid, None)
        if address is not None:
            self._half_open_per_addr[address] -= 1
            if self._half_open_per_addr[address] <= 0:
                del self._half_open_per_addr[address]

    def _receive_init_request(
        self, data: bytes, spi_i: bytes, message_id: int, local: Endpoint, remote: Endpoint, now: float
    ) -> None:
        key = (spi_i, str(remote))
        existing = self._half_open_index.get(key)
        if existing is not None and existing.state is not IkeState.CLOSED:
            existing.receive(data, ExchangeType.IKE_SA_INIT, message_id, False, local, remote, now)
            self._forget_if_closed(existing)
            return
        if message_id != 0:
            self._trace("IKE_SA_INIT request with non-zero message ID", remote)
            return
        settings = self.ctx.settings
        if settings.max_ike_sas and len(self._by_uniqueid) >= settings.max_ike_sas:
            self._trace("IKE SA limit reached", remote)
            return
        address = str(remote.address)
        if settings.block_threshold and self.half_open_count(address) >= settings.block_threshold:
            self._trace(f"half-open limit per peer reached for {address}", remote)
            return
        busy = self._cookies_busy()
        if busy and not self._raw_cookie_ok(data, spi_i, local, remote, now):
            return
        # Decoded once, before any state exists: the rules refuse disallowed payloads before their bodies are
        # decoded, and every body costs bounded work (wire.message, wire.rules); the cookie check and the
        # new SA use this one result.
        decoded: InMessage | MessageError
        try:
            decoded = decode_message(data, None, None)
        except MessageError as exc:
            decoded = exc
        if isinstance(decoded, MessageError) and decoded.notify is None:
            self._trace(f"undecodable IKE_SA_INIT request: {decoded}", remote)
            return  # RFC 7296 §2.21.1: nothing to answer, and no state for it
        if busy and isinstance(decoded, MessageError):
            return  # cookie mode answers nothing but a COOKIE (RFC 7296 §2.6)
        sa = IkeSa(
            self.ctx,
            initiator=False,
            local=local,
            remote=remote,
            spi_local=self._new_spi(),
            conn=None,
            now=now,
            rules=RULES,
        )
        sa.spi_i = spi_i
        sa.timers[Timer.HALF_OPEN] = now + settings.half_open_timeout
        self._register(sa)
        self._half_open_index[key] = sa
        self._init_key[sa.uniqueid] = key
        self._half_open[sa.uniqueid] = address
        self._half_open_per_addr[address] += 1
        try:
            sa.receive(data, ExchangeType.IKE_SA_INIT, message_id, False, local, remote, now, decoded)
        except Exception as exc:  # rule 3: nothing a peer sends (or an engine bug) may crash the gateway
            if self.ctx.settings.raise_internal_errors:
                raise
            sa.close(
                f"internal error while processing IKE_SA_INIT: {type(exc).__name__}: {exc}", failure=True
            )
        self._forget_if_closed(sa)

    def _raw_cookie_ok(self, data: bytes, spi_i: bytes, local: Endpoint, remote: Endpoint,
                       now: float) -> bool:
        """RFC 7296 §2.6 while cookies are demanded: whether the request offers a valid COOKIE (first
        payload), checked on the generic payload headers before any body is decoded (a flood of requests with
        or without forged cookies costs a walk of the chain and one HMAC each, issue 22); otherwise answered
        with a cookie (when it carries a nonce) and False."""
        scanned = _scan_init(data)
        if scanned is None:
            return False
        first, nonce = scanned
        cookie = offered_cookie(first) if offers_cookie(data) else None
        if cookie is not None and self._cookies.verify(cookie, nonce, str(remote), spi_i, now):
            return True
        self._send_cookie(nonce, spi_i, local, remote, now)
        return False

    def answer_cookieless_init(self, data: bytes, remote: str, address: str, now: float) -> bytes | None:
        """The COOKIE answer to a new IKE_SA_INIT request that offers none while cookies are demanded, without
        an event (the service sends it on the socket it came from: a flood's requests, issue 22); ``remote``
        is ``str(Endpoint)`` of the sender, ``address`` its address alone. ``b""``: drop it (no nonce to bind
        a cookie to). None: anything else — a retransmission of a known request, a limit reached, cookies
        going off, a cookie offered — which :meth:`receive_datagram` must see."""
        if not self._cookies_on or not is_fresh_init_request(data) or offers_cookie(data):
            return None
        spi_i = data[:8]
        settings = self.ctx.settings
        block = settings.block_threshold
        if ((spi_i, remote) in self._half_open_index
                or (settings.max_ike_sas and len(self._by_uniqueid) >= settings.max_ike_sas)
                or (block and self._half_open_per_addr.get(address, 0) >= block)
                or not self._cookie_mode.update(self._half_open_total(now), settings.cookie_threshold, now)):
            return None
        nonce = find_nonce(data)
        if nonce is None:
            return b""
        self._cookie_mode.demanded(settings.cookie_threshold, now)
        return cookie_answer(spi_i, self._cookies.make(nonce, remote, spi_i, now))

    def _half_open_total(self, now: float | None = None) -> int:
        """Half-open SAs here and, with ``[gateway] workers``, in every other worker (``now``: the quick
        path, which reads the others' count at most every ``ELSEWHERE_TTL`` seconds — they publish it every
        0.1 s — instead of once per datagram of a flood)."""
        elsewhere = self.ctx.half_open_elsewhere
        if elsewhere is None or self.ctx.settings.cookie_threshold <= 0:
            return self.half_open_count()
        if now is None or not 0 <= now - self._elsewhere_at < ELSEWHERE_TTL:
            self._elsewhere = elsewhere()
            if now is not None:
                self._elsewhere_at = now
        return self.half_open_count() + self._elsewhere

    def _cookies_busy(self) -> bool:
        """Whether cookies are demanded now (half-open SAs of every worker against ``cookie_threshold``);
        audits each change."""
        count = self._half_open_total()  # [gateway] workers: the count is over all workers
        busy = self._cookie_mode.update(count, self.ctx.settings.cookie_threshold, self.ctx.now)
        if busy != self._cookies_on:
            self._cookies_on = busy
            self.ctx.outputs.append(
                AuditEvent(
                    EventName.DOS_COOKIES_ON if busy else EventName.DOS_COOKIES_OFF,
                    Outcome.SUCCESS,
                    f"{count} half-open IKE SAs",
                )
            )
        return busy

    def _send_cookie(self, nonce: bytes, spi_i: bytes, local: Endpoint, remote: Endpoint, now: float) -> None:
        """The stateless N(COOKIE) answer (RFC 7296 §2.6)."""
        from ikeguard.engine.events import SendDatagram

        cookie = self._cookies.make(nonce, str(remote), spi_i, now)
        self._cookie_mode.demanded(self.ctx.settings.cookie_threshold, now)
        self.ctx.outputs.append(SendDatagram(cookie_answer(spi_i, cookie), local, remote))

    # ------------------------------------------------------------------ commands
    def initiate(
        self,
        connection: str,
        *,
        local: Endpoint,
        remote: Endpoint,
        now: float,
        children: Iterable[str] | None = None,
        redirected_from: str = "",
    ) -> int:
        """Start an IKE SA for ``connection`` (all children or those named); returns its uniqueid.
        ``redirected_from``: the gateway that sent us here (RFC 5685 §4: REDIRECTED_FROM)."""
        self.ctx.now = now
        conn = self.ctx.connections.get(connection)
        if conn is None:
            raise LocalProtocolError(f"unknown connection {connection!r}")
        wanted = list(children) if children is not None else [c.name for c in conn.children]
        selected = [c for c in conn.children if c.name in wanted]
        if len(selected) != len(wanted):
            raise LocalProtocolError(f"unknown child in {wanted} for connection {connection!r}")
        sa = IkeSa(
            self.ctx,
            initiator=True,
            local=local,
            remote=remote,
            spi_local=self._new_spi(),
            conn=conn,
            now=now,
            rules=RULES,
        )
        # INITIAL_CONTACT only when we hold no other IKE SA with this peer (RFC 7296 §2.4, as strongSwan)
        sa.first_contact = not any(
            o.name == conn.name and o.remote.address == remote.address for o in self.ike_sas()
        )
        sa.redirected_from = redirected_from
        self._register(sa)
        for tasks in initiator_setup(selected[0] if selected else None):
            sa.queue_exchange(tasks)
        for child in selected[1:]:
            commands.create_child(sa, child)
        sa.start_next()
        return sa.uniqueid

    def terminate_ike(self, uniqueid: int, now: float, reason: str = "terminated by admin") -> None:
        """Delete an IKE SA and its Child SAs (a local decision: one still being set up ends as
        ``ike.down`` with ``reason``, not as an authentication failure)."""
        self.ctx.now = now
        sa = self._sa(uniqueid)
        commands.delete_ike(sa, reason, local_decision=True)
        sa.start_next()
        self._forget_if_closed(sa)

    def terminate_child(
        self, uniqueid: int, child_uniqueid: int, now: float, reason: str = "terminated by admin"
    ) -> None:
        """Delete one Child SA."""
        self.ctx.now = now
        sa = self._sa(uniqueid)
        child = sa.children.get(child_uniqueid)
        if child is None:
            raise LocalProtocolError(f"IKE SA {uniqueid} has no Child SA {child_uniqueid}")
        commands.delete_child(sa, child, reason)
        sa.start_next()

    def set_new_child_refusal(self, reason: str | None) -> None:
        """Refuse (``reason``) or allow again (None) new Child SAs on existing IKE SAs, as initiator
        (LocalProtocolError) and responder (NO_ADDITIONAL_SAS); rekeys go on (PCI DSS 10.7: audit down)."""
        self.ctx.new_child_refusal = reason

    def create_child(self, uniqueid: int, child: str, now: float) -> None:
        """Add a configured Child SA to an established IKE SA (CREATE_CHILD_SA)."""
        self.ctx.now = now
        if self.ctx.new_child_refusal is not None:
            raise LocalProtocolError(f"new Child SA refused: {self.ctx.new_child_refusal}")
        sa = self._sa(uniqueid)
        settings = next((c for c in (sa.conn.children if sa.conn else ()) if c.name == child), None)
        if settings is None:
            raise LocalProtocolError(f"connection of IKE SA {uniqueid} has no child {child!r}")
        commands.create_child(sa, settings)
        sa.start_next()

    def redirect(self, uniqueid: int, gateway: str, now: float, reason: str = "redirected by admin") -> None:
        """Send the peer of an established IKE SA to ``gateway`` (RFC 5685 §5); LocalProtocolError when the
        peer did not announce REDIRECT_SUPPORTED or the gateway is neither an address nor a host name."""
        self.ctx.now = now

        sa = self._sa(uniqueid)
        try:
            gateway_identity(gateway)
        except RedirectError as exc:
            raise LocalProtocolError(str(exc)) from None
        if not sa.peer.redirect:
            raise LocalProtocolError(f"peer of IKE SA {uniqueid} does not support redirection (RFC 5685)")
        if sa.state is not IkeState.ESTABLISHED:
            raise LocalProtocolError(f"IKE SA {uniqueid} is not established")
        sa.queue_exchange([RedirectTask(gateway, reason)])
        sa.start_next()

    def rekey_ike(self, uniqueid: int, now: float) -> None:
        """Rekey an IKE SA now."""
        self.ctx.now = now
        sa = self._sa(uniqueid)
        commands.rekey_ike(sa)
        sa.start_next()

    def rekey_child(self, uniqueid: int, child_uniqueid: int, now: float) -> None:
        """Rekey one Child SA now."""
        self.ctx.now = now
        sa = self._sa(uniqueid)
        child = sa.children.get(child_uniqueid)
        if child is None:
            raise LocalProtocolError(f"IKE SA {uniqueid} has no Child SA {child_uniqueid}")
        commands.rekey_child(sa, child)
        sa.start_next()

    def reauthenticate(self, uniqueid: int, now: float) -> None:
        """Reauthenticate an IKE SA now (make-before-break)."""
        self.ctx.now = now
        sa = self._sa(uniqueid)
        commands.reauthenticate(sa, "reauthentication requested")

    def update_local_endpoint(self, uniqueid: int, local: Endpoint, now: float) -> None:
        """Our address changed (MOBIKE, RFC 4555 §3.5): move the IKE SA and tell the peer with
        UPDATE_SA_ADDRESSES; without MOBIKE the SA cannot move and is closed with the reason."""
        self.ctx.now = now

        sa = self._sa(uniqueid)
        if not sa.peer.mobike or not sa.initiator:
            why = (
                "MOBIKE is not in use"
                if not sa.peer.mobike
                else "only the MOBIKE initiator may move (RFC 4555)"
            )
            sa.close(f"local address changed to {local} and {why}", send_delete=False, failure=True)
            self._forget_if_closed(sa)
            return
        sa.local = local
        sa.queue_exchange([MobikeUpdateTask()], front=True)
        sa.start_next()

    def child_lifetime_reached(self, spi_in: int, *, hard: bool, now: float, child_uniqueid: int = 0) -> None:
        """Data-plane upcall: a byte/packet lifetime of the inbound SA ``spi_in`` (of Child SA
        ``child_uniqueid`` when given: the data plane names the Child SA, issue 13 S3) was reached."""
        self.ctx.now = now
        found = self._child_by_spi(spi_in, child_uniqueid)
        if found is None:
            return
        sa, child = found
        if hard:
            commands.delete_child(sa, child, "Child SA byte/packet hard lifetime reached")
        else:
            commands.rekey_child(sa, child)
        sa.start_next()

    def _child_by_spi(self, spi_in: int, child_uniqueid: int) -> tuple[IkeSa, ChildSa] | None:
        """The IKE SA and Child SA of an inbound SPI (of Child SA ``child_uniqueid`` when given), in O(1)
        through ``ctx.child_homes``; only two Child SAs that drew the same inbound SPI fall back to a scan."""
        home = self._by_uniqueid.get(self.ctx.child_homes.get(spi_in, 0))
        if home is None:
            return None
        child = home.find_child_by_spi(spi_in, inbound=True)
        if child is not None and (not child_uniqueid or child.uniqueid == child_uniqueid):
            return home, child
        # the index names another Child SA that drew the same SPI: look at every IKE SA
        return next(((sa, c) for sa in self._by_uniqueid.values() for c in sa.children.values()
                     if c.spi_in == spi_in and (not child_uniqueid or c.uniqueid == child_uniqueid)), None)


    def install_failed(self, uniqueid: int, child_uniqueid: int, reason: str, now: float) -> None:
        """Data-plane upcall: installing a Child SA failed; delete it at the peer too."""
        self.ctx.now = now
        sa = self._by_uniqueid.get(uniqueid)
        if sa is None:
            return
        child = sa.children.get(child_uniqueid)
        if child is not None:
            sa.audit(EventName.CHILD_FAILED, Outcome.FAILURE, f"data plane refused the SA: {reason}",
                     child=child.name)
            commands.delete_child(sa, child, f"install failed: {reason}")
            sa.start_next()

    def set_connections(self, connections: Iterable[ConnectionSettings]) -> None:
        """Reload: new SAs use the new connection set; established SAs keep the settings they were made with
        (the service decides which ones a config diff requires to restart)."""
        self.ctx.connections = {c.name: c for c in connections}

    def adopt_settings(self, conn: ConnectionSettings) -> int:
        """A reload changed only what applies at the next rekey (lifetimes, rand_time, DPD, proposals still
        allowed, actions): the IKE SAs of ``conn.name`` and their Child SAs take ``conn`` for their next
        rekey, reauthentication and liveness check; their keys, SPIs and running deadlines stay (as
        ``swanctl --load-conns``). Returns how many IKE SAs took it."""
        by_name = {c.name: c for c in conn.children}
        count = 0
        for sa in self.ike_sas():
            if sa.conn is None or sa.conn.name != conn.name:
                continue
            sa.conn = conn
            for child in sa.children.values():
                settings = by_name.get(child.name)
                if settings is not None:
                    child.settings = settings
            count += 1
        return count

    def leases(self) -> dict[str, dict[str, str]]:
        """Virtual IP leases per pool, user -> address (online and offline), for persistence."""
        return {name: pool.leases() for name, pool in self.ctx.pools.items()}

    def pool_status(self) -> dict[str, list[tuple[str, str, bool]]]:
        """Leases of every pool in use, as (address, user, online) (vici ``get-pools``)."""
        return {name: pool.status() for name, pool in self.ctx.pools.items()}

    def restore_leases(self, leases: dict[str, dict[str, str]]) -> None:
        """Leases of a previous run come back offline: each user gets its address again."""
        for conn in self.ctx.connections.values():
            for settings in conn.pools:
                if settings.name in leases and settings.name not in self.ctx.pools:
                    pool = AddressPool(settings)
                    pool.restore(leases[settings.name])
                    self.ctx.pools[settings.name] = pool

    # ------------------------------------------------------------------ introspection
    def ike_sas(self) -> list[IkeSa]:
        """Every IKE SA not yet closed (for ``sas`` and tests)."""
        return [sa for sa in self._by_uniqueid.values() if sa.state is not IkeState.CLOSED]

    def ike_sa_count(self) -> int:
        """How many IKE SAs the manager holds (closed ones are forgotten promptly); O(1)."""
        return len(self._by_uniqueid)

    def has_ike_sas(self) -> bool:
        """Whether any IKE SA is not yet closed (stops at the first; closed SAs are forgotten promptly)."""
        return any(sa.state is not IkeState.CLOSED for sa in self._by_uniqueid.values())

    def retained(self) -> int:
        """How many IKE SA objects the manager still holds (closed ones are dropped; for leak checks)."""
        tables = (self._by_uniqueid, self._by_spi, self._half_open_index, self._init_key, self._half_open,
                  self._by_peer, self._peer_key)
        return sum(len(t) for t in tables) + len(self._half_open_per_addr)

    def share_cookie_secret(self, seed: bytes) -> None:
        """Derive the COOKIE secrets from ``seed`` and the period number (engine/cookies.py), so that every
        worker of a multi-worker gateway makes and accepts the same cookies."""
        self._cookies.share(seed)

    def get(self, uniqueid: int) -> IkeSa | None:
        """The IKE SA with ``uniqueid``."""
        return self._by_uniqueid.get(uniqueid)

    # ------------------------------------------------------------------ internals
    def _sa(self, uniqueid: int) -> IkeSa:
        sa = self._by_uniqueid.get(uniqueid)
        if sa is None or sa.state is IkeState.CLOSED:
            raise LocalProtocolError(f"no IKE SA with uniqueid {uniqueid}")
        return sa

    def _new_spi(self) -> bytes:
        while True:
            spi = self.ctx.ike_spi()
            if spi != ZERO_SPI and spi not in self._by_spi:
                return spi

    def _register(self, sa: IkeSa) -> None:
        self._by_uniqueid[sa.uniqueid] = sa
        self._by_spi[sa.spi_local] = sa

    def _adopt(self, sa: IkeSa) -> None:
        """A new IKE SA created by a rekey joins the tables."""
        self._register(sa)
        self._index_peer(sa)

    def _index_peer(self, sa: IkeSa) -> None:
        """An established IKE SA joins the (connection, peer_key) index."""
        if sa.uniqueid in self._peer_key:
            return
        key = (sa.name, peer_key(sa.remote_id, sa.eap_identity))
        self._peer_key[sa.uniqueid] = key
        self._by_peer.setdefault(key, {})[sa.uniqueid] = sa

    def _unindex_peer(self, sa: IkeSa) -> None:
        key = self._peer_key.pop(sa.uniqueid, None)
        if key is None:
            return
        group = self._by_peer.get(key)
        if group is not None:
            group.pop(sa.uniqueid, None)
            if not group:
                del self._by_peer[key]

    def _forget_if_closed(self, sa: IkeSa) -> None:
        while self.ctx.closed:  # SAs closed as a side effect of another SA's work (rekey, unique, reauth)
            other = self.ctx.closed.pop()
            if other is not sa:
                self._forget_if_closed(other)
        if sa.state is not IkeState.CLOSED:
            return
        self._by_uniqueid.pop(sa.uniqueid, None)
        self._unindex_peer(sa)
        if self._by_spi.get(sa.spi_local) is sa:
            del self._by_spi[sa.spi_local]
        key = self._init_key.pop(sa.uniqueid, None)
        if key is not None and self._half_open_index.get(key) is sa:
            del self._half_open_index[key]
        self._leave_half_open(sa)

    def _follow_redirect(self, old: IkeSa, gateway: str, exchange: str) -> None:
        """RFC 5685 §5/§6: an IKE SA with the gateway ``old``'s peer sent us to (an IP address: the engine
        resolves no names), with REDIRECTED_FROM; ``old`` is deleted once the new one is up."""
        import ipaddress

        try:
            address = ipaddress.ip_address(gateway)
        except ValueError:
            address = None
        if old.conn is None or address is None or old.redirected_from:
            why = ("a host name (the engine resolves no names)" if address is None else
                   "redirected a second time" if old.redirected_from else "no connection")
            old.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE, f"REDIRECT to {gateway} not followed: {why}",
                      direction="in", gateway=gateway, exchange=exchange)
            return
        new_id = self.initiate(old.conn.name, local=Endpoint(old.local.address, 500),
                               remote=Endpoint(address, old.conn.remote_port), now=old.now,
                               children=[c.name for c in old.conn.children],
                               redirected_from=str(old.remote.address))
        self._by_uniqueid[new_id].replaces = old
        old.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS,
                  f"redirected by {old.remote.address} to {gateway}: new IKE SA {new_id}", direction="in",
                  gateway=gateway, exchange=exchange, new_uniqueid=str(new_id))

    def _reauthenticate(self, old: IkeSa, reason: str) -> None:
        """Make-before-break: a fresh IKE SA for the same connection; the old one goes once it is up."""
        if old.conn is None or (not old.initiator and old.conn.remote_addrs == ("%any",)):
            # A responder cannot reach a roaming peer: it closes with the reason, the peer reconnects.
            commands.delete_ike(old, f"reauthentication required: {reason}")
            return
        new_id = self.initiate(
            old.conn.name,
            local=Endpoint(old.local.address, 500),
            remote=Endpoint(old.remote.address, old.conn.remote_port),
            now=old.now,
            children=[c.name for c in old.conn.children],
        )
        new = self._by_uniqueid[new_id]
        new.replaces = old
        old.audit(EventName.IKE_REAUTH, Outcome.SUCCESS, reason, new_uniqueid=str(new_id))

    def _enforce_uniqueness(self, sa: IkeSa) -> None:
        """INITIAL_CONTACT (RFC 7296 §2.4) and the ``unique`` policy for a freshly authenticated IKE SA."""
        self._leave_half_open(sa)
        if sa.conn is None:
            return
        self._index_peer(sa)
        unique = sa.conn.unique
        initial_contact = sa.peer.initial_contact and not sa.initiator
        if not initial_contact and unique not in ("replace", "keep"):
            return  # nothing to act on: no scan of the peer's SAs (many users may share one identity)
        others = [o for o in self._established_with_peer(sa.name, self._peer_key[sa.uniqueid][1])
                  if o is not sa and o is not sa.replaces and o.replaces is not sa]
        if not others:
            return
        if initial_contact:
            self._end_superseded(others, f"INITIAL_CONTACT from {_peer_identity(sa)} in IKE SA {sa.uniqueid}",
                                 initial_contact=True)
        elif unique == "replace":
            self._end_superseded(others, f"unique=replace: superseded by IKE SA {sa.uniqueid}",
                                 initial_contact=False)
        elif unique == "keep" and (kept := _keepable(others)):
            commands.delete_ike(sa, f"unique=keep: {_peer_identity(sa)} already has IKE SA "
                                    f"{kept[0].uniqueid}")

    def _end_superseded(self, others: Iterable[IkeSa], reason: str, *, initial_contact: bool) -> None:
        """End IKE SAs a newer one with the same peer supersedes: after INITIAL_CONTACT the peer has
        rebooted and its side of them is gone, so they are dropped without a DELETE (RFC 7296 §2.4); for
        ``unique = replace`` they are deleted."""
        for other in others:
            if initial_contact:
                other.close(reason)
                self._forget_if_closed(other)
            else:
                commands.delete_ike(other, reason)
                other.start_next()

    def superseded_elsewhere(self, conn: str, key: str, reason: str, *, initial_contact: bool,
                             since: float, now: float) -> int:
        """An IKE SA with the peer named ``key`` (:func:`~ikeguard.engine.identity.peer_key`) of connection
        ``conn`` came up in another worker process at ``since`` (issue 22) with INITIAL_CONTACT, or under
        ``unique = replace``: end our IKE SAs with that peer established before it, as
        :meth:`_enforce_uniqueness` does in one process (a newer one is not superseded: the notice may arrive
        after it came up); how many. One index lookup, never a scan."""
        self.ctx.now = now
        others = self._established_with_peer(conn, key, before=since)
        self._end_superseded(others, reason, initial_contact=initial_contact)
        return len(others)

    def kept_before(self, conn: str, key: str, since: float) -> IkeSa | None:
        """Our IKE SA with the peer named ``key`` of ``conn`` established before ``since`` that ``unique =
        keep`` keeps against a newer one in another worker process (the oldest), or None; one index lookup."""
        kept = _keepable(self._established_with_peer(conn, key, before=since))
        return min(kept, key=lambda o: o.established_at or 0.0) if kept else None

    def _established_with_peer(self, conn: str, key: str, before: float | None = None) -> list[IkeSa]:
        """Our authenticated, not closed IKE SAs with the peer named ``key`` (``peer_key``) of ``conn`` that
        no IKE rekey replaced (established before ``before`` when given): what INITIAL_CONTACT and ``unique``
        act on."""
        return [o for o in self._by_peer.get((conn, key), {}).values()
                if o.state is not IkeState.CLOSED and o.established_at is not None and o.rekeyed_by is None
                and (before is None or o.established_at < before)]

    def _trace(self, reason: str, remote: Endpoint) -> None:
        self.ctx.outputs.append(DatagramDropped(reason, str(remote)))


def _peer_identity(sa: IkeSa) -> str:
    return peer_identity(sa.remote_id, sa.eap_identity)


def _keepable(sas: list[IkeSa]) -> list[IkeSa]:
    """The SAs ``unique = keep`` keeps: up, not already being deleted (a DELETE may be retransmitting to a
    crashed peer)."""
    return [o for o in sas if o.state in IKE_UP]


def _scan_init(data: bytes) -> tuple[bytes, bytes] | None:
    """(first payload's body, Ni data) of an IKE_SA_INIT request from its payload chain's generic headers (no
    body decoded); None when the chain does not parse or holds no nonce of 16..256 octets (RFC 7296 §3.9)."""
    try:
        raw = scan_payloads(data[28:], data[16], 28)
    except ParseError:
        return None
    for payload in raw:
        if payload.type == PayloadType.NONCE:
            return (raw[0].body, payload.body) if 16 <= len(payload.body) <= 256 else None
    return None


def is_ike_message(data: bytes) -> bool:
    """Cheap check before handing a datagram to the engine (at least an IKE header)."""
    return len(data) >= HEADER_LEN


__all__ = ["IkeManager", "InMessage", "is_ike_message"]
