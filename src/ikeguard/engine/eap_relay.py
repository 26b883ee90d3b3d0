"""What the engine asks of a RADIUS server and what it gets back, method-agnostically (RFC 3579 §3).

The engine never speaks RADIUS: an EAP-Response from the peer becomes an ``EapRelayRequest`` (User-Name,
the EAP message, the RADIUS ``State`` of the previous challenge, who is calling), carried out of the engine
by a ``RadiusRound`` output; the service's RADIUS client (``service/radius.py``) sends it as an
Access-Request and turns the answer into an ``EapRelayAnswer``. Key material (the MSK from
MS-MPPE-Recv-Key | MS-MPPE-Send-Key, RFC 2548 §2.4.2-3 / RFC 3748 §7.10) is ``repr=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ikeguard.engine.settings import RemoteAuth


class RelayOutcome(Enum):
    """How a RADIUS round ended."""

    CHALLENGE = "challenge"  # Access-Challenge: relay the EAP-Request to the peer
    ACCEPT = "accept"  # Access-Accept: EAP-Success, the MSK binds the AUTH payload
    REJECT = "reject"  # Access-Reject: EAP-Failure
    UNREACHABLE = "unreachable"  # no valid answer from any server (timeouts, bad authenticators)


@dataclass(frozen=True)
class EapRelayRequest:
    """One Access-Request of an EAP conversation (RFC 3579 §2.1)."""

    user_name: str
    eap_message: bytes = field(repr=False)
    state: bytes = field(default=b"", repr=False)
    calling_station: str = ""  # the peer's address (Calling-Station-Id)
    called_station: str = ""  # our address (Called-Station-Id)
    nas_port: int = 0  # the IKE SA's unique id
    connection: str = ""


@dataclass(frozen=True)
class EapRelayAnswer:
    """The outcome of one RADIUS round, as the engine needs it."""

    outcome: RelayOutcome
    eap_message: bytes = field(default=b"", repr=False)
    state: bytes = field(default=b"", repr=False)
    msk: bytes = field(default=b"", repr=False)
    server: str = ""  # "address:port" of the server that answered (or the last one tried)
    reason: str = ""  # why UNREACHABLE / REJECT, for the audit record (never a secret)
    user_class: tuple[str, ...] = ()  # Class attributes (RFC 2865 §5.25), as text
    filter_id: tuple[str, ...] = ()  # Filter-Id (RFC 2865 §5.11)
    framed_ip: str = ""  # Framed-IP-Address (RFC 2865 §5.8)


@dataclass
class AuthRounds:
    """Responder state across the IKE_AUTH messages of one IKE SA."""

    rounds: tuple[RemoteAuth, ...]  # what each round after the first requires
    first_round: int = 2  # the number of ``rounds[0]`` (1 when round 1 itself is EAP)
    index: int = 0  # the round in progress (0 = the first of ``rounds``)
    phase: str = "await_id"  # await_id -> identity_sent -> relaying -> await_auth -> done
    our_id_body: bytes = b""  # our IDr payload body (our AUTH in the last response signs it)
    peer_id_body: bytes = b""  # the IDi body of this round (the peer's AUTH signs it)
    first_response: bool = True  # the next response is the first: IDr, CERT, AUTH of round 1
    identifier: int = 0  # EAP Identifier of our last request
    outgoing: bytes = field(default=b"", repr=False)  # EAP message for the next response
    identity: str = ""
    state: bytes = field(default=b"", repr=False)
    server: str = ""
    method: str = ""
    msk: bytes = field(default=b"", repr=False)
    final_auth: bytes = field(default=b"", repr=False)

    @property
    def current(self) -> RemoteAuth:
        return self.rounds[self.index]

    @property
    def finished(self) -> bool:
        """All rounds done: the final response carries our AUTH and the Child SA."""
        return self.phase == "done"
