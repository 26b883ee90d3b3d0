"""RADIUS client for EAP relay and accounting (RFC 2865, RFC 3579, RFC 2866), off the event loop.

Built on ``pyrad`` (maintained; packet encoding, User-Password/salt encryption, retransmission with the
same Identifier, Message-Authenticator on every request and its verification on replies). What pyrad
does not do is added here: failover across an ordered list of servers (RFC 2865 §2.6 leaves it to the
NAS; a conversation's follow-up requests go first to the server that issued its State), refusing any
Access-* reply without a Message-Authenticator with the reason kept for the audit record (BlastRADIUS,
CVE-2024-3596: pyrad's ``enforce_ma`` drops such a reply silently, so the outcome would only read as a
timeout), EAP-Message fragmentation into 253-octet attributes (RFC 3579 §3.1), and the MSK from
MS-MPPE-Recv-Key | MS-MPPE-Send-Key (RFC 2548 §2.4.2-3; pyrad decrypts them with the dictionary's
``encrypt=2``). A server with ``tls`` is reached over RADIUS over TLS (RFC 6614) instead of UDP: pyrad's
packets on ``service/radsec.py``'s transport.

``RadiusRelay`` runs ``RadiusClient.authenticate`` in a bounded thread pool (as
``service/revocation_fetch.py`` does for CRL fetches) and delivers the answer on the event loop to
``IkeManager.radius_answered``; beyond ``max_pending`` rounds a request is answered UNREACHABLE at once.
Secrets never reach a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyrad import packet as rpacket
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary

from ikeguard.engine.eap_relay import EapRelayAnswer, EapRelayRequest, RelayOutcome
from ikeguard.engine.events import RadiusRound
from ikeguard.service.radsec import RADSEC_SECRET, ConnectionPool, TlsSettings, tls_send

log = logging.getLogger(__name__)

MESSAGE_AUTHENTICATOR = 80
EAP_MESSAGE = 79
NAS_PORT_TYPE_VIRTUAL = 5  # RFC 2865 §5.41
SERVICE_TYPE_FRAMED = 2  # RFC 2865 §5.6

# The attributes ikeguard sends or reads (RFC 2865, 2866, 2869, 3162, 3579; RFC 2548 vendor 311).
_DICTIONARY = """
ATTRIBUTE User-Name 1 string
ATTRIBUTE User-Password 2 string encrypt=1
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE NAS-Port 5 integer
ATTRIBUTE Service-Type 6 integer
ATTRIBUTE Framed-IP-Address 8 ipaddr
ATTRIBUTE Filter-Id 11 string
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE State 24 octets
ATTRIBUTE Class 25 octets
ATTRIBUTE Session-Timeout 27 integer
ATTRIBUTE Called-Station-Id 30 string
ATTRIBUTE Calling-Station-Id 31 string
ATTRIBUTE NAS-Identifier 32 string
ATTRIBUTE Proxy-State 33 octets
ATTRIBUTE Acct-Status-Type 40 integer
VALUE Acct-Status-Type Start 1
VALUE Acct-Status-Type Stop 2
VALUE Acct-Status-Type Interim-Update 3
ATTRIBUTE Acct-Delay-Time 41 integer
ATTRIBUTE Acct-Input-Octets 42 integer
ATTRIBUTE Acct-Output-Octets 43 integer
ATTRIBUTE Acct-Session-Id 44 string
ATTRIBUTE Acct-Session-Time 46 integer
ATTRIBUTE Acct-Input-Packets 47 integer
ATTRIBUTE Acct-Output-Packets 48 integer
ATTRIBUTE Acct-Terminate-Cause 49 integer
ATTRIBUTE NAS-Port-Type 61 integer
ATTRIBUTE EAP-Message 79 octets
ATTRIBUTE Message-Authenticator 80 octets
VENDOR Microsoft 311
BEGIN-VENDOR Microsoft
ATTRIBUTE MS-MPPE-Send-Key 16 octets encrypt=2
ATTRIBUTE MS-MPPE-Recv-Key 17 octets encrypt=2
END-VENDOR Microsoft
"""


def radius_dictionary() -> Dictionary:
    """The dictionary of the attributes above (pyrad reads it from a file object)."""
    return Dictionary(io.StringIO(_DICTIONARY))


@dataclass(frozen=True)
class RadiusServer:
    """One server: where it listens and the shared secret (from a file, never logged)."""

    address: str
    secret: bytes = field(repr=False)
    auth_port: int = 1812
    acct_port: int = 1813
    tls: TlsSettings | None = None  # RADIUS over TLS (RFC 6614, service/radsec.py) instead of UDP
    context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)  # built from ``tls``

    @property
    def name(self) -> str:
        """``address:auth_port`` (RadSec: ``address:port/tls``) for audit records."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.tls.port}/tls" if self.tls is not None else f"{host}:{self.auth_port}"


