"""Issue 13 S3 in the engine: a peer-chosen ESP SPI that another Child SA already uses.

Two peers (P1, P2) and one gateway engine, wired in memory. Both peers run with the same deterministic
random source, so both choose the same inbound SPI for their Child SA: the gateway's outbound SPI towards
each of them is the same (as when a peer copies another peer's SPI from the wire). The gateway's outputs
are applied to a real userspace ``SaTable`` as the service applies them (``SaConfig.from_install``,
``delete_sa`` with the Child SA): both tunnels carry packets, and after P1 deletes its Child SA only P1's
traffic stops, nothing is sealed with P1's deleted keys, and P2's tunnel keeps working.

Within one IKE SA a repeated peer SPI is refused (RFC 7296 §3.11 Delete and §3.10.1 REKEY_SA name a Child
SA by it), as responder (NO_PROPOSAL_CHOSEN, audited ``child.failed``) and as initiator (the Child SA fails
and its half at the peer is deleted); the existing Child SA is untouched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.dataplane.base import SaConfig, SaDirection
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.engine.child_sa import ChildSa
from ikeguard.engine.events import (
    AuditEvent,
    DeleteChildSa,
    Direction,
    Endpoint,
    EngineEvent,
    InstallChildSa,
    SendDatagram,
)
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import ChildSettings
from ikeguard.engine.states import ChildState
from ikeguard.engine.tasks.child_create import ChildCreateTask
from tests.dataplane.packets import udp4
from tests.engine.harness import FAST, child, mirror, pair, psk_conn

GW = Endpoint(ipaddress.ip_address("192.0.2.1"), 500)
PEERS = {"p1": (Endpoint(ipaddress.ip_address("192.0.2.21"), 500), "10.2.0.0/24", "10.2.0.7"),
         "p2": (Endpoint(ipaddress.ip_address("192.0.2.22"), 500), "10.3.0.0/24", "10.3.0.7")}
GW_NET, GW_HOST = "10.1.0.0/24", "10.1.0.9"


class Lab:
    """The gateway engine and two peer engines; datagrams routed by address; outputs recorded per node."""

    def __init__(self) -> None:
        gw_conns = [psk_conn(name, "gw.example.net", f"{name}.example.net",
                             (child("net", (GW_NET,), (net,)),)) for name, (_, net, _) in PEERS.items()]
        self.gw = IkeManager(gw_conns, FAST, random=DeterministicRandom(7))
        self.peers = {  # the same seed: both peers choose the same SPIs
            name: IkeManager([psk_conn("tunnel", f"{name}.example.net", "gw.example.net",
                                       (child("net", (net,), (GW_NET,)),))], FAST,
                             random=DeterministicRandom(99))
            for name, (_, net, _) in PEERS.items()}
        self.events: dict[str, list[EngineEvent]] = {"gw": [], **{n: [] for n in PEERS}}
        self.ike: dict[str, int] = {}

    def run(self) -> None:
        for _ in range(500):
            moved = False
            for name, manager in (("gw", self.gw), *self.peers.items()):
                for event in manager.events():
                    self.events[name].append(event)
                    if isinstance(event, SendDatagram):
                        moved = True
                        self._deliver(name, event)
            if not moved:
                return
        raise AssertionError("the exchange does not settle")

    def _deliver(self, sender: str, dgram: SendDatagram) -> None:
        if sender == "gw":
            peer = next(n for n, (ep, _, _) in PEERS.items() if ep.address == dgram.remote.address)
            self.peers[peer].receive_datagram(dgram.data, dgram.remote, dgram.local, 0.0)
        else:
            self.gw.receive_datagram(dgram.data, dgram.remote, dgram.local, 0.0)

    def up(self, name: str) -> None:
        self.ike[name] = self.peers[name].initiate("tunnel", local=PEERS[name][0], remote=GW, now=0.0)
        self.run()

    def gw_child(self, name: str) -> ChildSa:
        (sa,) = [s for s in self.gw.ike_sas() if s.remote.address == PEERS[name][0].address]
        (c,) = sa.children.values()
        return c

    def peer_child(self, name: str) -> ChildSa:
        (sa,) = self.peers[name].ike_sas()
        (c,) = sa.children.values()
        return c


def apply(table: SaTable, events: list[EngineEvent]) -> None:
    """What the service does with the engine's Child SA outputs (service/outputs.py)."""
    for event in events:
        if isinstance(event, InstallChildSa):
            table.add_sa(SaConfig.from_install(event))
        elif isinstance(event, DeleteChildSa):
            table.delete_sa(event.spi, SaDirection(event.direction.value), event.child_uniqueid)


