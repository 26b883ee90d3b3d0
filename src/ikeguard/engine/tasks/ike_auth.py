"""IKE_AUTH identities and authentication: IDi/IDr, CERT, CERTREQ, AUTH with PSK or RFC 7427 signatures,
INITIAL_CONTACT; the responder picks the connection by the peer's identity (exact > pattern > %any) and
delegates certificate acceptance to the validator (RFC 7296 §1.2, §2.15, §3.5-§3.8). A validator that needs
a CRL or OCSP answer raises ``FetchNeeded``; the exchange then waits (``engine.pending``) and runs again
once the service has fetched it: no network I/O here.

A received identity is literal (``engine.identity.received_identity``): configured patterns match it, it is
never one, and ``IkeSa.remote_id`` is that concrete identity. A signature AUTH must use a scheme the
profile allows and, for RFC 7427 Digital Signature, a hash we announced (``engine.auth_policy``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import constant_time, serialization

from ikeguard.audit.events import EventName, Outcome
from ikeguard.crypto.errors import CryptoError
from ikeguard.crypto.key_names import describe_key
from ikeguard.crypto.keymat import auth_signed_octets, psk_auth
from ikeguard.crypto.signatures import (
    PublicKey,
    SignatureScheme,
    scheme_for,
    select_hash,
    sign_auth,
    verify_auth,
)
from ikeguard.engine import ocsp_stapling
from ikeguard.engine.auth_policy import allowed_signature_schemes, announced_hashes
from ikeguard.engine.errors import RemoteProtocolError, ValidationPending
from ikeguard.engine.events import SignRequest
from ikeguard.engine.identity import identity_payload, received_identity
from ikeguard.engine.ppk import PpkKeys, apply_ppk, parse_ppk_identity, ppk_identity_data, ppk_keys
from ikeguard.engine.settings import AuthKind, ConnectionSettings
from ikeguard.engine.states import IkeTrigger
from ikeguard.engine.tasks import eap_auth, eap_initiator, redirect
from ikeguard.engine.tasks.base import Status, Task, TaskFailed
from ikeguard.engine.tasks.ike_intermediate import int_auth_octets
from ikeguard.engine.validator import FetchNeeded, certreq_data, validate_peer
from ikeguard.pki.raw_keys import RawKeyError, authenticate_raw, spki_der
from ikeguard.policy.identity import Identity, parse_identity
from ikeguard.wire.iana import AuthMethod, CertEncoding, ExchangeType, HashAlgorithm, NotifyType, name_of
from ikeguard.wire.payloads import AuthPayload, CertPayload, CertReqPayload, IdiPayload, IdrPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage


class AuthError(Exception):
    """The peer's authentication failed; the reason goes into the audit record, never to the peer."""


def select_connection(sa: IkeSa, peer: Identity, method: int | None,
                      another: bool = False, eap_only: bool = False) -> ConnectionSettings | None:
    """The connection for a peer's (literal) identity: exact > pattern > %any (docs/reference.md
    precedence). ``method`` None: no AUTH payload, the peer wants EAP (RFC 7296 §2.16); ``another``: it
    announced ANOTHER_AUTH_FOLLOWS (RFC 4739), so only a connection with a second round fits;
    ``eap_only``: it sent EAP_ONLY_AUTHENTICATION, without which no ``local.auth = "eap"`` connection fits
    (RFC 5998 §2)."""
    peer_id = peer.text
    best: ConnectionSettings | None = None
    best_rank = 0
    for conn in sa.ctx.connections.values():
        if conn.local.kind is AuthKind.EAP:
            continue  # we authenticate with EAP only as initiator
        if conn.local.kind is AuthKind.EAP_ONLY and (method is not None or not eap_only):
            continue
        if method is None:
            if conn.remote.kind is not AuthKind.EAP_RADIUS:
                continue
        elif conn.remote.kind is AuthKind.EAP_RADIUS or (
                (conn.remote.kind is AuthKind.PSK) != (method == AuthMethod.PSK)):
            continue
        if method is not None and another != (conn.remote2 is not None):
            continue
        configured = parse_identity(conn.remote.identity or "%any")
        if not configured.matches(peer):
            continue
        uses_inventory = any("%peer" in child.remote_ts for child in conn.children)
        if uses_inventory and (
            sa.ctx.peer_selectors is None or sa.ctx.peer_selectors.selectors_for(conn.name, peer_id) is None
        ):
            continue
        if best is None or int(configured.precedence) > best_rank:
            best, best_rank = conn, int(configured.precedence)
    return best


