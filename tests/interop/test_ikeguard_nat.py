"""Through a real NAT (issue 6 item 3): the left host sits behind a router namespace that masquerades with
nftables; ikeguard and strongSwan take turns behind it.

What is proven, both ways round: NAT detection (RFC 7296 §2.23) on both sides (each SA view says who is
behind the NAT, the IKE SA floats to UDP 4500), NAT keepalives (RFC 3948 §2.3: one 0xFF octet to 4500,
captured with tcpdump on the router's outside interface) from the side behind the NAT, and a NAT mapping
change (the router's conntrack table flushed while its masquerade moves to another port range) survived
with the same IKE SA on both sides, via MOBIKE (RFC 4555 §3.5): the side behind the NAT learns of the new
mapping from NAT-D in a liveness check and sends UPDATE_SA_ADDRESSES; afterwards DPD works both ways.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ikeguard.tools.netns import Namespace, Topology, wait_until
from tests.harness.interop_pair import (
    GatewayFactory,
    PairSpec,
    PeerFactory,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
    wait_one_sa,
)
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN

pytestmark = [pytest.mark.root, pytest.mark.interop]

NEW_PORTS = (20000, 20999)  # the masquerade's port range after the "NAT reboot"
ENGINE_KEEPALIVE = 3.0  # ikeguard's NAT keepalive interval, [gateway] keep_alive in these tests
# the side behind the NAT is "client", the other "gw" (the FQDNs of the test PKI / PSK identities)
BEHIND = PairSpec(ikg_id=CLIENT_FQDN, ss_id=GW_FQDN)


@contextmanager
def _capture(router: Namespace, out: Path, bpf: str) -> Iterator[Callable[[], list[str]]]:
    """tcpdump on the router's outside interface; yields a function returning the lines seen so far."""
    err = out.with_suffix(".err")
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        proc = router.popen(["tcpdump", "-i", "outside", "-n", "-l", "-U", bpf], stdout=fout, stderr=ferr)
    assert wait_until(lambda: b"listening on" in err.read_bytes() or proc.poll() is not None, 5)
    assert proc.poll() is None, err.read_text()

    def lines() -> list[str]:
        return [line for line in out.read_text().splitlines() if line.strip()]

    try:
        yield lines
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# one UDP payload octet (UDP length 9) of value 0xFF to port 4500: a NAT keepalive (RFC 3948 §2.3)
KEEPALIVE_BPF = "udp dst port 4500 and udp[4:2] = 9 and udp[8] = 0xff"


def _remap(router: Namespace) -> None:
    """"Reboot" the NAT: masquerade into another port range and forget every existing mapping."""
    low, high = NEW_PORTS
    router.run("nft", "flush", "chain", "inet", "ikg_nat", "postrouting")
    router.run("nft", "add", "rule", "inet", "ikg_nat", "postrouting", "oifname", "outside",
               "meta", "l4proto", "udp", "masquerade", "to", f":{low}-{high}")
    router.run("nft", "add", "rule", "inet", "ikg_nat", "postrouting", "oifname", "outside", "masquerade")
    router.run("conntrack", "-F")


