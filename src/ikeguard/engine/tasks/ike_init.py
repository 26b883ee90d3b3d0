"""IKE_SA_INIT: SA, KE, nonces, COOKIE echo, INVALID_KE_PAYLOAD retry, fragmentation and signature-hash
announcements, then SKEYSEED and SK_* (RFC 7296 §1.2, §2.6, §2.7, §2.14; RFC 7383 §2.3; RFC 7427 §4).
Negotiated RFC 9370 additional key exchanges follow in IKE_INTERMEDIATE (``tasks.ike_intermediate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.crypto.dh import KeyExchange, new_key_exchange
from ikeguard.crypto.errors import CryptoError, InvalidKeyExchange
from ikeguard.crypto.signatures import decode_signature_hash_algorithms, encode_signature_hash_algorithms
from ikeguard.engine import ocsp_stapling
from ikeguard.engine.auth_policy import DEFAULT_SIGNATURE_HASHES, announced_hashes
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.intermediate import IntermediateState, additional_key_exchanges, offers_additional_ke
from ikeguard.engine.keys import ike_sa_crypto, initial_skeyseed, proposal_ke
from ikeguard.engine.proposals import accept_response_proposal, choose_proposal, offer_proposals
from ikeguard.engine.states import IkeState, IkeTrigger
from ikeguard.engine.tasks import redirect
from ikeguard.engine.tasks.base import Status, Task, TaskFailed
from ikeguard.engine.tasks.ike_intermediate import IkeIntermediateTask
from ikeguard.engine.validator import certreq_data
from ikeguard.wire.iana import (
    CertEncoding,
    ExchangeType,
    KeId,
    NotifyType,
    ProtocolId,
    name_of,
)
from ikeguard.wire.payloads import CertReqPayload, KePayload, NoncePayload
from ikeguard.wire.proposal_string import describe_proposal
from ikeguard.wire.sa import Proposal, SaPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage
    from ikeguard.wire.proposal_string import ProposalSpec

NONCE_LEN = 32
OUR_HASHES = DEFAULT_SIGNATURE_HASHES  # without a profile rule (engine.auth_policy)


def add_feature_notifies(sa: IkeSa, msg: OutMessage) -> None:
    """IKEV2_FRAGMENTATION_SUPPORTED (when configured) and SIGNATURE_HASH_ALGORITHMS."""
    if sa.conn is None or sa.conn.fragmentation:
        msg.add_notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
    hashes = announced_hashes(sa.ctx.settings.profile)  # what the profile lets peers sign with
    msg.add_notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, encode_signature_hash_algorithms(hashes))


def read_feature_notifies(sa: IkeSa, msg: InMessage) -> None:
    """Record what the peer supports."""
    sa.peer.fragmentation = msg.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    hashes = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if hashes is not None:
        try:
            sa.peer.signature_hashes = tuple(int(h) for h in decode_signature_hash_algorithms(hashes.data))
        except ValueError:
            sa.peer.signature_hashes = ()


def _nonce(msg: InMessage) -> bytes:
    nonce = msg.get(NoncePayload)
    if nonce is None:
        raise RemoteProtocolError("no Nonce payload", NotifyType.INVALID_SYNTAX)
    if not 16 <= len(nonce.data) <= 256:
        raise RemoteProtocolError(f"nonce of {len(nonce.data)} octets", NotifyType.INVALID_SYNTAX)
    return nonce.data


class IkeInitTask(Task):
    """Negotiates the IKE SA's proposal and keys."""

    exchange = ExchangeType.IKE_SA_INIT

    def __init__(self) -> None:
        self.ke: KeyExchange | None = None
        self.group: int | None = None
        self.cookie: bytes | None = None
        self.retries = 0
        self.offered: tuple[ProposalSpec, ...] = ()
        self.chosen: ProposalSpec | None = None
        self.chosen_number = 1
        self.shared = b""
        self.tried_groups: set[int] = set()
        self.intermediate = False  # responder: the initiator announced INTERMEDIATE_EXCHANGE_SUPPORTED

    # ------------------------------------------------------------------ initiator
    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        assert sa.conn is not None
        if not self.offered:
            self.offered = offer_proposals(sa.ctx.settings.profile, sa.conn.ike_proposals, "ike")
            if not self.offered:
                raise TaskFailed("no configured IKE proposal is allowed by the profile",
                                 EventName.PROPOSAL_REJECTED)
        if self.group is None:
            self.group = proposal_ke(self.offered[0])
        if self.ke is None or int(self.ke.method) != self.group:
            self.ke = new_key_exchange(self.group, sa.ctx.random)
            self.tried_groups.add(self.group)
        if not sa.nonce_i:
            sa.nonce_i = sa.ctx.random.bytes(NONCE_LEN)
        if self.cookie is not None:
            msg.add_notify(NotifyType.COOKIE, self.cookie)
        proposals = tuple(Proposal.from_spec(i + 1, spec) for i, spec in enumerate(self.offered))
        msg.add(SaPayload(proposals))
        msg.add(KePayload(self.group, self.ke.public_value))
        msg.add(NoncePayload(sa.nonce_i))
        add_feature_notifies(sa, msg)
        redirect.announce(sa, msg)  # RFC 5685 §3/§4
        if offers_additional_ke(self.offered):
            msg.add_notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED)  # RFC 9242 §3.1
        if sa.conn.ppk is not None:
            msg.add_notify(NotifyType.USE_PPK)  # RFC 8784 §3
        if sa.state is IkeState.CREATED:
            sa.transition(IkeTrigger.SEND_INIT)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is not None and msg.get(SaPayload) is None:
            return self._retry(sa, "COOKIE", lambda: setattr(self, "cookie", cookie.data))
        if msg.get(SaPayload) is None and msg.notify(NotifyType.REDIRECT) is not None:
            if not redirect.follow_init_redirect(sa, msg):
                return Status.IGNORE  # RFC 5685 §3: malformed or not our Ni: a forgery
            return self._retry(sa, "REDIRECT", lambda: None)  # to the new gateway, with REDIRECTED_FROM
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else -1
            offered_groups = {t.id for spec in self.offered for t in spec.ke}
            if wanted not in offered_groups or wanted in self.tried_groups:
                raise TaskFailed(
                    f"peer demands key exchange {name_of(KeId, wanted)} which we did not offer",
                    EventName.PROPOSAL_REJECTED,
                )
            sa.audit(EventName.IKE_RETRY, Outcome.FAILURE,
                     f"peer asked for {name_of(KeId, wanted)} (INVALID_KE_PAYLOAD)")
            return self._retry(sa, "INVALID_KE_PAYLOAD", lambda: setattr(self, "group", wanted))
        error = msg.error_notify()
        if error is not None:
            name = name_of(NotifyType, int(error.notify_type))
            event = (
                EventName.PROPOSAL_REJECTED
                if error.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
                else EventName.IKE_FAILED
            )
            raise TaskFailed(f"peer refused IKE_SA_INIT with {name}", event)
        try:
            nonce = _nonce(msg)
        except RemoteProtocolError as exc:
            raise TaskFailed(exc.reason) from None
        sa_payload, ke = msg.get(SaPayload), msg.get(KePayload)
        if sa_payload is None or ke is None:
            raise TaskFailed("IKE_SA_INIT response without SA or KE payload")
        chosen = accept_response_proposal(sa_payload, self.offered, ProtocolId.IKE)
        if chosen is None:
            raise TaskFailed("peer selected a proposal we did not offer", EventName.PROPOSAL_REJECTED)
        if int(ke.group) != proposal_ke(chosen[0]) or int(ke.group) != self.group:
            raise TaskFailed("peer's KE group differs from the selected proposal")
        assert self.ke is not None
        try:
            shared = self.ke.shared_secret(ke.data)
        except CryptoError as exc:
            raise TaskFailed(f"peer's key exchange value rejected: {exc}") from None
        methods = additional_key_exchanges(chosen[0])
        if methods and msg.notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is None:
            raise TaskFailed("peer selected additional key exchanges without INTERMEDIATE_EXCHANGE_SUPPORTED "
                             "(RFC 9370 §2.2.1)", EventName.PROPOSAL_REJECTED)
        assert sa.conn is not None
        sa.use_ppk = sa.conn.ppk is not None and msg.notify(NotifyType.USE_PPK) is not None
        if sa.conn.ppk is not None and sa.conn.ppk.required and not sa.use_ppk:
            raise TaskFailed("peer does not support PPK (no USE_PPK, RFC 8784) and ppk_required is set",
                             EventName.AUTH_FAILURE)
        sa.spi_r = msg.spi_r
        sa.nonce_r = nonce
        sa.peer_asks_ocsp = ocsp_stapling.peer_asks(msg)  # RFC 4806: staple ours in the IKE_AUTH request
        sa.proposal = chosen[0]
        read_feature_notifies(sa, msg)
        if methods:
            sa.intermediate = IntermediateState(methods)
            for method in reversed(methods):  # before the queued IKE_AUTH, in ADDKE order
                sa.queue_exchange([IkeIntermediateTask(method)], front=True)
        skeyseed = initial_skeyseed(chosen[0], sa.nonce_i, sa.nonce_r, shared)
        sa.crypto = ike_sa_crypto(
            chosen[0], skeyseed, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r, True, sa.ctx.random
        )
        return Status.DONE

    def _retry(self, sa: IkeSa, what: str, apply: object) -> Status:
        self.retries += 1
        if self.retries > sa.ctx.settings.max_init_retries:
            raise TaskFailed(f"gave up after {self.retries - 1} IKE_SA_INIT retries ({what})")
        assert callable(apply)
        apply()
        sa.transition(IkeTrigger.INIT_RETRY, what)
        return Status.RETRY

    # ------------------------------------------------------------------ responder
    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        sa_payload, ke = msg.get(SaPayload), msg.get(KePayload)
        if sa_payload is None or ke is None:
            raise RemoteProtocolError("IKE_SA_INIT request without SA or KE", NotifyType.INVALID_SYNTAX)
        sa.nonce_i = _nonce(msg)
        redirect.read_init_request(sa, msg)  # RFC 5685 §3: may answer with just REDIRECT
        configured = sa.responder_ike_proposals()
        self.intermediate = msg.notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
        sa.use_ppk = msg.notify(NotifyType.USE_PPK) is not None and any(
            c.ppk is not None for c in sa.ctx.connections.values())
        if not self.intermediate:  # RFC 9370 §2.2.1: no additional key exchange without IKE_INTERMEDIATE
            configured = tuple(c for c in configured if not additional_key_exchanges(c)) or configured
        choice = choose_proposal(sa.ctx.settings.profile, sa_payload, configured, "ike")
        if choice is not None and additional_key_exchanges(choice[0]) and not self.intermediate:
            choice = None
        if choice is None:
            sa.audit(
                EventName.PROPOSAL_REJECTED,
                Outcome.FAILURE,
                "no acceptable IKE proposal",
                proposal=_offered_text(sa_payload),
            )
            raise RemoteProtocolError("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        self.chosen, self.chosen_number = choice
        group = proposal_ke(self.chosen)
        if int(ke.group) != group:
            sa.audit(EventName.IKE_RETRY, Outcome.FAILURE,
                     f"asked peer for {name_of(KeId, group)} (INVALID_KE_PAYLOAD)")
            raise RemoteProtocolError(
                f"peer sent KE {name_of(KeId, int(ke.group))}, selected {name_of(KeId, group)}",
                NotifyType.INVALID_KE_PAYLOAD,
                group.to_bytes(2, "big"),
            )
        try:
            self.ke = new_key_exchange(group, sa.ctx.random)
            self.shared = self.ke.shared_secret(ke.data)
        except InvalidKeyExchange as exc:
            raise RemoteProtocolError(
                f"peer's key exchange value rejected: {exc}", NotifyType.INVALID_SYNTAX
            ) from None
        read_feature_notifies(sa, msg)

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        assert self.chosen is not None and self.ke is not None
        sa.nonce_r = sa.ctx.random.bytes(NONCE_LEN)
        sa.proposal = self.chosen
        msg.add(SaPayload((Proposal.from_spec(self.chosen_number, self.chosen),)))
        msg.add(KePayload(int(self.ke.method), self.ke.public_value))
        msg.add(NoncePayload(sa.nonce_r))
        if self.intermediate:
            msg.add_notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED)  # RFC 9242 §3.1
        if sa.use_ppk:
            msg.add_notify(NotifyType.USE_PPK)  # RFC 8784 §3
        methods = additional_key_exchanges(self.chosen)
        if methods:
            sa.intermediate = IntermediateState(methods)
        if any(c.remote.kind.value == "pubkey" for c in sa.ctx.connections.values()):
            # RFC 7296 §1.2: the responder may request certificates already in IKE_SA_INIT.
            msg.add(CertReqPayload(CertEncoding.X509_SIGNATURE, certreq_data(sa.ctx.validator, None)))
            if any(ocsp_stapling.asks(c) for c in sa.ctx.connections.values()):
                msg.add(ocsp_stapling.ocsp_certreq())  # RFC 4806 §4: asks the initiator for its OCSP status
        add_feature_notifies(sa, msg)
        if any(c.remote2 is not None for c in sa.ctx.connections.values()):
            msg.add_notify(NotifyType.MULTIPLE_AUTH_SUPPORTED)  # RFC 4739 §3.1
        skeyseed = initial_skeyseed(self.chosen, sa.nonce_i, sa.nonce_r, self.shared)
        sa.crypto = ike_sa_crypto(
            self.chosen, skeyseed, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r, False, sa.ctx.random
        )
        self.shared = b""
        sa.transition(IkeTrigger.ANSWER_INIT)


def _offered_text(sa_payload: SaPayload) -> str:
    texts = []
    for proposal in sa_payload.proposals[:4]:
        try:
            texts.append(describe_proposal(proposal.to_spec()))
        except ValueError:
            texts.append("(unparsable)")
    return ", ".join(texts)
