"""One IKE SA: its state, keys, Child SAs, and the task manager that runs exchanges over the message window.

Modelled on strongSwan's task_manager_v2 (read, not copied): our requests are queued exchanges of tasks, sent
one at a time (window 1, RFC 7296 §2.3) and retransmitted on a back-off schedule; the peer's requests are
answered by responder tasks chosen from the exchange type, and the last response is cached for replays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine import lifecycle
from ikeguard.engine import pending as pending_
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.context import EngineContext
from ikeguard.engine.errors import RelayPending, RemoteProtocolError, ValidationPending
from ikeguard.engine.events import (
    AuditEvent,
    ChildSaStateChanged,
    DatagramDropped,
    DeleteChildSa,
    Direction,
    Endpoint,
    EngineEvent,
    IkeSaStateChanged,
    IpAddress,
    SendDatagram,
)
from ikeguard.engine.identity import peer_key
from ikeguard.engine.keys import IkeSaCrypto
from ikeguard.engine.message import InMessage, MessageError, OutMessage, decode_message, encode_message
from ikeguard.engine.pools import release_lease
from ikeguard.engine.proposals import proposal_text
from ikeguard.engine.retransmit import CachedResponse, MessageIdWindow, OutgoingRequest
from ikeguard.engine.settings import ConnectionSettings, GroupSettings
from ikeguard.engine.states import (
    IKE_AUTHENTICATED,
    IKE_AUTHENTICATING,
    ChildState,
    ChildTrigger,
    IkeState,
    IkeTrigger,
    next_child_state,
    next_ike_state,
)
from ikeguard.engine.tasks.base import Status, Task, TaskFailed
from ikeguard.engine.tasks.mobike import update_addresses
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.proposal_string import ProposalSpec

if TYPE_CHECKING:
    from ikeguard.engine.eap_relay import AuthRounds, EapRelayAnswer
    from ikeguard.engine.events import SignAnswer
    from ikeguard.engine.fragments import Reassembler
    from ikeguard.engine.intermediate import IntermediateState

class ExchangeRules(Protocol):
    """The exchange table (engine/exchanges.py) as the IKE SA consults it; handed in by the manager, so the
    SA does not import the tasks the table names."""

    def accepts_request(self, sa: IkeSa, exchange: int) -> bool:
        """Whether the peer's request is decrypted and answered at all."""

    def responder_tasks(self, sa: IkeSa, msg: InMessage) -> list[Task]:
        """The tasks answering it (RemoteProtocolError: refused with a notify)."""

    def may_send(self, sa: IkeSa, exchange: ExchangeType) -> bool:
        """Whether our queued request of ``exchange`` may be sent now."""


@dataclass(slots=True)  # one per IKE SA (issue 22, memory per SA)
class PeerFeatures:
    """What the peer announced (RFC 7383 §2.3, RFC 7427 §4, RFC 4555 §3.1)."""

    fragmentation: bool = False
    signature_hashes: tuple[int, ...] = ()
    mobike: bool = False
    initial_contact: bool = False
    mid_sync: bool = False  # IKEV2_MESSAGE_ID_SYNC_SUPPORTED both ways (RFC 6311, engine/ha_mid_sync.py)
    redirect: bool = False  # REDIRECT_SUPPORTED or REDIRECTED_FROM in IKE_SA_INIT (RFC 5685 §3)


@dataclass
class Exchange:
    """A queued request of ours: its tasks, in payload order."""

    tasks: list[Task]
    exchange: ExchangeType = field(init=False)
    # the task that asked for another request of this exchange (Status.MORE: IKE_AUTH with EAP rounds); the
    # next request is its alone, and its response goes to it and to the tasks after it
    continuing: Task | None = None

    def __post_init__(self) -> None:
        self.exchange = self.tasks[0].exchange