def test_ikeguard_initiator_behind_nat(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("nat")
    assert topo.router is not None and topo.public_address is not None
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, right, left, spec=BEHIND, remote_addr="%any",
                           conn={"dpd_delay": "2s"})
    with _capture(topo.router, tmp_path / "keepalives.txt", KEEPALIVE_BPF) as keepalives:
        gw = ikeguard_side(ikeguard_gateway, left, right, spec=BEHIND, remote_addr=str(right.address),
                           conn={"dpd_delay": "2s", "dpd_timeout": "6s"}, child={"start_action": "start"},
                           gateway_keys={"keep_alive": f"{ENGINE_KEEPALIVE:g}s"})
        ss_sa = peer.wait_established("ikg", "net")
        sa = wait_one_sa(gw)
        established = time.monotonic()
        assert_same_sa(ss_sa, sa)
        # ikeguard knows it is behind a NAT and floated to 4500; strongSwan sees the NAT on its peer's side.
        # (ikeguard's nat_remote is true too: kernel-libipsec makes strongSwan fake its own NAT-D source
        # hash to force UDP encapsulation, see docs/interop.md)
        assert (sa["nat_local"], sa["local_port"], sa["remote_port"]) == (True, 4500, 4500)
        assert sa["local_addr"] == str(left.address) and sa["encap"]
        assert ss_sa.nat_remote and not ss_sa.nat_local
        assert (ss_sa.remote_host, ss_sa.local_port) == (str(topo.public_address), 4500)

        # ikeguard (behind the NAT) keeps the mapping open with keepalives every keep_alive seconds
        assert wait_until(lambda: keepalives(), ENGINE_KEEPALIVE + 3), "no NAT keepalive from ikeguard"
        first = time.monotonic() - established
        assert ENGINE_KEEPALIVE - 1.5 <= first <= ENGINE_KEEPALIVE + 3, first
        assert all(f"{topo.public_address}." in line and f"{right.address}.4500:" in line
                   for line in keepalives()), keepalives()

    _remap(topo.router)
    # ikeguard's next DPD request leaves through a new mapping; strongSwan follows the authenticated request
    # (RFC 7296 §2.23) and its own DPD requests reach ikeguard through the new mapping
    moved = peer.wait_for(lambda sas: len(sas) == 1 and NEW_PORTS[0] <= sas[0].remote_port <= NEW_PORTS[1],
                          timeout=10, what="strongSwan following the new NAT mapping")[0]
    assert (moved.initiator_spi, moved.responder_spi) == (ss_sa.initiator_spi, ss_sa.responder_spi)
    # via MOBIKE: ikeguard's DPD (with NAT-D) showed the new mapping, ikeguard sent UPDATE_SA_ADDRESSES
    log = peer.log()
    assert "[ N(UPD_SA_ADDR) N(COOKIE2) N(NATD_S_IP) N(NATD_D_IP) ]" in log
    assert f"remote endpoint changed from {topo.public_address}[4500] to {topo.public_address}[2" in log
    changed = gw.wait_audit(lambda e: e["event"] == "ike.address_changed", timeout=3)
    assert changed["outcome"] == "success"
    time.sleep(5)  # > 2 DPD intervals on each side, all through the new mapping
    final = peer.list_sas()
    assert len(final) == 1 and final[0].state == "ESTABLISHED" and final[0].remote_port == moved.remote_port
    sas = gw.sas()
    assert len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) == (sa["spi_i"], sa["spi_r"])
    assert "dpd.timeout" not in {e["event"] for e in gw.audit_events()}
    assert "giving up" not in peer.log()


