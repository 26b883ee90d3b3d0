"""RFC 5685 redirect: a gateway sends its IKE peer to another gateway.

* The initiator announces support with REDIRECT_SUPPORTED in IKE_SA_INIT (§3), or REDIRECTED_FROM (the
  gateway that redirected it, §4) when it follows a redirect; a gateway never redirects a peer that did
  neither (§3, §5).
* A responder redirects in the IKE_SA_INIT response (:func:`read_init_request`, from ``[gateway]
  redirect_to``): only a REDIRECT notify whose Nonce Data is the initiator's Ni (§3), no state kept.
* A responder redirects an authenticated peer in the (last) IKE_AUTH response when its connection has
  ``redirect_to`` (§6): REDIRECT without nonce data instead of SA/TSi/TSr (:func:`add_in_auth`).
* On an established IKE SA the gateway sends an INFORMATIONAL request with REDIRECT (§5, no nonce data,
  :class:`RedirectTask`, what ``swanctl --redirect`` triggers); the client sets up an IKE SA with the new
  gateway and deletes this one. If it has not after ``REDIRECT_GRACE`` seconds the gateway deletes it.
* As initiator we follow a REDIRECT in the IKE_SA_INIT response only when its nonce data is our Ni (§8
  security: an off-path attacker does not know Ni); anything else is ignored and the exchange goes on.

The notify data (§10): GW Ident Type (1 IPv4, 2 IPv6, 3 FQDN), GW Ident Len, the identity, Nonce Data.
Hand-written: no Python IKE library offers it and it is 20 lines of struct handling.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from ikeguard.audit.events import EventName, Outcome
from ikeguard.engine.errors import RemoteProtocolError
from ikeguard.engine.events import Endpoint
from ikeguard.engine.tasks.base import Status, Task, TaskFailed
from ikeguard.engine.timers import Timer
from ikeguard.wire.iana import ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikeguard.engine.ike_sa import IkeSa
    from ikeguard.engine.message import InMessage, OutMessage

IPV4, IPV6, FQDN = 1, 2, 3  # RFC 5685 §10 Gateway Identity Types
REDIRECT_GRACE = 30.0  # seconds the redirected client has to delete the old IKE SA itself (§5)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class RedirectError(ValueError):
    """A gateway identity that cannot be encoded or a REDIRECT notify that does not parse."""


def gateway_identity(text: str) -> tuple[int, bytes]:
    """(type, octets) of a new gateway given as an IPv4/IPv6 address or an FQDN (RFC 5685 §10)."""
    text = text.strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        name = text.rstrip(".")
        if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
            raise RedirectError(f"{text!r} is neither an IP address nor a host name") from None
        return FQDN, name.encode("ascii")
    return (IPV4 if addr.version == 4 else IPV6), addr.packed


def encode(gateway: str, nonce: bytes = b"") -> bytes:
    """REDIRECT (with ``nonce`` in IKE_SA_INIT) or REDIRECTED_FROM notify data."""
    kind, ident = gateway_identity(gateway)
    return bytes((kind, len(ident))) + ident + nonce


def decode(data: bytes) -> tuple[str, bytes]:
    """(gateway text, nonce data) of a REDIRECT/REDIRECTED_FROM notify; RedirectError when malformed."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        raise RedirectError("truncated gateway identity")
    kind, length = data[0], data[1]
    ident, nonce = data[2:2 + length], data[2 + length:]
    if (kind, length) in ((IPV4, 4), (IPV6, 16)):
        return str(ipaddress.ip_address(ident)), nonce
    if kind == FQDN and length:
        try:
            name = ident.decode("ascii")
            gateway_identity(name)
        except (UnicodeDecodeError, RedirectError):
            raise RedirectError("gateway FQDN is not a host name") from None
        return name, nonce
    raise RedirectError(f"gateway identity type {kind} with {length} octets")


