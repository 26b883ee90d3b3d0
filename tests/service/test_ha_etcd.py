"""Issue 20 step 2: SA state replicated through a real etcd (started on loopback) and taken over by a fresh
engine, which then continues the IKE SA with the peer (in-memory engine pair); etcd unreachable keeps the
active serving with ``sync_error`` set; a standby refuses state older than ``max_state_age``; records are
sealed (no key octets in etcd) and bound to their name."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from ikeguard.audit.events import AuditEvent
from ikeguard.control.metrics import _ha_metrics
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.dataplane.base import SaConfig
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.engine.events import InstallChildSa
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.service.ha.replicator import HaNode
from ikeguard.service.ha.seal import ClusterKey, SealError
from ikeguard.service.ha.service import HaService
from ikeguard.service.ha.store import EtcdStore
from tests.engine.harness import FAST, Network, Side, child, mirror, pair, psk_conn
from tests.engine.test_rekey import assert_consistent
from tests.harness.etcd import etcd


def tunnel() -> tuple[Network, list]:  # type: ignore[type-arg]
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate(children=["net"])
    net.run()
    return net, [b]


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ha.key"
    path.write_text("11" * 32)
    path.chmod(0o600)
    return path


def test_replicate_through_etcd_and_take_over(tmp_path: Path) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    clock = [1000.0]
    with etcd(tmp_path) as server:
        active = HaNode("gw1", EtcdStore([server.url], "/t/"), key, clock=lambda: clock[0])
        assert asyncio.run(active.sync(net.b.manager)) and active.synced_sas == 1
        _mark, blobs = active.store.read()
        (name, blob), = blobs.items()
        (b_sa,) = net.b.manager.ike_sas()
        assert name == f"{b_sa.spi_i.hex()}-{b_sa.spi_r.hex()}"
        assert bytes(b_sa.crypto.keys.sk_ei) not in blob  # type: ignore[union-attr]  # sealed
        with pytest.raises(SealError):
            key.open("0" * 33, blob)  # bound to its name
        # the active dies; 2 s later the standby is made active
        clock[0] += 2.0
        engine = IkeManager(b_conns, FAST, random=DeterministicRandom(9))
        standby = HaNode("gw2", EtcdStore([server.url], "/t/"), key, clock=lambda: clock[0])
        result = asyncio.run(standby.take_over(engine))
        assert (result.restored, result.failed, result.refused) == ([name], {}, "")
        assert result.state_age == pytest.approx(2.0) and standby.role == "active"
    net.b = Side("b", engine, net.b.endpoint)
    net.run()
    assert_consistent(net)
    (a_sa,) = net.a.manager.ike_sas()
    net.a.manager.rekey_child(a_sa.uniqueid, next(iter(a_sa.children)), net.now)
    net.run()
    assert_consistent(net)


def test_stale_state_refused_and_etcd_down_reported(tmp_path: Path) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    clock = [1000.0]
    with etcd(tmp_path) as server:
        active = HaNode("gw1", EtcdStore([server.url], "/t/", timeout=1.0), key, clock=lambda: clock[0])
        assert asyncio.run(active.sync(net.b.manager))
        clock[0] += 31.0
        engine = IkeManager(b_conns, FAST, random=DeterministicRandom(9))
        standby = HaNode("gw2", EtcdStore([server.url], "/t/"), key, max_state_age=30.0,
                         clock=lambda: clock[0])
        result = asyncio.run(standby.take_over(engine))
        assert "31.0 s old (limit 30 s, last written by gw1)" in result.refused
        assert not result.restored and engine.ike_sas() == [] and standby.role == "standby"
        server.stop()
        assert not asyncio.run(active.sync(net.b.manager))
        assert re.match(r"etcd (write|list) failed", active.sync_error) and active.last_sync == 1000.0
        (b_sa,) = net.b.manager.ike_sas()
        assert b_sa.state is IkeState.ESTABLISHED  # the active keeps serving


def test_key_file_must_be_private_and_32_octets(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("11" * 32)
    path.chmod(0o644)
    with pytest.raises(SealError, match="chmod 600"):
        ClusterKey.from_file(path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(SealError, match="32 octets"):
        ClusterKey.from_file(path)
    secret = bytes(range(0xA0, 0xC0))
    shown = repr(ClusterKey(secret, str(path)))
    assert secret.hex() not in shown and repr(secret) not in shown and secret.hex()[:8] not in shown


class NodeGateway:
    """The part of the running gateway the HA service uses: the engine, the (none) data plane, the audit
    records; ``pump`` installs the engine's Child SAs (the network harness delivers its datagrams)."""

    def __init__(self, engine: IkeManager) -> None:
        self.engine = engine
        self.dataplane = NoneDataPlane()
        self.records: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.records.append(event)

    def pump(self) -> None:
        for event in self.engine.ctx.outputs:
            if isinstance(event, InstallChildSa):
                self.dataplane.add_sa(SaConfig.from_install(event))


