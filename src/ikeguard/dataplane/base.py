"""The one data-plane interface the service drives (ARCHITECTURE ``dataplane/``).

A backend installs ESP SAs (one direction each, RFC 4301 §4.4.2), keeps the policies/routes that send the
Child SA's remote selectors into it (fail closed: the route stays while no SA is installed, packets are
dropped and counted, never sent in the clear), reports per-SA counters, and raises upcalls (lifetimes,
sequence number near overflow, install failures) as :data:`DataPlaneEvent` values delivered to the
callbacks registered with ``subscribe``.

Which SA an operation means (issue 13 S3): an inbound SPI is ours (RFC 4301 §4.1: the receiver chooses it)
and unique in a backend, but an outbound SPI is chosen by the peer, so two peers may choose the same one, by
chance or on purpose (it is visible on the wire). An SA is therefore named by its Child SA's unique id, its
direction and its SPI, never by the SPI alone: ``delete_sa``, ``counters`` and ``update_sa_addresses`` take
the Child SA (``child_uniqueid`` / ``children``), and an operation on one peer's SA never reaches another
peer's SA with the same outbound SPI. Without it (standalone tools, tests) an SPI must name exactly one SA of
that direction; an ambiguous one is refused with :class:`DataPlaneError`, never guessed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Container, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ikeguard.crypto.zeroize import wipe
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.endpoint import Direction, Endpoint, IpAddress

_CHACHA20_POLY1305 = 28  # EncrId.CHACHA20_POLY1305


SaDirection = Direction  # one definition for the engine and the data plane (wire/endpoint.py)
SaEndpoint = Endpoint


def random_inbound_spi(in_use: Container[int]) -> int:
    """A random inbound SPI that no installed inbound SA uses, never 0-255 (RFC 4303 §2.1: reserved); the
    one allocation rule of the planes that choose SPIs themselves (the userspace table, "none")."""
    while True:
        spi = secrets.randbelow(0xFFFFFFFF - 256) + 256
        if spi not in in_use:
            return spi


class DataPlaneError(Exception):
    """A data-plane operation failed (bad SA description, unsupported transform, OS error)."""


class _EndpointLike(Protocol):
    @property
    def address(self) -> IpAddress: ...

    @property
    def port(self) -> int: ...


class _DirectionLike(Protocol):
    @property
    def value(self) -> str: ...


class _SaSpecLike(Protocol):
    """One direction's algorithms, keys, endpoints and selectors (``engine.events.ChildSaSpec``)."""

    @property
    def spi(self) -> int: ...
    @property
    def encr_id(self) -> int: ...
    @property
    def encr_key_bits(self) -> int: ...
    @property
    def integ_id(self) -> int: ...
    @property
    def esn(self) -> bool: ...
    @property
    def encr_key(self) -> bytes | bytearray: ...
    @property
    def integ_key(self) -> bytes | bytearray: ...
    @property
    def source(self) -> _EndpointLike: ...
    @property
    def destination(self) -> _EndpointLike: ...
    @property
    def encap(self) -> bool: ...
    @property
    def mode(self) -> str: ...
    @property
    def replay_window(self) -> int: ...
    @property
    def local_ts(self) -> tuple[TrafficSelector, ...]: ...
    @property
    def remote_ts(self) -> tuple[TrafficSelector, ...]: ...
    @property
    def seq_out(self) -> int: ...
    @property
    def replay_top(self) -> int: ...


class InstallRequest(Protocol):
    """What ``SaConfig.from_install`` reads of the engine's ``InstallChildSa`` output: stated here so the data
    plane does not import the engine (docs/architecture.md, layers)."""

    @property
    def ike_uniqueid(self) -> int: ...
    @property
    def child_uniqueid(self) -> int: ...
    @property
    def child_name(self) -> str: ...
    @property
    def direction(self) -> _DirectionLike: ...
    @property
    def sa(self) -> _SaSpecLike: ...
    @property
    def rekey_bytes(self) -> int: ...
    @property
    def life_bytes(self) -> int: ...
    @property
    def rekey_packets(self) -> int: ...
    @property
    def life_packets(self) -> int: ...


