"""Issue 13 S3 on the data plane's own tables: two peers choosing the same outbound SPI.

An outbound SPI is the peer's choice (its inbound SPI, RFC 4301 §4.1) and is visible on the wire, so a second
peer can pick the first peer's SPI. The gateway (G, 192.0.2.1, 198.51.100.0/25) holds one Child SA with each
peer: P1 (192.0.2.21, 203.0.113.0/25, Child SA 1) and P2 (192.0.2.22, 203.0.113.128/25, Child SA 2), both with
outbound SPI ``SHARED``. Before the fix the table kept outbound SAs by SPI: the second install replaced the
first entry, deleting Child SA 1 removed P2's SA instead, and P1's policy went on encrypting with Child SA 1's
deleted keys. Each test here fails on that table.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

from ikeguard.dataplane.base import DataPlaneError, SaConfig, SaDirection, SaEndpoint
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId
from tests.dataplane.packets import udp4

SHARED = 0xC0FFEE01  # both peers' inbound SPI = the gateway's outbound SPI towards each of them
G = SaEndpoint(ipaddress.ip_address("192.0.2.1"))
G_NET = TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/25"))
PEERS = {  # Child SA unique id -> (outer endpoint, protected subnet, a host in it, gateway's inbound SPI)
    1: (SaEndpoint(ipaddress.ip_address("192.0.2.21")), "203.0.113.0/25", "203.0.113.7", 0x1001),
    2: (SaEndpoint(ipaddress.ip_address("192.0.2.22")), "203.0.113.128/25", "203.0.113.135", 0x1002),
}
G_HOST = "198.51.100.9"


def _sa(spi: int, direction: SaDirection, src: SaEndpoint, dst: SaEndpoint, local: TrafficSelector,
        remote: TrafficSelector, key: bytes, child: int) -> SaConfig:
    return SaConfig(spi, direction, EncrId.AES_GCM_16, 256, 0, key, b"", src, dst, (local,), (remote,),
                    replay_window=64, child_uniqueid=child)


class Lab:
    """G's table and one table per peer, with a Child SA between G and each peer (fresh keys each)."""

    def __init__(self, order: tuple[int, ...] = (1, 2), spis: dict[int, int] | None = None) -> None:
        self.gw = SaTable()
        self.peers: dict[int, SaTable] = {}
        self.spi_out: dict[int, int] = {}
        for child in order:
            peer_ep, net, _, spi_in = PEERS[child]
            spi_out = self.spi_out[child] = (spis or {}).get(child, SHARED)
            peer_net = TrafficSelector.for_network(ipaddress.ip_network(net))
            k_out, k_in = os.urandom(36), os.urandom(36)  # G -> peer, peer -> G
            peer = self.peers[child] = SaTable()
            peer.add_sa(_sa(spi_out, SaDirection.INBOUND, G, peer_ep, peer_net, G_NET, k_out, 7))
            peer.add_sa(_sa(spi_in, SaDirection.OUTBOUND, peer_ep, G, peer_net, G_NET, k_in, 7))
            self.gw.add_sa(_sa(spi_in, SaDirection.INBOUND, peer_ep, G, G_NET, peer_net, k_in, child))
            self.gw.add_sa(_sa(spi_out, SaDirection.OUTBOUND, G, peer_ep, G_NET, peer_net, k_out, child))

    def to_peer(self, child: int, data: bytes = b"to the peer") -> Send | None:
        """A packet from G's subnet to the peer's subnet, through G's table."""
        result = self.gw.outbound(udp4(G_HOST, PEERS[child][2], 4000, 5000, data))
        assert result is None or isinstance(result, Send)
        return result

    def from_peer(self, child: int, data: bytes = b"from the peer") -> bytes | None:
        """A packet from the peer's subnet to G's subnet, protected by the peer, opened by G."""
        sent = self.peers[child].outbound(udp4(PEERS[child][2], G_HOST, 5000, 4000, data))
        assert isinstance(sent, Send)
        return self.gw.inbound(sent.data)

    def works(self, child: int) -> bool:
        """Both directions carry traffic, G's ESP goes to this peer, and only this peer can open it."""
        sent = self.to_peer(child, b"ping %d" % child)
        if sent is None:
            return False
        assert sent.destination == PEERS[child][0]
        assert sent.data[:4] == self.spi_out[child].to_bytes(4, "big")
        assert self.peers[child].inbound(sent.data) is not None
        for other, table in self.peers.items():
            if other != child:  # same SPI, other keys: the other peer cannot open it
                assert table.inbound(sent.data) is None
        return self.from_peer(child) is not None


@pytest.mark.parametrize("order", [(1, 2), (2, 1)], ids=["peer1-first", "peer2-first"])
def test_two_peers_with_the_same_outbound_spi_each_keep_their_own_sa(order: tuple[int, ...]) -> None:
    lab = Lab(order)
    assert lab.works(1) and lab.works(2)
    c1 = lab.gw.counters(SHARED, SaDirection.OUTBOUND, 1)
    c2 = lab.gw.counters(SHARED, SaDirection.OUTBOUND, 2)
    assert c1 is not c2 and c1 is not None and c2 is not None and c1.packets == c2.packets == 1
    assert sorted(spi for spi, d, _ in lab.gw.all_counters() if d is SaDirection.OUTBOUND) == [SHARED, SHARED]


