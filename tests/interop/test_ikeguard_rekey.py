"""Issue 6 item 2: rekeying and reauthentication between `ikeguard run` and a real strongSwan.

Child SA rekeys with PFS (CREATE_CHILD_SA with KE, RFC 7296 §1.3.3) and IKE SA rekeys (§1.3.2) started by
either side, on demand (`ikeguard rekey`, `swanctl --rekey`) and by short lifetimes; reauthentication
(§2.8.3) by ikeguard's reauth_time in both roles and by `swanctl --rekey --reauth`. Afterwards each side
holds exactly one IKE SA and one Child SA, the SPIs changed and agree, ikeguard's userspace data plane has
exactly one route for the tunnel and still carries a ping. A PFS mismatch fails the first Child SA rekey in
either direction with an audit record that says so, and the old Child SA keeps working.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.interop_scenarios import SUITES, Pair, PairSpec, assert_same_sa, spis, start_pair
from tests.harness.strongswan import IkeSaInfo, StrongSwanPeer

pytestmark = [pytest.mark.root, pytest.mark.interop]

GCM = SUITES["gcm"]
Fixtures = tuple[Callable[..., Topology], Callable[..., StrongSwanPeer], Callable[..., GatewayProcess]]


@pytest.fixture
def fixtures(
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess],
) -> Fixtures:
    return netns_topology, strongswan_peer, ikeguard_gateway


def _up(fixtures: Fixtures, spec: PairSpec) -> tuple[Pair, IkeSaInfo, dict[str, Any]]:
    pair = start_pair(*fixtures, spec)
    pair.initiate()
    ss, ikg = pair.settled()
    assert_same_sa(ss, ikg, spec.suite)
    return pair, ss, ikg


def _events(pair: Pair, name: str) -> list[dict[str, Any]]:
    return [e for e in pair.gw.audit_events() if e["event"] == name]


def _new_child(before: IkeSaInfo) -> Callable[[IkeSaInfo, dict[str, Any]], bool]:
    old = spis(before)
    return lambda ss, _ikg: spis(ss)[:2] == old[:2] and not set(spis(ss)[2:]) & set(old[2:])


def _new_ike(before: IkeSaInfo) -> Callable[[IkeSaInfo, dict[str, Any]], bool]:
    old = spis(before)
    return lambda ss, _ikg: not set(spis(ss)[:2]) & set(old[:2])


def _assert_clean(pair: Pair, *, counters: bool = True) -> None:
    """The data plane has exactly one route for the tunnel and carries a ping on the current SAs (the
    subnets are reachable only through the tunnel); `counters`: both sides counted it on their only SA."""
    assert len(pair.child_routes()) == 1, pair.child_routes()
    ss_before = pair.peer.list_sas()[0].children[0].packets_in
    assert " 0% packet loss" in pair.ping(2)
    if counters:
        assert pair.peer.list_sas()[0].children[0].packets_in >= ss_before + 2
        assert pair.gw.sas()[0]["children"][0]["packets_in"] >= 2


def _count(log: str, text: str) -> int:
    return log.count(text)


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_on_demand_rekeys_from_both_sides(role: str, fixtures: Fixtures) -> None:
    """`ikeguard rekey` and `swanctl --rekey`, Child SA (with PFS) then IKE SA, each side in turn."""
    pair, ss, _ = _up(fixtures, PairSpec(role, dataplane="userspace"))

    # Child SA rekey started by ikeguard (the CLI verb an operator uses)
    text = pair.gw.cli("rekey", "--conn", "ikg", "--child", "net", json=False)
    assert text.startswith("Child SA ") and " net (ikg, IKE SA " in text and " rekeyed: SPIs in " in text
    ss2, ikg = pair.settled(until=_new_child(ss), what="Child SA rekeyed by ikeguard")
    assert_same_sa(ss2, ikg, GCM, pfs=True)  # strongSwan's child proposal shows the KE group: PFS was used
    assert "parsed CREATE_CHILD_SA request" in pair.peer.log()

    # Child SA rekey started by strongSwan
    assert pair.peer.rekey(child="net") == 1
    ss3, ikg = pair.settled(until=_new_child(ss2), what="Child SA rekeyed by strongSwan")
    assert_same_sa(ss3, ikg, GCM, pfs=True)
    assert "generating CREATE_CHILD_SA request" in pair.peer.log()
    assert wait_until(lambda: len(_events(pair, "child.rekeyed")) == 2, 5)  # the trail is written async
    assert all(e["outcome"] == "success" for e in _events(pair, "child.rekeyed"))

    # IKE SA rekey started by ikeguard: new IKE SPIs, the Child SA moves over unchanged (RFC 7296 §2.18)
    assert " (ikg) rekeyed: SPIs " in pair.gw.cli("rekey", "--conn", "ikg", json=False)
    ss4, ikg = pair.settled(until=_new_ike(ss3), what="IKE SA rekeyed by ikeguard")
    assert_same_sa(ss4, ikg, GCM, pfs=True)
    assert spis(ss4)[2:] == spis(ss3)[2:]
    assert ikg["initiator"] is True and not ss4.initiator

    # IKE SA rekey started by strongSwan
    assert pair.peer.rekey(ike="ikg") == 1
    ss5, ikg = pair.settled(until=_new_ike(ss4), what="IKE SA rekeyed by strongSwan")
    assert_same_sa(ss5, ikg, GCM, pfs=True)
    assert spis(ss5)[2:] == spis(ss3)[2:]
    assert wait_until(lambda: len(_events(pair, "ike.rekeyed")) == 2, 5)
    assert ikg["initiator"] is False and ss5.initiator  # the rekey's initiator is the new SA's (§2.18)
    _assert_clean(pair)


@pytest.mark.parametrize("who", ["ikeguard", "strongswan"])
def test_short_lifetimes_rekey(who: str, fixtures: Fixtures) -> None:
    """Child SA rekey_time 4 s and IKE SA rekey_time 7 s on one side only: that side starts every rekey.

    Hard lifetimes are set well apart from the rekey times: with strongSwan's defaults (life = 1.1 x rekey,
    jitter = the difference, whole seconds) a 4 s Child SA hard-expires at the moment it should rekey."""
    child = {"rekey_time": "4s", "life_time": "8s", "rand_time": "1s"}
    ike = {"rekey_time": "7s", "over_time": "4s", "rand_time": "1s"}
    if who == "ikeguard":  # ikeguard as the original responder: it rekeys SAs the peer created
        spec = PairSpec("responder", dataplane="userspace", ikg_child=child, ikg_conn=ike)
    else:
        spec = PairSpec("initiator", dataplane="userspace", ss_child=child, ss_conn=ike)
    pair, ss, _ = _up(fixtures, spec)

    assert wait_until(lambda: len(_events(pair, "ike.rekeyed")) >= 1 and
                      len(_events(pair, "child.rekeyed")) >= 2, 14), pair.gw.log_tail(40)
    # rekeys keep coming every few seconds: judge a quiet moment between them
    ss2, ikg = pair.settled(until=lambda s, _i: not set(spis(s)) & set(spis(ss)) and
                            len(pair.child_routes()) == 1, what="new SPIs, one data-plane route")
    assert_same_sa(ss2, ikg, GCM, pfs=True)
    log = pair.peer.log()
    started_by_strongswan = _count(log, "generating CREATE_CHILD_SA request")
    answered_by_strongswan = _count(log, "parsed CREATE_CHILD_SA request")
    if who == "ikeguard":
        assert answered_by_strongswan >= 3 and started_by_strongswan == 0
    else:
        assert started_by_strongswan >= 3 and answered_by_strongswan == 0
    assert " 0% packet loss" in pair.ping(2)


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_ikeguard_reauthenticates(role: str, fixtures: Fixtures) -> None:
    """reauth_time 5 s on ikeguard: a new IKE SA (make-before-break, RFC 7296 §2.8.3), the old one deleted."""
    spec = PairSpec(role, dataplane="userspace", ikg_conn={"rekey_time": 0, "reauth_time": "5s"})
    pair, ss, _ = _up(fixtures, spec)
    event = pair.gw.wait_audit(lambda e: e["event"] == "ike.reauth", timeout=10)
    assert event["outcome"] == "success"
    # the next reauthentication follows 5 s later: judge a quiet moment, routes included
    ss2, ikg = pair.settled(until=lambda s, _i: not set(spis(s)) & set(spis(ss)) and
                            len(pair.child_routes()) == 1, what="reauthenticated, one data-plane route")
    assert_same_sa(ss2, ikg, GCM)  # a fresh IKE_AUTH child: no KE
    assert ikg["initiator"] is True and ss2.initiator is False  # ikeguard set up the new IKE SA
    assert ikg["uniqueid"] != 1
    down = pair.gw.wait_audit(lambda e: e["event"] == "ike.down" and e.get("ike_uniqueid") == 1, timeout=5)
    assert "reauth" in down["reason"]
    assert " 0% packet loss" in pair.ping(2)


def test_strongswan_reauthenticates(fixtures: Fixtures) -> None:
    """`swanctl --rekey --ike --reauth` against the ikeguard responder: one new IKE SA and Child SA."""
    pair, ss, _ = _up(fixtures, PairSpec("responder", dataplane="userspace"))
    assert pair.peer.rekey(ike="ikg", reauth=True) == 1
    ss2, ikg = pair.settled(until=lambda s, _i: not set(spis(s)) & set(spis(ss)), what="reauthenticated")
    assert_same_sa(ss2, ikg, GCM)
    assert ikg["initiator"] is False and ikg["uniqueid"] != 1
    assert wait_until(lambda: len(_events(pair, "auth.success")) == 2, 5)
    _assert_clean(pair)


@pytest.mark.parametrize("who", ["ikeguard", "strongswan"])
def test_pfs_mismatch_fails_first_child_rekey(who: str, fixtures: Fixtures) -> None:
    """ikeguard requires PFS (ESP aes256gcm16-ecp384), strongSwan has none (aes256gcm16): the IKE_AUTH
    child comes up (no KE there), the first rekey fails with an audit reason naming PFS; the old SA stays."""
    spec = PairSpec("initiator", dataplane="userspace", ss_esp=("aes256gcm16",))
    pair, ss, _ = _up(fixtures, spec)
    if who == "ikeguard":
        failed = pair.gw.cli("rekey", "--conn", "ikg", "--child", "net", json=False, check=False)
        assert " rekey failed (SPIs in " in failed  # the command says so (exit 1); the old SA stays
        event = pair.gw.wait_audit(lambda e: e["event"] == "child.failed", timeout=10)
        assert event["reason"] == (
            "PFS mismatch for net: peer refused the rekey with NO_PROPOSAL_CHOSEN; we require key exchange "
            "ECP_384 (PFS), the peer's ESP proposals likely have none")
        assert "no acceptable KEY_EXCHANGE_METHOD found" in pair.peer.log()  # strongSwan's side of it
    else:
        assert pair.peer.rekey(child="net") == 1
        event = pair.gw.wait_audit(lambda e: e["event"] == "proposal.rejected", timeout=10)
        assert event["reason"] == "PFS mismatch for net: peer offered key exchange none, we require ECP_384"
        assert wait_until(lambda: "received NO_PROPOSAL_CHOSEN notify" in pair.peer.log(), 5)
        assert "CHILD_SA rekeying failed" in pair.peer.log()
    assert event["outcome"] == "failure" and event["connection"] == "ikg"
    ss2, _ = pair.settled()
    assert spis(ss2) == spis(ss)  # nothing rekeyed, nothing left half-done
    assert not _events(pair, "child.rekeyed")
    _assert_clean(pair)


_JUNK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(8):
    s.sendto(b"x" * 1400, (sys.argv[1], 9))
"""


