"""Apply a profile when the gateway starts or reloads: ``on_violation = "refuse"`` raises ConfigError
with the failing rules; ``"quarantine"`` disables only the offending connections or inventory peers
(``config.rejected`` audit events are the service's job) and lets the rest run. A failure that belongs
to no connection or peer (e.g. audit retention) cannot be quarantined and refuses the config.
Rules the product cannot enforce yet do not block ``run``; they are returned so they can be logged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import LoadedConfig, load_config
from ikeguard.policy.profile import Profile
from ikeguard.policy.report import Report, RuleResult, evaluate


@dataclass
class Enforcement:
    """What enforcement decided: quarantined connections/peers with the results that caused it."""

    report: Report
    quarantined_connections: dict[str, list[RuleResult]] = field(default_factory=dict)
    quarantined_peers: dict[tuple[str, str], list[RuleResult]] = field(default_factory=dict)

    @property
    def not_implemented(self) -> list[RuleResult]:
        """Rules reported "not implemented" (they fail ``check`` but do not block ``run``)."""
        return self.report.by_status("not_implemented")

    @property
    def waived(self) -> list[RuleResult]:
        """Failures excused by a waiver (to be audited as ``waiver.applied``)."""
        return self.report.by_status("waived")


def enforce(config: LoadedConfig, *, now: dt.datetime, profile: Profile | None = None) -> Enforcement:
    """Evaluate and apply ``on_violation``; mutates ``config`` (quarantine) or raises ConfigError."""
    report = evaluate(config, profile, now=now)
    failures = report.by_status("fail")
    result = Enforcement(report)
    if not failures:
        return result
    if config.model.gateway.on_violation == "refuse":
        raise ConfigError([r.finding() for r in failures])
    global_failures = [r for r in failures if r.target is None]
    if global_failures:
        raise ConfigError([r.finding() for r in global_failures])
    for r in failures:
        assert r.target is not None
        if r.target[0] == "connection":
            result.quarantined_connections.setdefault(r.target[1], []).append(r)
        else:
            result.quarantined_peers.setdefault((r.target[1], r.target[2]), []).append(r)
    for name, results in result.quarantined_connections.items():
        config.disabled_connections[name] = "quarantined: " + ", ".join(sorted({r.rule.id for r in results}))
    for (conn, peer_id), results in result.quarantined_peers.items():
        inventory = config.inventories.get(conn)
        if inventory is not None:
            inventory.disable(peer_id, "quarantined: " + ", ".join(sorted({r.rule.id for r in results})))
    return result


def load_and_enforce(path: str | Path, *, now: dt.datetime,
                     profile_override: str | None = None) -> tuple[LoadedConfig, Enforcement]:
    """What ``ikeguard run`` calls: load, then enforce the profile; ConfigError on refusal."""
    config = load_config(path, profile_override=profile_override)
    return config, enforce(config, now=now)