def test_strongswan_initiator_behind_nat_to_ikeguard_responder(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    topo = netns_topology("nat")
    assert topo.router is not None and topo.public_address is not None
    left, right = topo.left, topo.right
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any",
                       conn={"dpd_delay": "2s", "dpd_timeout": "6s"})
    with _capture(topo.router, tmp_path / "keepalives.txt", KEEPALIVE_BPF) as keepalives:
        peer = strongswan_side(strongswan_peer, left, right, conn={"dpd_delay": "2s"},
                               charon_options={"keep_alive": "1s"})
        peer.initiate(child="net", ike="ikg")
        ss_sa = peer.wait_established("ikg", "net")
        sa = wait_one_sa(gw)
        assert_same_sa(ss_sa, sa)
        assert (sa["nat_local"], sa["nat_remote"], sa["local_port"], sa["remote_port"]) == (False, True, 4500,
                                                                                            4500)
        assert sa["encap"]
        assert sa["remote_addr"] == str(topo.public_address)
        assert ss_sa.nat_local and not ss_sa.nat_remote and not ss_sa.nat_fake
        assert (ss_sa.local_host, ss_sa.remote_port) == (str(left.address), 4500)
        # strongSwan (behind the NAT) sends keepalives; ikeguard's transport takes them without complaint
        assert wait_until(lambda: len(keepalives()) >= 2, 6), keepalives()
        assert all(f"{topo.public_address}.4500 > {right.address}.4500" in line for line in keepalives())
    # strongSwan learns the NAT's current mapping from the NAT-D of its first MOBIKE liveness check (its
    # baseline; a change is only noticed against it), so that check must be answered before the NAT changes
    # (any message ID: how many INFORMATIONAL exchanges came first depends on timing)
    natd_answer = re.compile(r"parsed INFORMATIONAL response \d+ \[ N\(NATD_S_IP\) N\(NATD_D_IP\) \]")
    assert wait_until(lambda: natd_answer.search(peer.log()) is not None, 12), peer.log()[-3000:]

    _remap(topo.router)
    # strongSwan's next keepalive/DPD leaves through a new mapping; ikeguard must follow it
    moved = gw.wait_sas(lambda sas: len(sas) == 1 and NEW_PORTS[0] <= sas[0]["remote_port"] <= NEW_PORTS[1],
                        timeout=10, what="ikeguard following the new NAT mapping")[0]
    assert (moved["spi_i"], moved["spi_r"]) == (sa["spi_i"], sa["spi_r"])
    # via MOBIKE: strongSwan's DPD carried NAT-D, ikeguard answered with the hash of the new mapping and
    # strongSwan moved the SA with UPDATE_SA_ADDRESSES
    assert "detected changes in NAT mappings, initiating MOBIKE update" in peer.log()
    time.sleep(5)
    final = gw.sas()
    assert len(final) == 1 and final[0]["remote_port"] == moved["remote_port"]
    assert len(peer.list_sas()) == 1 and peer.list_sas()[0].state == "ESTABLISHED"
    gw.wait_audit(lambda e: e["event"] == "ike.address_changed" and str(moved["remote_port"]) in e["reason"],
                  timeout=5)
    assert "dpd.timeout" not in {e["event"] for e in gw.audit_events()}


def test_nat_remapping_without_mobike_is_followed_from_authenticated_requests(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    """MOBIKE off on both sides: after the NAT re-maps ikeguard (initiator behind it), strongSwan moves the SA
    to the new public port on ikeguard's next authenticated request (RFC 7296 §2.23), and the answers to
    strongSwan's own checks come back through it: one IKE SA, the same SPIs, no DPD timeout."""
    topo = netns_topology("nat")
    assert topo.router is not None and topo.public_address is not None
    left, right = topo.left, topo.right
    peer = strongswan_side(strongswan_peer, right, left, spec=BEHIND, remote_addr="%any",
                           conn={"dpd_delay": "2s", "mobike": False})
    gw = ikeguard_side(ikeguard_gateway, left, right, spec=BEHIND, remote_addr=str(right.address),
                       conn={"dpd_delay": "2s", "dpd_timeout": "6s", "mobike": False},
                       child={"start_action": "start"})
    ss_sa = peer.wait_established("ikg", "net")
    sa = wait_one_sa(gw)
    assert sa["nat_local"] and ss_sa.remote_port == 4500

    _remap(topo.router)
    moved = peer.wait_for(lambda sas: len(sas) == 1 and NEW_PORTS[0] <= sas[0].remote_port <= NEW_PORTS[1],
                          timeout=10, what="strongSwan following the new NAT mapping")[0]
    assert (moved.initiator_spi, moved.responder_spi) == (ss_sa.initiator_spi, ss_sa.responder_spi)
    assert "N(UPD_SA_ADDR)" not in peer.log()  # no MOBIKE: the implicit update of §2.23
    time.sleep(5)
    final = peer.list_sas()
    assert len(final) == 1 and final[0].remote_port == moved.remote_port
    sas = gw.sas()
    assert len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) == (sa["spi_i"], sa["spi_r"])
    assert "dpd.timeout" not in {e["event"] for e in gw.audit_events()}
