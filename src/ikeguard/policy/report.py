"""Evaluate a loaded configuration against a profile: one result per rule and scope, waivers applied,
and the controls table an auditor asks for (which setting satisfies which PCI DSS / NIST SP 800-53 id)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ikeguard import __version__
from ikeguard.policy.checks import NOT_IMPLEMENTED, REGISTRY, CheckContext, Target, enforced_at
from ikeguard.policy.digest import ConfigDigest, config_digest
from ikeguard.policy.errors import Finding
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.profile import Profile, Rule, load_profile
from ikeguard.policy.waivers import WaiverState, find_waiver, waiver_states

Status = Literal["pass", "fail", "warn", "waived", "not_implemented", "not_applicable"]


@dataclass(frozen=True)
class RuleResult:
    """The verdict of one rule at one key path."""

    rule: Rule
    status: Status
    scope: str = ""
    value: str | None = None
    message: str = ""
    file: str | None = None
    target: Target | None = None
    waiver: WaiverState | None = None

    @property
    def severity(self) -> Literal["error", "warning", "info"]:
        """The result's own severity: ``error`` for a failure, ``warning`` for a warning or a waived finding
        (never the rule's severity for a result that only warns, e.g. MODP-2048's sunset), ``info`` else."""
        if self.status in ("fail", "not_implemented"):
            return "error"
        if self.status in ("warn", "waived"):
            return "warning"
        return "info"

    def finding(self) -> Finding:
        """As a Finding (what ``check`` prints and ``ConfigError`` carries)."""
        message = self.message or self.rule.title
        if self.status == "waived" and self.waiver is not None:
            w = self.waiver.waiver
            message += f" ({self.waiver.until}; owner {w.owner}, ticket {w.ticket}: {w.reason})"
        if self.status == "not_implemented":
            message = f"not implemented: {message}"
        severity: Literal["error", "warning", "info"] = "error" if self.severity == "info" else self.severity
        return Finding(self.rule.id, message, path=self.scope, value=self.value, file=self.file,
                       severity=severity, sources=self.rule.sources, fix=self.rule.fix)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``check --json``."""
        data: dict[str, Any] = {
            "rule": self.rule.id, "title": self.rule.title, "status": self.status,
            "severity": self.severity, "rule_severity": self.rule.severity, "scope": self.scope,
            "value": self.value, "message": self.message, "file": self.file,
            "sources": list(self.rule.sources),
            "fix": self.rule.fix, "pci_dss": list(self.rule.pci), "nist_800_53": list(self.rule.nist),
        }
        if self.waiver is not None:
            w = self.waiver.waiver
            data["waiver"] = {"until": w.expires.isoformat(), "owner": w.owner, "ticket": w.ticket,
                              "reason": w.reason, "scope": w.scope}
        return data


