"""start_action = "trap" with the kernel data plane: traffic hitting the trap policy (an XFRM ACQUIRE) starts
the tunnel; nothing is negotiated before. The XFRM side lives in a test namespace; IKE runs on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ikeguard.dataplane.xfrm import XFRM_FEATURES, XfrmDataPlane
from ikeguard.tools.netns import NetnsLab
from tests.service.inprocess import free_port, make_plan, pair_configs, running

pytestmark = pytest.mark.root


def test_traffic_on_a_trap_policy_starts_the_tunnel(netns_lab: NetnsLab, tmp_path: Path) -> None:
    ns = netns_lab.namespace("trap")
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ns.ip("addr", "add", "10.2.0.1/24", "dev", "v0")
    ns.set_up("v0")
    ns.set_up("v1")
    ns.ip("route", "add", "10.1.0.0/24", "dev", "v0")
    port = free_port()
    responder_cfg, initiator_cfg = pair_configs(i_start_action="trap")
    plane = XfrmDataPlane(netns=ns.name, features=XFRM_FEATURES)

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port)) as gw, \
                running(make_plan(tmp_path / "client", initiator_cfg, port), dataplane=plane) as client:
            assert len(client.gateway.traps.traps) == 1
            await asyncio.sleep(0.5)
            assert client.gateway.sas() == [] and gw.gateway.sas() == []  # nothing before traffic
            ping = await asyncio.create_subprocess_exec(
                *ns.exec_argv(["ping", "-c", "1", "-W", "1", "-n", "-I", "10.2.0.1", "10.1.0.5"]),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await ping.wait()
            deadline = time.monotonic() + 10
            while not any(e == "ike.up" for e in gw.events()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert client.gateway.traps.acquires >= 1
            assert "ike.up" in gw.events() and "ike.up" in client.events()

    try:
        asyncio.run(main())
        assert plane.policies() == []  # the stopped gateway removed its trap and policies
    finally:
        plane.flush()
        plane.close()