def _proposal_allowed(sa: IkeSa, conn: ConnectionSettings) -> bool:
    """The IKE_SA_INIT proposal (chosen from all connections) must be one the selected connection accepts."""
    from ikeguard.engine.proposals import choose_proposal
    from ikeguard.wire.sa import Proposal, SaPayload

    if sa.proposal is None:
        return False
    offer = SaPayload((Proposal.from_spec(1, sa.proposal),))
    return choose_proposal(sa.ctx.settings.profile, offer, conn.ike_proposals, "ike") is not None


def _our_auth(sa: IkeSa, id_body: bytes, message: bytes, peer_nonce: bytes, sk_p: bytes) -> AuthPayload:
    assert sa.conn is not None and sa.crypto is not None
    local = sa.conn.local
    octets = auth_signed_octets(message, peer_nonce, sa.crypto.prf_id, sk_p, id_body) + int_auth_octets(sa)
    if local.kind is AuthKind.PSK:
        return AuthPayload(AuthMethod.PSK, psk_auth(sa.crypto.prf_id, local.psk, octets))
    if local.private_key is None:
        raise TaskFailed("pubkey authentication configured without a private key")
    made = sa.sign_answer
    if made is not None and made.octets == octets:  # signed by the service's worker (token keys)
        sa.sign_answer = None
        if made.error:
            raise TaskFailed(f"cannot sign AUTH: {made.error}")
        return AuthPayload(AuthMethod.DIGITAL_SIGNATURE, made.data)
    try:
        scheme = _our_scheme(sa)
        data = sign_auth(local.private_key, octets, AuthMethod.DIGITAL_SIGNATURE, scheme)
    except CryptoError as exc:
        raise TaskFailed(f"cannot sign AUTH: {exc}") from None
    return AuthPayload(AuthMethod.DIGITAL_SIGNATURE, data)


def _our_scheme(sa: IkeSa) -> SignatureScheme:
    """The RFC 7427 scheme for our key and the hashes the peer announced (RFC 7427 §4)."""
    assert sa.conn is not None
    local = sa.conn.local
    if local.private_key is None:
        raise TaskFailed("pubkey authentication configured without a private key")
    theirs = sa.peer.signature_hashes or (HashAlgorithm.SHA2_256,)
    hash_alg = select_hash(local.private_key, announced_hashes(sa.ctx.settings.profile), theirs)
    return scheme_for(local.private_key, hash_alg, rsa_pss=local.rsa_pss)


def _sign_off_loop(sa: IkeSa) -> None:
    """Responder with a key that may block (a PKCS#11 token, ``off_loop``): ask the service to make our AUTH
    signature in a worker thread and wait for it like a revocation fetch (``engine.pending``); the request
    is processed again with the signature ready. Called before anything in ``process_r`` changes state."""
    assert sa.conn is not None and sa.crypto is not None
    local = sa.conn.local
    key = local.private_key
    if local.kind is not AuthKind.PUBKEY or key is None or not getattr(key, "off_loop", False):
        return
    cert = local.certs[0] if local.certs else None
    id_type, id_data = identity_payload(local.identity, cert)
    id_body = IdrPayload(id_type, id_data).encode_body()
    octets = auth_signed_octets(sa.init_response, sa.nonce_i, sa.crypto.prf_id, bytes(sa.crypto.keys.sk_pr),
                                id_body) + int_auth_octets(sa)
    made = sa.sign_answer
    if made is not None and made.octets == octets:
        return
    try:
        scheme = _our_scheme(sa)
    except CryptoError:
        return  # _our_auth reports it
    raise ValidationPending(SignRequest(key, octets, scheme))


