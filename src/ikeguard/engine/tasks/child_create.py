"""Child SA creation in IKE_AUTH and CREATE_CHILD_SA: ESP proposal selection, traffic-selector narrowing,
optional PFS key exchange, KEYMAT, and data-plane installation in order (RFC 7296 §1.3, §2.9, §2.17).

A Child SA failure inside IKE_AUTH leaves the IKE SA up (the response carries the error notify instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.crypto.dh import KeyExchange, new_key_exchange
from ikeguard.crypto.errors import CryptoError
from ikeguard.engine import resources
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.events import ChildSaSpec, Direction, InstallChildSa
from ikeguard.engine.intermediate import additional_key_exchanges
from ikeguard.engine.keys import child_sa_keys, proposal_ke
from ikeguard.engine.lifecycle import schedule_child
from ikeguard.engine.proposals import accept_response_proposal, choose_proposal, offer_proposals
from ikeguard.engine.settings import ChildSettings
from ikeguard.engine.states import CHILD_GOING, IKE_UP, ChildTrigger
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.tasks.followup_ke import Followup, register_link
from ikeguard.engine.timers import Timer, child_timer
from ikeguard.policy.ts import TrafficSelector, is_subset, narrow_for_responder, resolve
from ikeguard.wire.iana import EsnId, ExchangeType, KeId, NotifyType, ProtocolId, name_of
from ikeguard.wire.payloads import KePayload, NoncePayload
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.ts import TrafficSelector as WireSelector
from ikeguard.wire.ts import TsiPayload, TsrPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

NONCE_LEN = 32


def to_wire(selectors: tuple[TrafficSelector, ...]) -> tuple[WireSelector, ...]:
    """Policy selectors -> wire selectors."""
    return tuple(
        WireSelector(s.start_address, s.end_address, s.protocol, s.start_port, s.end_port) for s in selectors
    )


def from_wire(payload: TsiPayload | TsrPayload | None) -> tuple[TrafficSelector, ...]:
    """Wire selectors -> policy selectors (unknown selector types are skipped, RFC 7296 §3.13.1)."""
    if payload is None:
        return ()
    out = []
    for s in payload.selectors:
        if isinstance(s, WireSelector):
            try:
                out.append(
                    TrafficSelector.from_addresses(
                        s.start_addr, s.end_addr, s.ip_protocol, s.start_port, s.end_port
                    )
                )
            except ValueError:
                continue
    return tuple(out)


def local_selectors(sa: IkeSa, child: ChildSettings) -> tuple[TrafficSelector, ...]:
    """Our side's selectors (``dynamic`` = our address); a remote-access user's RADIUS group replaces them
    (full or split tunnel, docs/remote-access.md)."""
    specs = sa.group.local_ts if sa.group is not None else child.local_ts
    return resolve(specs, own_address=sa.local.address)


def remote_selectors(sa: IkeSa, child: ChildSettings) -> tuple[TrafficSelector, ...]:
    """The peer's side: ``dynamic`` = its address, ``%peer`` = its inventory subnets."""
    bound: tuple[TrafficSelector, ...] = ()
    if "%peer" in child.remote_ts and sa.ctx.peer_selectors is not None and sa.conn is not None:
        bound = sa.ctx.peer_selectors.selectors_for(sa.conn.name, sa.remote_id) or ()
    # a remote-access peer's ``dynamic`` is the virtual IP it was given (RFC 7296 §2.19)
    own = sa.virtual_ip if sa.virtual_ip is not None else sa.remote.address
    return resolve(child.remote_ts, own_address=own, peer_bound=bound)


OUTBOUND_DEFER_LIMIT = 10.0  # a rekey responder installs its outbound SA at the latest after this


def install_deferred_outbound(sa: IkeSa, child: ChildSa) -> None:
    """Install the outbound half a rekey responder held back (old SA deleted, or the wait is over)."""
    sa.timers.pop(child_timer(Timer.CHILD_OUTBOUND, child.uniqueid), None)
    child.deferred_for = None
    if child.outbound_installed or child.keys is None or child.state in CHILD_GOING:
        return
    _emit_install(sa, child, Direction.OUTBOUND)


