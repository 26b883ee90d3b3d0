"""EAP as the initiator, and a second authentication round of ours (RFC 7296 §2.16, RFC 4739 §3).

Round 1 with ``local.auth = "eap-*"``: our first IKE_AUTH request carries IDi but no AUTH; the responder
answers with its IDr, CERT and AUTH and an EAP-Request. With ``local-2`` (RFC 4739): round 1 is our
certificate or PSK as usual plus N(ANOTHER_AUTH_FOLLOWS) and N(MULTIPLE_AUTH_SUPPORTED); once the responder
has authenticated, the next request carries only the round's IDi and the responder starts EAP.

An EAP round: each EAP-Request gets our EAP-Response (``engine.eap_peer``) in the next IKE_AUTH request; after
EAP-Success we send AUTH over our signed octets (the IKE_SA_INIT request, the responder's nonce and the
round's IDi) keyed with the MSK (SK_pi for a method without one, such as MD5), and the responder's final
AUTH, keyed the same way over its signed octets and its IDr, must verify before the IKE SA is established.
Each request is another IKE_AUTH exchange with the next message ID (``Status.MORE``: ``IkeSa`` sends this
task's next request; the Child SA and other tasks see only the final response, which carries SA and TS).

EAP-only authentication (RFC 5998) with ``remote.auth = "eap"`` and EAP-TLS (our only mutual method): we
send N(EAP_ONLY_AUTHENTICATION); a first response with IDr but no AUTH is then accepted, and the EAP-TLS
server's certificate chain is validated like an IKE peer's (the connection's authorities, revocation
settings, and the IDr as the identity it must carry) instead of being compared with the IKE certificate.
A revocation status that would need a fetch refuses it (the TLS handshake cannot wait for one). Otherwise
we require the responder's AUTH in its first response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import constant_time

from ikeguard.audit.events import EventName
from ikeguard.crypto.keymat import auth_signed_octets, psk_auth
from ikeguard.engine.eap_peer import EapPeer, EapPeerError
from ikeguard.engine.eap_tls import EapTlsPeer
from ikeguard.engine.settings import LocalAuth
from ikeguard.engine.tasks.base import Status, TaskFailed
from ikeguard.engine.tasks.ike_intermediate import int_auth_octets
from ikeguard.engine.validator import FetchNeeded
from ikeguard.wire.iana import AuthMethod, NotifyType, name_of
from ikeguard.wire.payloads import AuthPayload, EapPayload, IdiPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


@dataclass
class InitiatorRounds:
    """Where our EAP round stands. ``phase``: first (the first IKE_AUTH response is awaited), identity
    (round 2 starts with IDi alone), eap (relaying EAP messages), auth (our MSK AUTH is next), final (the
    responder's MSK AUTH is awaited)."""

    auth: LocalAuth = field(repr=False)
    round: int
    peer: EapPeer | EapTlsPeer
    phase: str = "first"
    id_body: bytes = b""  # our IDi of the EAP round (signed in our final AUTH)
    responder_id_body: bytes = b""  # the responder's IDr (signed in its final AUTH)
    outgoing: bytes = field(default=b"", repr=False)  # our next EAP-Response


def start(sa: IkeSa, auth: LocalAuth, round_no: int, id_body: bytes) -> InitiatorRounds:
    """The EAP round of ours that follows the first IKE_AUTH response (round 1 itself, or round 2)."""
    identity = auth.eap_id or auth.identity
    peer: EapPeer | EapTlsPeer
    if auth.eap_method == "tls":
        if auth.private_key is None or not auth.certs:
            raise TaskFailed("EAP-TLS configured without our certificate and key")
        peer = EapTlsPeer(identity, auth.certs, auth.private_key, lambda chain: _check_server(sa, chain))
    else:
        peer = EapPeer(auth.eap_method, identity, auth.eap_secret, random=sa.ctx.random.bytes(16))
    sa.auth_details.update(eap_identity=identity, eap_method=auth.eap_method, round=str(round_no))
    return InitiatorRounds(auth, round_no, peer, id_body=id_body)


def _check_server(sa: IkeSa, chain: list[x509.Certificate]) -> str | None:
    """The EAP-TLS server: validated as the responder itself with EAP-only (RFC 5998), else bound to the
    certificate the responder authenticated the IKE SA with."""
    if sa.auth_details.get("eap_only") != "yes":
        return _same_as_ike_peer(sa, chain[0])
    assert sa.conn is not None
    try:
        verdict = sa.ctx.validator.validate(chain, sa.remote_id or "%any", sa.conn.name, sa.now)
    except FetchNeeded:
        return "its revocation status needs a fetch, which EAP-only authentication cannot wait for"
    if not verdict.accepted:
        return f"certificate rejected: {verdict.reason}"
    leaf = chain[0]
    sa.remote_cert_subject = leaf.subject.rfc4514_string()
    sa.remote_cert_serial = format(leaf.serial_number, "x")
    sa.remote_cert_issuer = leaf.issuer.rfc4514_string()
    return None


def _same_as_ike_peer(sa: IkeSa, cert: x509.Certificate) -> str | None:
    """The EAP-TLS server must present the certificate the responder authenticated the IKE SA with."""
    if (format(cert.serial_number, "x"), cert.issuer.rfc4514_string()) == (sa.remote_cert_serial,
                                                                           sa.remote_cert_issuer):
        return None
    return (f"its certificate ({cert.subject.rfc4514_string()}) is not the one the IKE responder "
            f"authenticated with ({sa.remote_cert_subject or 'none'})")


def after_first(sa: IkeSa, rounds: InitiatorRounds, msg: InMessage, responder_id_body: bytes) -> Status:
    """The responder authenticated in its first response: go on with our EAP round."""
    rounds.responder_id_body = responder_id_body
    if rounds.round == 2:
        rounds.phase = "identity"
        return Status.MORE
    rounds.phase = "eap"
    return _eap(sa, rounds, msg)


def build(sa: IkeSa, rounds: InitiatorRounds, msg: OutMessage) -> None:
    """Our payloads for a later IKE_AUTH request."""
    assert sa.crypto is not None
    if rounds.phase == "identity":
        from ikeguard.engine.identity import identity_payload

        id_type, id_data = identity_payload(rounds.auth.identity, None)
        payload = IdiPayload(id_type, id_data)
        rounds.id_body = payload.encode_body()
        msg.add(payload)
        rounds.phase = "eap"
        return
    if rounds.phase == "eap":
        msg.add(EapPayload(rounds.outgoing))
        return
    if rounds.phase == "auth":
        key = rounds.peer.msk or bytes(sa.crypto.keys.sk_pi)
        octets = auth_signed_octets(sa.init_request, sa.nonce_r, sa.crypto.prf_id,
                                    bytes(sa.crypto.keys.sk_pi), rounds.id_body) + int_auth_octets(sa)
        msg.add(AuthPayload(AuthMethod.PSK, psk_auth(sa.crypto.prf_id, key, octets)))
        rounds.phase = "final"


def process(sa: IkeSa, rounds: InitiatorRounds, msg: InMessage) -> Status:
    """A later IKE_AUTH response: MORE while the round goes on, DONE once the responder's AUTH verified."""
    assert sa.crypto is not None
    if msg.notify(NotifyType.AUTHENTICATION_FAILED) is not None:
        raise TaskFailed(f"peer rejected our EAP authentication as {rounds.peer.identity!r} "
                         f"(AUTHENTICATION_FAILED)", EventName.AUTH_FAILURE)
    if rounds.phase == "final":
        auth = msg.get(AuthPayload)
        if auth is None:
            error = msg.error_notify()
            what = name_of(NotifyType, int(error.notify_type)) if error else "no AUTH payload"
            raise TaskFailed(f"IKE_AUTH failed after EAP: {what}", EventName.AUTH_FAILURE)
        key = rounds.peer.msk or bytes(sa.crypto.keys.sk_pr)
        sk_pr = bytes(sa.crypto.keys.sk_pr)
        octets = auth_signed_octets(sa.init_response, sa.nonce_i, sa.crypto.prf_id, sk_pr,
                                    rounds.responder_id_body) + int_auth_octets(sa)
        expected = psk_auth(sa.crypto.prf_id, key, octets)
        rounds.peer.msk = b""
        if auth.method != AuthMethod.PSK or not constant_time.bytes_eq(expected, auth.data):
            raise TaskFailed("the responder's AUTH after EAP does not verify with the EAP key "
                             "(RFC 7296 §2.16)", EventName.AUTH_FAILURE)
        sa.established()
        return Status.DONE
    return _eap(sa, rounds, msg)


def _eap(sa: IkeSa, rounds: InitiatorRounds, msg: InMessage) -> Status:
    eap = msg.get(EapPayload)
    if eap is None:
        error = msg.error_notify()
        what = name_of(NotifyType, int(error.notify_type)) if error else "no EAP payload"
        raise TaskFailed(f"IKE_AUTH failed during EAP: {what}", EventName.AUTH_FAILURE)
    try:
        answer = rounds.peer.respond(eap.data)
    except EapPeerError as exc:
        raise TaskFailed(f"EAP authentication failed: {exc}", EventName.AUTH_FAILURE) from None
    if answer is None:  # EAP-Success: our AUTH with the MSK is next
        rounds.phase = "auth"
    else:
        rounds.outgoing = answer
    return Status.MORE