def _our_id_and_certs(sa: IkeSa, msg: OutMessage, *, initiator: bool) -> bytes:
    assert sa.conn is not None
    local = sa.conn.local
    cert = local.certs[0] if local.certs else None
    id_type, id_data = identity_payload(local.identity, cert)
    id_payload: IdiPayload | IdrPayload = (
        IdiPayload(id_type, id_data) if initiator else IdrPayload(id_type, id_data)
    )
    msg.add(id_payload)
    sa.local_id = local.identity
    if local.kind is AuthKind.PUBKEY:
        for c in local.certs:
            msg.add(CertPayload(CertEncoding.X509_SIGNATURE, c.public_bytes(serialization.Encoding.DER)))
        if local.raw_public_key and local.private_key is not None:  # RFC 7670 §3: the SPKI, no certificate
            msg.add(CertPayload(CertEncoding.RAW_PUBLIC_KEY, spki_der(local.private_key.public_key())))
        ocsp_stapling.add_staple(sa, sa.conn, msg)  # RFC 4806 §3.2, when the peer asked
    return id_payload.encode_body()


def _peer_certs(msg: InMessage) -> list[x509.Certificate]:
    certs = []
    for payload in msg.get_all(CertPayload):
        if payload.encoding == CertEncoding.X509_SIGNATURE:
            try:
                certs.append(x509.load_der_x509_certificate(payload.data))
            except ValueError:
                raise AuthError("peer sent an unparsable certificate") from None
    return certs


def _peer_identity(
    msg: InMessage, initiator_id: bool, certs: list[x509.Certificate]
) -> tuple[Identity, bytes]:
    payload: IdiPayload | IdrPayload | None = msg.get(IdiPayload) if initiator_id else msg.get(IdrPayload)
    if payload is None:
        raise AuthError("no identification payload")
    try:
        ident = received_identity(int(payload.id_type), payload.data, certs[0] if certs else None)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthError(f"unusable identity: {exc}") from None
    return ident, payload.encode_body()


def verify_peer(
    sa: IkeSa,
    conn: ConnectionSettings,
    msg: InMessage,
    peer_id: str,
    id_body: bytes,
    certs: list[x509.Certificate],
    message: bytes,
    our_nonce: bytes,
    sk_p: bytes,
) -> None:
    """Check the peer's AUTH payload against the connection's requirements; raise AuthError."""
    assert sa.crypto is not None
    auth = msg.get(AuthPayload)
    if auth is None:
        raise AuthError("no AUTH payload")
    octets = auth_signed_octets(message, our_nonce, sa.crypto.prf_id, sk_p, id_body) + int_auth_octets(sa)
    if conn.remote.kind is AuthKind.PSK:
        if auth.method != AuthMethod.PSK:
            raise AuthError(f"expected PSK authentication, peer used {name_of(AuthMethod, int(auth.method))}")
        secret = conn.remote.psk or conn.local.psk
        expected = psk_auth(sa.crypto.prf_id, secret, octets)
        if not constant_time.bytes_eq(expected, auth.data):
            raise AuthError("pre-shared key mismatch (AUTH payload does not verify)")
        return
    if auth.method == AuthMethod.PSK:
        raise AuthError("expected public key authentication, peer used PSK")
    if conn.remote.pubkeys:
        _verify_raw_key(sa, conn, msg, auth, octets, certs)
        return
    if not certs:
        raise AuthError("peer sent no certificate")
    staples = ocsp_stapling.received(sa, conn, msg)  # RFC 4806 §3.2: the peer's OCSP responses
    try:
        verdict = validate_peer(sa.ctx.validator, certs, peer_id, conn.name, sa.now, staples)
    except FetchNeeded as need:  # no network I/O here: the exchange waits for the service's fetch
        raise ValidationPending(need.request) from None
    leaf = certs[0]
    sa.remote_cert_subject = leaf.subject.rfc4514_string()
    sa.remote_cert_serial = format(leaf.serial_number, "x")
    sa.remote_cert_issuer = leaf.issuer.rfc4514_string()
    stapled = {"ocsp_received": verdict.ocsp_stapled} if verdict.ocsp_stapled else {}
    sa.auth_details.update(stapled)
    if not verdict.accepted:
        # A revocation status that could not be obtained is its own audit event (INTERFACE.md).
        unavailable = verdict.reason.startswith("revocation_unavailable")
        sa.audit(EventName.REVOCATION_FAILED if unavailable else EventName.CERT_REJECTED,
                 Outcome.FAILURE, verdict.reason, **stapled)
        raise AuthError(f"certificate rejected: {verdict.reason}")
    not_after = verdict.not_after or leaf.not_valid_after_utc
    sa.remote_cert_not_after = not_after.replace(tzinfo=not_after.tzinfo or UTC).timestamp()
    sa.audit(EventName.CERT_VALIDATED, Outcome.SUCCESS,
             key_type=describe_key(leaf),  # the evidence pack's inventory
             not_after=leaf.not_valid_after_utc.isoformat(), **stapled)
    public_key = leaf.public_key()
    profile = sa.ctx.settings.profile
    try:
        verify_auth(
            _as_public_key(public_key),
            int(auth.method),
            auth.data,
            octets,
            allowed=allowed_signature_schemes(profile),
            announced=announced_hashes(profile),
        )
    except CryptoError as exc:
        raise AuthError(f"AUTH signature rejected: {exc}") from None