def install(
    sa: IkeSa, child: ChildSa, *, outbound: bool = True, seq_out: int = 0, replay_top: int = 0
) -> None:
    """Emit InstallChildSa inbound (then outbound): inbound first so no packet of the peer is lost.
    ``seq_out``/``replay_top``: the sequence state of an SA taken over from another
    node (engine/ha_restore)."""
    _emit_install(sa, child, Direction.INBOUND, replay_top=replay_top)
    if outbound:
        _emit_install(sa, child, Direction.OUTBOUND, seq_out=seq_out)


def _emit_install(sa: IkeSa, child: ChildSa, direction: Direction, *, seq_out: int = 0,
                  replay_top: int = 0) -> None:
    """One direction's InstallChildSa. Its keys are fresh copies that belong to the data plane from now on,
    which wipes them when it deletes the SA; the engine wipes its own on delete (docs/key-hygiene.md)."""
    assert child.keys is not None and child.proposal is not None
    algs = child.keys
    s = child.settings
    inbound = direction is Direction.INBOUND
    k = algs.keys
    # KEYMAT order (§2.17): initiator->responder keys first; "initiator" is who started this exchange.
    initiator_to_responder = inbound != child.initiator
    keys = ((bytearray(k.encr_i), bytearray(k.integ_i)) if initiator_to_responder
            else (bytearray(k.encr_r), bytearray(k.integ_r)))
    spec = ChildSaSpec(
        spi=child.spi_in if inbound else child.spi_out,
        encr_id=int(algs.encr.id),
        encr_key_bits=algs.encr.key_len * 8,
        integ_id=int(algs.integ.id) if algs.integ else 0,
        esn=bool(child.proposal.esn) and child.proposal.esn[0].id == EsnId.ESN,
        encr_key=keys[0],
        integ_key=keys[1],
        source=sa.remote if inbound else sa.local,
        destination=sa.local if inbound else sa.remote,
        encap=sa.encap,
        mode=child.mode,
        replay_window=s.replay_window,
        local_ts=child.local_ts,
        remote_ts=child.remote_ts,
        seq_out=seq_out,
        replay_top=replay_top,
    )
    sa.emit(
        InstallChildSa(
            sa.uniqueid,
            child.uniqueid,
            child.name,
            direction,
            spec,
            child.proposal_text,
            rekey_bytes=s.rekey_bytes,
            life_bytes=s.life_bytes,
            rekey_packets=s.rekey_packets,
            life_packets=s.life_packets,
        )
    )
    if not inbound:
        child.outbound_installed = True


def peer_spi_conflict(sa: IkeSa, spi: int) -> str | None:
    """Why the peer's ESP SPI ``spi`` cannot be accepted for a new Child SA of ``sa``, or None.

    The peer chooses our outbound SPI (its inbound SPI, RFC 7296 §3.3.1). Between peers a repeated SPI is
    harmless: the data plane keys outbound SAs by their Child SA (issue 13 S3), so it never reaches another
    peer's SA. Within one IKE SA it is refused: the peer's own Delete (§3.11) and REKEY_SA (§3.10.1) name a
    Child SA by this SPI, and two live Child SAs with it would make either ambiguous."""
    other = sa.find_child_by_spi(spi, inbound=False)
    if other is None:
        return None
    return (f"peer's ESP SPI {spi:08x} is already the SPI of its Child SA {other.name} "
            f"(#{other.uniqueid}) in this IKE SA: a Delete or rekey naming it would be ambiguous")


