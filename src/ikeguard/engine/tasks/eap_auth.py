"""EAP authentication relayed to RADIUS, as responder, and multiple authentication rounds (RFC 7296 §2.16,
RFC 4739, RFC 3579).

Round 1 is the peer's certificate or PSK (``ike_auth``) or, without an AUTH payload, EAP directly; with
``remote-2`` the peer announces ANOTHER_AUTH_FOLLOWS and, once our first response (IDr, CERT, AUTH) is
out, starts round 2 with an IDi alone. An EAP round: we send EAP-Request/Identity, then relay every
EAP-Response to RADIUS and every EAP-Request of the server back to the peer, method-agnostically (TLS, TTLS,
PEAP, MSCHAPv2, ...: the RADIUS server runs the method). An Access-Accept ends it with EAP-Success and the
MSK (MS-MPPE-Recv-Key | MS-MPPE-Send-Key); the peer's next message is its AUTH over the IKE_SA_INIT request,
our nonce and its round's IDi keyed with the MSK (RFC 7296 §2.16: without an MSK, SK_pi/SK_pr), and our
answer is our AUTH keyed the same way with the Child SA. A RADIUS round never blocks: the exchange parks
(``RelayPending``, engine/pending.py) until the service's answer comes back.

EAP-only authentication (RFC 5998), ``local.auth = "eap"``: the peer sent EAP_ONLY_AUTHENTICATION and our
first response carries IDr without CERT and AUTH; the EAP method must then authenticate us too and give the
MSK that keys both final AUTH payloads. Since the RADIUS server runs the method, the method is the type of
the peer's last EAP-Response, and an Access-Accept for a method not in ``MUTUAL_METHODS`` (RFC 5998 §4: MD5,
GTC, MSCHAPv2 prove nothing of the server or resist no offline dictionary attack), or without an MSK, is
refused as AUTHENTICATION_FAILED.

An Access-Reject, no RADIUS answer, an EAP identity the connection does not allow or a wrong final AUTH is
AUTHENTICATION_FAILED; the audit reason names the EAP identity and the RADIUS server.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import constant_time

from ikeguard.crypto.keymat import auth_signed_octets, psk_auth
from ikeguard.engine.eap_relay import AuthRounds, EapRelayRequest, RelayOutcome
from ikeguard.engine.errors import RelayPending
from ikeguard.engine.settings import AuthKind, RemoteAuth
from ikeguard.engine.tasks.ike_intermediate import int_auth_octets
from ikeguard.policy.identity import parse_identity, parse_peer_identity
from ikeguard.wire.iana import AuthMethod
from ikeguard.wire.payloads import AuthPayload, EapPayload, IdiPayload

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
EAP_IDENTITY, EAP_NAK = 1, 3
EAP_METHODS = {4: "md5", 6: "gtc", 13: "tls", 18: "sim", 21: "ttls", 23: "aka", 25: "peap", 26: "mschapv2",
               43: "fast", 46: "pax", 47: "psk", 48: "sake", 49: "ikev2", 50: "aka-prime", 51: "gpsk",
               52: "pwd", 53: "eke", 55: "teap"}
# mutual and key-generating (RFC 5998 §4, strongSwan's is_mutual); MSCHAPv2, MD5 and GTC are not
MUTUAL_METHODS = frozenset({"tls", "sim", "ttls", "aka", "peap", "fast", "pax", "psk", "sake", "ikev2",
                            "aka-prime", "gpsk", "pwd", "eke", "teap"})


class EapFailed(Exception):
    """The EAP round failed; the reason (naming the user) goes into the audit record."""


def start(sa: IkeSa, rounds: tuple[RemoteAuth, ...], *, eap_now: bool, peer_id_body: bytes) -> None:
    """Rounds remain after the first IKE_AUTH request: ``eap_now`` when round 1 itself is EAP (no AUTH)."""
    state = AuthRounds(rounds, first_round=1 if eap_now else 2)
    sa.rounds = state
    if eap_now:
        state.peer_id_body = peer_id_body
        if sa.conn is not None and sa.conn.local.kind is AuthKind.EAP_ONLY:
            sa.auth_details["eap_only"] = "yes"
        _request_identity(sa, state)


def _request_identity(sa: IkeSa, state: AuthRounds) -> None:
    state.identifier = sa.ctx.random.bytes(1)[0]
    state.outgoing = struct.pack("!BBHB", EAP_REQUEST, state.identifier, 5, EAP_IDENTITY)
    state.phase = "identity_sent"
    sa.auth_details["round"] = str(state.first_round + state.index)


def _fail(sa: IkeSa, state: AuthRounds, why: str) -> EapFailed:
    who = f"EAP user {state.identity!r}" if state.identity else "EAP peer (no identity yet)"
    via = f" via RADIUS {state.server}" if state.server else ""
    return EapFailed(f"{who}{via}: {why}")


def process(sa: IkeSa, msg: InMessage) -> None:
    """A later IKE_AUTH request of the rounds in progress; raise EapFailed to refuse."""
    state = sa.rounds
    assert state is not None and sa.crypto is not None
    if state.phase == "await_id":
        idi = msg.get(IdiPayload)
        if idi is None or msg.get(AuthPayload) is not None:
            raise _fail(sa, state, "round 2 must start with an IDi payload alone (RFC 4739 §3)")
        state.peer_id_body = idi.encode_body()
        _request_identity(sa, state)
        return
    if state.phase == "await_auth":
        auth = msg.get(AuthPayload)
        if auth is None or auth.method != AuthMethod.PSK:
            raise _fail(sa, state, "no shared-key AUTH after EAP-Success (RFC 7296 §2.16)")
        key = state.msk or bytes(sa.crypto.keys.sk_pi)
        octets = auth_signed_octets(sa.init_request, sa.nonce_r, sa.crypto.prf_id,
                                    bytes(sa.crypto.keys.sk_pi), state.peer_id_body) + int_auth_octets(sa)
        if not constant_time.bytes_eq(psk_auth(sa.crypto.prf_id, key, octets), auth.data):
            raise _fail(sa, state, "AUTH payload does not verify with the EAP MSK")
        ours = auth_signed_octets(sa.init_response, sa.nonce_i, sa.crypto.prf_id,
                                  bytes(sa.crypto.keys.sk_pr), state.our_id_body) + int_auth_octets(sa)
        state.final_auth = psk_auth(sa.crypto.prf_id, state.msk or bytes(sa.crypto.keys.sk_pr), ours)
        state.msk = b""
        state.phase = "done"
        return
    _relay(sa, state, msg)


def _relay(sa: IkeSa, state: AuthRounds, msg: InMessage) -> None:
    """An EAP-Response from the peer: to RADIUS (parking the exchange), or the answer that came back."""
    answer, sa.relay_answer = sa.relay_answer, None
    eap = msg.get(EapPayload)
    if eap is None or eap.code != EAP_RESPONSE:
        raise _fail(sa, state, "expected an EAP-Response payload")
    data = eap.data
    if answer is None:
        if state.phase == "identity_sent":
            if len(data) < 5 or data[4] != EAP_IDENTITY:
                raise _fail(sa, state, "expected EAP-Response/Identity")
            identity = data[5:].decode("utf-8", "replace")
            state.identity = identity
            sa.auth_details["eap_identity"] = identity
            wanted = state.current.eap_id
            if wanted and wanted != "%any":
                try:
                    allowed = parse_identity(wanted).matches(parse_peer_identity(identity))
                except ValueError:
                    allowed = False
                if not allowed:
                    raise _fail(sa, state, f"EAP identity does not match eap_id {wanted}")
        elif len(data) >= 5 and data[4] not in (EAP_IDENTITY, EAP_NAK):
            state.method = EAP_METHODS.get(data[4], str(data[4]))
            sa.auth_details["eap_method"] = state.method
        request = EapRelayRequest(state.identity, data, state.state, calling_station=str(sa.remote.address),
                                  called_station=str(sa.local.address), nas_port=sa.uniqueid,
                                  connection=sa.name)
        raise RelayPending(request, state.server)
    state.server = answer.server or state.server
    if state.server:
        sa.auth_details["radius_server"] = state.server
    if answer.outcome is RelayOutcome.CHALLENGE:
        if len(answer.eap_message) < 4 or answer.eap_message[0] != EAP_REQUEST:
            raise _fail(sa, state, "Access-Challenge without an EAP-Request")
        state.state = answer.state
        state.outgoing = answer.eap_message
        state.phase = "relaying"
        return
    if answer.outcome is RelayOutcome.ACCEPT:
        if sa.conn is not None and sa.conn.local.kind is AuthKind.EAP_ONLY:  # RFC 5998 §4
            if state.method not in MUTUAL_METHODS:
                raise _fail(sa, state, f"EAP-only authentication (RFC 5998) needs a mutual EAP method, "
                                       f"{state.method or 'none'} is not")
            if not answer.msk:
                raise _fail(sa, state, "EAP-only authentication (RFC 5998) needs an MSK, RADIUS sent none")
        state.msk = answer.msk
        state.outgoing = (answer.eap_message if answer.eap_message[:1] == bytes([EAP_SUCCESS])
                          else struct.pack("!BBH", EAP_SUCCESS, data[1], 4))
        state.phase = "await_auth"
        sa.eap_identity = state.identity
        if answer.framed_ip:
            try:
                sa.framed_ip = ipaddress.ip_address(answer.framed_ip)
            except ValueError:
                sa.framed_ip = None
        if answer.user_class:
            sa.auth_details["radius_class"] = ",".join(answer.user_class)
        _select_group(sa, state, tuple(dict.fromkeys((*answer.user_class, *answer.filter_id))))
        return
    if answer.outcome is RelayOutcome.REJECT:
        raise _fail(sa, state, f"RADIUS {answer.reason or 'Access-Reject'}")
    raise _fail(sa, state, answer.reason or "RADIUS unreachable")


def _select_group(sa: IkeSa, state: AuthRounds, names: tuple[str, ...]) -> None:
    """With ``groups`` configured the user must be in one: the first group named by Class or Filter-Id."""
    groups = sa.conn.groups if sa.conn is not None else ()
    if not groups:
        return
    for name in names:
        group = next((g for g in groups if g.name == name), None)
        if group is not None:
            sa.group = group
            sa.auth_details["group"] = group.name
            return
    raise _fail(sa, state, f"in no configured group (RADIUS Class/Filter-Id: {', '.join(names) or 'none'})")


def build(sa: IkeSa, msg: OutMessage) -> None:
    """Our payloads for a later IKE_AUTH response (EAP message, or the final AUTH)."""
    state = sa.rounds
    assert state is not None
    if state.phase == "done":
        msg.add(AuthPayload(AuthMethod.PSK, state.final_auth))
        return
    if state.phase in ("identity_sent", "relaying", "await_auth") and state.outgoing:
        msg.add(EapPayload(state.outgoing))
        state.outgoing = b""
