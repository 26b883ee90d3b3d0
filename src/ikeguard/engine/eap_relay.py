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
