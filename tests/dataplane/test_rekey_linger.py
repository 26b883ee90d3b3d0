"""A rekeyed inbound SA keeps decrypting for a moment (the peer's last packets on it may be queued behind
the DELETE exchange, which arrives on another socket); a deleted SA without a successor goes at once."""

from __future__ import annotations

from ikeguard.dataplane.base import SaDirection
from ikeguard.dataplane.table import SaTable, Send
from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair


def test_has_successor_only_for_a_rekeyed_inbound_sa() -> None:
    a, b = SaTable(), SaTable()
    a_out, b_in, _, _ = sa_pair(spi_ab=0x1001, child=1)
    a.add_sa(a_out)
    b.add_sa(b_in)
    assert not b.has_successor(0x1001)  # alone: a delete (terminate, peer DELETE) removes it now
    late = a.outbound(udp4("198.51.100.7", "203.0.113.9", 5, 6, b"sent on the old SA"))
    assert isinstance(late, Send)
    _, b2_in, _, _ = sa_pair(spi_ab=0x1002, child=2)  # the rekeyed Child SA: same selectors, new id
    b.add_sa(b2_in)
    assert b.has_successor(0x1001) and not b.has_successor(0x1002)
    assert not b.has_successor(0x9999)
    assert b.inbound(late.data) is not None  # the old SA still decrypts until the plane removes it
    b.delete_sa(0x1001, SaDirection.INBOUND)
    assert b.inbound(late.data) is None and b.drops["unknown_spi"] == 1
