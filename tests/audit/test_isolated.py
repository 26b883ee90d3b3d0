"""The audit trail in a child process: same records, acknowledged only when on disk, verifiable."""

from __future__ import annotations

from pathlib import Path

from ikeguard.audit.isolated import IsolatedAuditService
from ikeguard.audit.store import AuditStore

from .helpers import sample_event, verification_key


def test_isolated_service_records_everything(tmp_path: Path) -> None:
    out = tmp_path / "siem.jsonl"
    from ikeguard.audit.service import SinkSpec

    service = IsolatedAuditService(tmp_path / "s", [SinkSpec("file", "json", path=out)])
    service.start()
    try:
        for i in range(500):
            service.record(sample_event(i))
        assert service.flush(20)
        assert service.healthy and not service.refuse_new_sas
        store = AuditStore(tmp_path / "s", create=False)
        events = [r.body for r in store.records()]
        store.close()
        assert sum(1 for b in events if b["event"] in ("ike.up", "auth.failure")) == 500
    finally:
        service.close()
    store = AuditStore(tmp_path / "s", create=False)
    assert store.verify(verification_key(tmp_path / "s")).ok
    assert store.records(store.head()[0])[0].body["event"] == "service.stopped"
    store.close()
