"""Issue 20 item 4 (fencing, docs/ha.md "Split brain") against a real etcd on loopback: the leader key on a
lease is held by one node at a time, its create revision (the fencing token) makes etcd refuse a stale
writer, a node's local deadline always ends before another node can take the key, a node made MASTER while
the other holds the lease does not become active (and reports itself unhealthy), and an active node that
cannot renew its lease (etcd stopped) drops its SAs within the stated bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ikeguard.control.cli_ha import _show
from ikeguard.control.metrics import _ha_metrics
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.fence import Fence
from ikeguard.service.ha.replicator import HaNode
from ikeguard.service.ha.seal import ClusterKey
from ikeguard.service.ha.service import HaService
from ikeguard.service.ha.store import EtcdStore, NotLeader, SyncMark
from tests.engine.harness import FAST
from tests.harness.etcd import etcd
from tests.service.test_ha_etcd import NodeGateway, key_file, tunnel

TTL = 2  # etcd's minimum with its default timing (1.5 x election timeout, rounded up)


def test_one_leader_stale_writer_refused(tmp_path: Path) -> None:
    with etcd(tmp_path) as server:
        store = EtcdStore([server.url], "/f/", timeout=1.0)
        one, two = Fence(store, "gw1", ttl=TTL), Fence(store, "gw2", ttl=TTL)
        assert one.acquire() and one.valid() and one.held is not None
        token = one.held.token
        assert not two.acquire() and two.holder == "gw1" and not two.valid()
        store.update({"x": b"1"}, set(), SyncMark("gw1", 1.0), token)  # the leader writes
        with pytest.raises(NotLeader):
            store.update({"x": b"2"}, set(), SyncMark("gw2", 2.0), token + 1)
        assert store.read()[1] == {"x": b"1"}
        one.release()
        assert not one.valid() and two.acquire() and two.held is not None and two.held.token > token
        with pytest.raises(NotLeader):  # gw1 after losing leadership: a stale writer
            store.update({"x": b"3"}, set(), SyncMark("gw1", 3.0), token)
        assert store.read()[1] == {"x": b"1"}


def test_local_deadline_ends_before_another_node_can_lead(tmp_path: Path) -> None:
    with etcd(tmp_path) as server:
        store = EtcdStore([server.url], "/f/", timeout=1.0)
        one, two = Fence(store, "gw1", ttl=TTL), Fence(store, "gw2", ttl=TTL)
        assert one.acquire() and one.renew()
        assert one.held is not None
        until = one.held.valid_until
        started = time.monotonic()
        while not two.acquire():  # gw1 stopped renewing: gw2 gets the key when etcd expires the lease
            assert time.monotonic() - started < TTL + 3, "the lease never expired"
            time.sleep(0.05)
        taken = time.monotonic()
        print(f"gw1 stops sending at +{until - started:.2f} s, gw2 leads from +{taken - started:.2f} s")
        assert until < taken and not one.valid()
        assert not one.renew() and one.held is None and "expired" in one.error


def test_split_brain_and_etcd_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))

    def service(name: str, engine: IkeManager, store: EtcdStore) -> tuple[HaService, NodeGateway]:
        gw = NodeGateway(engine)
        node = HaNode(name, store, key, seq_margin=500, fence=Fence(store, name, ttl=TTL))
        return HaService(gw, node, sync_interval=0.2), gw

    async def run(url: str, server_stop: object) -> None:
        one, gw1 = service("gw1", net.b.manager, EtcdStore([url], "/s/", timeout=0.5))
        two, gw2 = service("gw2", IkeManager(b_conns, FAST, random=DeterministicRandom(5)),
                           EtcdStore([url], "/s/", timeout=0.5))
        one.start()
        two.start()
        try:
            assert (await one.set_role("MASTER"))["role"] == "active" and one.may_send()
            await asyncio.sleep(0.5)
            assert one.node.synced_sas == 1
            # keepalived split: gw2 is made MASTER too; gw1 holds the lease, so gw2 stays quiet
            status = await two.set_role("MASTER")
            assert status["role"] == "standby" and not two.may_send() and gw2.engine.ike_sas() == []
            assert "held by gw1" in status["last_takeover"]["refused"]
            assert one.may_send() and len(gw1.engine.ike_sas()) == 1
            assert two.healthy()  # a dead holder's lease could still be expiring
            await asyncio.sleep(1.2)  # set_role waited acquire_wait: now past acquire_wait + 1 s
            assert not two.healthy() and not two.status()["healthy"]  # the track script fails
            samples = {x.name: x.value for f in _ha_metrics(two.status()) for x in f.samples}
            assert samples["ikeguard_ha_lease_held"] == 0 and samples["ikeguard_ha_healthy"] == 0
            samples = {x.name: x.value for f in _ha_metrics(one.status()) for x in f.samples}
            assert samples["ikeguard_ha_lease_held"] == 1 and samples["ikeguard_ha_healthy"] == 1
            assert 0 < samples["ikeguard_ha_lease_remaining_seconds"] <= TTL
            _show(two.status(), as_json=False)
            shown = capsys.readouterr().out
            assert "lease: not held, held by gw1" in shown and "unhealthy" in shown, shown
            # keepalived gives gw1 BACKUP: it replicates once more, drops its SAs and releases the lease;
            # gw2, still wanted active, takes the lease and the SA over
            await one.set_role("BACKUP")
            assert not one.may_send() and gw1.engine.ike_sas() == []
            for _ in range(40):
                if two.may_send():
                    break
                await asyncio.sleep(0.1)
            assert two.may_send() and two.last_takeover is not None and two.last_takeover.restored
            assert len(gw2.engine.ike_sas()) == 1 and two.healthy()
            # etcd unreachable on the active: it stops sending within TTL - guard of its last renewal
            assert two.fence is not None and two.fence.held is not None
            capsys.readouterr()
            server_stop()  # type: ignore[operator]
            stopped = time.monotonic()
            while two.may_send() or two.node.role == "active":
                assert time.monotonic() - stopped < TTL + 1.0, "the active did not step down"
                await asyncio.sleep(0.02)
            gone = time.monotonic() - stopped
            print(f"etcd stopped: the active stepped down after {gone:.2f} s (bound {TTL * 0.8:.1f} s "
                  "after the last renewal)")
            assert gone <= TTL * 0.8 + 0.3
            assert gw2.engine.ike_sas() == [] and two.status()["fenced"]
            _show(two.status(), as_json=False)
            assert "fenced: the lease was not renewed in time" in capsys.readouterr().out
            roles = [(r.outcome, r.reason) for r in gw2.records if r.event == "ha.role"]
            assert roles[-1][0] == "failure" and "fenced" in roles[-1][1], roles
        finally:
            await one.stop()
            await two.stop()

    with etcd(tmp_path) as server:
        asyncio.run(run(server.url, server.stop))
