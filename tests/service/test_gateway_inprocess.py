"""In-process gateway pair on loopback: what the service does with the engine's outputs, commands and actions
(no root needed; the real-peer tests are test_run_strongswan.py and test_run_pair.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ikeguard.dataplane.base import SaDirection
from ikeguard.service.errors import GatewayCommandError
from tests.service.inprocess import (
    CLIENT_ID,
    GW_ID,
    RefusingAudit,
    Running,
    free_port,
    make_plan,
    pair_configs,
    running,
)


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _run(tmp_path: Path, body: Callable[[Running, Running], Awaitable[None]], **kwargs: Any) -> None:
    port = free_port()
    responder_cfg, initiator_cfg = pair_configs(**kwargs)

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port)) as gw, \
                running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            await body(gw, client)

    asyncio.run(main())


def _installed(r: Running) -> bool:
    sas = r.gateway.sas()
    return bool(sas) and bool(sas[0]["children"]) and sas[0]["children"][0]["state"] == "installed"


def test_initiate_installs_both_directions_and_terminate_removes_them(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        ids = await client.gateway.initiate("ikg", timeout=5)
        assert len(ids) == 2  # IKE SA and its Child SA
        await _until(lambda: _installed(gw))
        (c_sa,), (g_sa,) = client.gateway.sas(), gw.gateway.sas()
        assert c_sa["uniqueid"] == ids[0] and c_sa["children"][0]["uniqueid"] == ids[1]
        assert (c_sa["initiator"], g_sa["initiator"]) == (True, False)
        assert (c_sa["local_id"], g_sa["remote_id"]) == (CLIENT_ID, CLIENT_ID)
        spi_in, spi_out = int(c_sa["children"][0]["spi_in"], 16), int(c_sa["children"][0]["spi_out"], 16)
        assert len(c_sa["children"][0]["spi_in"]) == 8 and c_sa["established_at"].endswith("Z")
        # the data plane holds exactly the negotiated SAs, and the outbound policy for the remote subnet
        assert {k[:2] for k in client.dataplane.sas} == {(spi_in, SaDirection.INBOUND),
                                                         (spi_out, SaDirection.OUTBOUND)}
        assert {k[:2] for k in gw.dataplane.sas} == {(spi_out, SaDirection.INBOUND),
                                                     (spi_in, SaDirection.OUTBOUND)}
        [(local_ts, remote_ts)] = client.dataplane.policies.values()
        assert [str(t) for t in remote_ts] == ["10.1.0.0/24"]
        assert [str(t) for t in local_ts] == ["10.2.0.0/24"]
        calls = [c.method for c in client.dataplane.calls]
        assert calls.index("add_policy") < calls.index("add_sa", calls.index("add_sa") + 1)  # policy first
        conns = client.gateway.conns()
        assert conns[0]["name"] == "ikg" and conns[0]["status"] == "up" and conns[0]["ike_sas_up"] == 1
        assert client.gateway.stats.exchanges[("ikg", "IKE_AUTH", "success")] == 1
        assert "ike.up" in client.events() and "child.up" in gw.events()

        assert client.gateway.terminate(conn="ikg") == 1
        await _until(lambda: not gw.gateway.sas() and not client.gateway.sas())
        assert gw.dataplane.sas == {} and client.dataplane.sas == {}
        # fail closed: the policy stays (traffic dropped) while no SA exists
        assert len(client.dataplane.policies) == 1
        with pytest.raises(GatewayCommandError):
            client.gateway.terminate(conn="ikg")

    _run(tmp_path, body)


def test_failed_install_deletes_the_child_at_the_peer(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        client.dataplane.fail_next_install = "no room for another SA"
        await client.gateway.initiate("ikg", timeout=5)
        await _until(lambda: bool(gw.gateway.sas()) and not gw.gateway.sas()[0]["children"])
        assert "child.failed" in client.events()
        assert gw.dataplane.sas == {}  # the responder removed what it had installed

    _run(tmp_path, body)


def test_stop_deletes_the_ike_sa_at_the_peer_and_clears_the_data_plane(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        await client.gateway.initiate("ikg", timeout=5)
        await _until(lambda: _installed(gw))
        started = time.monotonic()
        await client.gateway.stop()
        assert time.monotonic() - started < 1.5  # the answer came; no 2 s wait
        assert not gw.gateway.sas()
        assert client.dataplane.sas == {} and client.dataplane.policies == {}
        downs = [e for e in client.seen if e["event"] == "ike.down"]
        assert downs and "gateway shutdown" in downs[0]["reason"]

    _run(tmp_path, body)


def test_close_action_start_brings_the_tunnel_back_after_the_peer_deletes_it(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        first = (await client.gateway.initiate("ikg", timeout=5))[0]
        await _until(lambda: _installed(gw))
        gw.gateway.terminate(peer=CLIENT_ID)
        await _until(lambda: _installed(client) and client.gateway.sas()[0]["uniqueid"] != first)
        assert client.events().count("ike.up") == 2

    _run(tmp_path, body, i_close_action="start")


def test_peer_delete_without_close_action_stays_down(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        await client.gateway.initiate("ikg", timeout=5)
        await _until(lambda: _installed(gw))
        gw.gateway.terminate(conn="ikg")
        await _until(lambda: not client.gateway.sas())
        await asyncio.sleep(0.3)
        assert not client.gateway.sas() and client.events().count("ike.up") == 1

    _run(tmp_path, body)


def test_start_action_retries_until_the_responder_is_there(tmp_path: Path) -> None:
    port = free_port()
    quick = "retransmit_tries = 1\nretransmit_timeout = 0.2\nretransmit_base = 1.0"
    responder_cfg, initiator_cfg = pair_configs(i_start_action="start", i_extra_gateway=quick)

    async def main() -> None:
        async with running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            await _until(lambda: "ike.failed" in client.events())  # the first attempt gave up
            assert not client.gateway.sas()
            async with running(make_plan(tmp_path / "gw", responder_cfg, port)) as gw:
                await _until(lambda: _installed(client), timeout=10)  # a later attempt (backoff) succeeds
                assert _installed(gw) and client.gateway.sas()[0]["uniqueid"] > 1

    asyncio.run(main())


def test_dpd_restart_after_the_peer_vanished(tmp_path: Path) -> None:
    port = free_port()
    extra = 'retransmit_tries = 1\nretransmit_timeout = 0.3\nretransmit_base = 1.0'
    responder_cfg, initiator_cfg = pair_configs(i_dpd_action="restart", i_dpd_delay="1s",
                                                extra_gateway=extra)
    gw_plan = make_plan(tmp_path / "gw", responder_cfg, port)

    async def main() -> None:
        async with running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            async with running(gw_plan) as gw:
                await client.gateway.initiate("ikg", timeout=5)
                await _until(lambda: _installed(gw))
                gw.gateway.transport.close()  # the peer vanishes without a DELETE
            await _until(lambda: "dpd.timeout" in client.events(), timeout=10)
            async with running(make_plan(tmp_path / "gw2", responder_cfg, port)):
                await _until(lambda: _installed(client) and client.events().count("ike.up") == 2, timeout=10)

    asyncio.run(main())


def test_new_sas_refused_while_the_audit_trail_cannot_be_written(tmp_path: Path) -> None:
    port = free_port()
    responder_cfg, initiator_cfg = pair_configs()
    broken = RefusingAudit()

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port), audit=broken) as gw, \
                running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            with pytest.raises(GatewayCommandError, match="audit"):
                await gw.gateway.initiate("ikg", timeout=1)  # we start nothing either
            with pytest.raises(GatewayCommandError):
                await client.gateway.initiate("ikg", timeout=1)  # the responder drops the IKE_SA_INIT
            assert gw.gateway.stats.dropped["audit store unavailable"] >= 1
            assert not gw.gateway.sas()
            for sa in client.gateway.sas():  # the unanswered attempt would keep retransmitting
                client.gateway.terminate(uniqueid=sa["uniqueid"])
            broken.healthy = True
            uid = (await client.gateway.initiate("ikg", timeout=5))[0]
            broken.healthy = False  # existing SAs stay up (PCI DSS 10.7)
            old_spi = client.gateway.sas(uniqueid=uid)[0]["children"][0]["spi_in"]
            client.gateway.rekey(uniqueid=uid, child="net")

            def rekeyed() -> bool:
                children = client.gateway.sas(uniqueid=uid)[0]["children"]
                return [c["state"] for c in children] == ["installed"] and children[0]["spi_in"] != old_spi

            await _until(rekeyed)
            assert _installed(gw)

    asyncio.run(main())
    assert any(r.event.value == "ike.up" for r in broken.records)


def test_refused_initiate_names_the_reason(tmp_path: Path) -> None:
    async def body(gw: Running, client: Running) -> None:
        with pytest.raises(GatewayCommandError, match="no connection"):
            await client.gateway.initiate("nope")
        with pytest.raises(GatewayCommandError, match="no remote address"):
            await gw.gateway.initiate("ikg")  # remote_addrs = %any
        with pytest.raises(GatewayCommandError, match="select"):
            client.gateway.rekey()
        assert gw.gateway.conns()[0]["remote_id"] == CLIENT_ID
        assert client.gateway.conns()[0]["local_id"] == CLIENT_ID and GW_ID

    _run(tmp_path, body)


def test_cookies_demanded_above_the_half_open_threshold(tmp_path: Path) -> None:
    """RFC 7296 §2.6 through the service: a half-open SA from a silent source turns cookies on; a real peer
    answers the COOKIE and gets its tunnel; the switch is audited."""
    from ikeguard.crypto.random import SystemRandom
    from ikeguard.engine.events import Endpoint, SendDatagram
    from ikeguard.engine.manager import IkeManager

    port = free_port()
    responder_cfg, initiator_cfg = pair_configs(extra_gateway="cookie_threshold = 1")
    client_plan = make_plan(tmp_path / "client", initiator_cfg, port)

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port)) as gw:
            # a peer that sends one IKE_SA_INIT and never comes back (127.0.0.3)
            silent = IkeManager(client_plan.connections.values(), client_plan.engine_settings,
                                random=SystemRandom())
            import ipaddress as ip

            silent.initiate("ikg", local=Endpoint(ip.ip_address("127.0.0.3"), 500),
                            remote=Endpoint(ip.ip_address("127.0.0.1"), port), now=time.time())
            init = next(e for e in silent.events() if isinstance(e, SendDatagram))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.3", 0))
                sock.sendto(init.data, ("127.0.0.1", port))
                await _until(lambda: gw.gateway.engine.half_open_count() == 1)
            async with running(client_plan) as client:
                await client.gateway.initiate("ikg", timeout=5)
                assert _installed(client)
            assert "dos.cookies_on" in gw.events()

    asyncio.run(main())


def test_a_page_of_sas_asks_the_data_plane_only_for_its_own_counters(tmp_path: Path) -> None:
    """`sas --limit N` at scale: the page is cut before counters are read (one netlink round trip per SA
    with XFRM; 13 s for a 100-SA page among 13,785 SAs when every SA was read first)."""
    async def body(gw: Running, client: Running) -> None:
        await client.gateway.initiate("ikg", timeout=5)
        await _until(lambda: _installed(gw))
        reads: list[int] = []
        real = gw.gateway.children.counters

        def counting(*args: Any, **kwargs: Any) -> Any:
            reads.append(1)
            return real(*args, **kwargs)

        gw.gateway.children.counters = counting  # type: ignore[method-assign]
        page, total = gw.gateway.sa_page(offset=1, limit=10)
        assert (page, total, reads) == ([], 1, [])
        page, total = gw.gateway.sa_page(limit=10)
        assert total == 1 and page[0]["children"][0]["state"] == "installed" and len(reads) == 2

    _run(tmp_path, body)
