"""Events the service itself produces: admin.command with the local user, clock.status at start."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ikeguard.audit.clock import read_clock_status
from ikeguard.audit.service import AuditService, admin_command_event


def test_admin_command_names_the_local_user() -> None:
    ev = admin_command_event("terminate --conn merchants", os.getuid())
    assert ev.admin == pwd.getpwuid(os.getuid()).pw_name
    assert ev.details["command"] == "terminate --conn merchants" and ev.details["uid"] == os.getuid()
    try:
        name = pwd.getpwuid(65432).pw_name
    except KeyError:
        name = "uid:65432"
    assert admin_command_event("reload", 65432).admin == name


def test_clock_status_recorded_at_start(tmp_path: Path) -> None:
    service = AuditService(tmp_path / "s")
    service.start()
    try:
        service.record(admin_command_event("reload", os.getuid()))
        assert service.flush()
        bodies = [r.body for r in service.store.records()]
    finally:
        service.close()
    clock = next(b for b in bodies if b["event"] == "clock.status")
    status = read_clock_status()
    assert clock["details"]["state"] == status.event().details["state"]  # type: ignore[index]
    assert clock["outcome"] == ("success" if status.synchronised else "failure")
    assert any(b["event"] == "admin.command" and b["admin"] for b in bodies)