@dataclass(frozen=True)
class ControlRow:
    """A rule fully satisfied by the config, with the control ids it maps to."""

    rule: Rule
    pci: tuple[str, ...]
    nist: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """Everything ``check`` prints; ``passed`` is false on any failure or not-implemented rule."""

    profile: Profile
    config_path: str
    now: dt.datetime
    results: tuple[RuleResult, ...]
    waiver_findings: tuple[Finding, ...] = ()
    digest: ConfigDigest | None = None
    file_profile: str | None = None  # the profile the file names, when the report used another one

    def by_status(self, *statuses: Status) -> list[RuleResult]:
        """Results with one of the given statuses."""
        return [r for r in self.results if r.status in statuses]

    @property
    def passed(self) -> bool:
        """No failure and no not-implemented rule (waived findings do not fail, warnings do not)."""
        return not self.by_status("fail", "not_implemented")

    def strict_problems(self, load_warnings: Sequence[Finding] = ()) -> list[str]:
        """Why ``check --strict`` exits 1 although the profile passes: warnings, waived findings, waivers
        that do not apply, load warnings (empty: nothing)."""
        out = [f"{r.rule.id} at {r.scope or '(gateway)'}: {r.status}"
               for r in self.by_status("warn", "waived")]
        out += [f"{f.path}: {f.message}" for f in (*self.waiver_findings, *load_warnings)]
        return out

    def exit_code(self, *, strict: bool = False, load_warnings: Sequence[Finding] = ()) -> int:
        """0 passes; 1 fails (with ``strict``: also on any warning or waived finding)."""
        if not self.passed:
            return 1
        return 1 if strict and self.strict_problems(load_warnings) else 0

    def rule_status(self, rule_id: str) -> Status:
        """Worst status of one rule across scopes."""
        order: list[Status] = ["fail", "not_implemented", "waived", "warn", "pass", "not_applicable"]
        statuses = {r.status for r in self.results if r.rule.id == rule_id}
        return next((s for s in order if s in statuses), "pass")

    def controls(self) -> list[ControlRow]:
        """Rules that pass everywhere (warnings allowed, waivers not) and map to controls."""
        rows = []
        for rule in self.profile.rules:
            if (rule.pci or rule.nist) and self.rule_status(rule.id) in ("pass", "warn"):
                rows.append(ControlRow(rule, rule.pci, rule.nist))
        return rows

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``check --json``."""
        return {
            "config": self.config_path, "profile": self.profile.name, "time": self.now.isoformat(),
            "tool_version": __version__, "profile_version": self.profile.version,
            "profile_digest": self.profile.digest, "profile_in_file": self.file_profile or self.profile.name,
            "config_digest": self.digest.to_json() if self.digest is not None else None,
            "passed": self.passed,
            "findings": [r.to_json() for r in self.results if r.status not in ("pass", "not_applicable")],
            "waiver_problems": [{"path": f.path, "rule": f.value, "message": f.message}
                                for f in self.waiver_findings],
            "controls": [{"rule": c.rule.id, "setting": c.rule.setting, "pci_dss": list(c.pci),
                          "nist_800_53": list(c.nist)} for c in self.controls()],
            "rules": {rule.id: self.rule_status(rule.id) for rule in self.profile.rules},
        }


def _results_for(rule: Rule, ctx: CheckContext, states: list[WaiverState]) -> list[RuleResult]:
    if rule.check in NOT_IMPLEMENTED:
        return [RuleResult(rule, "not_implemented", message=NOT_IMPLEMENTED[rule.check])]
    fn = REGISTRY.get(rule.check)
    if fn is None:
        return [RuleResult(rule, "not_implemented", message=f"no check named {rule.check!r}")]
    outcomes = fn(rule, ctx)
    if not outcomes:
        return [RuleResult(rule, "not_applicable", message="nothing in the config this rule applies to")]
    results = []
    for o in outcomes:
        status: Status
        if o.ok:
            status = "warn" if o.warning else "pass"
        elif o.warning or rule.severity == "warning":
            status = "warn"
        else:
            status = "fail"
        waiver = find_waiver(states, rule.id, o.scope) if status in ("fail", "warn") else None
        if waiver is not None:
            status = "waived"
        results.append(RuleResult(rule, status, o.scope, o.value, o.message, o.file, o.target, waiver))
    return results


def evaluate(config: LoadedConfig, profile: Profile | None = None, *, now: dt.datetime) -> Report:
    """Run every rule of the profile (default: the config's) over the config at time ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    profile = profile or load_profile(config.profile_name)
    ctx = CheckContext(config, profile, now)
    states, waiver_findings = waiver_states(config.model.waivers, profile, now, str(config.path))
    results: list[RuleResult] = []
    for rule in profile.rules:
        results.extend(_results_for(rule, ctx, states))
    return Report(profile, str(config.path), now, tuple(results), tuple(waiver_findings),
                  config_digest(config), config.file_profile)


def enforcement_points(rule: Rule) -> tuple[str, ...]:
    """Where a rule is enforced: load, wire, report (empty: not implemented)."""
    return enforced_at(rule.check)
