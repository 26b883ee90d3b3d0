"""Issue 22, IKE on every core: a peer's new IKE SA in one worker ends its old IKE SAs in the other workers,
as one process does: after INITIAL_CONTACT (RFC 7296 §2.4, strongSwan's default ``unique = no``) and under
``unique = replace``, also when a reload turned ``replace`` on after the workers started.

A strongSwan peer (the same identity throughout) comes up from 192.0.2.2, which the source spread sends to
worker 0; it "reboots" (SIGKILL: no DELETE) and comes back from 192.0.2.3 (worker 1) with INITIAL_CONTACT:
worker 0 drops the old SA without a DELETE. Then the gateway's connection is reloaded to ``unique = replace``
and the peer, restarted with ``unique = never`` (no INITIAL_CONTACT) from 192.0.2.2, comes up in worker 0:
worker 1 deletes its SA (sends the DELETE: to the crashed incarnation here, so it stays "deleting" until its
retransmissions give up). Last, reloaded to ``unique = keep``, the peer's host crashes again and a new
incarnation comes up from 192.0.2.3 in worker 1: worker 0 holds the older SA, so worker 1 deletes the new one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from ikeguard.service.reuseport import spread_index
from ikeguard.tools.netns import Host, Topology, wait_until
from tests.harness.interop_pair import GatewayFactory, PeerFactory, ikeguard_side, strongswan_side
from tests.harness.strongswan import StrongSwanPeer
from tests.harness.workers import worker_of

pytestmark = [pytest.mark.root, pytest.mark.interop]

REBOOTED_ADDRESS = "192.0.2.3"


def _crash(peer: StrongSwanPeer) -> None:
    """The peer's host fails: charon ends without a DELETE (SIGKILL of the PID we started)."""
    assert peer.pid is not None
    os.kill(peer.pid, signal.SIGKILL)
    peer.stop()


def test_initial_contact_and_unique_replace_reach_the_other_worker(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    assert spread_index(str(left.address), 2) == 0 and spread_index(REBOOTED_ADDRESS, 2) == 1
    gw = ikeguard_side(ikeguard_gateway, right, left, remote_addr="%any", gateway_keys={"workers": 2},
                       conn={"unique": "no"})
    assert 'unique = "no"' in gw.config

    first = strongswan_side(strongswan_peer, left, right, name="ss1")
    first.initiate(child="net", ike="ikg")
    first.wait_established("ikg", "net")
    old = gw.wait_sas(lambda sas: len(sas) == 1, timeout=10)[0]
    assert worker_of(old) == 0

    # 1. the peer reboots and returns from an address the spread sends to worker 1, with INITIAL_CONTACT
    _crash(first)
    left.namespace.run("ip", "addr", "add", f"{REBOOTED_ADDRESS}/24", "dev", left.ifname)
    moved: Host = dataclasses.replace(left, address=ipaddress.IPv4Address(REBOOTED_ADDRESS))
    second = strongswan_side(strongswan_peer, moved, right, name="ss2")
    second.initiate(child="net", ike="ikg")
    second.wait_established("ikg", "net")
    assert "N(INIT_CONTACT)" in second.log()

    def only_new(sas: list[dict[str, Any]]) -> bool:
        return [sa["remote_addr"] for sa in sas] == [REBOOTED_ADDRESS]

    new = gw.wait_sas(only_new, timeout=10, what="worker 0 dropping the rebooted peer's old IKE SA")[0]
    assert worker_of(new) == 1
    down = gw.wait_audit(lambda e: e["event"] == "ike.down" and e.get("ike_uniqueid") == old["uniqueid"],
                         timeout=5)
    assert "INITIAL_CONTACT" in str(down["reason"]) and "worker 1" in str(down["reason"])
    up = gw.wait_audit(lambda e: e["event"] == "ike.up" and e.get("ike_uniqueid") == new["uniqueid"],
                       timeout=5)
    assert up["details"].get("initial_contact") == "yes"

    # 2. reload: the connection now has unique = replace (the workers started without it)
    gw.update_config(gw.config.replace('unique = "no"', 'unique = "replace"'))
    gw.reload()
    gw.wait_audit(lambda e: e["event"] == "config.loaded" and e.get("admin") == "SIGHUP", timeout=10)
    _crash(second)
    third = strongswan_side(strongswan_peer, left, right, name="ss3", conn={"unique": "never"})
    third.initiate(child="net", ike="ikg")
    third.wait_established("ikg", "net")
    assert "N(INIT_CONTACT)" not in third.log()

    def replaced(sas: list[dict[str, Any]]) -> bool:  # the superseded SA: DELETE sent (dead peer) or gone
        return [sa["uniqueid"] for sa in sas if sa["state"] == "established"] == [last_id()]

    def last_id() -> int | None:
        ups = [e for e in gw.audit_events(settle=False) if e["event"] == "ike.up"]
        return ups[-1]["ike_uniqueid"] if len(ups) == 3 else None

    sas = gw.wait_sas(replaced, timeout=10, what="worker 1 deleting the SA unique = replace supersedes")
    last = next(sa for sa in sas if sa["state"] == "established")
    assert worker_of(last) == 0 and last["remote_addr"] == str(left.address)
    assert all(sa["state"] == "deleting" for sa in sas if sa["uniqueid"] == new["uniqueid"])

    # 3. unique = keep: the peer's IKE SA in worker 0 is kept (its host crashed: strongSwan's keep keeps
    # the old SA too), a new one from the other address comes up in worker 1 and is deleted
    gw.update_config(gw.config.replace('unique = "replace"', 'unique = "keep"'))
    gw.reload()
    assert wait_until(lambda: sum(1 for e in gw.audit_events(settle=False)
                                  if e["event"] == "config.loaded" and e.get("admin") == "SIGHUP") == 2, 10)
    _crash(third)
    fourth = strongswan_side(strongswan_peer, moved, right, name="ss4", conn={"unique": "never"})
    fourth.initiate(child="net", ike="ikg")
    refused = gw.wait_audit(lambda e: e["event"] == "ike.down" and "unique=keep" in str(e.get("reason")),
                            timeout=10)
    assert refused["ike_uniqueid"] != last["uniqueid"] and refused["remote_addr"].startswith(REBOOTED_ADDRESS)
    assert f"already has IKE SA {last['uniqueid']} in worker 0" in str(refused["reason"])
    assert [sa["uniqueid"] for sa in gw.sas() if sa["state"] == "established"] == [last["uniqueid"]]
    fourth.wait_for_log("received DELETE for IKE_SA", timeout=10)
