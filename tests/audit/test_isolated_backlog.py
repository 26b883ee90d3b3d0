"""IsolatedAuditService (what `ikeguard run` uses) and its SIEM sink without a peer: the backlog figures the
metrics show (the rsyslog-backed tests are tests/interop/test_audit_siem.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.isolated import IsolatedAuditService
from ikeguard.audit.service import SinkSpec
from ikeguard.audit.sinks.transport import TlsTarget
from ikeguard.tools.netns import wait_until
from tests.audit.rsyslog import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "siem-pki")


def test_isolated_service_reports_queue_and_spool_depth(tmp_path: Path, pki: Pki) -> None:
    """IsolatedAuditService (what `ikeguard run` uses) exposes `pending` and `spool_depth()` for the metrics:
    with its SIEM unreachable the backlog shows per sink, and nothing stays pending once on disk."""
    dead = TlsTarget("127.0.0.1", 9, pki.ca, pki.client_cert, pki.client_key, timeout=0.5)  # nothing listens
    service = IsolatedAuditService(tmp_path / "s", [SinkSpec("siem", "syslog-tls", dead)])
    service.start()
    try:
        for i in range(300):
            service.record(AuditEvent(EventName.ADMIN_COMMAND, admin="alice",
                                      details={"command": f"sas {i}"}))
        assert service.flush(20) and service.pending == 0
        assert wait_until(lambda: service.spool_depth().get("siem", 0) >= 300, 10), service.spool_depth()
        assert service.failure is None and service.healthy
    finally:
        service.close()