class IkeSa:
    """State and behaviour of one IKE SA; created and driven by the manager."""

    # issue 22 (memory per SA): ~70 attributes are more than CPython's shared-key instance dicts hold (30),
    # so each SA had its own ~1.6 KiB dict; slots are ~0.6 KiB. A new attribute must be added here.
    __slots__ = (
        "__weakref__", "_closing", "active", "auth_details", "children", "close_reason", "conn", "created_at",
        "created_by_rekey", "crypto", "ctx", "eap_identity", "encap", "established_at", "expire_reason",
        "first_contact", "followups", "framed_ip", "group", "init_request", "init_response", "initiator",
        "intermediate", "last_inbound", "local", "local_id", "nat_local", "nat_remote", "natd_mapping",
        "nonce_i", "nonce_r", "peer", "peer_asks_ocsp", "peer_natt", "peer_rekey", "peer_rekey_nonces",
        "pending", "pending_serial", "ppk_used", "proposal", "queue", "reassembler", "redirect_in_auth",
        "redirected_from", "rekeyed_by", "relay_answer", "remote", "remote_cert_issuer",
        "remote_cert_not_after", "remote_cert_serial", "remote_cert_subject", "remote_id", "replaces",
        "reply_to", "responder_tasks", "rounds", "rules", "sign_answer", "spi_i", "spi_r", "state",
        "timers", "uniqueid", "use_ppk", "vip_failure", "vip_pool", "virtual_ip", "window",
    )

    def __init__(
        self,
        ctx: EngineContext,
        *,
        initiator: bool,
        local: Endpoint,
        remote: Endpoint,
        spi_local: bytes,
        conn: ConnectionSettings | None,
        now: float,
        rules: ExchangeRules,
    ) -> None:
        self.ctx = ctx
        self.uniqueid = ctx.new_uniqueid()
        self.initiator = initiator
        self.local = local
        self.remote = remote
        self.spi_i = spi_local if initiator else b"\0" * 8
        self.spi_r = b"\0" * 8 if initiator else spi_local
        self.conn = conn
        self.created_at = now
        self.established_at: float | None = None
        self.state = IkeState.CREATED
        self.window = MessageIdWindow()
        self.crypto: IkeSaCrypto | None = None
        self.proposal: ProposalSpec | None = None
        self.nonce_i = b""
        self.nonce_r = b""
        self.init_request = b""  # IKE_SA_INIT request as sent/received (AUTH signed octets, §2.15)
        self.init_response = b""
        self.local_id = ""
        self.remote_id = ""
        self.remote_cert_subject = ""
        self.remote_cert_serial = ""
        self.remote_cert_issuer = ""
        self.remote_cert_not_after: float | None = None
        self.peer = PeerFeatures()
        self.nat_local = False  # we are behind a NAT
        self.nat_remote = False  # the peer is behind a NAT
        self.peer_natt = False  # the peer sent NAT detection notifies
        self.natd_mapping: bytes | None = None  # peer's NAT_DETECTION_DESTINATION_IP hash: how it sees us
        self.reply_to: tuple[Endpoint, Endpoint] | None = None  # (local, remote) of the request in hand
        self.encap = False  # ESP in UDP (RFC 3948) for the Child SAs
        self.children: dict[int, ChildSa] = {}
        self.timers: dict[str, float] = ctx.timer_table(self.uniqueid)
        self.queue: list[Exchange] = []
        self.active: Exchange | None = None
        self.responder_tasks: list[Task] | None = None
        self.rules = rules
        self.reassembler: Reassembler | None = None
        self.last_inbound = now  # any authenticated message from the peer (DPD)
        self.close_reason = ""
        self.rekeyed_by: IkeSa | None = None  # the IKE SA that replaced this one (§2.18)
        self.created_by_rekey = False
        self.peer_rekey: IkeSa | None = None  # IKE rekey collision: the SA the peer's rekey created
        self.peer_rekey_nonces: tuple[bytes, ...] = ()
        self._closing = False
        self.first_contact = True  # send INITIAL_CONTACT (set by the manager)
        self.expire_reason = "IKE SA lifetime expired"
        self.replaces: IkeSa | None = None  # reauthentication: the old IKE SA deleted once we are up
        self.pending: pending_.PendingValidation | None = None  # IKE_AUTH waiting for a fetch / RADIUS
        self.pending_serial = 0
        self.relay_answer: EapRelayAnswer | None = None  # the RADIUS answer the EAP code reads next
        self.sign_answer: SignAnswer | None = None  # our AUTH signature made by the service's worker
        self.rounds: AuthRounds | None = None  # responder: authentication rounds after the first (RFC 4739)
        self.auth_details: dict[str, str] = {}  # EAP identity, method, RADIUS server... for auth.* records
        self.peer_asks_ocsp = False  # the peer sent a CERTREQ "OCSP Content" (RFC 4806 §3.1)
        self.eap_identity = ""  # the user authenticated by EAP (sas --json "user")
        self.intermediate: IntermediateState | None = None  # RFC 9370 additional key exchanges (RFC 9242)
        self.use_ppk = False  # both ends announced USE_PPK (RFC 8784 §3)
        self.ppk_used = False  # SK_d/SK_pi/SK_pr have the PPK mixed in
        self.followups: dict[bytes, Task] = {}  # responder: IKE_FOLLOWUP_KE link -> task (RFC 9370 §2.2.4)
        self.framed_ip: IpAddress | None = None  # RADIUS Framed-IP-Address for the user
        self.virtual_ip: IpAddress | None = None  # assigned from ``vip_pool`` (CFG_REPLY, RFC 7296 §3.15)
        self.vip_pool = ""
        self.vip_failure = ""  # why no virtual IP could be assigned (INTERNAL_ADDRESS_FAILURE)
        self.redirected_from = ""  # RFC 5685 §4: the gateway that redirected the initiator here
        self.redirect_in_auth = ""  # RFC 5685 §6: the IKE_AUTH response redirects the peer there
        self.group: GroupSettings | None = None  # the user's RADIUS group: its local selectors apply

    # ------------------------------------------------------------------ naming and outputs
    @property
    def now(self) -> float:
        """The time of the input being handled: one clock reading per input, set by the manager."""
        return self.ctx.now

    @property
    def name(self) -> str:
        """The connection name (empty until a responder picked one)."""
        return self.conn.name if self.conn is not None else ""

    @property
    def spi_local(self) -> bytes:
        """Our SPI of this IKE SA."""
        return self.spi_i if self.initiator else self.spi_r

    @property
    def proposal_text(self) -> str:
        """Negotiated IKE proposal in swanctl syntax."""
        return proposal_text(self.proposal) if self.proposal is not None else ""

    def responder_ike_proposals(self) -> tuple[ProposalSpec, ...]:
        """Before the peer's identity is known every connection's IKE proposals are candidates."""
        if self.conn is not None:
            return self.conn.ike_proposals
        seen: dict[ProposalSpec, None] = {}
        for conn in self.ctx.connections.values():
            for spec in conn.ike_proposals:
                seen.setdefault(spec, None)
        return tuple(seen)

    def emit(self, event: EngineEvent) -> None:
        """Append an output for the service."""
        self.ctx.outputs.append(event)

    def audit(self, event: EventName, outcome: Outcome, reason: str = "", **details: str) -> None:
        """Emit an audit record with this SA's contract fields (docs/reference.md "Audit events"); ``ike.*``
        records carry the IKE SPIs (``spi_i``/``spi_r``, 16 hex digits as ``sas --json``) for captures."""
        if event.startswith("ike."):
            details["spi_i"], details["spi_r"] = self.spi_i.hex(), self.spi_r.hex()
        if event.startswith("auth.") and self.auth_details:
            details = {**self.auth_details, **details}
        self.emit(
            AuditEvent(
                event=event,
                outcome=outcome,
                reason=reason,
                connection=self.name,
                ike_uniqueid=self.uniqueid,
                local_addr=str(self.local),
                remote_addr=str(self.remote),
                local_id=self.local_id,
                remote_id=self.remote_id,
                cert_subject=self.remote_cert_subject,
                cert_serial=self.remote_cert_serial,
                cert_issuer=self.remote_cert_issuer,
                proposal=details.pop("proposal", self.proposal_text),
                details=dict(details),
            )
        )

    def transition(self, trigger: IkeTrigger, reason: str = "") -> None:
        """Move along the state table (LocalProtocolError if the table forbids it)."""
        new = next_ike_state(self.state, trigger)
        old, self.state = self.state, new
        if old is not new:
            self.emit(IkeSaStateChanged(self.uniqueid, self.name, old, new, reason))

    def child_transition(self, child: ChildSa, trigger: ChildTrigger, reason: str = "") -> None:
        """Move a Child SA along its state table."""
        new = next_child_state(child.state, trigger)
        old, child.state = child.state, new
        if old is not new:
            self.emit(ChildSaStateChanged(self.uniqueid, child.uniqueid, child.name, old, new, reason))

    # ------------------------------------------------------------------ initiator side
    def queue_exchange(self, tasks: list[Task], *, front: bool = False) -> None:
        """Queue a request of ours; it is sent when the window is free."""
        exchange = Exchange(tasks)
        if front:
            self.queue.insert(0, exchange)
        else:
            self.queue.append(exchange)

    def has_queued(self, kind: type[Task]) -> bool:
        """True when a task of ``kind`` is queued or in flight."""
        pending = [*self.queue, *([self.active] if self.active else [])]
        return any(isinstance(t, kind) for ex in pending for t in ex.tasks)

    def start_next(self) -> None:
        """Send the next queued request when the window allows (RFC 7296 §2.3)."""
        if not self.window.can_send() or not self.queue:
            return
        if not self.rules.may_send(self, self.queue[0].exchange):
            return
        if self.pending is None:  # our AUTH signature with a token key: made off the loop, then sent
            request = self.queue[0].tasks[0].signature_first(self)
            if request is not None:
                pending_.park(self, request, response=True, data=b"", exchange=int(self.queue[0].exchange),
                              message_id=-1, msg=None)
                return
        self.active = self.queue.pop(0)
        try:
            self._send_active(new_id=True)
        except TaskFailed as failure:
            self.close(failure.reason, event=failure.event)

    def _send_active(self, *, new_id: bool) -> None:
        assert self.active is not None
        fixed = self.active.tasks[0].fixed_message_id
        if fixed is not None:
            mid = fixed  # outside the window, no ID allocated (engine/ha_mid_sync.py)
        else:
            mid = self.window.allocate_id() if new_id else self.window.next_request_id - 1
        msg = OutMessage(self.active.exchange, mid, response=False)
        continuing = self.active.continuing
        for task in self.active.tasks if continuing is None else [continuing]:
            task.build_i(self, msg)
        packets = self.encode(msg)
        if self.active.exchange is ExchangeType.IKE_SA_INIT:
            self.init_request = packets[0]
        self.window.in_flight = OutgoingRequest(mid, self.active.exchange, packets, self.now, 0.0)
        self._schedule_retransmit()
        self.send_packets(packets)

    def _schedule_retransmit(self) -> None:
        req = self.window.in_flight
        assert req is not None
        delay = self.ctx.settings.retransmit.delay(req.attempt, self.ctx.random_fraction())
        req.next_retransmit_at = self.now + delay
        self.timers[Timer.RETRANSMIT] = req.next_retransmit_at

    def retry_active(self) -> None:
        """Resend the current exchange as a fresh message with the same ID (COOKIE / INVALID_KE, §2.6)."""
        self.window.in_flight = None
        assert self.active is not None
        self.active.exchange = self.active.tasks[0].exchange  # CREATE_CHILD_SA -> IKE_FOLLOWUP_KE
        try:
            # IKE_SA_INIT keeps ID 0 (the responder kept no state); later exchanges completed, so a new ID.
            self._send_active(new_id=self.active.exchange is not ExchangeType.IKE_SA_INIT)
        except TaskFailed as failure:
            self.close(failure.reason, event=failure.event)

    def send_packets(self, packets: list[bytes]) -> None:
        """Emit datagrams from our current endpoint to the peer's."""
        for packet in packets:
            self.emit(SendDatagram(packet, self.local, self.remote))

    def encode(self, msg: OutMessage) -> list[bytes]:
        """Encode (and encrypt after IKE_SA_INIT) one message; fragmented when the peer supports it."""
        protector = None if msg.exchange is ExchangeType.IKE_SA_INIT else self._require_crypto().outbound
        fragment_size = 0
        if self.peer.fragmentation and self.conn is not None and self.conn.fragmentation:
            fragment_size = self.ctx.settings.fragment_size
        return encode_message(
            msg,
            self.spi_i,
            self.spi_r,
            initiator=self.initiator,
            protector=protector,
            fragment_size=fragment_size,
        )

    def _require_crypto(self) -> IkeSaCrypto:
        if self.crypto is None:
            raise RemoteProtocolError("no keys yet for an encrypted exchange")
        return self.crypto

    # ------------------------------------------------------------------ receiving
    def receive(
        self,
        data: bytes,
        exchange: int,
        message_id: int,
        is_response: bool,
        local: Endpoint,
        remote: Endpoint,
        now: float,
        decoded: InMessage | MessageError | None = None,
    ) -> None:
        """Handle one datagram the manager routed to this SA (header fields already parsed).

        ``decoded`` is the outcome of ``decode_message`` when the manager already decoded a plaintext
        IKE_SA_INIT request (it is parsed once, before any state is created)."""
        if self.state is IkeState.CLOSED:
            return
        if is_response:
            self._receive_response(data, exchange, message_id, local, remote)
        else:
            self._receive_request(data, exchange, message_id, local, remote, decoded)
        self.start_next()

    def _decode(
        self,
        data: bytes,
        exchange: int,
        message_id: int = -1,
        decoded: InMessage | MessageError | None = None,
    ) -> InMessage | None:
        protector = (
            None
            if exchange == ExchangeType.IKE_SA_INIT
            else (self.crypto.inbound if self.crypto is not None else None)
        )
        if exchange != ExchangeType.IKE_SA_INIT and protector is None:
            return None
        try:
            if isinstance(decoded, MessageError):
                raise decoded
            if decoded is None or protector is not None:
                decoded = decode_message(data, protector, self.reassembler_for())
        except MessageError as exc:
            self.trace_drop(f"undecodable message: {exc}")
            if exc.notify is not None and message_id >= 0:
                self._answer_error(data, exchange, message_id, exc.notify, str(exc))
            return None
        return decoded

    def _answer_error(
        self, request: bytes, exchange: int, message_id: int, notify: NotifyType, reason: str
    ) -> None:
        """RFC 7296 §2.21.2: answer a malformed (but authentic) request with the error notify."""
        response = OutMessage(ExchangeType(exchange), message_id, response=True)
        response.add_notify(notify)
        self.window.expected_peer_id = message_id + 1
        self._answer(request, response)
        if exchange in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH):
            self.close(
                f"malformed {ExchangeType(exchange).name} request: {reason}", event=EventName.IKE_FAILED,
                failure=True,
            )

    def reassembler_for(self) -> Reassembler | None:
        """The fragment reassembly buffer (created on first use, RFC 7383)."""
        if self.reassembler is None:
            from ikeguard.engine.fragments import Reassembler

            self.reassembler = Reassembler(
                self.ctx.settings.max_fragments, self.ctx.settings.max_reassembly_bytes
            )
        return self.reassembler

    def trace_drop(self, reason: str) -> None:
        """A silently dropped message, visible to operators as a trace event (not an audit failure)."""
        self.emit(DatagramDropped(reason, str(self.remote), self.uniqueid))

    def _receive_response(
        self, data: bytes, exchange: int, message_id: int, local: Endpoint, remote: Endpoint
    ) -> None:
        req = self.window.in_flight
        if req is None or not self.window.response_matches(message_id) or exchange != req.exchange:
            return  # late or duplicate response: ignore (RFC 7296 §2.3)
        if pending_.absorbs_response(self):
            return
        msg = self._decode(data, exchange)
        if msg is None:
            return
        if msg.partial:
            return  # more fragments to come
        if exchange == ExchangeType.IKE_SA_INIT:
            self.init_response = data
        self.last_inbound = self.now
        self.process_response(msg, exchange)

    def process_response(self, msg: InMessage, exchange: int) -> None:
        """Run the active exchange's tasks on the peer's (decoded) response; also after a validation wait."""
        assert self.active is not None
        active = self.active
        retry = False
        more: Task | None = None
        start = active.tasks.index(active.continuing) if active.continuing is not None else 0
        try:
            for task in active.tasks[start:]:
                status = task.process_i(self, msg)
                if status is Status.IGNORE:
                    return  # a forged answer: keep waiting (retransmissions go on)
                if status is Status.RETRY:
                    retry = True
                    break
                if status is Status.MORE:
                    more = task
                    break
        except ValidationPending as wait:
            pending_.park(self, wait.request, response=True, data=b"", exchange=exchange,
                          message_id=msg.message_id, msg=msg)
            return
        except TaskFailed as failure:
            self.window.in_flight = None
            self.active = None
            self.timers.pop(Timer.RETRANSMIT, None)
            self.close(failure.reason, event=failure.event)
            return
        if retry:
            self.retry_active()
            return
        if more is not None:  # another IKE_AUTH request of this task (EAP rounds, RFC 7296 §2.16)
            active.continuing = more
            self.window.in_flight = None
            self.timers.pop(Timer.RETRANSMIT, None)
            try:
                self._send_active(new_id=True)
            except TaskFailed as failure:
                self.active = None
                self.close(failure.reason, event=failure.event)
            return
        self.window.in_flight = None
        self.timers.pop(Timer.RETRANSMIT, None)
        if self.active is active:
            self.active = None
        for task in active.tasks:
            completed = getattr(task, "completed", None)
            if completed is not None:
                completed(self)
        self._setup_done()

    def _receive_request(
        self,
        data: bytes,
        exchange: int,
        message_id: int,
        local: Endpoint,
        remote: Endpoint,
        decoded: InMessage | MessageError | None = None,
    ) -> None:
        # RFC 7296 §2.11: a response goes back to the address and port the request came from (a NAT
        # mapping may have changed; with MOBIKE the SA itself only moves on UPDATE_SA_ADDRESSES)
        self.reply_to = (local, remote)
        if pending_.absorbs_request(self, message_id):
            return
        if (message_id == 0 and exchange == ExchangeType.INFORMATIONAL and self.peer.mid_sync
                and self.state is IkeState.ESTABLISHED and self.window.expected_peer_id != 0):
            self._mid_sync_request(data, exchange, local, remote, decoded)
            return
        kind = self.window.classify_request(message_id, data)
        if kind == "retransmit" and self.window.cached is not None:
            self._send_reply(self.window.cached.packets)
            return
        if kind != "new":
            return
        if not self.rules.accepts_request(self, exchange):
            return  # engine/exchanges.py: e.g. IKE_SA_INIT and IKE_AUTH happen once, in order (RFC 7296 §2.2)
        msg = self._decode(data, exchange, message_id, decoded)
        if msg is None or msg.partial:
            return
        self.last_inbound = self.now
        self.window.peer_resync = 0  # authenticated: the IDs agree again (engine/ha_restore)
        if exchange == ExchangeType.IKE_SA_INIT:
            self.init_request = data
        self._follow_peer_address(local, remote, msg)
        self.process_request(data, exchange, message_id, msg)

    def _mid_sync_request(self, data: bytes, exchange: int, local: Endpoint, remote: Endpoint,
                          decoded: InMessage | MessageError | None) -> None:
        """A peer cluster's RFC 6311 synchronisation (message ID 0 outside the window): nonce, its next
        request ID (M1) and the next of ours it expects (P1); answered with the nonce, P2 and M2."""
        msg = self._decode(data, exchange, 0, decoded)
        if msg is None or msg.partial:
            return
        notify = msg.notify(NotifyType.IKEV2_MESSAGE_ID_SYNC)
        if notify is None or len(notify.data) != 12:
            return
        m1, p1 = struct.unpack_from("!II", notify.data, 4)
        answer = self.window.mid_sync_answer(m1, p1)
        if answer is None:
            return
        response = OutMessage(msg.exchange, 0, response=True)
        response.add_notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, notify.data[:4] + struct.pack("!II", *answer))
        self.last_inbound = self.now
        self._send_reply(self.encode(response))

    def process_request(self, data: bytes, exchange: int, message_id: int, msg: InMessage) -> None:
        """Run the responder tasks on the peer's (decoded) request and answer (again after a fetch)."""
        response = OutMessage(msg.exchange, message_id, response=True)
        tasks: list[Task] = []
        try:
            tasks = self.rules.responder_tasks(self, msg)
            for task in tasks:
                task.process_r(self, msg)
            for task in tasks:
                task.build_r(self, response)
        except ValidationPending as wait:
            pending_.park(self, wait.request, response=False, data=data, exchange=exchange,
                          message_id=message_id, msg=msg)
            return
        except RelayPending as wait:
            pending_.park(self, wait.request, response=False, data=data, exchange=exchange,
                          message_id=message_id, msg=msg, server=wait.server)
            return
        except RemoteProtocolError as err:
            response = OutMessage(msg.exchange, message_id, response=True)
            if err.notify is not None:
                response.add_notify(err.notify, err.data)
            self.window.expected_peer_id = message_id + 1
            self._answer(data, response)
            for task in tasks:
                task.aborted(self, err.reason)
            if exchange in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH):
                self.close(err.reason, event=err.event or EventName.IKE_DOWN, send_delete=False)
            return
        self.window.expected_peer_id = message_id + 1
        self._answer(data, response)
        for task in tasks:
            completed = getattr(task, "completed", None)
            if completed is not None:
                completed(self)
        self._setup_done()

    def _setup_done(self) -> None:
        """Once IKE_AUTH has established the SA, forget what only the setup needed (issue 22, memory per SA):
        the IKE_SA_INIT messages (signed octets of the AUTH payloads, RFC 7296 §2.15; never read again: a
        rekey or reauthentication is a new IKE SA) and the responder's setup tasks (IKE_SA_INIT and IKE_AUTH
        happen once, engine/exchanges.py). The last response stays cached for retransmitted requests."""
        if self.state is IkeState.ESTABLISHED:
            self.init_request = self.init_response = b""
            self.responder_tasks = None

    def _answer(self, request: bytes, response: OutMessage) -> None:
        if response.exchange is ExchangeType.IKE_SA_INIT and not response.payloads:
            return
        packets = self.encode(response)
        if response.exchange is ExchangeType.IKE_SA_INIT:
            self.init_response = packets[0]
        self.window.cached = CachedResponse(response.message_id, request, packets)
        self._send_reply(packets)

    def _send_reply(self, packets: list[bytes]) -> None:
        """Emit a response to where its request came from (§2.11), else to the SA's peer endpoint."""
        local, remote = self.reply_to or (self.local, self.remote)
        for packet in packets:
            self.emit(SendDatagram(packet, local, remote))

    def _follow_peer_address(self, local: Endpoint, remote: Endpoint, msg: InMessage) -> None:
        """Follow the initiator's switch to port 4500, NAT mapping changes (RFC 7296 §2.23) and MOBIKE
        UPDATE_SA_ADDRESSES (RFC 4555 §3.5) of an authenticated request."""
        if (local, remote) == (self.local, self.remote):
            return
        if self.state is IkeState.HALF_OPEN or (local.port != 500 and self.local.port == 500):
            self.local, self.remote = local, remote
            return
        if self.peer.mobike:
            if msg.notify(NotifyType.UPDATE_SA_ADDRESSES) is not None:
                self.local, self.remote = local, remote  # MobikeUpdateResponder tells the data plane
            return
        if self.nat_remote:
            update_addresses(self, local, remote)

    def established(self) -> None:
        """IKE_AUTH succeeded on our side: state, audit, timers (rekey, reauth, DPD, certificate cap)."""
        self.transition(IkeTrigger.AUTH_DONE)
        self.established_at = self.now
        self.timers.pop(Timer.HALF_OPEN, None)
        ppk = ({"ppk": "used" if self.ppk_used else "not used"}  # RFC 8784: say whether the PPK was used
               if self.conn is not None and self.conn.ppk is not None else {})
        self.audit(EventName.AUTH_SUCCESS, Outcome.SUCCESS, **ppk)
        # who the peer is for uniqueness, and whether it said it rebooted (RFC 7296 §2.4): workers in other
        # processes end their SAs with this peer on these details (service/workers.py uniqueness_notice)
        up: dict[str, str] = {"peer_key": peer_key(self.remote_id, self.eap_identity)}
        if self.eap_identity:
            up["eap_identity"] = self.eap_identity
        if self.peer.initial_contact and not self.initiator:
            up["initial_contact"] = "yes"
        self.audit(EventName.IKE_UP, Outcome.SUCCESS, **up)
        lifecycle.schedule_ike(self)
        if self.ctx.established_hook is not None:
            self.ctx.established_hook(self)
        if self.replaces is not None:
            from ikeguard.engine.commands import delete_ike

            old, self.replaces = self.replaces, None
            delete_ike(old, "reauthenticated: replaced by a new IKE SA")
            old.start_next()

    # ------------------------------------------------------------------ timers
    def get_timer(self) -> float | None:
        """The earliest deadline of this SA."""
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> None:
        """Fire every expired deadline."""
        for name, deadline in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if self.state is IkeState.CLOSED:
                return
            if deadline <= now and self.timers.get(name) == deadline:
                del self.timers[name]
                self._fire(name)
        self.start_next()

    def _fire(self, name: str) -> None:
        lifecycle.fire(self, name)

    def schedule_retransmit(self) -> None:
        """Set the retransmission deadline of the request in flight (public for lifecycle)."""
        self._schedule_retransmit()

    # ------------------------------------------------------------------ teardown
    def close(
        self,
        reason: str,
        *,
        event: EventName = EventName.IKE_DOWN,
        send_delete: bool = False,
        failure: bool = False,
        local_decision: bool = False,
    ) -> None:
        """Terminate the SA now: remove Child SAs from the data plane, wipe keys, emit ike.down.

        ``failure`` marks an abnormal end (peer gone, internal error) in the audit outcome;
        ``local_decision`` (an operator's terminate, shutdown) keeps ``ike.down`` for an SA that never came
        up: it is not an authentication failure."""
        if self.state is IkeState.CLOSED or self._closing:
            return
        self._closing = True
        if (
            send_delete
            and self.crypto is not None
            and self.window.can_send()  # never a second request outside the window (RFC 7296 §2.3)
            and self.state in IKE_AUTHENTICATED
        ):
            # Best effort, unretransmitted DELETE (RFC 7296 §1.4.1) when we cannot wait for the answer.
            from ikeguard.engine.tasks.delete import delete_ike_payload

            msg = OutMessage(ExchangeType.INFORMATIONAL, self.window.allocate_id(), response=False)
            msg.payloads.append(delete_ike_payload())
            self.send_packets(self.encode(msg))
        was_up = self.established_at is not None
        for child in list(self.children.values()):
            self.remove_child(child, reason)
        self.close_reason = reason
        self.pending = None  # a fetch still running for this SA is ignored when it answers
        if self.virtual_ip is not None and self.rekeyed_by is None:
            release_lease(self.ctx.pools, self.vip_pool, self.virtual_ip)  # offline: same user, same IP
            self.virtual_ip = None
        rekey_at = self.timers.get(Timer.IKE_REKEY)
        if rekey_at is not None and rekey_at > self.now:
            self.ctx.ike_rekeys.release(rekey_at)  # its slot in the rekey calendar is free again
        self.timers.clear()
        self.queue.clear()
        active, self.active = self.active, None
        if active is not None:
            for task in active.tasks:
                task.aborted(self, reason)
        self.window.in_flight = None
        if self.crypto is not None:
            self.crypto.wipe()
        if event == EventName.IKE_DOWN and not was_up and not local_decision:
            event = EventName.AUTH_FAILURE if self.state in IKE_AUTHENTICATING else EventName.IKE_FAILED
        silent = self.state is IkeState.CREATED and not self.initiator  # refused IKE_SA_INIT: no SA existed
        if self.rekeyed_by is None and not silent:
            self.audit(event,
                       Outcome.FAILURE if failure or event != EventName.IKE_DOWN else Outcome.SUCCESS, reason)
        self.transition(IkeTrigger.CLOSE, reason)
        self.ctx.closed.append(self)

    def add_child(self, child: ChildSa) -> None:
        """A Child SA of this IKE SA from now on (created, restored)."""
        self.children[child.uniqueid] = child
        self.ctx.child_homes[child.spi_in] = self.uniqueid

    def take_children(self, old: IkeSa) -> None:
        """The Child SAs of ``old`` move here (IKE SA rekey, RFC 7296 §2.18)."""
        self.children, old.children = old.children, {}
        for child in self.children.values():
            self.ctx.child_homes[child.spi_in] = self.uniqueid

    def remove_child(self, child: ChildSa, reason: str) -> None:
        """Delete both directions of a Child SA from the data plane and forget it."""
        if child.state is ChildState.DELETED:
            return
        installed = child.state is not ChildState.CREATING
        for successor in [c for c in self.children.values() if c.deferred_for is child]:
            from ikeguard.engine.tasks.child_create import install_deferred_outbound

            install_deferred_outbound(self, successor)  # new outbound SA first: no gap in protection
        if installed:
            self.emit(DeleteChildSa(self.uniqueid, child.uniqueid, Direction.INBOUND, child.spi_in, reason))
            if child.outbound_installed:
                self.emit(
                    DeleteChildSa(self.uniqueid, child.uniqueid, Direction.OUTBOUND, child.spi_out, reason)
                )
        self.child_transition(child, ChildTrigger.DELETE, reason)
        if child.rekey_at is not None and child.rekey_at > self.now:
            self.ctx.child_rekeys.release(child.rekey_at)
        for key in [k for k in self.timers if k.endswith(f":{child.uniqueid}")]:
            del self.timers[key]
        if installed:
            self.audit(EventName.CHILD_DOWN, Outcome.SUCCESS, reason, child=child.name,
                       proposal=child.proposal_text)
        child.wipe()
        self.children.pop(child.uniqueid, None)
        if self.ctx.child_homes.get(child.spi_in) == self.uniqueid:
            del self.ctx.child_homes[child.spi_in]

    def find_child_by_spi(self, spi: int, *, inbound: bool) -> ChildSa | None:
        """The Child SA with our (inbound) or the peer's (outbound) SPI."""
        for child in self.children.values():
            if (child.spi_in if inbound else child.spi_out) == spi:
                return child
        return None
