"""Issue 20 item 4 with the direct node-to-node heartbeat (service/ha/peer.py, docs/ha.md "Split brain"),
against a real etcd on loopback: a standby that hears the active refuses keepalived's MASTER and says why;
etcd stopped under the active while the heartbeat is alive: the active keeps its SA past 0.8 x lease_ttl and
reports ``ha.sync_failed``; the heartbeat cut as well: it fences within ``heartbeat_hold``. Forged and
replayed beats are dropped."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from ikeguard.control.cli_ha import _show
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.fence import Fence
from ikeguard.service.ha.peer import PeerLink
from ikeguard.service.ha.replicator import HaNode
from ikeguard.service.ha.seal import ClusterKey
from ikeguard.service.ha.service import HaService
from ikeguard.service.ha.store import EtcdStore
from tests.engine.harness import FAST
from tests.harness.etcd import etcd
from tests.service.test_ha_etcd import NodeGateway, key_file, tunnel

TTL = 2
HOLD = 1.0


def _ports() -> tuple[int, int]:
    out = []
    for _ in range(2):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            out.append(s.getsockname()[1])
    return out[0], out[1]


def test_active_keeps_serving_on_the_peers_promise(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    p1, p2 = _ports()

    def service(name: str, engine: IkeManager, url: str, listen: int,
                peer: int) -> tuple[HaService, NodeGateway]:
        gw = NodeGateway(engine)
        store = EtcdStore([url], "/h/", timeout=0.5)
        node = HaNode(name, store, key, seq_margin=500, fence=Fence(store, name, ttl=TTL))
        link = PeerLink(key, name, ("127.0.0.1", listen), ("127.0.0.1", peer), role=lambda: node.role,
                        token=lambda: None, interval=0.1, hold=HOLD)
        return HaService(gw, node, sync_interval=0.2, peer=link), gw

    async def run(url: str, server_stop: object) -> None:
        one, gw1 = service("gw1", net.b.manager, url, p1, p2)
        two, gw2 = service("gw2", IkeManager(b_conns, FAST, random=DeterministicRandom(5)), url, p2, p1)
        one.start()
        two.start()
        try:
            # just started: a promise of a previous process may still run, so gw1 waits heartbeat_hold
            status = await one.set_role("MASTER")
            assert status["role"] == "standby", status
            assert "listening for the active" in status["last_takeover"]["refused"], status
            for _ in range(60):
                if one.may_send():
                    break
                await asyncio.sleep(0.05)
            assert one.node.role == "active" and one.may_send()
            await asyncio.sleep(0.6)
            assert one.node.synced_sas == 1
            assert two.peer is not None and two.peer.hears_active()
            # keepalived split: gw2 made MASTER refuses while it hears gw1, and says why
            status = await two.set_role("MASTER")
            assert status["role"] == "standby" and not two.may_send() and gw2.engine.ike_sas() == []
            assert "the active gw1 is alive" in status["last_takeover"]["refused"], status
            assert status["heartbeat"]["hears_active"] and status["heartbeat"]["peer_node"] == "gw1"
            _show(status, as_json=False)
            shown = capsys.readouterr().out
            assert "the active is alive: not taking over" in shown and "last takeover refused" in shown, shown
            refused = [r for r in gw2.records if r.event == "ha.takeover"]
            assert refused and "is alive" in refused[-1].reason
            await two.set_role("BACKUP")
            # etcd stopped under the active, heartbeat alive: gw1 keeps serving past 0.8 x TTL
            server_stop()  # type: ignore[operator]
            stopped = time.monotonic()
            while time.monotonic() - stopped < TTL * 0.8 + 1.0:
                assert one.may_send() and len(gw1.engine.ike_sas()) == 1, one.status()
                await asyncio.sleep(0.05)
            assert one.status()["serving_on_peer"] and one.node.role == "active"
            _show(one.status(), as_json=False)
            assert "serving without etcd" in capsys.readouterr().out
            failed = [r for r in gw1.records if r.event == "ha.sync_failed"]
            assert any("still serving" in r.reason for r in failed), [r.reason for r in failed]
            # the heartbeat cut as well (gw2's side stops): gw1 hears neither etcd nor its peer -> fenced
            assert two.peer is not None
            await two.peer.stop()
            cut = time.monotonic()
            while one.may_send() or one.node.role == "active":
                assert time.monotonic() - cut < HOLD + 1.0, "the active did not fence"
                await asyncio.sleep(0.02)
            gone = time.monotonic() - cut
            print(f"heartbeat cut: the active fenced after {gone:.2f} s (hold {HOLD} s)")
            assert gone <= HOLD + 0.3 and gw1.engine.ike_sas() == [] and one.status()["fenced"]
        finally:
            await one.stop()
            await two.stop()

    with etcd(tmp_path) as server:
        asyncio.run(run(server.url, server.stop))


def test_forged_and_replayed_beats_are_dropped(tmp_path: Path) -> None:
    key = ClusterKey.from_file(key_file(tmp_path))
    other = ClusterKey(b"\x01" * 32)
    p1, p2 = _ports()

    async def run() -> None:
        sb = PeerLink(key, "gw2", ("127.0.0.1", p2), ("127.0.0.1", p1), role=lambda: "standby",
                      token=lambda: None, interval=10.0, hold=HOLD)
        await sb.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            beat = {"node": "gw1", "role": "active", "token": 7, "counter": 5, "echo": 0, "promise": False,
                    "hold": HOLD}
            sock.sendto(other.seal("ikeguard-ha-heartbeat", json.dumps(beat).encode()), ("127.0.0.1", p2))
            await asyncio.sleep(0.1)
            assert not sb.hears_active() and sb.rejected == 1  # another key
            good = key.seal("ikeguard-ha-heartbeat", json.dumps(beat).encode())
            sock.sendto(good, ("127.0.0.1", p2))
            await asyncio.sleep(0.1)
            assert sb.hears_active() and sb.peer_token == 7
            sock.sendto(good, ("127.0.0.1", p2))  # replayed
            await asyncio.sleep(0.1)
            assert sb.rejected == 2
        finally:
            sock.close()
            await sb.stop()

    asyncio.run(run())
