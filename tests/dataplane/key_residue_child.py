"""Run by tests/dataplane/test_key_hygiene.py in its own process: two in-memory engines set up an IKE SA and
a Child SA, each side's SaTable carries one packet both ways, then the IKE SA is deleted and the data plane
removes the Child SA. Steps are driven over stdin/stdout so the parent can scan this process's memory while
the SA is up and after it is gone. Prints the keys (hex) first: the parent searches for their octets."""

from __future__ import annotations

import gc
import sys

from ikeguard.dataplane.base import SaConfig, SaDirection
from ikeguard.dataplane.table import SaTable, Send
from ikeguard.engine.events import DeleteChildSa, InstallChildSa
from tests.dataplane.packets import udp4
from tests.engine.harness import Network, psk_pair


def _tables(net: Network) -> tuple[SaTable, SaTable]:
    tables = (SaTable(), SaTable())
    for side, table in zip((net.a, net.b), tables, strict=True):
        for event in side.events:
            if isinstance(event, InstallChildSa):
                table.add_sa(SaConfig.from_install(event))
    return tables


def main() -> None:
    net = psk_pair()
    uid = net.initiate()
    net.run()
    a_table, b_table = _tables(net)
    # hex() reads the buffers in place: this script must not leave copies of its own
    keys = [e.sa.encr_key.hex()[:64] for e in net.a.events if isinstance(e, InstallChildSa)]
    ike = net.a.manager.ike_sas()[0].crypto
    assert ike is not None
    keys += [ike.keys.sk_d.hex(), ike.keys.sk_ei.hex()[:64], ike.keys.sk_er.hex()[:64]]
    sent = a_table.outbound(udp4("10.1.0.5", "10.2.0.5", 1000, 2000, b"up and running"))
    assert isinstance(sent, Send) and b_table.inbound(sent.data) is not None
    print(" ".join(keys), flush=True)
    print("up", flush=True)
    sys.stdin.readline()
    del ike, sent
    net.a.manager.terminate_ike(uid, net.now)
    net.run()
    for side, table in zip((net.a, net.b), (a_table, b_table), strict=True):
        for event in side.events:
            if isinstance(event, DeleteChildSa):
                assert table.delete_sa(event.spi, SaDirection(event.direction.value), event.child_uniqueid)
    assert not net.a.manager.ike_sas() and not net.b.manager.ike_sas()
    gc.collect()
    print("down", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
