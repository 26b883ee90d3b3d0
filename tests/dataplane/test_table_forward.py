"""Data-plane workers (issue 22): a table without the policy's outbound SA hands packets to the worker that
owns it (one sender per SA); with an own SA (RFC 9611 per-resource SAs) it never forwards."""

from __future__ import annotations

from ikeguard.dataplane.base import SaDirection
from ikeguard.dataplane.table import Forward, SaTable, Send
from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair

INNER = udp4("198.51.100.7", "203.0.113.9", 1000, 2, b"x" * 64)


def test_forward_to_the_owner_until_an_own_sa_is_installed() -> None:
    a_out, _b_in, _b_out, _a_in = sa_pair(child=1)
    worker1 = SaTable()
    assert worker1.outbound(INNER) is None  # no policy at all: dropped
    worker1.set_forward(1, a_out.local_ts, a_out.remote_ts, 0)  # Child SA 1's SA lives in worker 0
    result = worker1.outbound(INNER)
    assert isinstance(result, Forward) and result.worker == 0 and result.data == INNER
    own, _, _, _ = sa_pair(child=2, spi_ab=0x3001, spi_ba=0x4001)  # a per-resource SA, same selectors
    worker1.add_sa(own)
    sent = worker1.outbound(INNER)
    assert isinstance(sent, Send) and sent.data[:4] == (0x3001).to_bytes(4, "big")
    worker1.delete_sa(0x3001, SaDirection.OUTBOUND, 2)  # own SA gone: back to the owner of Child SA 1
    assert isinstance(worker1.outbound(INNER), Forward)
    worker1.set_forward(1, a_out.local_ts, a_out.remote_ts, None)  # and that one is gone too: fail closed
    assert worker1.outbound(INNER) is None
    assert worker1.drops.get("no_sa") == 1


def test_workers_refuse_plain_esp_and_place_sas_by_spi_and_child() -> None:
    from ikeguard.dataplane.userspace.workers import Supervisor, owner

    sup = Supervisor({"workers": 2, "listen": "192.0.2.1"})  # not started: refused before any worker is asked
    reply = sup.handle({"op": "add_sa", "sa": {"spi": 0x1001, "direction": "out", "encap": False}})
    assert not reply["ok"] and "encap" in reply["error"]
    assert owner({"spi": "0x2001", "direction": "in"}, 2) == 1  # inbound: where the kernel steers the SPI
    assert owner({"spi": 0x2000, "direction": "out", "child": 2}, 2) == 1  # outbound: (child - 1) mod N
    assert owner({"spi": 0x2000, "direction": "out", "child": 2, "worker": 0}, 2) == 0


def test_syn_detection_and_sa_in_another_worker() -> None:
    """What the plane's SYN dealing (userspace/plane.py) relies on: SYN without ACK only, and a policy with an
    own SA here and one in the other worker (RFC 9611 per-resource SAs)."""
    from ikeguard.dataplane.userspace.plane import tcp_syn
    from tests.dataplane.packets import tcp_syn4

    syn = tcp_syn4("198.51.100.7", "203.0.113.9", 40000, 5001, 1460)
    assert tcp_syn(syn)
    syn_ack = bytearray(syn)
    syn_ack[33] |= 0x10
    assert not tcp_syn(bytes(syn_ack)) and not tcp_syn(INNER) and not tcp_syn(b"")
    a_out, _b_in, _b_out, _a_in = sa_pair(child=1)
    worker0 = SaTable()
    worker0.add_sa(a_out)
    assert not worker0.has_sa_in(syn, 1)  # worker 1 has no SA of this policy: keep the SYN
    worker0.set_forward(2, a_out.local_ts, a_out.remote_ts, 1)
    assert worker0.has_sa_in(syn, 1)
    assert not SaTable().has_sa_in(syn, 1)  # no policy here at all
