"""Issue 22 item 1, Done-when 6: ``[gateway] workers = 2`` against two strongSwan peers. The kernel steers
each IKE SA's datagrams to the worker that owns it (service/reuseport.py), also after NAT-T port floating and
a MOBIKE move to an address whose IKE_SA_INIT would be spread to the other worker; killing one worker leaves
the other worker's SA up and answering, and the dead worker is restarted.

Peer A sits behind the NAT of the "nat" topology (seen as 192.0.2.2: worker 0 by the source spread) and floats
to 4500 at IKE_AUTH; peer B runs in the router namespace from 192.0.2.3 (worker 1). Then the NAT "reboots"
into SNAT to 192.0.2.5 (spread: worker 1) with new ports; strongSwan notices through NAT-D and moves its SA
with UPDATE_SA_ADDRESSES (RFC 4555 §3.5), which only worker 0 can answer: the SA stays up at the new address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.service.reuseport import spread_index
from ikeguard.tools.netns import Host, Topology, wait_until
from tests.harness.interop_pair import (
    GatewayFactory,
    PeerFactory,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
)
from tests.harness.strongswan import StrongSwanError
from tests.harness.workers import worker_of, worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]

B_ADDRESS, MOVED_ADDRESS = "192.0.2.3", "192.0.2.5"
B_INNER = "198.51.100.250"
NEW_PORTS = (20000, 20999)


def test_two_workers_steering_mobike_and_a_killed_worker(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("nat")
    router = topo.router
    assert router is not None and topo.public_address is not None
    assert spread_index(str(topo.public_address), 2) == 0 and spread_index(B_ADDRESS, 2) == 1
    assert spread_index(MOVED_ADDRESS, 2) == 1  # the move would be spread to the other worker
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", gateway_keys={"workers": 2},
                       conn={"dpd_delay": "2s", "dpd_timeout": "6s"})
    pids = worker_pids(gw.log())
    assert sorted(pids) == [0, 1], gw.log_tail()

    # peer A behind the NAT: IKE_SA_INIT on 500, IKE_AUTH floated to 4500 (NAT detected)
    peer_a = strongswan_side(strongswan_peer, left, right, conn={"dpd_delay": "2s"},
                             charon_options={"keep_alive": "1s"})
    peer_a.initiate(child="net", ike="ikg")
    ss_a = peer_a.wait_established("ikg", "net")
    sa_a = gw.wait_sas(lambda sas: len(sas) == 1, timeout=10)[0]
    assert_same_sa(ss_a, sa_a)
    assert (sa_a["remote_addr"], sa_a["local_port"], sa_a["remote_port"]) == (str(topo.public_address), 4500,
                                                                              4500)
    assert worker_of(sa_a) == 0 and (int(sa_a["uniqueid"]) - 1) % 2 == 0

    # peer B from the router's second address (not masqueraded: its own traffic): the other worker
    router.add_address("outside", f"{B_ADDRESS}/24")
    router.run("nft", "insert", "rule", "inet", "ikg_nat", "postrouting", "ip", "saddr", B_ADDRESS, "accept")
    b_host = Host(router, "outside", ipaddress.IPv4Address(B_ADDRESS), left.address6,
                  ipaddress.IPv4Network(f"{B_INNER}/32"), ipaddress.IPv4Address(B_INNER), left.subnet6,
                  left.subnet_address6)
    # unique = never: strongSwan then sends no INITIAL_CONTACT, which would end peer A's SA (same identity)
    # its protected side: one address of the left subnet, local to the router (kernel-libipsec routes from it)
    router.add_address("lo", f"{B_INNER}/32")
    peer_b = strongswan_side(strongswan_peer, b_host, right, name="ssb",
                             conn={"dpd_delay": "2s", "unique": "never"})
    peer_b.initiate(child="net", ike="ikg")
    peer_b.wait_established("ikg", "net")
    sas = gw.wait_sas(lambda sas: len(sas) == 2, timeout=10)
    sa_b = next(sa for sa in sas if sa["remote_addr"] == B_ADDRESS)
    assert worker_of(sa_b) == 1 and (int(sa_b["uniqueid"]) - 1) % 2 == 1
    # one control socket for both workers: `conns` counts the IKE SAs of both, `sas --uniqueid` finds B's
    assert gw.request("conns")[0]["ike_sas_up"] == 2
    assert [sa["spi_r"] for sa in gw.sas(uniqueid=int(sa_b["uniqueid"]))] == [sa_b["spi_r"]]

    # strongSwan keeps a baseline of the NAT mapping from its first MOBIKE liveness check
    natd_answer = re.compile(r"parsed INFORMATIONAL response \d+ \[ N\(NATD_S_IP\) N\(NATD_D_IP\) \]")
    assert wait_until(lambda: natd_answer.search(peer_a.log()) is not None, 12), peer_a.log()[-3000:]
    # the NAT reboots into another public address and port range
    router.add_address("outside", f"{MOVED_ADDRESS}/24")
    low, high = NEW_PORTS
    router.run("nft", "flush", "chain", "inet", "ikg_nat", "postrouting")
    router.run("nft", "add", "rule", "inet", "ikg_nat", "postrouting", "ip", "saddr", B_ADDRESS, "accept")
    router.run("nft", "add", "rule", "inet", "ikg_nat", "postrouting", "oifname", "outside", "ip", "saddr",
               str(left.address), "meta", "l4proto", "udp", "snat", "ip", "to",
               f"{MOVED_ADDRESS}:{low}-{high}")
    router.run("nft", "add", "rule", "inet", "ikg_nat", "postrouting", "oifname", "outside", "ip", "saddr",
               str(left.address), "snat", "ip", "to", MOVED_ADDRESS)
    router.run("conntrack", "-F")

    def moved(sas: list[dict[str, object]]) -> bool:
        return any(sa["spi_r"] == sa_a["spi_r"] and sa["remote_addr"] == MOVED_ADDRESS
                   and low <= int(str(sa["remote_port"])) <= high for sa in sas)

    after = gw.wait_sas(moved, timeout=15, what="worker 0 following peer A's MOBIKE move")
    assert "initiating MOBIKE update" in peer_a.log()
    moved_a = next(sa for sa in after if sa["spi_r"] == sa_a["spi_r"])
    assert moved_a["uniqueid"] == sa_a["uniqueid"] and worker_of(moved_a) == 0
    gw.wait_audit(lambda e: e["event"] == "ike.address_changed" and MOVED_ADDRESS in e.get("reason", ""),
                  timeout=5)

    # kill worker 1 (peer B's): worker 0 and peer A's SA are not disturbed; worker 1 is restarted
    os.kill(pids[1], signal.SIGKILL)
    assert wait_until(lambda: worker_pids(gw.log()).get(1, pids[1]) != pids[1], 10), gw.log_tail()
    assert worker_pids(gw.log())[0] == pids[0]
    time.sleep(8)  # > dpd_timeout: several liveness checks of peer A answered by worker 0 meanwhile
    final = gw.sas()
    assert [sa["spi_r"] for sa in final] == [sa_a["spi_r"]], final
    assert str(final[0]["state"]).upper() == "ESTABLISHED" and final[0]["remote_addr"] == MOVED_ADDRESS
    a_now = peer_a.list_sas()
    assert len(a_now) == 1 and a_now[0].state == "ESTABLISHED"
    assert (a_now[0].initiator_spi, a_now[0].responder_spi) == (ss_a.initiator_spi, ss_a.responder_spi)
    assert "dpd.timeout" not in {e["event"] for e in gw.audit_events() if e.get("ike_uniqueid")
                                 == sa_a["uniqueid"]}
    # the restarted worker 1 answers again: peer B can set up a new IKE SA (on worker 1 again)
    with contextlib.suppress(StrongSwanError):  # vici reports the forced delete of a dead SA as a failure
        peer_b.terminate(ike="ikg", force=True)  # its SA died with worker 1
    assert wait_until(lambda: not peer_b.list_sas(), 5)
    peer_b.initiate(child="net", ike="ikg")
    sas = gw.wait_sas(lambda sas: any(sa["remote_addr"] == B_ADDRESS for sa in sas), timeout=15)
    assert worker_of(next(sa for sa in sas if sa["remote_addr"] == B_ADDRESS)) == 1
