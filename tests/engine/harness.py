"""Two IkeManagers wired in memory: an injected clock, deterministic randomness, and a network that can
drop, duplicate, reorder or NAT-translate datagrams. Outputs are recorded per side for assertions."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.events import (
    AuditEvent,
    DatagramDropped,
    Endpoint,
    EngineEvent,
    InstallChildSa,
    SendDatagram,
)
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.retransmit import RetransmitPolicy
from ikeguard.engine.settings import (
    AuthKind,
    ChildSettings,
    ConnectionSettings,
    EngineSettings,
    LocalAuth,
    RemoteAuth,
)
from ikeguard.engine.validator import CertificateValidator
from ikeguard.wire.iana import ProtocolId
from ikeguard.wire.proposal_string import parse_proposals

A_ADDR = ipaddress.ip_address("192.0.2.1")
B_ADDR = ipaddress.ip_address("198.51.100.1")
NAT_PUBLIC = ipaddress.ip_address("203.0.113.5")
PSK = b"correct horse battery staple 2026"

Filter = Callable[[SendDatagram, str], list[SendDatagram]]


def ike(*texts: str) -> tuple:  # type: ignore[type-arg]
    return parse_proposals(list(texts), ProtocolId.IKE)


def esp(*texts: str) -> tuple:  # type: ignore[type-arg]
    return parse_proposals(list(texts), ProtocolId.ESP)


def child(
    name: str = "net",
    local_ts: tuple[str, ...] = ("10.1.0.0/24",),
    remote_ts: tuple[str, ...] = ("10.2.0.0/24",),
    proposals: tuple[str, ...] = ("aes256gcm16-ecp256",),
    **kw: object,
) -> ChildSettings:
    return ChildSettings(name, local_ts, remote_ts, esp(*proposals), **kw)  # type: ignore[arg-type]


def psk_conn(
    name: str,
    local_id: str,
    remote_id: str | None,
    children: tuple[ChildSettings, ...],
    ike_proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-ecp256",),
    **kw: object,
) -> ConnectionSettings:
    return ConnectionSettings(
        name,
        ike(*ike_proposals),
        LocalAuth(AuthKind.PSK, local_id, psk=PSK),
        RemoteAuth(AuthKind.PSK, remote_id, psk=PSK),
        children,
        **kw,  # type: ignore[arg-type]
    )


def mirror(c: ChildSettings) -> ChildSettings:
    return replace(c, local_ts=c.remote_ts, remote_ts=c.local_ts)


FAST = EngineSettings(retransmit=RetransmitPolicy(tries=3, timeout=2.0, base=1.8), raise_internal_errors=True)


@dataclass
class Side:
    name: str
    manager: IkeManager
    endpoint: Endpoint
    events: list[EngineEvent] = field(default_factory=list)

    def audits(self, name: str | None = None) -> list[AuditEvent]:
        return [e for e in self.events if isinstance(e, AuditEvent) and (name is None or e.event == name)]

    def drops(self) -> list[str]:
        return [e.reason for e in self.events if isinstance(e, DatagramDropped)]

    def installs(self) -> list[InstallChildSa]:
        return [e for e in self.events if isinstance(e, InstallChildSa)]


class Network:
    """Delivers datagrams between two managers; ``filter`` may drop/duplicate/rewrite them."""

    def __init__(self, a: IkeManager, b: IkeManager, *, nat_a: bool = False) -> None:
        self.a = Side("a", a, Endpoint(A_ADDR, 500))
        self.b = Side("b", b, Endpoint(B_ADDR, 500))
        self.now = 0.0
        self.nat_a = nat_a
        self.filter: Filter | None = None
        self.in_flight: list[tuple[str, SendDatagram]] = []
        self.delivered = 0

    def nat(self, ep: Endpoint) -> Endpoint:
        # a sits behind a NAT: its private endpoint appears as NAT_PUBLIC with a mapped port
        return Endpoint(NAT_PUBLIC, 40000 + ep.port) if self.nat_a and ep.address == A_ADDR else ep

    def unnat(self, ep: Endpoint) -> Endpoint:
        if self.nat_a and ep.address == NAT_PUBLIC:
            return Endpoint(A_ADDR, ep.port - 40000)
        return ep

    def collect(self) -> None:
        for side in (self.a, self.b):
            for event in side.manager.events():
                side.events.append(event)
                if isinstance(event, SendDatagram):
                    out = [event] if self.filter is None else self.filter(event, side.name)
                    self.in_flight.extend((side.name, e) for e in out)

    def run(self, limit: int = 200) -> None:
        """Deliver until nothing is in flight (no time passes)."""
        self.collect()
        steps = 0
        while self.in_flight and steps < limit:
            sender, dgram = self.in_flight.pop(0)
            steps += 1
            self.deliver(sender, dgram)
            self.collect()

    def deliver(self, sender: str, dgram: SendDatagram) -> None:
        self.delivered += 1
        if sender == "a":
            src = self.nat(dgram.local)
            self.b.manager.receive_datagram(dgram.data, dgram.remote, src, self.now)
        else:
            dst = self.unnat(dgram.remote)
            self.a.manager.receive_datagram(dgram.data, dst, dgram.local, self.now)

    def advance(self, seconds: float, *, step: float | None = None) -> None:
        """Let time pass, firing timers on both sides and delivering what they send."""
        end = self.now + seconds
        for _ in range(10_000):
            timers = [t for t in (self.a.manager.get_timer(), self.b.manager.get_timer()) if t is not None]
            nxt = min(timers) if timers else None
            if nxt is None or nxt > end:
                break
            self.now = max(self.now, nxt)
            self.a.manager.handle_timer(self.now)
            self.b.manager.handle_timer(self.now)
            self.run()
        else:
            raise AssertionError(
                f"timers keep firing at {self.now}: {self.a.manager.get_timer()}, "
                f"{self.b.manager.get_timer()}"
            )
        self.now = end

    def initiate(self, conn: str = "tunnel", **kw: object) -> int:
        uid = self.a.manager.initiate(
            conn, local=self.a.endpoint, remote=self._nat_target(), now=self.now, **kw
        )  # type: ignore[arg-type]
        return uid

    def _nat_target(self) -> Endpoint:
        return self.b.endpoint


def pair(
    a_conns: list[ConnectionSettings],
    b_conns: list[ConnectionSettings],
    *,
    seed: int = 1,
    settings: EngineSettings = FAST,
    b_settings: EngineSettings | None = None,
    validator: CertificateValidator | None = None,
    peer_selectors: object = None,
    nat_a: bool = False,
) -> Network:
    a = IkeManager(a_conns, settings, random=DeterministicRandom(seed), validator=validator)
    b = IkeManager(
        b_conns,
        b_settings or settings,
        random=DeterministicRandom(seed + 1000),
        validator=validator,
        peer_selectors=peer_selectors,
    )  # type: ignore[arg-type]
    return Network(a, b, nat_a=nat_a)


def psk_pair(**kw: object) -> Network:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    return pair([a], [b], **kw)  # type: ignore[arg-type]