class ChildCreateTask(Task):
    """Creates one Child SA (and, via ``rekeyed``, replaces an old one)."""

    def __init__(
        self,
        settings: ChildSettings | None,
        exchange: ExchangeType = ExchangeType.IKE_AUTH,
        rekeyed: ChildSa | None = None,
        resource_id: int = 0,
    ) -> None:
        self.settings = settings
        self.resource_id = resource_id  # RFC 9611: 0 = the fallback (or no group), 1..N = a per-resource SA
        self.resource_sent = False
        self.resource_answer: int | None = None  # responder: the requested SA's place in its group
        self.exchange = exchange
        self.rekeyed = rekeyed
        self.child: ChildSa | None = None
        self.offered: tuple[ProposalSpec, ...] = ()
        self.ke: KeyExchange | None = None
        self.ke_group: int | None = None
        self.nonce = b""
        self.peer_nonce = b""
        self.error: tuple[NotifyType, bytes, str] | None = None
        self.tsi: tuple[TrafficSelector, ...] = ()
        self.tsr: tuple[TrafficSelector, ...] = ()
        self.failed_reason = ""
        self.shared: bytes | None = None
        self.chosen_number = 1
        self.deferred: InMessage | None = None  # the IKE_AUTH request with SA/TS while EAP rounds run
        self.followup: Followup | None = None  # RFC 9370 §2.2.4 additional key exchanges in progress
        self._pending: tuple[ProposalSpec, bytes, tuple[TrafficSelector, ...], tuple[TrafficSelector, ...],
                             bytes, bytes, bool] | None = None

    @property
    def in_auth(self) -> bool:
        """True inside IKE_AUTH (no nonce, no KE: keys come from the IKE SA's nonces)."""
        return self.exchange is ExchangeType.IKE_AUTH

    def _new_child(self, sa: IkeSa, settings: ChildSettings, initiator: bool) -> ChildSa:
        spi = int.from_bytes(sa.ctx.random.bytes(4), "big") | 0x01000000  # avoid the reserved 1..255
        child = ChildSa(sa.ctx.new_uniqueid(), settings.name, settings, spi, initiator=initiator)
        return child

    # ------------------------------------------------------------------ initiator
    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        assert self.settings is not None
        if self.followup is not None:
            self.followup.build_i(sa, msg)
            return
        if self.child is None:
            self.child = self._new_child(sa, self.settings, True)
        if not self.offered:
            self.offered = offer_proposals(
                sa.ctx.settings.profile, self.settings.esp_proposals, "esp", ignore_ke=self.in_auth
            )
        spi = self.child.spi_in.to_bytes(4, "big")
        if self.rekeyed is not None:
            msg.add_notify(NotifyType.REKEY_SA, b"", ProtocolId.ESP, self.rekeyed.spi_in.to_bytes(4, "big"))
        if self.settings.mode == "transport":
            msg.add_notify(NotifyType.USE_TRANSPORT_MODE)
        self.resource_sent = resources.add_request_notify(msg, self.settings, self.rekeyed, self.resource_id)
        msg.add(SaPayload(tuple(Proposal.from_spec(i + 1, s, spi) for i, s in enumerate(self.offered))))
        if not self.in_auth:
            self.nonce = self.nonce or sa.ctx.random.bytes(NONCE_LEN)
            msg.add(NoncePayload(self.nonce))
            group = (
                self.ke_group
                if self.ke_group is not None
                else (proposal_ke(self.offered[0]) if self.offered else 0)
            )
            if group:
                self.ke_group = group
                if self.ke is None or int(self.ke.method) != group:
                    self.ke = new_key_exchange(group, sa.ctx.random)
                msg.add(KePayload(group, self.ke.public_value))
        self.tsi = local_selectors(sa, self.settings)
        self.tsr = remote_selectors(sa, self.settings)
        msg.add(TsiPayload(to_wire(self.tsi)))
        msg.add(TsrPayload(to_wire(self.tsr)))

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        assert self.child is not None and self.settings is not None
        if sa.state not in IKE_UP:
            return Status.DONE
        if self.in_auth and sa.redirect_in_auth:
            return Status.DONE  # RFC 5685 §6: redirected, the Child SA comes from the new gateway
        if self.followup is not None:
            return self._process_followup_i(sa, msg)
        error = msg.error_notify()
        if error is not None or msg.get(SaPayload) is None:
            if error is not None and error.notify_type == NotifyType.INVALID_KE_PAYLOAD and not self.in_auth:
                wanted = int.from_bytes(error.data[:2], "big") if len(error.data) >= 2 else -1
                offered = {t.id for s in self.offered for t in s.ke}
                if wanted in offered and wanted != self.ke_group:
                    self.ke_group = wanted
                    return Status.RETRY
            name = name_of(NotifyType, int(error.notify_type)) if error is not None else "no SA payload"
            reason = f"peer refused Child SA {self.settings.name}: {name}"
            if self.rekeyed is not None and self.ke_group and name == "NO_PROPOSAL_CHOSEN":
                # A rekey offers the transforms the peer already accepted, plus our PFS group: say so.
                group = name_of(KeId, self.ke_group)
                reason = (
                    f"PFS mismatch for {self.settings.name}: peer refused the rekey with {name}; "
                    f"we require key exchange {group} (PFS), the peer's ESP proposals likely have none"
                )
            self._fail(sa, reason)
            return Status.DONE
        try:
            if self._complete_initiator(sa, msg):
                return Status.RETRY  # the next message is the first IKE_FOLLOWUP_KE (RFC 9370 §2.2.4)
        except (CryptoError, ValueError) as exc:
            self._fail(sa, f"Child SA {self.settings.name} failed: {exc}")
            # The peer installed its half: have it removed (it finds the SA by our inbound SPI).
            from ikeguard.engine.tasks.delete import DeleteSpiTask

            sa.queue_exchange([DeleteSpiTask(self.child.spi_in)])
        return Status.DONE

    def _process_followup_i(self, sa: IkeSa, msg: InMessage) -> Status:
        assert self.followup is not None and self.settings is not None and self._pending is not None
        try:
            self.followup.process_i(msg)
        except (CryptoError, ValueError) as exc:
            self.followup.wipe()
            self._fail(sa, f"Child SA {self.settings.name} failed in IKE_FOLLOWUP_KE: {exc}")
            return Status.DONE
        if not self.followup.complete:
            return Status.RETRY
        main, additional = self.followup.main, self.followup.additional()
        self.followup.wipe()
        pending, self._pending = self._pending, None
        try:
            self._apply_initiator(sa, *pending, main, additional)
        except (CryptoError, ValueError) as exc:
            self._fail(sa, f"Child SA {self.settings.name} failed: {exc}")
        return Status.DONE

    def _complete_initiator(self, sa: IkeSa, msg: InMessage) -> bool:
        """Check the answer; install the Child SA, or return True when IKE_FOLLOWUP_KE exchanges follow."""
        assert self.child is not None and self.settings is not None and sa.crypto is not None
        answer = msg.get(SaPayload)
        assert answer is not None
        accepted = accept_response_proposal(answer, self.offered, ProtocolId.ESP)
        if accepted is None or len(accepted[1]) != 4:
            raise ValueError("peer selected an ESP proposal we did not offer")
        spec, spi = accepted
        conflict = peer_spi_conflict(sa, int.from_bytes(spi, "big"))
        if conflict is not None:
            raise ValueError(conflict)
        tsi, tsr = from_wire(msg.get(TsiPayload)), from_wire(msg.get(TsrPayload))
        if not tsi or not tsr or not is_subset(tsi, self.tsi) or not is_subset(tsr, self.tsr):
            raise ValueError("peer returned traffic selectors wider than we proposed (RFC 7296 §2.9)")
        shared = None
        if not self.in_auth:
            nonce = msg.get(NoncePayload)
            if nonce is None or not 16 <= len(nonce.data) <= 256:
                raise ValueError("missing or bad nonce")
            self.peer_nonce = nonce.data
            group = proposal_ke(spec)
            ke = msg.get(KePayload)
            if group:
                if ke is None or self.ke is None or int(ke.group) != group:
                    raise ValueError("PFS mismatch: peer's KE does not match the selected group")
                shared = self.ke.shared_secret(ke.data)
            elif ke is not None:
                raise ValueError("peer sent KE without selecting a group")
        ni, nr = (sa.nonce_i, sa.nonce_r) if self.in_auth else (self.nonce, self.peer_nonce)
        resources.initiator_negotiated(self.child, self.resource_sent, msg, self.rekeyed, self.resource_id)
        transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None
        if self.settings.mode == "transport" and not transport:
            raise ValueError("peer refused transport mode (no USE_TRANSPORT_MODE in the answer)")
        methods = () if self.in_auth else additional_key_exchanges(spec)
        if methods:
            link = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
            if link is None or not link.data:
                raise ValueError("additional key exchanges selected without ADDITIONAL_KEY_EXCHANGE")
            self.followup = Followup(methods, shared, link=link.data)
            self._pending = (spec, spi, tsi, tsr, ni, nr, transport)
            self.exchange = ExchangeType.IKE_FOLLOWUP_KE
            return True
        self._apply_initiator(sa, spec, spi, tsi, tsr, ni, nr, transport, shared)
        return False

    def _apply_initiator(self, sa: IkeSa, spec: ProposalSpec, spi: bytes, tsi: tuple[TrafficSelector, ...],
                         tsr: tuple[TrafficSelector, ...], ni: bytes, nr: bytes, transport: bool,
                         shared: bytes | None, additional: bytes = b"") -> None:
        assert self.child is not None and self.settings is not None and sa.crypto is not None
        self.child.mode = "transport" if transport and self.settings.mode == "transport" else "tunnel"
        self.child.proposal = spec
        self.child.spi_out = int.from_bytes(spi, "big")
        self.child.local_ts, self.child.remote_ts = tsi, tsr
        self.child.keys = child_sa_keys(sa.crypto.prf_id, bytes(sa.crypto.keys.sk_d), spec, ni, nr, shared,
                                        additional)
        self._activate(sa)

    def _activate(self, sa: IkeSa, *, responder: bool = False) -> None:
        assert self.child is not None
        child = self.child
        sa.add_child(child)
        defer = responder and self.rekeyed is not None
        install(sa, child, outbound=not defer)
        if defer:
            # RFC 7296 §2.8 practice (as strongSwan): the peer switches to the new SA when it deletes the old
            # one; sending on it earlier could race the peer's inbound installation.
            child.deferred_for = self.rekeyed
            sa.timers[child_timer(Timer.CHILD_OUTBOUND, child.uniqueid)] = sa.now + OUTBOUND_DEFER_LIMIT
        child.installed_at = sa.now
        sa.child_transition(child, ChildTrigger.INSTALL)
        schedule_child(sa, child)
        if not responder and self.rekeyed is None:  # RFC 9611: the per-resource SAs after the fallback
            for index in resources.additional_ids(sa, child):
                sa.queue_exchange([ChildCreateTask(child.settings, ExchangeType.CREATE_CHILD_SA,
                                                   resource_id=index)])
        if self.rekeyed is None:
            sa.audit(
                EventName.CHILD_UP,
                Outcome.SUCCESS,
                child=child.name,
                proposal=child.proposal_text,
                local_ts=",".join(map(str, child.local_ts)),
                remote_ts=",".join(map(str, child.remote_ts)),
            )

    def _fail(self, sa: IkeSa, reason: str) -> None:
        self.failed_reason = reason
        name = self.settings.name if self.settings is not None else ""
        sa.audit(EventName.CHILD_FAILED, Outcome.FAILURE, reason, child=name)

    # ------------------------------------------------------------------ responder
    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        if self.followup is not None:  # an IKE_FOLLOWUP_KE request continuing our CREATE_CHILD_SA
            self.followup.process_r(sa, msg)
            return
        if self.in_auth and sa.rounds is not None:
            # EAP / several authentication rounds (RFC 7296 §2.16, RFC 4739): SA and TS come in the first
            # IKE_AUTH request, the Child SA is made when the last round succeeds
            if msg.get(SaPayload) is not None or msg.get(TsiPayload) is not None:
                self.deferred = msg
            if not sa.rounds.finished or self.deferred is None:
                return
            msg = self.deferred
        if self.in_auth and sa.redirect_in_auth:
            return  # RFC 5685 §6: no SA, TSi, TSr when the IKE_AUTH response redirects
        try:
            self._process_r(sa, msg)
        except RemoteProtocolError as err:
            if not self.in_auth:
                raise
            if err.notify is None:
                return  # childless IKE_AUTH (RFC 6023 style): nothing to answer
            self.error = (err.notify, err.data, err.reason)

    def _process_r(self, sa: IkeSa, msg: InMessage) -> None:
        if sa.conn is None:
            raise RemoteProtocolError("no connection", NotifyType.NO_PROPOSAL_CHOSEN)
        if self.in_auth and sa.vip_failure:
            sa.audit(EventName.CHILD_FAILED, Outcome.FAILURE, sa.vip_failure, child="")
            raise RemoteProtocolError(sa.vip_failure, NotifyType.INTERNAL_ADDRESS_FAILURE)
        offer, tsi_p, tsr_p = msg.get(SaPayload), msg.get(TsiPayload), msg.get(TsrPayload)
        if offer is None or tsi_p is None or tsr_p is None:
            if self.in_auth:
                raise RemoteProtocolError("childless IKE_AUTH", None)
            raise RemoteProtocolError("CREATE_CHILD_SA without SA/TS", NotifyType.INVALID_SYNTAX)
        tsi, tsr = from_wire(tsi_p), from_wire(tsr_p)
        candidates = [self.rekeyed.settings] if self.rekeyed is not None else list(sa.conn.children)
        narrowed = None
        settings = None
        for child in candidates:
            narrowed = narrow_for_responder(
                tsi, tsr, remote_allowed=remote_selectors(sa, child), local_allowed=local_selectors(sa, child)
            )
            if narrowed is not None:
                settings = child
                break
        if narrowed is None or settings is None:
            reason = (
                f"peer {sa.remote_id} proposed TSi {','.join(map(str, tsi))} TSr "
                f"{','.join(map(str, tsr))}: outside its allowed selectors"
            )
            sa.audit(EventName.TS_REJECTED, Outcome.FAILURE, reason)
            raise RemoteProtocolError(reason, NotifyType.TS_UNACCEPTABLE)
        choice = choose_proposal(
            sa.ctx.settings.profile, offer, settings.esp_proposals, "esp", ignore_ke=self.in_auth
        )
        if choice is None:
            reason = f"no acceptable ESP proposal for {settings.name}"
            if not self.in_auth and choose_proposal(
                sa.ctx.settings.profile, offer, settings.esp_proposals, "esp", ignore_ke=True
            ):
                ours = sorted({name_of(KeId, t.id) for p in settings.esp_proposals for t in p.ke} - {"NONE"})
                theirs = sorted(
                    {name_of(KeId, t.id) for p in offer.proposals for t in p.transforms if int(t.type) == 4}
                )
                reason = (
                    f"PFS mismatch for {settings.name}: peer offered key exchange "
                    f"{', '.join(theirs) or 'none'}, we require {', '.join(ours) or 'none'}"
                )
            sa.audit(EventName.PROPOSAL_REJECTED, Outcome.FAILURE, reason)
            raise RemoteProtocolError(reason, NotifyType.NO_PROPOSAL_CHOSEN)
        spec, number = choice
        if self.in_auth:
            spec = ProposalSpec(spec.protocol, spec.encr, spec.integ, spec.prf, (), spec.esn, ())
        peer_spi = next((p.spi for p in offer.proposals if p.number == number), b"")
        if len(peer_spi) != 4:
            raise RemoteProtocolError("ESP proposal without a 4-octet SPI", NotifyType.INVALID_SYNTAX)
        conflict = peer_spi_conflict(sa, int.from_bytes(peer_spi, "big"))
        if conflict is not None:
            sa.audit(EventName.CHILD_FAILED, Outcome.FAILURE, conflict, child=settings.name)
            raise RemoteProtocolError(conflict, NotifyType.NO_PROPOSAL_CHOSEN)
        self.settings = settings
        self.resource_answer = resources.responder_accepts(sa, settings, msg, self.rekeyed, narrowed.tsr,
                                                           narrowed.tsi)
        if not self.in_auth:
            self._responder_ke(sa, msg, spec)
        wants_transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None
        if settings.mode == "transport" and not wants_transport:
            reason = f"mode mismatch for {settings.name}: we require transport mode, peer asked for tunnel"
            sa.audit(EventName.PROPOSAL_REJECTED, Outcome.FAILURE, reason)
            raise RemoteProtocolError(reason, NotifyType.NO_PROPOSAL_CHOSEN)
        self.child = self._new_child(sa, settings, False)
        self.child.mode = "transport" if wants_transport and settings.mode == "transport" else "tunnel"
        self.child.proposal = spec
        self.child.spi_out = int.from_bytes(peer_spi, "big")
        self.child.local_ts, self.child.remote_ts = narrowed.tsr, narrowed.tsi
        if self.resource_answer is not None:
            self.child.resource_group, self.child.resource_id = True, self.resource_answer
        self.chosen_number = number

    def _responder_ke(self, sa: IkeSa, msg: InMessage, spec: ProposalSpec) -> None:
        nonce = msg.get(NoncePayload)
        if nonce is None or not 16 <= len(nonce.data) <= 256:
            raise RemoteProtocolError("missing or bad nonce", NotifyType.INVALID_SYNTAX)
        self.peer_nonce = nonce.data
        group = proposal_ke(spec)
        ke = msg.get(KePayload)
        if group:
            if ke is None:
                raise RemoteProtocolError("PFS required but no KE payload", NotifyType.NO_PROPOSAL_CHOSEN)
            if int(ke.group) != group:
                raise RemoteProtocolError(
                    f"KE {name_of(KeId, int(ke.group))} but selected {name_of(KeId, group)}",
                    NotifyType.INVALID_KE_PAYLOAD,
                    group.to_bytes(2, "big"),
                )
            try:
                self.ke = new_key_exchange(group, sa.ctx.random)
                self.shared = self.ke.shared_secret(ke.data)
            except CryptoError as exc:
                raise RemoteProtocolError(f"bad KE value: {exc}", NotifyType.INVALID_SYNTAX) from None

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.followup is not None:
            self.followup.build_r(sa, msg, self)
            if self.followup.complete:
                main, additional = self.followup.main, self.followup.additional()
                self.followup.wipe()
                self._finish_responder(sa, main, additional)
            return
        if self.in_auth and sa.rounds is not None and not sa.rounds.finished:
            return
        if self.in_auth and sa.redirect_in_auth:
            return
        if self.error is not None:
            notify, data, _reason = self.error
            msg.add_notify(notify, data)
            return
        if self.child is None or self.settings is None:
            return  # childless
        assert sa.crypto is not None and self.child.proposal is not None
        child = self.child
        proposal = self.child.proposal
        if child.mode == "transport":
            msg.add_notify(NotifyType.USE_TRANSPORT_MODE)
        if child.resource_group:
            msg.add_notify(NotifyType.SA_RESOURCE_INFO)
        spi = child.spi_in.to_bytes(4, "big")
        msg.add(SaPayload((Proposal.from_spec(self.chosen_number, proposal, spi),)))
        if not self.in_auth:
            self.nonce = sa.ctx.random.bytes(NONCE_LEN)
            msg.add(NoncePayload(self.nonce))
            if self.ke is not None:
                msg.add(KePayload(int(self.ke.method), self.ke.public_value))
        msg.add(TsiPayload(to_wire(child.remote_ts)))
        msg.add(TsrPayload(to_wire(child.local_ts)))
        methods = () if self.in_auth else additional_key_exchanges(proposal)
        if methods:  # RFC 9370 §2.2.4: keys and installation wait for the IKE_FOLLOWUP_KE exchanges
            self.followup = Followup(methods, self.shared)
            self.shared = None
            msg.add_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, register_link(sa, self.followup, self))
            self.exchange = ExchangeType.IKE_FOLLOWUP_KE
            return
        secret, self.shared = self.shared, None
        self._finish_responder(sa, secret)

    def _finish_responder(self, sa: IkeSa, shared: bytes | None, additional: bytes = b"") -> None:
        assert self.child is not None and self.child.proposal is not None and sa.crypto is not None
        ni, nr = (sa.nonce_i, sa.nonce_r) if self.in_auth else (self.peer_nonce, self.nonce)
        self.child.keys = child_sa_keys(
            sa.crypto.prf_id, bytes(sa.crypto.keys.sk_d), self.child.proposal, ni, nr, shared, additional
        )
        self._activate(sa, responder=True)
