"""The engine's outputs (frozen dataclasses), consumed by the service in the order they are emitted.

Order is the contract (ARCHITECTURE rule 2): an inbound Child SA is installed before the message that lets the
peer use it is sent; an outbound SA only once the peer has confirmed it. Key material is ``repr=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ikeguard.audit.events import AuditEvent as AuditEvent  # one record type from engine to store
from ikeguard.engine.eap_relay import EapRelayRequest
from ikeguard.engine.states import ChildState, IkeState
from ikeguard.pki.fetch import FetchRequest
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.endpoint import Direction as Direction  # defined once for engine and data plane
from ikeguard.wire.endpoint import Endpoint as Endpoint
from ikeguard.wire.endpoint import IpAddress as IpAddress


@dataclass(frozen=True)
class SendDatagram:
    """Send ``data`` (one IKE message, no non-ESP marker: the service adds it on its NAT-T socket)."""

    data: bytes = field(repr=False)
    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class SendNatKeepalive:
    """Send a one-octet 0xFF NAT keepalive from ``local`` to ``remote`` (RFC 3948 §2.3)."""

    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class ChildSaSpec:
    """What the data plane needs for one direction of an ESP SA."""

    spi: int
    encr_id: int
    encr_key_bits: int
    integ_id: int
    esn: bool
    encr_key: bytearray = field(repr=False)  # a copy for the data plane, which wipes it (docs/key-hygiene.md)
    integ_key: bytearray = field(repr=False)
    source: Endpoint = field(compare=False)
    destination: Endpoint = field(compare=False)
    encap: bool = False
    mode: str = "tunnel"
    replay_window: int = 32
    local_ts: tuple[TrafficSelector, ...] = ()
    remote_ts: tuple[TrafficSelector, ...] = ()
    # An SA taken over from another node (HA, docs/ha.md): outbound numbers continue after ``seq_out``
    # (RFC 4303 §3.3.3: never reused), the inbound replay window starts at ``replay_top`` (§3.4.3).
    # 0: a fresh SA.
    seq_out: int = 0
    replay_top: int = 0


@dataclass(frozen=True)
class InstallChildSa:
    """Install one direction of a Child SA in the data plane."""

    ike_uniqueid: int
    child_uniqueid: int
    child_name: str
    direction: Direction
    sa: ChildSaSpec
    proposal: str
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0


@dataclass(frozen=True)
class DeleteChildSa:
    """Remove one direction of a Child SA from the data plane."""

    ike_uniqueid: int
    child_uniqueid: int
    direction: Direction
    spi: int
    reason: str


@dataclass(frozen=True)
class UpdateSaAddresses:
    """The IKE SA's addresses changed (NAT-T switch, MOBIKE): move its Child SAs to the new endpoints."""

    ike_uniqueid: int
    local: Endpoint
    remote: Endpoint
    encap: bool
    child_spis: tuple[tuple[int, int], ...]  # (spi_in, spi_out) per installed Child SA


@dataclass(frozen=True)
class IkeSaStateChanged:
    """An IKE SA moved from ``old`` to ``new``."""

    ike_uniqueid: int
    connection: str
    old: IkeState
    new: IkeState
    reason: str = ""


@dataclass(frozen=True)
class ChildSaStateChanged:
    """A Child SA moved from ``old`` to ``new``."""

    ike_uniqueid: int
    child_uniqueid: int
    child_name: str
    old: ChildState
    new: ChildState
    reason: str = ""


@dataclass(frozen=True)
class DatagramDropped:
    """A datagram the engine ignored (malformed, forged, unknown SPI, over a limit): for logs and metrics,
    deliberately not an audit record, so a flood of garbage cannot flood the tamper-evident trail."""

    reason: str
    remote: str
    ike_uniqueid: int = 0


@dataclass(frozen=True)
class SignRequest:
    """Our AUTH signature to make off the event loop (a key in a PKCS#11 token may block): ``key`` signs
    ``octets`` with ``scheme`` (RFC 7427)."""

    key: Any = field(repr=False)
    octets: bytes = field(repr=False)
    scheme: Any = None


@dataclass(frozen=True)
class SignAnswer:
    """The worker's result for a ``SignRequest``: the AUTH data, or ``error`` (one line)."""

    octets: bytes = field(repr=False)
    data: bytes = field(default=b"", repr=False)
    error: str = ""


@dataclass(frozen=True)
class SignatureJob:
    """The service makes ``request``'s signature in a worker thread and calls
    ``IkeManager.signature_made(ike_uniqueid, token, answer, now)``; meanwhile that SA's IKE_AUTH waits."""

    ike_uniqueid: int
    token: int
    request: SignRequest


@dataclass(frozen=True)
class RevocationFetch:
    """Certificate validation of IKE SA ``ike_uniqueid`` waits for a CRL or OCSP answer (docs/pki.md).

    The service fetches ``request`` off the event loop and calls ``IkeManager.revocation_fetched(ike_uniqueid,
    token, body, now)`` (``body`` None: failed). Meanwhile that SA's exchange waits (the peer's retransmits
    are absorbed) and every other SA goes on; without an answer by ``EngineSettings.revocation_timeout``
    the engine treats the fetch as failed and the revocation policy decides."""

    ike_uniqueid: int
    token: int
    request: FetchRequest


@dataclass(frozen=True)
class RadiusRound:
    """The EAP conversation of IKE SA ``ike_uniqueid`` waits for a RADIUS server (RFC 3579).

    The service sends ``request`` as an Access-Request off the event loop (``service/radius.py``; first to
    ``server``, the one whose State the request carries) and calls
    ``IkeManager.radius_answered(ike_uniqueid, token, answer, now)``. Meanwhile the IKE_AUTH exchange waits
    as for a revocation fetch (engine/pending.py)."""

    ike_uniqueid: int
    token: int
    request: EapRelayRequest
    server: str = ""


EngineEvent = (
    SendDatagram
    | SignatureJob
    | SendNatKeepalive
    | InstallChildSa
    | DeleteChildSa
    | UpdateSaAddresses
    | IkeSaStateChanged
    | ChildSaStateChanged
    | AuditEvent
    | DatagramDropped
    | RevocationFetch
    | RadiusRound
)
