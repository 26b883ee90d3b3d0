"""The audit records of a plan coming into force (``ikeguard run`` at start, ``reload`` for the new plan):
``config.loaded``, one ``config.rejected`` per quarantined connection or peer, one ``waiver.applied`` per
waiver in force (docs/audit.md). Shared by ``service/runner.py`` and ``service/reload.py`` (it used to live in
the runner, which made reload import the runner)."""

from __future__ import annotations

from typing import Any

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.policy.digest import config_digest

__all__ = ["config_sha256", "startup_records"]


def config_sha256(config: Any) -> str:
    """The combined digest of the configuration and every file it names (``ikeguard check``'s
    ``config_digest``), so each ``config.loaded`` record names the exact configuration that came into force
    (the evidence pack's snapshot is matched against it). Empty when it cannot be computed."""
    try:
        return config_digest(config).sha256
    except (OSError, ValueError, AttributeError, TypeError):
        return ""


def startup_records(plan: Any) -> list[AuditEvent]:
    """``config.loaded``, one ``config.rejected`` per quarantined connection/peer, ``waiver.applied``."""
    enforcement = plan.enforcement
    loaded: dict[str, str | int | bool] = {
        "file": str(plan.config.path), "profile": plan.profile.name, "connections": len(plan.connections),
        "quarantined": len(enforcement.quarantined_connections) + len(enforcement.quarantined_peers)}
    digest = config_sha256(plan.config)
    if digest:
        loaded["config_sha256"] = digest
    reason = f"configuration {plan.config.path} loaded"
    in_file = getattr(plan.config, "file_profile", None)
    if in_file is not None and in_file != plan.profile.name:  # `run --profile X --override-profile`
        loaded.update(profile_in_file=in_file, profile_override=True)
        reason += f" under profile {plan.profile.name}, overriding the file's {in_file}"
    records = [AuditEvent(EventName.CONFIG_LOADED, reason=reason, details=loaded)]
    for name, results in enforcement.quarantined_connections.items():
        rules = ", ".join(sorted({r.rule.id for r in results}))
        records.append(AuditEvent(EventName.CONFIG_REJECTED, Outcome.FAILURE, connection=name,
                                  reason=f"connection quarantined: {rules}", details={"rules": rules}))
    for (name, peer), results in enforcement.quarantined_peers.items():
        rules = ", ".join(sorted({r.rule.id for r in results}))
        records.append(AuditEvent(EventName.CONFIG_REJECTED, Outcome.FAILURE, connection=name, remote_id=peer,
                                  reason=f"peer quarantined: {rules}", details={"rules": rules}))
    for result in enforcement.waived:
        details: dict[str, str | int | bool] = {"rule": result.rule.id, "scope": result.scope or "gateway"}
        waiver = result.waiver.waiver if result.waiver is not None else None
        if waiver is not None:
            details.update(ticket=waiver.ticket, owner=waiver.owner, until=str(waiver.expires))
        records.append(AuditEvent(EventName.WAIVER_APPLIED, reason=result.finding().message, details=details))
    return records