def announce(sa: IkeSa, msg: OutMessage) -> None:
    """Initiator, IKE_SA_INIT: REDIRECTED_FROM after a redirect, else REDIRECT_SUPPORTED (§3, §4)."""
    if sa.redirected_from:
        msg.add_notify(NotifyType.REDIRECTED_FROM, encode(sa.redirected_from))
    else:
        msg.add_notify(NotifyType.REDIRECT_SUPPORTED)


def read_init_request(sa: IkeSa, msg: InMessage) -> None:
    """Responder, IKE_SA_INIT: note the peer's support (and where it was redirected from, audited); when
    ``[gateway] redirect_to`` applies, refuse with REDIRECT carrying the initiator's nonce (§3)."""
    came_from = msg.notify(NotifyType.REDIRECTED_FROM)
    sa.peer.redirect = came_from is not None or msg.notify(NotifyType.REDIRECT_SUPPORTED) is not None
    if came_from is not None:
        try:
            origin, _ = decode(came_from.data)
        except RedirectError as exc:
            raise RemoteProtocolError(f"malformed REDIRECTED_FROM: {exc}",
                                      NotifyType.INVALID_SYNTAX) from None
        sa.redirected_from = origin
        sa.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS,
                 f"peer redirected here by {origin} (REDIRECTED_FROM)",
                 direction="in", gateway=origin)
    settings = sa.ctx.settings
    if not settings.redirect_to or not sa.peer.redirect or came_from is not None:
        return  # never redirect again a peer that was just redirected here (no loops)
    count = sa.ctx.ike_sa_count() if sa.ctx.ike_sa_count is not None else 0
    if settings.redirect_above and count <= settings.redirect_above:
        return
    why = (f"{count} IKE SAs, more than redirect_above = {settings.redirect_above}"
           if settings.redirect_above else "redirect_to is set")
    sa.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS,
             f"new peer redirected to {settings.redirect_to} in IKE_SA_INIT ({why})",
             direction="out", gateway=settings.redirect_to, exchange="IKE_SA_INIT")
    raise RemoteProtocolError(f"redirected to {settings.redirect_to}", NotifyType.REDIRECT,
                              encode(settings.redirect_to, sa.nonce_i), event=EventName.IKE_REDIRECTED)


def follow_init_redirect(sa: IkeSa, msg: InMessage) -> bool:
    """Initiator, IKE_SA_INIT response with REDIRECT: True when the SA now targets the new gateway and must
    send IKE_SA_INIT again; False when the notify is to be ignored (malformed, not our Ni); TaskFailed when
    it is authentic but cannot be followed (an FQDN: the engine has no resolver; a second redirect)."""
    notify = msg.notify(NotifyType.REDIRECT)
    if notify is None:
        return False
    try:
        gateway, nonce = decode(notify.data)
    except RedirectError as exc:
        sa.trace_drop(f"malformed REDIRECT ignored: {exc}")
        return False
    if nonce != sa.nonce_i:  # RFC 5685 §3/§8: only the responder that saw our Ni may redirect us
        sa.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE,
                 f"REDIRECT to {gateway} ignored: nonce data is not our Ni",
                 direction="in", gateway=gateway)
        return False
    why = "redirected a second time" if sa.redirected_from else ""
    try:
        address = ipaddress.ip_address(gateway)
    except ValueError:
        why = why or "a host name (the engine resolves no names)"
    if why:  # authentic (our Ni) but not followed: this attempt ends
        sa.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE, f"REDIRECT to {gateway} not followed: {why}",
                 direction="in", gateway=gateway)
        raise TaskFailed(f"redirected by {sa.remote.address} to {gateway}, not followed: {why}")
    origin = str(sa.remote.address)
    sa.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS, f"redirected by {origin} to {gateway} in IKE_SA_INIT",
             direction="in", gateway=gateway)
    sa.redirected_from = origin
    sa.remote = Endpoint(address, sa.remote.port)
    return True


def decide_in_auth(sa: IkeSa) -> None:
    """Responder, IKE_AUTH with the peer authenticated: redirect it when its connection has
    ``redirect_to`` and it announced support (a peer that was just redirected here is not sent on)."""
    if sa.conn is not None and sa.conn.redirect_to and sa.peer.redirect and not sa.redirected_from:
        sa.redirect_in_auth = sa.conn.redirect_to