def test_service_roles_takeover_and_sync_failed_records(tmp_path: Path) -> None:
    net, b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    with etcd(tmp_path) as server:
        gw1 = NodeGateway(net.b.manager)
        one = HaService(gw1, HaNode("gw1", EtcdStore([server.url], "/s/", timeout=1.0), key, seq_margin=500))
        status = asyncio.run(one.set_role("MASTER"))  # a new pair: nothing replicated yet
        assert status["role"] == "active" and status["last_takeover"]["restored"] == 0
        assert asyncio.run(one.sync_once())
        gw2 = NodeGateway(IkeManager(b_conns, FAST, random=DeterministicRandom(5)))
        two = HaService(gw2, HaNode("gw2", EtcdStore([server.url], "/s/"), key, seq_margin=500))
        assert asyncio.run(two.set_role("BACKUP"))["role"] == "standby"
        status = asyncio.run(two.set_role("MASTER"))
        assert status["role"] == "active" and status["last_takeover"]["restored"] == 1
        (takeover,) = [r for r in gw2.records if r.event == "ha.takeover"]
        assert takeover.outcome == "success" and takeover.details["restored"] == "1"
        assert [r.details["role"] for r in gw2.records if r.event == "ha.role"] == ["active"]
        # the restored SA started after 0 + 500: a second failover must not go back below that
        (esp,) = two.esp_state().values()
        assert esp.seq_out == 500
        assert asyncio.run(two.sync_once())
        server.stop()
        assert not asyncio.run(two.sync_once()) and not asyncio.run(two.sync_once())
        failed = [r for r in gw2.records if r.event == "ha.sync_failed"]
        assert len(failed) == 1 and failed[0].outcome == "failure"  # once per outage
        assert re.match(r"etcd (write|list) failed", two.status()["sync_error"])
        samples = {x.name: x.value for family in _ha_metrics(two.status()) for x in family.samples}
        assert samples["ikeguard_ha_active"] == 1 and samples["ikeguard_ha_sync_failures_total"] == 2
        assert samples["ikeguard_ha_takeover_restored_sas"] == 1 and samples["ikeguard_ha_synced_sas"] == 1
    net.b = Side("b", gw2.engine, net.b.endpoint)
    net.run()
    assert_consistent(net)


def test_only_changes_are_written_and_closed_sas_removed(tmp_path: Path) -> None:
    net, _b_conns = tunnel()
    key = ClusterKey.from_file(key_file(tmp_path))
    clock = [1000.0]
    with etcd(tmp_path) as server:
        node = HaNode("gw1", EtcdStore([server.url], "/t/"), key, clock=lambda: clock[0])
        assert asyncio.run(node.sync(net.b.manager))
        (before,) = node.store.read()[1].values()
        clock[0] += 1.0
        assert asyncio.run(node.sync(net.b.manager))  # nothing changed but the time: the record stays as is
        mark, records = node.store.read()
        assert list(records.values()) == [before] and mark is not None and mark.at == 1001.0
        (sa,) = net.b.manager.ike_sas()
        net.b.manager.terminate_ike(sa.uniqueid, net.now)
        net.run()
        assert asyncio.run(node.sync(net.b.manager)) and node.store.read()[1] == {}