def _verify_raw_key(sa: IkeSa, conn: ConnectionSettings, msg: InMessage, auth: AuthPayload, octets: bytes,
                    certs: list[x509.Certificate]) -> None:
    """RFC 7670: the peer's key must be one the connection pins (``remote.pubkeys``); the key comes from a
    CERT payload of encoding 15, else its certificate (only the key counts), else the pinned key files."""
    raw = [p.data for p in msg.get_all(CertPayload) if p.encoding == CertEncoding.RAW_PUBLIC_KEY]
    offered = raw[0] if raw else None
    if offered is None and certs:
        offered = certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    profile = sa.ctx.settings.profile

    def verify(key: PublicKey) -> None:
        verify_auth(key, int(auth.method), auth.data, octets, allowed=allowed_signature_schemes(profile),
                    announced=announced_hashes(profile))

    try:
        pin = authenticate_raw(conn.remote.pubkeys, offered, verify)
    except RawKeyError as exc:
        raise AuthError(f"raw public key rejected: {exc}") from None
    sa.auth_details["raw_public_key"] = pin.text


def _as_public_key(key: object) -> PublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        return key
    raise AuthError("certificate key type cannot sign AUTH")


def tell_responder_auth_failed(sa: IkeSa) -> None:
    """We (initiator) refuse the responder's authentication: tell it, or it keeps an established IKE SA and
    its Child SAs until it notices otherwise (RFC 7296 §2.21.2: "If the error occurs on the initiator, the
    notification MAY be returned in a separate INFORMATIONAL exchange, usually with no other payloads";
    AUTHENTICATION_FAILED deletes the IKE SA without a Delete payload).

    The INFORMATIONAL request takes the next message ID (the IKE_AUTH response is in hand, so the window is
    free) and is protected by the new IKE SA's keys, which the responder holds. It is sent once and not
    retransmitted (our SA closes right after, as strongSwan's initiator does), so a lost datagram leaves the
    responder to its own DPD or to our next INITIAL_CONTACT. It names nothing of why we refused."""
    from ikeguard.engine.message import OutMessage

    if sa.crypto is None:
        return
    msg = OutMessage(ExchangeType.INFORMATIONAL, sa.window.allocate_id(), response=False)
    msg.add_notify(NotifyType.AUTHENTICATION_FAILED)
    sa.send_packets(sa.encode(msg))


def _responder_ppk(sa: IkeSa, conn: ConnectionSettings, msg: InMessage) -> InMessage:
    """RFC 8784 §3 at the responder: mix in the PPK the initiator named when we have it; otherwise verify its
    NO_PPK_AUTH instead of AUTH (the returned message carries it as the AUTH), unless we require the PPK."""
    assert sa.crypto is not None
    named = msg.notify(NotifyType.PPK_IDENTITY) if sa.use_ppk else None
    ppk = conn.ppk
    if named is not None and ppk is not None and parse_ppk_identity(named.data) == ppk.identity:
        apply_ppk(sa.crypto, ppk_keys(sa.crypto, ppk.key))
        sa.ppk_used = True
        return msg
    if ppk is not None and ppk.required:
        why = "no PPK_IDENTITY" if named is None else "a PPK identity we do not have"
        raise AuthError(f"connection {conn.name} requires a PPK (RFC 8784); the initiator sent {why}")
    if named is None:
        return msg
    fallback, auth = msg.notify(NotifyType.NO_PPK_AUTH), msg.get(AuthPayload)
    if fallback is None or auth is None:
        raise AuthError("the initiator uses a PPK we do not have and sent no NO_PPK_AUTH (RFC 8784 §3)")
    payloads = tuple(AuthPayload(auth.method, fallback.data) if p is auth else p for p in msg.payloads)
    return dataclasses.replace(msg, payloads=payloads)


