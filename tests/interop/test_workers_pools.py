"""Issue 22: virtual IP pools (RFC 7296 §3.15) with ``[gateway] workers = 2`` against real remote-access
clients (strongSwan, ``vips = 0.0.0.0``). alice connects from 192.0.2.2 (spread to worker 0), bob from
192.0.2.3 (worker 1): one pool, two workers, two different addresses (each worker alone would hand out the
first one), and both ping through the supervisor's userspace plane; alice re-authenticates
(make-before-break) and keeps hers. Worker 1 is killed: bob's lease goes offline, kept for him
(service/pool_broker.py); when he re-establishes he gets the same address, not the next never-used one, and
alice's SA is untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable

import pytest

from ikeguard.service.reuseport import spread_index
from ikeguard.tools.netns import Topology, wait_until
from tests.harness.ikeguard_conf import (
    IkgChild,
    IkgConnection,
    IkgLocal,
    IkgRemote,
    IkgSecret,
    gateway_toml,
    secret_files,
)
from tests.harness.interop_pair import GatewayFactory, PeerFactory
from tests.harness.strongswan import StrongSwanError
from tests.harness.swanctl_conf import AuthConfig, ChildConfig, ConnectionConfig, PskSecret
from tests.harness.workers import worker_of, worker_pids

pytestmark = [pytest.mark.root, pytest.mark.interop]

GW_ID = "vpn.example.org"
PSKS = {"alice": "pool-workers-alice-5d1f93c2a7e4", "bob": "pool-workers-bob-81c0e6f2d49a"}
USERS = {"alice": "192.0.2.2", "bob": "192.0.2.3"}
POOL = "203.0.113.64/29"
EXPECTED = {"alice": "203.0.113.65", "bob": "203.0.113.66"}


def test_one_pool_two_workers_and_a_killed_worker(
    netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory, ikeguard_gateway: GatewayFactory,
) -> None:
    assert [spread_index(a, 2) for a in USERS.values()] == [0, 1]
    topo = netns_topology("direct")
    left, right = topo.left, topo.right
    left.namespace.add_address(left.ifname, "192.0.2.3/24")
    conns = [IkgConnection(
        name=f"rw-{user}", remote_addrs=["%any"], local=IkgLocal(auth="psk", id=GW_ID),
        remote=IkgRemote(auth="psk", id=user), dpd_delay="2s",
        children=[IkgChild(name="net", local_ts=[str(right.subnet)], remote_ts=["dynamic"])],
        extra={"pools": ["staff"]}) for user in USERS]
    secrets = [IkgSecret(user, [GW_ID, user], psk) for user, psk in PSKS.items()]
    config = gateway_toml(conns, secrets=secrets, dataplane="userspace",
                          gateway={"workers": 2, "retransmit_timeout": 1.0, "retransmit_tries": 3,
                                   "vici": "charon.vici"})
    config += f'\n[pools.staff]\naddrs = "{POOL}"\n'
    gw = ikeguard_gateway(right.namespace, "gw", config, secret_files(secrets))
    road = strongswan_peer(left.namespace, "road", connections=[ConnectionConfig(
        name=user, local_addrs=[address], remote_addrs=[str(right.address)],
        local=AuthConfig("psk", user), remote=AuthConfig("psk", GW_ID),
        children=[ChildConfig(name=f"net-{user}", local_ts=["dynamic"], remote_ts=[str(right.subnet)])],
        extra={"vips": "0.0.0.0"}) for user, address in USERS.items()],
        psks=[PskSecret(ids=[GW_ID, user], secret=psk) for user, psk in PSKS.items()],
        charon_options={"make_before_break": "yes"})

    for user in USERS:
        road.initiate(child=f"net-{user}", ike=user)
    sas = gw.wait_sas(lambda s: len(s) == 2 and all(sa["children"] for sa in s), timeout=15)
    by_user = {str(sa["name"]).removeprefix("rw-"): sa for sa in sas}
    alice_spi = by_user["alice"]["spi_r"]
    assert {u: worker_of(sa) for u, sa in by_user.items()} == {"alice": 0, "bob": 1}
    assert {u: sa["virtual_ip"] for u, sa in by_user.items()} == EXPECTED
    assert "installing new virtual IP 203.0.113.66" in road.log()
    # swanctl over the supervisor's vici socket: both workers' leases online in the one pool
    swanctl = shutil.which("swanctl") or "/usr/sbin/swanctl"
    vici = gw.workdir / "charon.vici"
    pools = subprocess.run([swanctl, "--list-pools", "--leases", "--uri", f"unix://{vici}"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert pools.returncode == 0, pools.stderr
    assert pools.stdout.split()[:6] == ["staff", "203.0.113.65", "2", "/", "0", "/"], pools.stdout
    for user, vip in EXPECTED.items():
        assert re.search(rf"{re.escape(vip)}\s+online\s+'{user}'", pools.stdout), pools.stdout
    for vip in EXPECTED.values():  # through the supervisor's one userspace plane, from each worker's SA
        ping = left.namespace.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", vip,
                                  str(right.subnet_address), check=False)
        assert ping.returncode == 0, (vip, ping.stdout, ping.stderr)

    # alice re-authenticates, make-before-break: her new IKE SA takes .65 while the old one still holds it
    road.rekey(ike="alice", reauth=True)
    sas = gw.wait_sas(lambda s: len(s) == 2 and all(sa["children"] for sa in s)
                      and alice_spi not in {sa["spi_r"] for sa in s}, timeout=15,
                      what="alice re-authenticated")
    by_user = {str(sa["name"]).removeprefix("rw-"): sa for sa in sas}
    assert {u: sa["virtual_ip"] for u, sa in by_user.items()} == EXPECTED
    alice_spi = by_user["alice"]["spi_r"]
    assert "activating IKE_REAUTH_COMPLETE task" in road.log()  # the old IKE SA went after the new one

    pids = worker_pids(gw.log())
    os.kill(pids[1], signal.SIGKILL)
    assert wait_until(lambda: "worker 1 gone: its 1 virtual IP lease(s) are offline" in gw.log(), 10), \
        gw.log_tail()
    assert wait_until(lambda: re.search(rf"worker 1 started \(pid (?!{pids[1]}\))", gw.log()) is not None,
                      10), gw.log_tail()
    with contextlib.suppress(StrongSwanError):  # its SA died with worker 1
        road.terminate(ike="bob", force=True)
    road.initiate(child="net-bob", ike="bob")
    sas = gw.wait_sas(lambda s: len(s) == 2 and all(sa["children"] for sa in s), timeout=15)
    by_user = {str(sa["name"]).removeprefix("rw-"): sa for sa in sas}
    assert by_user["alice"]["spi_r"] == alice_spi
    # bob's address was kept for him (a fresh assignment would be .67); alice's SA is the same one
    assert {u: sa["virtual_ip"] for u, sa in by_user.items()} == EXPECTED
    assert wait_until(lambda: (gw.state_dir / "leases.json").exists(), 5)
