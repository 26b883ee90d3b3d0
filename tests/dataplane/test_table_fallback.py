"""A policy whose current outbound SA is deleted while another Child SA's outbound SA still serves it falls
back to that SA (found against strongSwan: after a simultaneous Child SA rekey the loser's redundant SA is
installed last and deleted first, and traffic stopped until the next rekey)."""

from __future__ import annotations

from ikeguard.dataplane.base import SaDirection
from ikeguard.dataplane.table import Send
from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair, wired


def test_deleting_the_current_outbound_sa_falls_back_to_the_other_live_one() -> None:
    a, b = wired(child=1)  # the old Child SA
    winner_out, winner_in_b, _, _ = sa_pair(spi_ab=0x1002, spi_ba=0x2002, child=2)
    loser_out, loser_in_b, _, _ = sa_pair(spi_ab=0x1003, spi_ba=0x2003, child=3)
    b.add_sa(winner_in_b)
    b.add_sa(loser_in_b)
    a.add_sa(winner_out)  # the peer's rekey (the winner), answered while ours was pending
    a.delete_sa(0x1001, SaDirection.OUTBOUND)  # the old SA goes
    a.add_sa(loser_out)  # our own rekey completes afterwards: it takes over the policy ...
    a.delete_sa(0x1003, SaDirection.OUTBOUND)  # ... and is deleted as redundant (RFC 7296 §2.8.1)
    sent = a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"after the collision"))
    assert isinstance(sent, Send) and sent.data[:4] == (0x1002).to_bytes(4, "big")
    assert b.inbound(sent.data) is not None
    a.delete_sa(0x1002, SaDirection.OUTBOUND)  # the last one: fail closed
    assert a.outbound(udp4("198.51.100.7", "203.0.113.9", 1, 2, b"x")) is None
    assert a.drops == {"no_sa": 1}