class _StrictClient(Client):  # type: ignore[misc]  # pyrad has no type hints
    """pyrad's client with ``enforce_ma`` that remembers why a reply was discarded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.discarded = ""

    def _VerifyReply(self, pkt: Any, reply: Any, rawreply: bytes, authenticators: Any) -> Any:
        valid, authenticator = super()._VerifyReply(pkt, reply, rawreply, authenticators)
        if not valid:
            has_ma = OrderedDict.__contains__(reply, MESSAGE_AUTHENTICATOR)
            if pkt.code == rpacket.AccessRequest and not has_ma:
                self.discarded = "reply without Message-Authenticator refused (BlastRADIUS, CVE-2024-3596)"
            else:
                self.discarded = "reply with a wrong Response Authenticator or Message-Authenticator refused"
        return valid, authenticator


class _TlsClient(_StrictClient):
    """The same client over RadSec: pyrad's packets, ``service.radsec``'s transport (one try per server)."""

    def __init__(self, server: RadiusServer, budget: float, pool: ConnectionPool, **kwargs: Any) -> None:
        super().__init__(server.address, secret=RADSEC_SECRET, **kwargs)
        assert server.tls is not None and server.context is not None
        self._tls, self._context, self._budget, self._pool = server.tls, server.context, budget, pool

    def _SendPacket(self, pkt: Any, port: int) -> Any:
        return tls_send(self, pkt, self._context, self._tls, self._budget, self._pool)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class RadiusClient:
    """Blocking RADIUS exchanges with failover; run it in a worker thread (``RadiusRelay``)."""

    def __init__(self, servers: Sequence[RadiusServer], *, timeout: float = 2.0, retries: int = 3,
                 nas_identifier: str = "ikeguard") -> None:
        if not servers:
            raise ValueError("at least one RADIUS server is needed")
        self.servers = tuple(servers)
        self.timeout = timeout
        self.retries = retries
        self.nas_identifier = nas_identifier
        self._dict = radius_dictionary()
        self.tls_pool = ConnectionPool()  # RadSec connections kept open between requests

    def _client(self, server: RadiusServer) -> _StrictClient:
        if server.tls is not None:
            return _TlsClient(server, self.timeout * self.retries, self.tls_pool, dict=self._dict, retries=1,
                              timeout=self.timeout, enforce_ma=True)
        return _StrictClient(server.address, authport=server.auth_port, acctport=server.acct_port,
                             secret=server.secret, dict=self._dict, retries=self.retries,
                             timeout=self.timeout, enforce_ma=True)

    def _order(self, preferred: str) -> list[RadiusServer]:
        first = [s for s in self.servers if s.name == preferred]
        return first + [s for s in self.servers if s.name != preferred]

    def authenticate(self, request: EapRelayRequest, preferred: str = "") -> EapRelayAnswer:
        """One Access-Request carrying ``request``'s EAP message; the first valid answer wins."""
        problems: list[str] = []
        last = ""
        for server in self._order(preferred):
            last = server.name
            client = self._client(server)
            try:
                pkt = client.CreateAuthPacket(code=rpacket.AccessRequest)
                pkt["User-Name"] = request.user_name
                eap = request.eap_message
                for start in range(0, max(len(eap), 1), 253):
                    pkt.AddAttribute("EAP-Message", eap[start:start + 253])
                if request.state:
                    pkt["State"] = request.state
                pkt["NAS-Identifier"] = self.nas_identifier
                pkt["NAS-Port"] = request.nas_port
                pkt["NAS-Port-Type"] = NAS_PORT_TYPE_VIRTUAL
                pkt["Service-Type"] = SERVICE_TYPE_FRAMED
                if request.calling_station:
                    pkt["Calling-Station-Id"] = request.calling_station
                if request.called_station:
                    pkt["Called-Station-Id"] = request.called_station
                reply = client.SendPacket(pkt)
            except Timeout:
                problems.append(f"{server.name}: {client.discarded or 'no answer'}")
                continue
            except OSError as exc:
                problems.append(f"{server.name}: {exc.strerror or type(exc).__name__}")
                continue
            finally:
                client._CloseSocket()
            return self._answer(server, reply)
        return EapRelayAnswer(RelayOutcome.UNREACHABLE, server=last,
                              reason="no valid RADIUS answer: " + "; ".join(problems))

    @staticmethod
    def _answer(server: RadiusServer, reply: Any) -> EapRelayAnswer:
        eap = b"".join(OrderedDict.get(reply, EAP_MESSAGE, []))
        state = b"".join(OrderedDict.get(reply, 24, []))
        common = {"eap_message": eap, "state": state, "server": server.name}
        if reply.code == rpacket.AccessChallenge:
            return EapRelayAnswer(RelayOutcome.CHALLENGE, **common)  # type: ignore[arg-type]
        reply_message = "; ".join(_text(v) for v in reply.get("Reply-Message", []))
        if reply.code != rpacket.AccessAccept:
            reason = "Access-Reject" + (f": {reply_message}" if reply_message else "")
            return EapRelayAnswer(RelayOutcome.REJECT, reason=reason, **common)  # type: ignore[arg-type]
        recv = reply.get("MS-MPPE-Recv-Key", [b""])[0]
        send = reply.get("MS-MPPE-Send-Key", [b""])[0]
        return EapRelayAnswer(
            RelayOutcome.ACCEPT,
            msk=bytes(recv) + bytes(send),
            user_class=tuple(_text(v) for v in reply.get("Class", [])),
            filter_id=tuple(_text(v) for v in reply.get("Filter-Id", [])),
            framed_ip=str(reply.get("Framed-IP-Address", [""])[0]),
            **common,  # type: ignore[arg-type]
        )


    def account(self, attributes: dict[str, Any]) -> str:
        """One Accounting-Request (RFC 2866) with ``attributes`` (dictionary names); the first server that
        answers wins. Returns its name, "" when none answered."""
        for server in self.servers:
            client = self._client(server)
            try:
                pkt = client.CreateAcctPacket(code=rpacket.AccountingRequest)
                pkt["NAS-Identifier"] = self.nas_identifier
                for key, value in attributes.items():
                    pkt[key] = value
                client.SendPacket(pkt)
            except (Timeout, OSError):
                continue
            finally:
                client._CloseSocket()
            return server.name if server.tls is not None else f"{server.address}:{server.acct_port}"
        return ""


