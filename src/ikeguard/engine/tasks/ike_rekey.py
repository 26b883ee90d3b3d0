"""IKE SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18): new SPIs, nonces and key exchange; the
Child SAs move to the new IKE SA and the old one is deleted by the rekey's initiator. Simultaneous rekeys are
resolved by the nonces as for Child SAs (§2.8.2, engine/collisions.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.crypto.dh import KeyExchange, new_key_exchange
from ikeguard.crypto.errors import CryptoError
from ikeguard.engine import lifecycle
from ikeguard.engine.collisions import Collision, Resolution, handle_collision
from ikeguard.engine.commands import delete_ike
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.intermediate import additional_key_exchanges
from ikeguard.engine.keys import ike_sa_crypto, proposal_ke, rekey_skeyseed
from ikeguard.engine.proposals import accept_response_proposal, choose_proposal, offer_proposals
from ikeguard.engine.states import IkeState, IkeTrigger
from ikeguard.engine.tasks.base import Status, Task
from ikeguard.engine.tasks.child_create import ChildCreateTask
from ikeguard.engine.tasks.delete import DeleteChildTask, DeleteIkeTask, DeleteSpiTask
from ikeguard.engine.tasks.followup_ke import Followup, register_link
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, KeId, NotifyType, ProtocolId, name_of
from ikeguard.wire.payloads import KePayload, NoncePayload
from ikeguard.wire.proposal_string import ProposalSpec
from ikeguard.wire.sa import Proposal, SaPayload

if TYPE_CHECKING:
    from ikeguard.engine.events import IpAddress
    from ikeguard.engine.ike_sa import IkeSa, PeerFeatures
    from ikeguard.engine.message import InMessage, OutMessage
    from ikeguard.engine.settings import GroupSettings

NONCE_LEN = 32
REKEY_RETRY_DELAY = 30.0
REDUNDANT_LIFETIME = 60.0  # a replaced or redundant IKE SA waits this long for the peer's DELETE


def _new_spi(sa: IkeSa) -> bytes:
    return sa.ctx.ike_spi()


@dataclass(frozen=True)
class Inherited:
    """What the IKE SA made by a rekey takes over from the one it replaces: the same peer, authenticated the
    same way (RFC 7296 §2.18: only keys, SPIs and nonces are new), its NAT status and remote-access state."""

    local_id: str
    remote_id: str
    remote_cert_subject: str
    remote_cert_serial: str
    remote_cert_issuer: str
    remote_cert_not_after: float | None
    peer: PeerFeatures
    nat_local: bool
    nat_remote: bool
    peer_natt: bool
    encap: bool
    ppk_used: bool  # RFC 8784: SK_d came from the PPK-mixed one, so do all later keys
    eap_identity: str  # remote access: the user and its virtual IP stay with the rekeyed IKE SA
    auth_details: dict[str, str]
    virtual_ip: IpAddress | None
    vip_pool: str
    group: GroupSettings | None

    @classmethod
    def of(cls, sa: IkeSa) -> Inherited:
        """The inherited state of ``sa``."""
        return cls(
            local_id=sa.local_id, remote_id=sa.remote_id, remote_cert_subject=sa.remote_cert_subject,
            remote_cert_serial=sa.remote_cert_serial, remote_cert_issuer=sa.remote_cert_issuer,
            remote_cert_not_after=sa.remote_cert_not_after, peer=sa.peer, nat_local=sa.nat_local,
            nat_remote=sa.nat_remote, peer_natt=sa.peer_natt, encap=sa.encap, ppk_used=sa.ppk_used,
            eap_identity=sa.eap_identity, auth_details=sa.auth_details, virtual_ip=sa.virtual_ip,
            vip_pool=sa.vip_pool, group=sa.group,
        )

    def give_to(self, sa: IkeSa) -> None:
        """Make it the state of the new IKE SA ``sa``."""
        sa.local_id, sa.remote_id = self.local_id, self.remote_id
        sa.remote_cert_subject, sa.remote_cert_serial = self.remote_cert_subject, self.remote_cert_serial
        sa.remote_cert_issuer, sa.remote_cert_not_after = self.remote_cert_issuer, self.remote_cert_not_after
        sa.peer = self.peer
        sa.nat_local, sa.nat_remote, sa.peer_natt, sa.encap = (self.nat_local, self.nat_remote,
                                                               self.peer_natt, self.encap)
        sa.ppk_used, sa.eap_identity, sa.auth_details = self.ppk_used, self.eap_identity, self.auth_details
        sa.virtual_ip, sa.vip_pool, sa.group = self.virtual_ip, self.vip_pool, self.group


def make_rekeyed_sa(
    old: IkeSa,
    *,
    initiator: bool,
    spi_i: bytes,
    spi_r: bytes,
    spec: ProposalSpec,
    shared: bytes,
    ni: bytes,
    nr: bytes,
    additional: bytes = b"",
) -> IkeSa:
    """The IKE SA replacing ``old``: keys from SK_d(old) (§2.18; with RFC 9370 additional key exchanges
    their secrets follow the nonces), same peer, identities and Child SAs."""
    assert old.crypto is not None
    new = IkeSa(
        old.ctx,
        initiator=initiator,
        local=old.local,
        remote=old.remote,
        spi_local=spi_i if initiator else spi_r,
        conn=old.conn,
        now=old.now,
        rules=old.rules,
    )
    new.spi_i, new.spi_r = spi_i, spi_r
    new.created_by_rekey = True
    new.proposal = spec
    new.nonce_i, new.nonce_r = ni, nr
    skeyseed = rekey_skeyseed(old.crypto.prf_id, bytes(old.crypto.keys.sk_d), shared, ni, nr, additional)
    new.crypto = ike_sa_crypto(spec, skeyseed, ni, nr, spi_i, spi_r, initiator, old.ctx.random)
    Inherited.of(old).give_to(new)
    return new


def register_redundant(old: IkeSa, new: IkeSa, winner: IkeSa | None) -> None:
    """An IKE SA from a rekey collision that may turn out redundant: live (so its DELETE is answered) but
    without Child SAs, closed by a timer unless it becomes the winner."""
    new.transition(IkeTrigger.AUTH_DONE, f"rekey of IKE SA {old.uniqueid} (collision)")
    new.established_at = new.now
    new.rekeyed_by = winner
    new.timers[Timer.REDUNDANT_EXPIRE] = new.now + REDUNDANT_LIFETIME
    if old.ctx.adopt_hook is not None:
        old.ctx.adopt_hook(new)


def _move_child_exchanges(old: IkeSa, new: IkeSa) -> None:
    """Queued Child SA work (create, rekey, delete) follows the Child SAs to the new IKE SA, and so does a
    queued delete of the IKE SA itself (an operator's terminate, a reauth close): it was meant for the
    tunnel, not for one generation of its keys, and would otherwise be lost with the old SA."""
    child_kinds = (ChildCreateTask, DeleteChildTask, DeleteSpiTask)
    keep = []
    for exchange in old.queue:
        if any(isinstance(t, DeleteIkeTask) for t in exchange.tasks):
            new.queue.insert(0, exchange)
        elif any(isinstance(t, child_kinds) for t in exchange.tasks):
            new.queue.append(exchange)
        else:
            keep.append(exchange)
    old.queue[:] = keep


def adopt(old: IkeSa, new: IkeSa) -> None:
    """Move the Child SAs to ``new`` and make it live (established, scheduled, registered)."""
    new.take_children(old)
    _move_child_exchanges(old, new)
    if new.state is IkeState.CREATED:
        new.transition(IkeTrigger.AUTH_DONE, f"rekeyed IKE SA {old.uniqueid}")
        new.established_at = new.now
        if old.ctx.adopt_hook is not None:
            old.ctx.adopt_hook(new)
    new.timers.pop(Timer.REDUNDANT_EXPIRE, None)
    new.rekeyed_by = None
    lifecycle.schedule_ike(new)
    if Timer.KEEPALIVE in old.timers:
        new.timers[Timer.KEEPALIVE] = old.timers[Timer.KEEPALIVE]
    for name, deadline in old.timers.items():
        if name.startswith("child_"):
            new.timers[name] = deadline
    for name in [k for k in old.timers if k.startswith("child_")]:
        del old.timers[name]
    old.rekeyed_by = new
    new.audit(EventName.IKE_REKEYED, Outcome.SUCCESS, old_uniqueid=str(old.uniqueid))


class IkeRekeyTask(Task):
    """Initiator of an IKE SA rekey."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self) -> None:
        self.spi = b""
        self.nonce = b""
        self.ke: KeyExchange | None = None
        self.group: int | None = None
        self.offered: tuple[ProposalSpec, ...] = ()
        self.peer_nonce = b""
        self.new: IkeSa | None = None
        self.followup: Followup | None = None  # RFC 9370 §2.2.4 additional key exchanges in progress
        self.accepted: tuple[ProposalSpec, bytes] | None = None

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        assert sa.conn is not None
        if self.followup is not None:
            self.followup.build_i(sa, msg)
            return
        if sa.state is IkeState.ESTABLISHED:
            sa.transition(IkeTrigger.START_REKEY)
        self.spi = self.spi or _new_spi(sa)
        self.offered = self.offered or offer_proposals(sa.ctx.settings.profile, sa.conn.ike_proposals, "ike")
        self.group = self.group or proposal_ke(self.offered[0])
        if self.ke is None or int(self.ke.method) != self.group:
            self.ke = new_key_exchange(self.group, sa.ctx.random)
        self.nonce = self.nonce or sa.ctx.random.bytes(NONCE_LEN)
        msg.add(SaPayload(tuple(Proposal.from_spec(i + 1, s, self.spi) for i, s in enumerate(self.offered))))
        msg.add(NoncePayload(self.nonce))
        msg.add(KePayload(self.group, self.ke.public_value))

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        if self.followup is not None:
            try:
                self.followup.process_i(msg)
                if not self.followup.complete:
                    return Status.RETRY
                self.new = self._make(sa, self.followup.main or b"", self.followup.additional())
            except (ValueError, CryptoError) as exc:
                self._failed(sa, f"IKE rekey failed in IKE_FOLLOWUP_KE: {exc}")
            self.followup.wipe()
            return Status.DONE
        error = msg.error_notify()
        if error is not None and error.notify_type == NotifyType.INVALID_KE_PAYLOAD:
            wanted = int.from_bytes(error.data[:2], "big") if len(error.data) >= 2 else -1
            if wanted in {t.id for s in self.offered for t in s.ke} and wanted != self.group:
                self.group = wanted
                return Status.RETRY
        try:
            new = self._complete(sa, msg, error is not None)
        except (ValueError, CryptoError) as exc:
            self._failed(sa, f"IKE rekey failed: {exc}")
            return Status.DONE
        if new is None:
            return Status.RETRY  # the next message is the first IKE_FOLLOWUP_KE (RFC 9370 §2.2.4)
        self.new = new
        return Status.DONE

    def _failed(self, sa: IkeSa, reason: str) -> None:
        sa.audit(EventName.IKE_REKEY_FAILED, Outcome.FAILURE, reason)
        if sa.state is IkeState.REKEYING:
            sa.transition(IkeTrigger.REKEY_ABORTED, reason)
        sa.timers[Timer.IKE_REKEY] = sa.now + REKEY_RETRY_DELAY

    def _make(self, sa: IkeSa, shared: bytes, additional: bytes = b"") -> IkeSa:
        assert self.accepted is not None
        spec, spi_r = self.accepted
        return make_rekeyed_sa(sa, initiator=True, spi_i=self.spi, spi_r=spi_r, spec=spec, shared=shared,
                               ni=self.nonce, nr=self.peer_nonce, additional=additional)

    def _complete(self, sa: IkeSa, msg: InMessage, has_error: bool) -> IkeSa | None:
        """The new IKE SA, or None when IKE_FOLLOWUP_KE exchanges must run first."""
        if has_error:
            error = msg.error_notify()
            assert error is not None
            raise ValueError(f"peer answered {name_of(NotifyType, int(error.notify_type))}")
        answer, nonce, ke = msg.get(SaPayload), msg.get(NoncePayload), msg.get(KePayload)
        if answer is None or nonce is None or ke is None:
            raise ValueError("response without SA, Nonce or KE")
        accepted = accept_response_proposal(answer, self.offered, ProtocolId.IKE)
        if accepted is None or len(accepted[1]) != 8:
            raise ValueError("peer selected an IKE proposal we did not offer")
        spec, spi_r = accepted
        if int(ke.group) != proposal_ke(spec) or self.ke is None or int(ke.group) != int(self.ke.method):
            raise ValueError(f"KE {name_of(KeId, int(ke.group))} does not match the selected proposal")
        shared = self.ke.shared_secret(ke.data)
        self.peer_nonce = nonce.data
        self.accepted = (spec, spi_r)
        methods = additional_key_exchanges(spec)
        if methods:
            link = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
            if link is None or not link.data:
                raise ValueError("additional key exchanges selected without ADDITIONAL_KEY_EXCHANGE")
            self.followup = Followup(methods, shared, link=link.data)
            self.exchange = ExchangeType.IKE_FOLLOWUP_KE
            return None
        return self._make(sa, shared)

    def completed(self, sa: IkeSa) -> None:
        """Adopt the new SA (or, after a lost collision, delete it) and delete the old one."""
        new = self.new
        if new is None or sa.state is IkeState.CLOSED:
            return
        peer_new = sa.peer_rekey
        if peer_new is not None and peer_new.state is not IkeState.CLOSED:
            ours = (self.nonce, self.peer_nonce)
            resolution = handle_collision(Collision.IKE_REKEY, ours=ours, theirs=sa.peer_rekey_nonces)
            if resolution is Resolution.OURS_REDUNDANT:
                # Ours is redundant (§2.8.2): we delete it; the Child SAs go to the peer's new SA, and the
                # peer (the winner) deletes the old one.
                register_redundant(sa, new, peer_new)
                delete_ike(new, "redundant after simultaneous IKE rekey (RFC 7296 §2.8.2)")
                new.start_next()
                adopt(sa, peer_new)
                peer_new.start_next()
                sa.transition(IkeTrigger.REKEY_DONE)
                sa.timers[Timer.REKEYED_EXPIRE] = sa.now + REDUNDANT_LIFETIME
                return
            peer_new.rekeyed_by = new  # the peer deletes its redundant SA; silence its ike.down
        adopt(sa, new)
        sa.transition(IkeTrigger.REKEY_DONE)
        delete_ike(sa, "rekeyed")
        new.start_next()  # Child SA work that was queued behind the rekey

    def aborted(self, sa: IkeSa, reason: str) -> None:
        if sa.state is IkeState.REKEYING:
            sa.transition(IkeTrigger.REKEY_ABORTED, reason)


class IkeRekeyResponder(Task):
    """Responder of an IKE SA rekey."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self) -> None:
        self.spec: ProposalSpec | None = None
        self.number = 1
        self.peer_spi = b""
        self.peer_nonce = b""
        self.ke: KeyExchange | None = None
        self.shared = b""
        self.new: IkeSa | None = None
        self.followup: Followup | None = None  # RFC 9370 §2.2.4 additional key exchanges in progress
        self.spi = b""
        self.nonce = b""

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        assert sa.conn is not None
        if self.followup is not None:  # an IKE_FOLLOWUP_KE continuing this rekey
            self.followup.process_r(sa, msg)
            return
        if (
            sa.active is not None
            and sa.active.exchange is ExchangeType.CREATE_CHILD_SA
            and not any(isinstance(t, IkeRekeyTask) for t in sa.active.tasks)
            and handle_collision(Collision.IKE_REKEY_DURING_CHILD_EXCHANGE) is Resolution.REFUSE
        ):
            # Our Child SA exchange is in flight: finish it first (RFC 7296 §2.25.2, as strongSwan).
            raise RemoteProtocolError("Child SA exchange in progress", NotifyType.TEMPORARY_FAILURE)
        offer, nonce, ke = msg.get(SaPayload), msg.get(NoncePayload), msg.get(KePayload)
        if offer is None or nonce is None or ke is None or not 16 <= len(nonce.data) <= 256:
            raise RemoteProtocolError("IKE rekey without SA, Nonce or KE", NotifyType.INVALID_SYNTAX)
        choice = choose_proposal(sa.ctx.settings.profile, offer, sa.conn.ike_proposals, "ike")
        if choice is None:
            sa.audit(EventName.PROPOSAL_REJECTED, Outcome.FAILURE, "no acceptable proposal for IKE rekey")
            raise RemoteProtocolError("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        self.spec, self.number = choice
        self.peer_spi = next((p.spi for p in offer.proposals if p.number == self.number), b"")
        if len(self.peer_spi) != 8:
            raise RemoteProtocolError("IKE proposal without an 8-octet SPI", NotifyType.INVALID_SYNTAX)
        group = proposal_ke(self.spec)
        if int(ke.group) != group:
            raise RemoteProtocolError(
                "KE group mismatch", NotifyType.INVALID_KE_PAYLOAD, group.to_bytes(2, "big")
            )
        try:
            self.ke = new_key_exchange(group, sa.ctx.random)
            self.shared = self.ke.shared_secret(ke.data)
        except CryptoError as exc:
            raise RemoteProtocolError(f"bad KE value: {exc}", NotifyType.INVALID_SYNTAX) from None
        self.peer_nonce = nonce.data

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        if self.followup is not None:
            self.followup.build_r(sa, msg, self)
            if self.followup.complete:
                main, additional = self.followup.main or b"", self.followup.additional()
                self.followup.wipe()
                self._finish(sa, main, additional)
            return
        assert self.spec is not None and self.ke is not None
        self.spi = _new_spi(sa)
        self.nonce = sa.ctx.random.bytes(NONCE_LEN)
        msg.add(SaPayload((Proposal.from_spec(self.number, self.spec, self.spi),)))
        msg.add(NoncePayload(self.nonce))
        msg.add(KePayload(int(self.ke.method), self.ke.public_value))
        shared, self.shared = self.shared, b""
        methods = additional_key_exchanges(self.spec)
        if methods:  # RFC 9370 §2.2.4: the new IKE SA exists only after the IKE_FOLLOWUP_KE exchanges
            self.followup = Followup(methods, shared)
            msg.add_notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, register_link(sa, self.followup, self))
            self.exchange = ExchangeType.IKE_FOLLOWUP_KE
            return
        self._finish(sa, shared)

    def _finish(self, sa: IkeSa, shared: bytes, additional: bytes = b"") -> None:
        assert self.spec is not None
        nonce = self.nonce
        self.new = make_rekeyed_sa(
            sa,
            initiator=False,
            spi_i=self.peer_spi,
            spi_r=self.spi,
            spec=self.spec,
            shared=shared,
            ni=self.peer_nonce,
            nr=nonce,
            additional=additional,
        )
        ours_in_flight = sa.state is IkeState.REKEYING
        later = Resolution.DECIDE_LATER
        if ours_in_flight and handle_collision(Collision.IKE_REKEY, ours_complete=False) is later:
            # Collision (§2.8.2): decided when our own rekey completes; the Child SAs stay put until then.
            sa.peer_rekey = self.new
            sa.peer_rekey_nonces = (self.peer_nonce, nonce)
            register_redundant(sa, self.new, None)
            return
        adopt(sa, self.new)
        sa.transition(IkeTrigger.REKEY_DONE)
        sa.timers[Timer.REKEYED_EXPIRE] = sa.now + REDUNDANT_LIFETIME  # the initiator deletes the old SA

    def completed(self, sa: IkeSa) -> None:
        """After our answer went out the peer knows the new SA: start work queued on it."""
        if self.new is not None and self.new.state is IkeState.ESTABLISHED:
            self.new.start_next()