class IkeAuthTask(Task):
    """Authenticates both ends; on success the IKE SA is established."""

    exchange = ExchangeType.IKE_AUTH
    ppk_keys: PpkKeys | None = None  # initiator: the PPK-mixed keys until the responder says it used them

    def signature_first(self, sa: IkeSa) -> SignRequest | None:
        """Initiator with a key that may block (a token, ``off_loop``): our AUTH signature over the
        IKE_SA_INIT request | Nr | prf(SK_pi, IDi') (RFC 7296 §2.15) is made by the service's worker before
        this request is built, which ``_our_auth`` then takes. With a PPK (RFC 8784 §3: two signatures) it is
        still made on the loop."""
        conn = sa.conn
        if conn is None or sa.crypto is None or (sa.use_ppk and conn.ppk is not None):
            return None
        local = conn.local
        key = local.private_key
        if local.kind is not AuthKind.PUBKEY or key is None or not getattr(key, "off_loop", False):
            return None
        id_type, id_data = identity_payload(local.identity, local.certs[0] if local.certs else None)
        id_body = IdiPayload(id_type, id_data).encode_body()
        octets = auth_signed_octets(sa.init_request, sa.nonce_r, sa.crypto.prf_id,
                                    bytes(sa.crypto.keys.sk_pi), id_body) + int_auth_octets(sa)
        made = sa.sign_answer
        if made is not None and made.octets == octets:
            return None
        try:
            scheme = _our_scheme(sa)
        except (CryptoError, TaskFailed):
            return None  # _our_auth reports it
        return SignRequest(key, octets, scheme)
    eap_rounds: eap_initiator.InitiatorRounds | None = None  # initiator: our EAP round (RFC 7296 §2.16)

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        assert sa.conn is not None and sa.crypto is not None
        if self.eap_rounds is not None and self.eap_rounds.phase != "first":
            eap_initiator.build(sa, self.eap_rounds, msg)  # a later request of our EAP round
            return
        id_body = _our_id_and_certs(sa, msg, initiator=True)
        remote = sa.conn.remote
        if remote.kind is AuthKind.PUBKEY and remote.send_certreq and not remote.pubkeys:
            data = certreq_data(sa.ctx.validator, sa.conn.name)
            msg.add(CertReqPayload(CertEncoding.X509_SIGNATURE, data))
            if ocsp_stapling.asks(sa.conn):  # RFC 4806 §4.1: the responder staples its OCSP response
                msg.add(ocsp_stapling.ocsp_certreq())
        if (
            sa.conn.unique != "never" and sa.replaces is None and sa.first_contact
        ):  # not on reauthentication (make-before-break)
            msg.add_notify(NotifyType.INITIAL_CONTACT)
        ppk = sa.conn.ppk if sa.use_ppk else None
        if sa.conn.local.kind is AuthKind.EAP:  # no AUTH: the responder starts EAP (RFC 7296 §2.16)
            if ppk is not None:
                raise TaskFailed("a PPK (RFC 8784) with our EAP authentication is not supported")
            self.eap_rounds = eap_initiator.start(sa, sa.conn.local, 1, id_body)
            if sa.conn.remote.kind is AuthKind.EAP_ONLY:  # RFC 5998 §2
                msg.add_notify(NotifyType.EAP_ONLY_AUTHENTICATION)
        elif ppk is not None:  # RFC 8784 §3: AUTH with the PPK, NO_PPK_AUTH without it when it is optional
            self.ppk_keys = ppk_keys(sa.crypto, ppk.key)
            msg.add(_our_auth(sa, id_body, sa.init_request, sa.nonce_r, self.ppk_keys.sk_pi))
            msg.add_notify(NotifyType.PPK_IDENTITY, ppk_identity_data(ppk.identity))
            if not ppk.required:
                plain = _our_auth(sa, id_body, sa.init_request, sa.nonce_r, bytes(sa.crypto.keys.sk_pi))
                msg.add_notify(NotifyType.NO_PPK_AUTH, plain.data)
        else:
            msg.add(_our_auth(sa, id_body, sa.init_request, sa.nonce_r, bytes(sa.crypto.keys.sk_pi)))
        second = sa.conn.local2
        if second is not None and sa.conn.local.kind is not AuthKind.EAP:  # RFC 4739 §3
            msg.add_notify(NotifyType.MULTIPLE_AUTH_SUPPORTED)
            msg.add_notify(NotifyType.ANOTHER_AUTH_FOLLOWS)
            self.eap_rounds = eap_initiator.start(sa, second, 2, b"")
        sa.transition(IkeTrigger.SEND_AUTH)

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        assert sa.conn is not None and sa.crypto is not None
        if self.eap_rounds is not None and self.eap_rounds.phase != "first":
            return eap_initiator.process(sa, self.eap_rounds, msg)
        failed = msg.notify(NotifyType.AUTHENTICATION_FAILED)
        if failed is not None:
            raise TaskFailed("peer rejected our authentication (AUTHENTICATION_FAILED)",
                             EventName.AUTH_FAILURE)
        if msg.get(AuthPayload) is None and self.eap_rounds is not None and \
                sa.conn.remote.kind is AuthKind.EAP_ONLY and msg.error_notify() is None:
            return self._eap_only_first(sa, msg, self.eap_rounds)
        if msg.get(AuthPayload) is None:
            error = msg.error_notify()
            what = name_of(NotifyType, int(error.notify_type)) if error else "no AUTH payload"
            raise TaskFailed(f"IKE_AUTH failed: {what}", EventName.AUTH_FAILURE)
        try:
            certs = _peer_certs(msg)
            peer, id_body = _peer_identity(msg, False, certs)
            peer_id = peer.text
            wanted = parse_identity(sa.conn.remote.identity or "%any")
            if not wanted.matches(peer):
                raise AuthError(f"peer identity {peer_id} does not match {sa.conn.remote.identity}")
            sa.remote_id = peer_id
            if self.ppk_keys is not None:
                if msg.notify(NotifyType.PPK_IDENTITY) is not None:
                    apply_ppk(sa.crypto, self.ppk_keys)
                    sa.ppk_used = True
                elif sa.conn.ppk is not None and sa.conn.ppk.required:
                    raise AuthError("responder did not use the PPK (no PPK_IDENTITY), ppk_required is set")
            verify_peer(
                sa,
                sa.conn,
                msg,
                peer_id,
                id_body,
                certs,
                sa.init_response,
                sa.nonce_i,
                bytes(sa.crypto.keys.sk_pr),
            )
        except (AuthError, ValueError) as exc:
            tell_responder_auth_failed(sa)
            raise TaskFailed(f"peer authentication failed: {exc}", EventName.AUTH_FAILURE) from None
        sa.peer.initial_contact = False
        if self.eap_rounds is not None:
            return eap_initiator.after_first(sa, self.eap_rounds, msg, id_body)
        redirect.note_auth_redirect(sa, msg)  # RFC 5685 §6, after the AUTH payload verified
        sa.established()
        redirect.follow_after_auth(sa)
        return Status.DONE

    def _eap_only_first(self, sa: IkeSa, msg: InMessage, rounds: eap_initiator.InitiatorRounds) -> Status:
        """RFC 5998 §2: the responder's first response has IDr and an EAP-Request but no AUTH; EAP-TLS will
        authenticate it (its server certificate must carry this IDr)."""
        assert sa.conn is not None
        try:
            peer, id_body = _peer_identity(msg, False, [])
            wanted = parse_identity(sa.conn.remote.identity or "%any")
            if not wanted.matches(peer):
                raise AuthError(f"peer identity {peer.text} does not match {sa.conn.remote.identity}")
        except AuthError as exc:
            tell_responder_auth_failed(sa)
            raise TaskFailed(f"peer authentication failed: {exc}", EventName.AUTH_FAILURE) from None
        sa.remote_id = peer.text
        sa.auth_details["eap_only"] = "yes"
        sa.peer.initial_contact = False
        return eap_initiator.after_first(sa, rounds, msg, id_body)

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        assert sa.crypto is not None
        if sa.intermediate is not None and not sa.intermediate.complete:
            raise RemoteProtocolError(
                f"IKE_AUTH before the additional key exchanges ({sa.intermediate.done} of "
                f"{len(sa.intermediate.methods)} done, RFC 9370 §2.2.2)", NotifyType.INVALID_SYNTAX,
                event=EventName.IKE_FAILED)
        if sa.rounds is not None:  # a later message of EAP / a second round (RFC 7296 §2.16, RFC 4739)
            try:
                eap_auth.process(sa, msg)
            except eap_auth.EapFailed as exc:
                raise RemoteProtocolError(f"peer authentication failed: {exc}",
                                          NotifyType.AUTHENTICATION_FAILED,
                                          event=EventName.AUTH_FAILURE) from None
            if sa.rounds.finished:
                redirect.decide_in_auth(sa)  # RFC 5685 §6: after the last round
            return
        auth = msg.get(AuthPayload)
        sa.peer_asks_ocsp = ocsp_stapling.peer_asks(msg)  # RFC 4806 §4.1: our response staples our status
        another = msg.notify(NotifyType.ANOTHER_AUTH_FOLLOWS) is not None
        eap_only = msg.notify(NotifyType.EAP_ONLY_AUTHENTICATION) is not None
        try:
            certs = _peer_certs(msg)
            peer, id_body = _peer_identity(msg, True, certs)
            peer_id = sa.remote_id = peer.text
            conn = select_connection(sa, peer, int(auth.method) if auth is not None else None, another,
                                     eap_only)
            if conn is None:
                if auth is None:
                    hint = "" if eap_only or not any(
                        c.local.kind is AuthKind.EAP_ONLY for c in sa.ctx.connections.values()) else (
                        ' (local auth = "eap" needs the peer\'s EAP_ONLY_AUTHENTICATION, RFC 5998 §2)')
                    raise AuthError(f"no AUTH payload and no EAP connection accepts identity {peer_id}{hint}")
                if another:
                    raise AuthError(f"peer announced another authentication round (ANOTHER_AUTH_FOLLOWS) "
                                    f"and no connection with a second round accepts identity {peer_id}")
                raise AuthError(f"no connection accepts identity {peer_id}")
            if not _proposal_allowed(sa, conn):
                raise AuthError(
                    f"IKE proposal {sa.proposal_text} negotiated before the identity was known "
                    f"is not allowed for connection {conn.name}"
                )
            sa.conn = conn
            msg = _responder_ppk(sa, conn, msg)
            if auth is not None:
                verify_peer(
                    sa,
                    conn,
                    msg,
                    peer_id,
                    id_body,
                    certs,
                    sa.init_request,
                    sa.nonce_r,
                    bytes(sa.crypto.keys.sk_pi),
                )
        except (AuthError, ValueError) as exc:
            raise RemoteProtocolError(
                f"peer authentication failed: {exc}", NotifyType.AUTHENTICATION_FAILED,
                event=EventName.AUTH_FAILURE,
            ) from None
        _sign_off_loop(sa)  # our signature, made off the loop for token keys
        sa.peer.initial_contact = msg.notify(NotifyType.INITIAL_CONTACT) is not None
        if auth is None:
            eap_auth.start(sa, (conn.remote,), eap_now=True, peer_id_body=id_body)
        elif conn.remote2 is not None:
            eap_auth.start(sa, (conn.remote2,), eap_now=False, peer_id_body=b"")
        else:
            redirect.decide_in_auth(sa)  # RFC 5685 §6: the peer is authenticated

    def build_r(self, sa: IkeSa, msg: OutMessage) -> None:
        assert sa.crypto is not None
        rounds = sa.rounds
        if rounds is None or rounds.first_response:
            try:
                id_body = _our_id_and_certs(sa, msg, initiator=False)
                assert sa.conn is not None
                if sa.conn.local.kind is not AuthKind.EAP_ONLY:  # RFC 5998 §2: EAP-only, no AUTH of ours
                    msg.add(_our_auth(sa, id_body, sa.init_response, sa.nonce_i,
                                      bytes(sa.crypto.keys.sk_pr)))
                if sa.ppk_used:
                    msg.add_notify(NotifyType.PPK_IDENTITY)  # RFC 8784 §3: the PPK was used
            except (TaskFailed, ValueError) as exc:
                raise RemoteProtocolError(
                    f"cannot authenticate ourselves: {exc}", NotifyType.AUTHENTICATION_FAILED
                ) from None
            if rounds is not None:
                rounds.first_response = False
                rounds.our_id_body = id_body
        if rounds is not None:
            eap_auth.build(sa, msg)
            if not rounds.finished:
                return
        redirect.add_in_auth(sa, msg)
        sa.established()
