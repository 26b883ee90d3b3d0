"""Virtual IP leases with ``[gateway] workers`` > 1 (issue 22): the supervisor's broker over its real AF_UNIX
socket, two clients standing for two workers (service/pool_broker.py)."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from pathlib import Path

import pytest

from ikeguard.engine.pools import PoolSettings
from ikeguard.service.leases import LeaseStore
from ikeguard.service.pool_broker import (
    BrokerClient,
    BrokeredPool,
    BrokerServer,
    LeaseBroker,
    broker_path,
)
from ikeguard.tools.netns import wait_until

KEY = b"k" * 32
STAFF = PoolSettings("staff", ipaddress.IPv4Network("203.0.113.64/29"))
A = ipaddress.ip_address


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BrokerServer]:
    srv = BrokerServer(broker_path(tmp_path), KEY, LeaseBroker(LeaseStore(tmp_path)))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def _worker(tmp_path: Path, index: int) -> BrokeredPool:
    return BrokeredPool(STAFF, BrokerClient.connect(broker_path(tmp_path), KEY, index))


def test_two_workers_share_one_pool(server: BrokerServer, tmp_path: Path) -> None:
    w0, w1 = _worker(tmp_path, 0), _worker(tmp_path, 1)
    assert w0.acquire("alice") == A("203.0.113.65")
    assert w1.acquire("bob") == A("203.0.113.66")  # not .65: the lease is unique over the workers
    # alice reconnects through worker 1 (re-authentication: her old IKE SA in worker 0 is still up)
    assert w1.acquire("alice") == A("203.0.113.65")
    w0.release(A("203.0.113.65"))  # the old IKE SA goes: the new one still holds the address
    assert ("203.0.113.65", "alice", True) in w1.status()
    w1.release(A("203.0.113.65"))
    assert wait_until(lambda: ("203.0.113.65", "alice", False) in w0.status(), 2)
    # both workers list the whole pool
    assert sorted(w0.status()) == sorted(w1.status()) == [("203.0.113.65", "alice", False),
                                                          ("203.0.113.66", "bob", True)]
    assert w0.acquire("carol") == A("203.0.113.67")  # never-used addresses first; alice's is kept for her
    assert w1.acquire("alice") == A("203.0.113.65")


def test_a_dead_workers_leases_go_offline_kept_for_their_users(server: BrokerServer, tmp_path: Path) -> None:
    w0, w1 = _worker(tmp_path, 0), _worker(tmp_path, 1)
    assert w0.acquire("alice") == A("203.0.113.65")
    assert w1.acquire("bob") == A("203.0.113.66")
    w1._client.close()  # the worker process died: its connection closed
    assert wait_until(lambda: ("203.0.113.66", "bob", False) in w0.status(), 2)
    assert ("203.0.113.65", "alice", True) in w0.status()
    restarted = _worker(tmp_path, 1)
    assert restarted.acquire("dave") == A("203.0.113.67")
    assert _worker(tmp_path, 0).acquire("bob") == A("203.0.113.66")  # bob re-establishes: his address again
    assert wait_until(lambda: json.loads((tmp_path / "leases.json").read_text()).get("staff", {}).get("dave")
                      == "203.0.113.67", 2)


def test_leases_of_a_previous_run_come_back(tmp_path: Path) -> None:
    (tmp_path / "leases.json").write_text(json.dumps({"staff": {"alice": "203.0.113.65"}}))
    srv = BrokerServer(broker_path(tmp_path), KEY, LeaseBroker(LeaseStore(tmp_path)))
    srv.start()
    try:
        w0 = _worker(tmp_path, 0)
        assert w0.status() == [("203.0.113.65", "alice", False)]
        assert w0.acquire("bob") == A("203.0.113.66")
        assert w0.acquire("alice") == A("203.0.113.65")
    finally:
        srv.close()
    srv.broker.save_now()
    assert json.loads((tmp_path / "leases.json").read_text()) == {
        "staff": {"alice": "203.0.113.65", "bob": "203.0.113.66"}}


def test_no_answer_in_time_is_a_failed_assignment(tmp_path: Path) -> None:
    srv = BrokerServer(broker_path(tmp_path), KEY, LeaseBroker(None))
    srv.start()
    try:
        pool = _worker(tmp_path, 0)
        pool._client._timeout = 0.0  # the answer always comes too late
        started = time.monotonic()
        assert pool.acquire("alice") is None
        assert time.monotonic() - started < 1.0
        pool._client._timeout = 2.0
        # the late grant was given back: alice is offline, bob gets the next address
        assert pool.acquire("bob") == A("203.0.113.66")
        assert ("203.0.113.65", "alice", False) in pool.status()
    finally:
        srv.close()


def test_a_peer_without_the_key_is_refused(server: BrokerServer, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError):
        BrokerClient.connect(broker_path(tmp_path), b"x" * 32, 0)
    assert _worker(tmp_path, 0).acquire("alice") == A("203.0.113.65")