Deliver = Callable[[RadiusRound, EapRelayAnswer], None]


class RadiusRelay:
    """Runs the engine's ``RadiusRound`` requests in worker threads and delivers the answers on the loop."""

    def __init__(self, deliver: Deliver, client: RadiusClient | None, *, workers: int = 4,
                 max_pending: int = 64) -> None:
        self._deliver = deliver
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ikeguard-radius")
        self._max_pending = max_pending
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Rounds queued or running."""
        return self._pending

    def submit(self, event: RadiusRound, loop: asyncio.AbstractEventLoop) -> None:
        """Start the round ``event`` asks for; ``deliver`` is called on ``loop`` when it ends."""
        if self._client is None or self._closed or self._pending >= self._max_pending:
            why = ("no [radius] servers configured" if self._client is None
                   else f"{self._pending} RADIUS rounds already pending" if not self._closed else "stopping")
            log.warning("RADIUS round for IKE SA %d refused: %s", event.ike_uniqueid, why)
            loop.call_soon(self._deliver, event, EapRelayAnswer(RelayOutcome.UNREACHABLE, reason=why))
            return
        self._pending += 1
        client = self._client
        started = time.monotonic()
        future = loop.run_in_executor(self._pool, client.authenticate, event.request, event.server)

        def done(fut: asyncio.Future[EapRelayAnswer]) -> None:
            self._pending -= 1
            if fut.cancelled() or fut.exception() is not None:
                error = "cancelled" if fut.cancelled() else type(fut.exception()).__name__
                answer = EapRelayAnswer(RelayOutcome.UNREACHABLE, reason=f"RADIUS client error: {error}")
            else:
                answer = fut.result()
            log.info("RADIUS round for IKE SA %d: %s from %s in %.2fs", event.ike_uniqueid,
                     answer.outcome.value, answer.server or "-", time.monotonic() - started)
            self._deliver(event, answer)

        future.add_done_callback(done)

    def account(self, attributes: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        """Send an accounting record in a worker thread (fire and forget: a lost record is logged)."""
        if self._client is None or self._closed:
            return
        client = self._client
        what = f"{attributes.get('Acct-Status-Type')} for {attributes.get('User-Name')}"

        def sent(fut: asyncio.Future[str]) -> None:
            server = "" if fut.cancelled() or fut.exception() is not None else fut.result()
            if server:
                log.info("RADIUS accounting %s sent to %s", what, server)
            else:
                log.warning("RADIUS accounting %s not acknowledged by any server", what)

        loop.run_in_executor(self._pool, client.account, attributes).add_done_callback(sent)

    def close(self) -> None:
        """Stop taking rounds; running ones end by their own timeout."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.tls_pool.close()
