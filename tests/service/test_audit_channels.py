"""Workers' audit records go straight to the audit process (issue 22): one trail, every record, one chain.

The relay and hub run in this process here (the channel's descriptor still travels by SCM_RIGHTS over the
pipe, as to a spawned worker); ``tests/interop/test_workers.py`` runs them across real worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import select
import signal
import time
from pathlib import Path
from typing import Any, cast

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.isolated import IsolatedAuditService
from ikeguard.audit.store import AuditStore
from ikeguard.engine.identity import peer_key
from ikeguard.service.workers import AuditHub, AuditRelay

from ..audit.helpers import sample_event, verification_key


def _worker_end(service: IsolatedAuditService, index: int,
                notices: list[tuple[int, list[dict[str, Any]]]]) -> tuple[AuditRelay, Any]:
    here, there = mp.Pipe(duplex=True)
    AuditHub(service, lambda i, kind, body: notices.append((i, body))).attach(index, here, os.getpid())
    relay = AuditRelay(there, [0, 0, 0], lambda conn: "replace" if conn == "roadwarriors" else "no")
    return relay, here


def test_worker_records_reach_the_one_trail_directly(tmp_path: Path) -> None:
    service = IsolatedAuditService(tmp_path / "s", channels=2)
    service.start()
    notices: list[tuple[int, list[dict[str, Any]]]] = []
    relays = [_worker_end(service, i, notices) for i in range(2)]
    try:
        for i in range(300):
            relays[i % 2][0].record(sample_event(i))
            if i % 10 == 0:
                service.record(sample_event(i))
        # a big burst: the relay splits it into several sequenced packets
        for i in range(3000):
            relays[0][0].record(sample_event(i))
        peer, rebooted = peer_key("peer.example"), peer_key("rebooted.example", "alice")
        relays[1][0].record(AuditEvent(EventName.IKE_UP, connection="roadwarriors", remote_id="peer.example",
                                       details={"peer_key": peer}))
        relays[1][0].record(AuditEvent(EventName.IKE_UP, connection="other", remote_id="peer.example",
                                       details={"peer_key": peer}))
        relays[0][0].record(AuditEvent(EventName.IKE_UP, connection="other", remote_id="rebooted.example",
                                       details={"initial_contact": "yes", "eap_identity": "alice",
                                                "peer_key": rebooted}))
        assert relays[0][0].flush(20) and relays[1][0].flush(20)
        assert service.flush(20)
        store = AuditStore(tmp_path / "s", create=False)
        events = [r.body["event"] for r in store.records()]
        store.close()
        assert sum(1 for e in events if e in ("ike.up", "auth.failure")) == 300 + 30 + 3000 + 3
        # told to the supervisor (its hub threads): the ike.up of a unique = replace connection and one after
        # INITIAL_CONTACT (found by the engine's peer_key, named by the recorded identity), no other
        deadline = time.monotonic() + 10
        while len(notices) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        # (one message per relay batch, not per record)
        told = [(i, [{k: v for k, v in n.items() if k != "since"} for n in body])
                for i, body in sorted(notices, key=lambda n: n[0])]
        assert told == [
            (0, [{"connection": "other", "initial_contact": True, "unique": "no", "uniqueid": None,
                  "key": rebooted, "peer": "rebooted.example (user alice)"}]),
            (1, [{"connection": "roadwarriors", "initial_contact": False, "unique": "replace",
                  "uniqueid": None, "key": peer, "peer": "peer.example"}]),
        ]
    finally:
        for relay, conn in relays:
            relay.close()
            conn.close()
        service.close()
    store = AuditStore(tmp_path / "s", create=False)
    assert store.verify(verification_key(tmp_path / "s")).ok
    store.close()


def test_flush_ignores_an_answer_meant_for_a_dead_predecessor(tmp_path: Path) -> None:
    service = IsolatedAuditService(tmp_path / "s", channels=1)
    service.start()
    relay, conn = _worker_end(service, 0, [])
    try:
        channel = relay._channel
        assert channel is not None
        channel.send(pickle.dumps(("flush", (1, 1), 5.0)))  # asked by a worker killed before the answer
        relay.record(sample_event(1))
        assert relay.flush(20)
        assert not select.select([channel], [], [], 0.2)[0]  # both answers read, the stale one ignored
        store = AuditStore(tmp_path / "s", create=False)
        assert any(r.body.get("ike_uniqueid") == 1 for r in store.records())
        store.close()
    finally:
        relay.close()
        conn.close()
        service.close()


def test_a_stalled_audit_process_costs_a_worker_bounded_memory_and_the_loss_is_recorded(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The audit process stopped (SIGSTOP: a hung disk) while a worker keeps recording: at most MAX_QUEUED
    records wait in the worker; the rest are counted, and once the process runs again the trail holds every
    kept record plus ``audit.store.failed`` records naming how many were lost (one per batch that carried a
    loss): kept + lost = recorded."""
    monkeypatch.setattr("ikeguard.audit.isolated.MAX_QUEUED", 100)
    service = IsolatedAuditService(tmp_path / "s", channels=1)
    service.start()
    relay, conn = _worker_end(service, 0, [])
    child = service._proc.pid
    assert child is not None
    try:
        os.kill(child, signal.SIGSTOP)
        try:
            for i in range(20_000):
                relay.record(sample_event(i))
            assert relay.pending <= 100
        finally:
            os.kill(child, signal.SIGCONT)
        relay.record(sample_event(20_000))  # the next batch carries the loss
        assert relay.flush(30)
        store = AuditStore(tmp_path / "s", create=False)
        bodies = [r.body for r in store.records()]
        store.close()
        kept = sum(1 for b in bodies if b["event"] in ("ike.up", "auth.failure"))
        lost = [b for b in bodies if b["event"] == "audit.store.failed"]
        assert lost and all("audit process did not take them" in str(b["reason"]) for b in lost)
        lost_counts = [int(cast(dict[str, Any], b["details"])["lost"]) for b in lost]
        assert kept + sum(lost_counts) == 20_001
    finally:
        relay.close()
        conn.close()
        service.close()


def test_a_dead_audit_process_costs_the_writer_bounded_memory(tmp_path: Path, monkeypatch: Any) -> None:
    """The audit process killed: the gateway refuses new SAs (``refuse_new_sas``) and what existing SAs
    still record waits bounded (MAX_QUEUED), in a worker's relay and in the one-process writer alike."""
    monkeypatch.setattr("ikeguard.audit.isolated.MAX_QUEUED", 100)
    service = IsolatedAuditService(tmp_path / "s", channels=1)
    service.start()
    relay, conn = _worker_end(service, 0, [])
    try:
        service._proc.kill()
        service._proc.join(10)
        assert service.refuse_new_sas
        for i in range(5_000):
            relay.record(sample_event(i))
            service.record(sample_event(i))
        time.sleep(0.1)  # the senders find the channel and the pipe closed
        for i in range(5_000):
            relay.record(sample_event(i))
            service.record(sample_event(i))
        assert relay.pending <= 100 and len(service._pending) <= 100
    finally:
        relay.close()
        conn.close()
        service.close()
