"""Issue 22 item 1: ``[gateway] workers`` defaults to ``"auto"``, one IKE worker process per core. A gateway
whose file does not name ``workers`` runs that many workers and serves a strongSwan peer, also with
``unique = keep`` (enforced across workers: test_workers_uniqueness.py). A control command answered by every
worker is recorded once, with the operator's name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import pytest

from ikeguard.tools.netns import Topology
from tests.harness.interop_pair import (
    GatewayFactory,
    PeerFactory,
    assert_same_sa,
    ikeguard_side,
    strongswan_side,
)
from tests.harness.workers import worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]


def test_default_is_one_worker_per_core_or_one_with_the_reason(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    cores = len(os.sched_getaffinity(0))

    product_default = functools.partial(ikeguard_gateway, default_workers=True)  # no `workers` in the file
    gw = ikeguard_side(product_default, right, left)
    expected = list(range(cores)) if cores > 1 else []
    assert sorted(worker_pids(gw.log())) == expected, gw.log_tail()
    peer = strongswan_side(strongswan_peer, left, right)
    peer.initiate(child="net", ike="ikg")
    established = peer.wait_established("ikg", "net")
    assert_same_sa(established, gw.wait_sas(lambda sas: len(sas) == 1, timeout=10)[0])
    # one command over the control socket: one admin.command record naming the operator (PCI DSS 10.2.1.2),
    # whichever workers answered it
    assert gw.request("conns")[0]["ike_sas_up"] == 1
    gw.stop()
    commands = [e for e in gw.audit_events() if e["event"] == "admin.command" and e["reason"] == "conns"]
    assert [(e["admin"], e["outcome"]) for e in commands] == [("root", "success")], commands

    # unique = keep holds across workers (test_workers_uniqueness.py): no reason to fall back to one process
    keep = ikeguard_side(product_default, right, left, name="keep", conn={"unique": "keep"})
    assert sorted(worker_pids(keep.log())) == expected, keep.log_tail()
    assert "one worker process, because" not in keep.log()