@pytest.mark.parametrize("order", [(1, 2), (2, 1)], ids=["peer1-first", "peer2-first"])
@pytest.mark.parametrize("gone", [1, 2])
def test_deleting_one_peers_sa_stops_only_its_traffic(order: tuple[int, ...], gone: int) -> None:
    lab = Lab(order)
    assert lab.works(1) and lab.works(2)
    stays = 3 - gone
    counters = lab.gw.delete_sa(SHARED, SaDirection.OUTBOUND, gone)
    assert counters is not None and counters.packets == 1  # the deleted SA's own counters
    # fail closed: nothing more is encrypted with the deleted keys; the peer that stays is untouched
    assert lab.to_peer(gone) is None and lab.gw.drops == {"no_sa": 1}
    assert lab.works(stays)
    again = lab.gw.counters(SHARED, SaDirection.OUTBOUND, stays)
    assert again is not None and again.packets == 2
    assert lab.gw.counters(SHARED, SaDirection.OUTBOUND, gone) is None
    assert lab.gw.delete_sa(SHARED, SaDirection.OUTBOUND, gone) is None  # a second delete removes nothing
    assert lab.works(stays)


def test_an_spi_alone_that_names_several_sas_is_refused_never_guessed() -> None:
    lab = Lab()
    with pytest.raises(DataPlaneError, match="name the Child SA"):
        lab.gw.delete_sa(SHARED, SaDirection.OUTBOUND)
    with pytest.raises(DataPlaneError, match="name the Child SA"):
        lab.gw.counters(SHARED, SaDirection.OUTBOUND)
    with pytest.raises(DataPlaneError, match="name the Child SA"):
        lab.gw.update_sa_addresses((SHARED,), G, SaEndpoint(ipaddress.ip_address("192.0.2.99")))
    assert lab.works(1) and lab.works(2)  # nothing was deleted or moved
    lab.gw.delete_sa(SHARED, SaDirection.OUTBOUND, 1)
    assert lab.gw.delete_sa(SHARED, SaDirection.OUTBOUND) is not None  # unambiguous again: Child SA 2's
    assert lab.to_peer(2) is None


def test_moving_one_peers_sas_leaves_the_other_peer_with_that_spi() -> None:
    """A NAT mapping change (RFC 7296 §2.23) or MOBIKE move of P1's IKE SA names its SPIs; P2's SA with the
    same outbound SPI keeps sending to P2."""
    lab = Lab()
    moved = SaEndpoint(ipaddress.ip_address("192.0.2.77"), 34567)
    lab.gw.update_sa_addresses((PEERS[1][3], SHARED), G, moved, children={1})
    sent = lab.to_peer(1)
    assert sent is not None and sent.destination == moved
    assert lab.peers[1].inbound(sent.data) is not None
    assert lab.works(2)


def test_a_peer_choosing_another_peers_inbound_spi_is_not_moved_with_it() -> None:
    """P2 picks as its SPI the gateway's inbound SPI of P1's Child SA (0x1001, on the wire from P1): moving
    P1's SAs (whose SPIs include 0x1001) must not redirect P2's outbound SA to P1's new address."""
    lab = Lab(spis={1: SHARED, 2: PEERS[1][3]})
    moved = SaEndpoint(ipaddress.ip_address("192.0.2.77"), 34567)
    lab.gw.update_sa_addresses((PEERS[1][3], SHARED), G, moved, children={1})
    sent = lab.gw.outbound(udp4(G_HOST, PEERS[2][2], 4000, 5000, b"still to P2"))
    assert isinstance(sent, Send) and sent.destination == PEERS[2][0]
    assert lab.peers[2].inbound(sent.data) is not None


def test_an_inbound_sa_is_deleted_only_for_its_own_child_sa() -> None:
    """Our inbound SPIs are unique: a Child SA whose inbound SPI collides is refused, and deleting the refused
    Child SA's inbound SA (the engine's cleanup names its SPI) must not remove the first Child SA's."""
    lab = Lab()
    _, net, _, spi_in = PEERS[1]
    peer_net = TrafficSelector.for_network(ipaddress.ip_network(net))
    refused = _sa(spi_in, SaDirection.INBOUND, PEERS[1][0], G, G_NET, peer_net, os.urandom(36), 3)
    with pytest.raises(DataPlaneError, match="duplicate_spi"):
        lab.gw.add_sa(refused)
    assert lab.gw.delete_sa(spi_in, SaDirection.INBOUND, 3) is None
    assert not lab.gw.has_successor(spi_in, 3)
    assert lab.works(1) and lab.works(2)


def test_the_same_child_sa_installing_its_outbound_spi_twice_is_refused() -> None:
    lab = Lab()
    _, net, _, _ = PEERS[1]
    peer_net = TrafficSelector.for_network(ipaddress.ip_network(net))
    again = _sa(SHARED, SaDirection.OUTBOUND, G, PEERS[1][0], G_NET, peer_net, os.urandom(36), 1)
    with pytest.raises(DataPlaneError, match="duplicate_spi"):
        lab.gw.add_sa(again)
    assert lab.works(1) and lab.works(2)  # the installed SA kept its keys