def _endpoint(endpoint: _EndpointLike) -> SaEndpoint:
    """The engine's (immutable) endpoint itself when it is one (no copy per SA), else a copy."""
    return endpoint if isinstance(endpoint, SaEndpoint) else SaEndpoint(endpoint.address, endpoint.port)


@dataclass(frozen=True, slots=True)  # slots: two per Child SA (issue 22, memory per SA)
class SaConfig:
    """Everything needed to install one direction of an ESP SA (RFC 4303, RFC 3948 when ``encap``)."""

    spi: int
    direction: SaDirection
    encr_id: int
    encr_key_bits: int | None
    integ_id: int
    # cipher key || salt for AEADs (RFC 5282 §7.1, RFC 7634 §2). The data plane owns these buffers and wipes
    # them when it deletes the SA (wipe_keys; docs/key-hygiene.md); bytes given here are copied into one.
    encr_key: bytearray = field(repr=False)
    integ_key: bytearray = field(repr=False)
    source: SaEndpoint  # outer source of packets on this SA
    destination: SaEndpoint
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    esn: bool = False
    encap: bool = True
    mode: str = "tunnel"
    replay_window: int = 32
    ike_uniqueid: int = 0
    child_uniqueid: int = 0
    child_name: str = ""
    soft_bytes: int = 0  # 0 = no limit
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0
    # An SA taken over from another node (HA, docs/ha.md): outbound sequence numbers continue after
    # ``seq_out`` (RFC 4303 §3.3.3), the inbound replay window starts at ``replay_top`` (§3.4.3).
    seq_out: int = 0
    replay_top: int = 0

    def __post_init__(self) -> None:
        for name in ("encr_key", "integ_key"):  # callers passing bytes (tests, tools) get an owned copy
            if not isinstance(getattr(self, name), bytearray):
                object.__setattr__(self, name, bytearray(getattr(self, name)))

    def wipe_keys(self) -> None:
        """Zero the keys in place: the SA is gone from the data plane (copies made by ``dataclasses.replace``
        share these buffers, so they are wiped too)."""
        wipe(self.encr_key, self.integ_key)

    @classmethod
    def from_install(cls, event: InstallRequest) -> SaConfig:
        """Translate the engine's ``InstallChildSa`` output into a data-plane SA description."""
        sa = event.sa
        return cls(
            spi=sa.spi,
            direction=SaDirection(event.direction.value),
            encr_id=sa.encr_id,
            # ChaCha20-Poly1305 has no Key Length attribute (RFC 7634 §2); the engine reports its 256 bits
            encr_key_bits=None if sa.encr_id == _CHACHA20_POLY1305 else (sa.encr_key_bits or None),
            integ_id=sa.integ_id,
            encr_key=_owned(sa.encr_key),  # the engine made these copies for us: take them over
            integ_key=_owned(sa.integ_key),
            source=_endpoint(sa.source),
            destination=_endpoint(sa.destination),
            local_ts=sa.local_ts,
            remote_ts=sa.remote_ts,
            esn=sa.esn,
            encap=sa.encap,
            mode=sa.mode,
            replay_window=sa.replay_window,
            ike_uniqueid=event.ike_uniqueid,
            child_uniqueid=event.child_uniqueid,
            child_name=event.child_name,
            soft_bytes=event.rekey_bytes,
            hard_bytes=event.life_bytes,
            soft_packets=event.rekey_packets,
            hard_packets=event.life_packets,
            seq_out=sa.seq_out,
            replay_top=sa.replay_top,
        )


def _owned(key: bytes | bytearray) -> bytearray:
    return key if isinstance(key, bytearray) else bytearray(key)


@dataclass
class SaCounters:
    """Per-SA traffic and drop counters (shown by ``ikeguard sas``)."""

    bytes: int = 0  # inner (plaintext) octets
    packets: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # reason -> count

    def drop(self, reason: str) -> None:
        """Count one dropped packet under ``reason``."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able form."""
        return {"bytes": self.bytes, "packets": self.packets, "drops": dict(self.drops)}


@dataclass(frozen=True)
class DataPlaneFeatures:
    """What a backend can do: the gateway offers only ESP transforms listed here (ARCHITECTURE rule 4)."""

    name: str
    encr: frozenset[tuple[int, int | None]]  # (ENCR id, key bits)
    integ: frozenset[int]
    udp_encap: bool  # ESP in UDP (RFC 3948)
    esn: bool
    transport_mode: bool
    moves_packets: bool  # False for ``none``: nothing is carried
    raw_esp: bool = True  # ESP as IP protocol 50 (no NAT between the peers)