def test_two_peers_with_the_same_spi_delete_stops_only_the_first() -> None:
    lab = Lab()
    lab.up("p1")
    lab.up("p2")
    c1, c2 = lab.gw_child("p1"), lab.gw_child("p2")
    assert c1.state is ChildState.INSTALLED and c2.state is ChildState.INSTALLED
    assert c1.spi_out == c2.spi_out == lab.peer_child("p1").spi_in == lab.peer_child("p2").spi_in
    assert c1.uniqueid != c2.uniqueid and c1.spi_in != c2.spi_in

    gw_table, peer_tables = SaTable(), {n: SaTable() for n in PEERS}
    apply(gw_table, lab.events["gw"])
    for name, table in peer_tables.items():
        apply(table, lab.events[name])

    def to_peer(name: str) -> Send | None:
        sent = gw_table.outbound(udp4(GW_HOST, PEERS[name][2], 1, 2, b"to " + name.encode()))
        assert sent is None or isinstance(sent, Send)
        return sent

    def tunnel_works(name: str) -> bool:
        sent = to_peer(name)
        if sent is None or peer_tables[name].inbound(sent.data) is None:
            return False
        other = "p2" if name == "p1" else "p1"
        assert peer_tables[other].inbound(sent.data) is None  # same SPI, other keys
        back = peer_tables[name].outbound(udp4(PEERS[name][2], GW_HOST, 2, 1, b"back"))
        return isinstance(back, Send) and gw_table.inbound(back.data) is not None

    assert tunnel_works("p1") and tunnel_works("p2")

    # P1 deletes its Child SA (INFORMATIONAL Delete naming its SPI, which P2 uses too)
    seen = len(lab.events["gw"])
    lab.peers["p1"].terminate_child(lab.ike["p1"], lab.peer_child("p1").uniqueid, 0.0)
    lab.run()
    deletes = [e for e in lab.events["gw"][seen:] if isinstance(e, DeleteChildSa)]
    assert {(e.child_uniqueid, e.direction) for e in deletes} == {(c1.uniqueid, Direction.INBOUND),
                                                                  (c1.uniqueid, Direction.OUTBOUND)}
    apply(gw_table, lab.events["gw"][seen:])
    assert to_peer("p1") is None and gw_table.drops == {"no_sa": 1}  # fail closed, no deleted keys used
    assert lab.gw_child("p2") is c2 and c2.state is ChildState.INSTALLED
    assert tunnel_works("p2")


def _reuse_spi(monkeypatch: pytest.MonkeyPatch, manager: IkeManager, spi: Callable[[], int]) -> None:
    """Make ``manager`` (a misbehaving peer) choose ``spi()`` for its next Child SA."""
    original = ChildCreateTask._new_child

    def forced(self: ChildCreateTask, sa: IkeSa, settings: ChildSettings, initiator: bool) -> ChildSa:
        new = original(self, sa, settings, initiator)
        if sa.ctx is manager.ctx:
            new.spi_in = spi()
        return new

    monkeypatch.setattr(ChildCreateTask, "_new_child", forced)


def test_responder_refuses_a_second_child_sa_with_the_peers_spi_of_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = Lab()
    lab.up("p1")
    first = lab.gw_child("p1")
    _reuse_spi(monkeypatch, lab.peers["p1"], lambda: first.spi_out)
    seen = len(lab.events["gw"])
    lab.peers["p1"].create_child(lab.ike["p1"], "net", 0.0)
    lab.run()
    (sa,) = [s for s in lab.gw.ike_sas() if s.remote.address == PEERS["p1"][0].address]
    assert list(sa.children.values()) == [first] and first.state is ChildState.INSTALLED
    new = lab.events["gw"][seen:]
    assert not [e for e in new if isinstance(e, (InstallChildSa, DeleteChildSa))]
    (failed,) = [e for e in new if isinstance(e, AuditEvent) and e.event == "child.failed"]
    assert f"peer's ESP SPI {first.spi_out:08x} is already the SPI of its Child SA" in failed.reason
    assert any("NO_PROPOSAL_CHOSEN" in str(getattr(e, "reason", "")) for e in lab.events["p1"]), \
        [getattr(e, "reason", "") for e in lab.events["p1"]]


def test_initiator_refuses_a_responder_reusing_its_spi_within_the_ike_sa(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = child()
    extra = child("web", ("10.1.1.0/24",), ("10.2.1.0/24",))
    net = pair([psk_conn("tunnel", "a.example.net", "b.example.net", (c, extra))],
               [psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c), mirror(extra)))])
    net.initiate(children=["net"])
    net.run()
    (a_sa,) = net.a.manager.ike_sas()
    (first,) = a_sa.children.values()
    _reuse_spi(monkeypatch, net.b.manager, lambda: first.spi_out)
    seen = len(net.a.events)
    net.a.manager.create_child(a_sa.uniqueid, "web", net.now)
    net.run()
    assert list(a_sa.children.values()) == [first] and first.state is ChildState.INSTALLED
    new = net.a.events[seen:]
    assert not [e for e in new if isinstance(e, InstallChildSa)]
    assert any(f"{first.spi_out:08x} is already the SPI" in e.reason for e in net.a.audits("child.failed"))
    # our half never existed; the peer's half is deleted again (it installed it with the repeated SPI)
    (b_sa,) = net.b.manager.ike_sas()
    assert [ch.spi_in for ch in b_sa.children.values()] == [first.spi_out]



def test_a_rekey_reusing_the_old_child_sas_spi_is_refused_and_the_old_one_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CREATE_CHILD_SA with REKEY_SA (RFC 7296 §2.8) whose new SPI is the old Child SA's: the peer's Delete
    of the old SA would name the new one too. The gateway refuses it; the old Child SA stays installed."""
    lab = Lab()
    lab.up("p1")
    old = lab.gw_child("p1")
    _reuse_spi(monkeypatch, lab.peers["p1"], lambda: old.spi_out)
    seen = len(lab.events["gw"])
    lab.peers["p1"].rekey_child(lab.ike["p1"], lab.peer_child("p1").uniqueid, 0.0)
    lab.run()
    assert lab.gw_child("p1") is old and old.state is ChildState.INSTALLED
    new = lab.events["gw"][seen:]
    assert not [e for e in new if isinstance(e, (InstallChildSa, DeleteChildSa))]
    assert any(isinstance(e, AuditEvent) and e.event == "child.failed" and "already the SPI" in e.reason
               for e in new)