def add_in_auth(sa: IkeSa, msg: OutMessage) -> None:
    """Responder, last IKE_AUTH response: REDIRECT (no nonce data) instead of SA/TSi/TSr (RFC 5685 §6);
    the client deletes the IKE SA, or we do after ``REDIRECT_GRACE`` seconds."""
    if not sa.redirect_in_auth:
        return
    msg.add_notify(NotifyType.REDIRECT, encode(sa.redirect_in_auth))
    sa.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS,
             f"authenticated peer redirected to {sa.redirect_in_auth} "
             f"(connection redirect_to)", direction="out", gateway=sa.redirect_in_auth, exchange="IKE_AUTH")
    sa.timers[Timer.REDIRECT_EXPIRE] = sa.now + REDIRECT_GRACE


def note_auth_redirect(sa: IkeSa, msg: InMessage) -> None:
    """Initiator, IKE_AUTH response whose AUTH verified: a REDIRECT instead of a Child SA (§6) is followed
    once the SA is up (:func:`follow_after_auth`); our Child SA is not expected from this gateway."""
    notify = msg.notify(NotifyType.REDIRECT)
    if notify is None:
        return
    try:
        sa.redirect_in_auth = decode(notify.data)[0]
    except RedirectError as exc:
        sa.trace_drop(f"malformed REDIRECT in IKE_AUTH ignored: {exc}")


def follow_after_auth(sa: IkeSa) -> None:
    """Initiator: start the IKE SA with the gateway named in IKE_AUTH; this one goes once that is up."""
    if sa.redirect_in_auth and sa.ctx.redirect_hook is not None:
        sa.ctx.redirect_hook(sa, sa.redirect_in_auth, "IKE_AUTH")


class RedirectFollower(Task):
    """Initiator of the IKE SA, INFORMATIONAL request with REDIRECT (§5): an empty answer, then an IKE SA
    with the new gateway (REDIRECTED_FROM); this one is deleted when that one is up."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.gateway = ""

    def process_r(self, sa: IkeSa, msg: InMessage) -> None:
        notify = msg.notify(NotifyType.REDIRECT)
        try:
            self.gateway, nonce = decode(notify.data) if notify is not None else ("", b"")
        except RedirectError as exc:
            sa.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE, f"malformed REDIRECT ignored: {exc}",
                     direction="in", exchange="INFORMATIONAL")
            return
        if nonce:
            sa.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE,
                     "REDIRECT with nonce data outside IKE_SA_INIT ignored", direction="in",
                     gateway=self.gateway, exchange="INFORMATIONAL")
            self.gateway = ""

    def completed(self, sa: IkeSa) -> None:
        if self.gateway and sa.ctx.redirect_hook is not None:
            sa.ctx.redirect_hook(sa, self.gateway, "INFORMATIONAL")


class RedirectTask(Task):
    """INFORMATIONAL with REDIRECT to an established peer (RFC 5685 §5); the old IKE SA is deleted by the
    client, or by us after ``REDIRECT_GRACE`` seconds."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, gateway: str, reason: str) -> None:
        self.gateway = gateway
        self.reason = reason

    def build_i(self, sa: IkeSa, msg: OutMessage) -> None:
        msg.add_notify(NotifyType.REDIRECT, encode(self.gateway))

    def process_i(self, sa: IkeSa, msg: InMessage) -> Status:
        sa.audit(EventName.IKE_REDIRECTED, Outcome.SUCCESS,
                 f"peer redirected to {self.gateway} ({self.reason})",
                 direction="out", gateway=self.gateway, exchange="INFORMATIONAL")
        sa.timers[Timer.REDIRECT_EXPIRE] = sa.now + REDIRECT_GRACE
        return Status.DONE

    def aborted(self, sa: IkeSa, reason: str) -> None:
        sa.audit(EventName.IKE_REDIRECTED, Outcome.FAILURE,
                 f"redirect to {self.gateway} not acknowledged: {reason}",
                 direction="out", gateway=self.gateway, exchange="INFORMATIONAL")