@dataclass(frozen=True)
class LifetimeReached:
    """An SA reached its soft (rekey) or hard (delete) byte/packet lifetime (RFC 4301 §4.4.2.1)."""

    spi: int
    direction: SaDirection
    hard: bool
    kind: str  # "bytes" | "packets"
    child_uniqueid: int = 0


@dataclass(frozen=True)
class SequenceNearOverflow:
    """An outbound SA's sequence number is close to (``hard=False``) or at (``hard=True``) its limit:
    rekey now; at the limit the SA sends nothing more (RFC 4303 §3.3.3, no cycling)."""

    spi: int
    hard: bool
    child_uniqueid: int = 0


@dataclass(frozen=True)
class InstallFailed:
    """``add_sa`` could not install the SA; the engine gets this back as an input (ARCHITECTURE rule 2)."""

    spi: int
    direction: SaDirection
    reason: str
    child_uniqueid: int = 0


DataPlaneEvent = LifetimeReached | SequenceNearOverflow | InstallFailed
EventCallback = Callable[[DataPlaneEvent], None]


if TYPE_CHECKING:
    import asyncio
    import socket


class IkeShare(Protocol):
    """A backend's own NAT-T socket that carries IKE too (RFC 3948 §2.2: four zero octets before IKE): the
    service reads IKE from it through ``on_ike`` and sends through ``send_ike``/``send_keepalive``."""

    sock: socket.socket
    on_ike: Callable[[bytes, tuple[str, int]], None]

    def send_ike(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send an IKE message (the backend adds the non-ESP marker)."""
        ...

    def send_keepalive(self, addr: tuple[str, int]) -> None:
        """Send a NAT keepalive (RFC 3948 §2.3)."""
        ...


class DataPlane(Protocol):
    """The interface every backend implements; the service calls only these (it never asks which backend
    it has: what differs is behind ``prepare_ike_socket`` and ``ike_shares``)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin moving packets and delivering upcalls on ``loop``."""
        ...

    def close(self) -> None:
        """Stop moving packets and release what the backend reads from."""
        ...

    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """Make one of the service's IKE sockets (``natt``: the port-4500 one) fit this backend. Kernel ESP:
        IKE bypasses the IPsec policies and the NAT-T socket decapsulates ESP-in-UDP (RFC 3948)."""
        ...

    def ike_shares(self) -> Sequence[IkeShare]:
        """The backend's own NAT-T sockets that carry IKE as well (none unless it owns port 4500)."""
        ...

    @property
    def features(self) -> DataPlaneFeatures:
        """Capabilities of this backend."""
        ...

    def alloc_spi(self) -> int:
        """A fresh inbound SPI (never 0-255, RFC 4303 §2.1), unique among this backend's inbound SAs."""
        ...

    def add_sa(self, sa: SaConfig) -> None:
        """Install one direction; on failure raise :class:`DataPlaneError` and emit :class:`InstallFailed`.
        Make-before-break: adding an outbound SA for selectors that already have one switches outbound
        traffic to the new SA atomically; the old one stays until ``delete_sa``."""
        ...

    def update_sa_addresses(
        self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint, encap: bool,
        children: Collection[int] | None = None,
    ) -> None:
        """Move the listed SAs (both directions) to new outer endpoints (NAT-T switch, MOBIKE); with
        ``children``, only SAs of those Child SAs (another peer's SA with one of these SPIs stays put)."""
        ...

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Remove one direction of the Child SA ``child_uniqueid``; returns its final counters (None when
        it has no such SA). Routes stay (fail closed)."""
        ...

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Route/trap ``remote_ts`` into the data plane; with no SA installed, matching traffic is dropped."""
        ...

    def remove_policy(self, child_uniqueid: int) -> None:
        """Remove the routes/traps of a Child SA that is gone for good (connection unloaded)."""
        ...

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """A snapshot of one SA's counters (of the Child SA ``child_uniqueid`` when given)."""
        ...

    def subscribe(self, callback: EventCallback) -> None:
        """Deliver upcalls to ``callback`` (called in the service's thread/loop)."""
        ...
