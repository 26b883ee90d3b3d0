"""Disk full under the state directory (a small tmpfs): alarm, refusal of new SAs, recovery (PCI DSS 10.7)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikeguard.audit.service import AuditService
from ikeguard.audit.store import AuditStore, AuditStoreError

from .helpers import T0, fill_filesystem, mounted_tmpfs, sample_event, verification_key

pytestmark = pytest.mark.root


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "mnt", "2m") as mnt:
        yield mnt


def test_store_alarm_and_recovery(small_tmpfs: Path) -> None:
    state = small_tmpfs / "state"
    store = AuditStore(state, now=T0)
    store.append_batch([(sample_event(i), T0) for i in range(20)])
    filler = fill_filesystem(small_tmpfs)
    with pytest.raises(AuditStoreError):
        for k in range(50):  # the WAL has some slack; a few batches exhaust it
            store.append_batch([(sample_event(i), T0) for i in range(200)])
            assert k < 49
    assert not store.healthy and store.failure is not None
    assert "full" in store.failure.lower() or "space" in store.failure.lower()
    assert not store.probe(T0 + dt.timedelta(minutes=1))  # still full
    filler.unlink()
    assert store.probe(T0 + dt.timedelta(minutes=5))
    assert store.healthy and store.failure is None
    events = [r.body["event"] for r in store.records()]
    assert events[-2:] == ["audit.store.failed", "audit.store.recovered"]
    assert store.records(store.head()[0])[0].body["details"] == {"outage_seconds": 300}  # type: ignore[index]
    assert store.verify(verification_key(state)).ok
    store.close()


def test_service_refuses_new_sas_while_full_and_keeps_the_events(small_tmpfs: Path) -> None:
    state = small_tmpfs / "state"
    service = AuditService(state)
    service.start()
    try:
        service.record(sample_event(1))
        assert service.flush() and not service.refuse_new_sas
        filler = fill_filesystem(small_tmpfs)
        for i in range(3000):
            service.record(sample_event(i))
        assert not service.flush(timeout=1.5)  # cannot reach the disk
        assert service.refuse_new_sas and not service.healthy
        os.unlink(filler)
        assert service.flush(timeout=15)
        assert service.healthy and not service.refuse_new_sas
        events = [r.body["event"] for r in service.store.records()]
        assert events.count("ike.up") + events.count("auth.failure") == 3001
        assert "audit.store.failed" in events and "audit.store.recovered" in events
        assert service.store.verify(verification_key(state)).ok
    finally:
        service.close()