def _slow_link(pair: Pair) -> Callable[[], None]:
    """Rate-limit both ends of the veth (tbf, 100 kbit/s) and queue ~0.8 s of junk (UDP to the discard
    port) in each, so IKE requests sent now by both sides are both in flight at once; returns the undo."""
    ends = ((pair.topo.right, pair.topo.left), (pair.topo.left, pair.topo.right))
    for host, _ in ends:
        host.namespace.run("tc", "qdisc", "add", "dev", host.ifname, "root", "tbf", "rate", "100kbit",
                           "burst", "1600", "latency", "2s")
    for host, other in ends:
        host.namespace.run(sys.executable, "-c", _JUNK, str(other.address))

    def undo() -> None:
        for host, _ in ends:
            host.namespace.run("tc", "qdisc", "del", "dev", host.ifname, "root", check=False)

    return undo


@pytest.mark.parametrize("what", ["child", "ike"])
def test_simultaneous_rekeys(what: str, fixtures: Fixtures) -> None:
    """Both sides rekey the same SA at the same moment (RFC 7296 §2.8.1 Child SA, §2.8.2 IKE SA) while the
    link is slowed down (every message delivered, up to ~0.8 s late), so the two requests cross and BOTH
    sides see the collision. Each resolves it by the nonces; both end with one IKE SA and one Child SA with
    new SPIs, and strongSwan never reports that ikeguard missed the collision."""
    pair, ss, _ = _up(fixtures, PairSpec("initiator", dataplane="userspace"))
    kind = "CHILD_REKEY" if what == "child" else "IKE_REKEY"
    selection = {"conn": "ikg", "child": "net"} if what == "child" else {"conn": "ikg"}
    peer_args: dict[str, Any] = {"child": "net"} if what == "child" else {"ike": "ikg"}
    undo = _slow_link(pair)
    try:
        ours = threading.Thread(target=pair.gw.request, args=("rekey",), kwargs=selection)
        ours.start()
        assert pair.peer.rekey(**peer_args) == 1
        ours.join()
        assert wait_until(lambda: f"detected {kind} collision with {kind}" in pair.peer.log(), 5)
        changed = _new_child(ss) if what == "child" else _new_ike(ss)
        ss2, ikg = pair.settled(until=changed, timeout=15, what=f"{what} SA rekeyed by both sides at once")
    finally:
        undo()
    assert_same_sa(ss2, ikg, GCM, pfs=what == "child")
    if what == "ike":
        assert spis(ss2)[2:] == spis(ss)[2:]  # the Child SA moved to the surviving IKE SA
    log = pair.peer.log()
    assert "did not notice" not in log and "but we are deleting" not in log
    assert "collision won" in log or "collision lost" in log
    _assert_clean(pair)
