"""Evaluate a loaded configuration against a profile: one result per rule and scope, waivers applied, and a
verdict per requirement (PCI DSS 4.0.1, NIST SP 800-53, SP 800-77r1, BSI TR-02102-3, CNSA ...): a requirement
passes only when every rule mapped to it passes. A waived finding is a *compensating control* (its ticket is
the reference to the compensating-control worksheet, PCI DSS 4.0.1 Appendix B/C): the requirement's verdict
says so and is never a plain pass. A rule that needs the running gateway (``runtime``) is "not verified"
unless the running gateway answered (``runtime`` facts from the control socket)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ikeguard import __version__
from ikeguard.policy.checks import NOT_IMPLEMENTED, REGISTRY, CheckContext, Target, enforced_at
from ikeguard.policy.checks.base import CheckKind, check_kind
from ikeguard.policy.digest import ConfigDigest, config_digest
from ikeguard.policy.errors import Finding
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.profile import Profile, Rule, load_profile
from ikeguard.policy.requirements import (
    NIST_800_53,
    PCI,
    documents,
    has_verdicts,
    parse_citation,
    requirement_title,
)
from ikeguard.policy.waivers import WaiverState, find_waiver, waiver_states

Status = Literal["pass", "fail", "warn", "waived", "not_verified", "not_implemented", "not_applicable"]
Verdict = Literal["fail", "not_implemented", "not_verified", "compensating_control", "warn", "pass",
                  "not_applicable"]
# worst first; a requirement (and the report) takes the worst verdict of its rules
VERDICT_ORDER: tuple[Verdict, ...] = ("fail", "not_implemented", "not_verified", "compensating_control",
                                      "warn", "pass", "not_applicable")
_VERDICT_OF: dict[Status, Verdict] = {
    "fail": "fail", "not_implemented": "not_implemented", "not_verified": "not_verified",
    "waived": "compensating_control", "warn": "warn", "pass": "pass", "not_applicable": "not_applicable"}


def verdict_of(status: Status) -> Verdict:
    """How a rule status is reported (``waived`` is shown as ``compensating_control``)."""
    return _VERDICT_OF[status]


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The worst verdict of several (``not_applicable`` when there are none)."""
    present = set(verdicts)
    return next((v for v in VERDICT_ORDER if v in present), "not_applicable")


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
    checked: CheckKind = "config"

    @property
    def compensating_control(self) -> str | None:
        """``compensating control: RISK-77, owner alice@..., expires 2027-01-31`` for a waived finding."""
        if self.status != "waived" or self.waiver is None:
            return None
        w = self.waiver.waiver
        return f"compensating control: {w.ticket}, owner {w.owner}, expires {w.expires:%Y-%m-%d} ({w.reason})"

    @property
    def severity(self) -> Literal["error", "warning", "info"]:
        """The result's own severity: ``error`` for a failure, ``warning`` for a warning or a waived finding
        (never the rule's severity for a result that only warns, e.g. MODP-2048's sunset), ``info`` else."""
        if self.status in ("fail", "not_implemented"):
            return "error"
        if self.status in ("warn", "waived", "not_verified"):
            return "warning"
        return "info"

    def finding(self) -> Finding:
        """As a Finding (what ``check`` prints and ``ConfigError`` carries)."""
        message = self.message or self.rule.title
        if self.compensating_control is not None:
            message += f" ({self.compensating_control})"
        if self.status == "not_implemented":
            message = f"not implemented: {message}"
        severity: Literal["error", "warning", "info"] = "error" if self.severity == "info" else self.severity
        return Finding(self.rule.id, message, path=self.scope, value=self.value, file=self.file,
                       severity=severity, sources=self.rule.sources, fix=self.rule.fix)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``check --json``."""
        data: dict[str, Any] = {
            "rule": self.rule.id, "title": self.rule.title, "status": verdict_of(self.status),
            "checked": self.checked,
            "severity": self.severity, "rule_severity": self.rule.severity, "scope": self.scope,
            "value": self.value, "message": self.message, "file": self.file,
            "sources": list(self.rule.sources),
            "fix": self.rule.fix, "pci_dss": list(self.rule.pci), "nist_800_53": list(self.rule.nist),
        }
        if self.waiver is not None:
            w = self.waiver.waiver
            data["compensating_control"] = {"reference": w.ticket, "owner": w.owner,
                                            "expires": w.expires.isoformat(), "reason": w.reason,
                                            "scope": w.scope, "text": self.compensating_control}
        return data


def rule_requirements(rule: Rule) -> list[tuple[str, str]]:
    """(document, id) of every requirement a rule is judged against: its ``pci`` and ``nist`` ids and the
    sources of documents that get verdicts (analogies and ikeguard's own recommendations excluded)."""
    out = [(PCI, i) for i in rule.pci] + [(NIST_800_53, i) for i in rule.nist]
    for text in rule.sources:
        try:
            req = parse_citation(text).requirement
        except ValueError:
            continue  # tests/policy/test_citations.py keeps every shipped source valid
        if req is not None and has_verdicts(req[0]):
            out.append(req)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class RequirementVerdict:
    """The verdict of one requirement: the worst of the rules mapped to it, with those rules' statuses."""

    document: str
    id: str
    verdict: Verdict
    rules: tuple[tuple[str, Verdict], ...]
    compensating: tuple[str, ...] = ()
    checked: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """Short title of the requirement (policy/requirements.toml)."""
        return requirement_title(self.document, self.id)

    def to_json(self) -> dict[str, Any]:
        """JSON form (``requirements[]``)."""
        return {"document": self.document, "id": self.id, "title": self.title, "verdict": self.verdict,
                "rules": [{"rule": r, "status": v} for r, v in self.rules],
                "compensating_controls": list(self.compensating), "checked": list(self.checked)}


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
        order: list[Status] = ["fail", "not_implemented", "not_verified", "waived", "warn", "pass",
                               "not_applicable"]
        statuses = {r.status for r in self.results if r.rule.id == rule_id}
        return next((s for s in order if s in statuses), "pass")

    def requirements(self) -> list[RequirementVerdict]:
        """One verdict per requirement the profile's rules map to (document order of first mention)."""
        mapped: dict[tuple[str, str], list[Rule]] = {}
        for rule in self.profile.rules:
            for req in rule_requirements(rule):
                mapped.setdefault(req, []).append(rule)
        out = []
        for (document, ident), rules in mapped.items():
            statuses = tuple((r.id, verdict_of(self.rule_status(r.id))) for r in rules)
            compensating = tuple(dict.fromkeys(
                c for r in self.results if r.rule in rules and (c := r.compensating_control) is not None))
            checked = tuple(sorted({check_kind(r.check) for r in rules}))
            out.append(RequirementVerdict(document, ident, worst([v for _, v in statuses]), statuses,
                                          compensating, checked))
        order = {name: i for i, name in enumerate(documents())}
        out.sort(key=lambda v: (order.get(v.document, len(order)), _id_key(v.id)))
        return out

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of every rule (``pass`` only when each passed outright or did not apply)."""
        return worst([verdict_of(self.rule_status(r.id)) for r in self.profile.rules])

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``check --json``."""
        return {
            "config": self.config_path, "profile": self.profile.name, "time": self.now.isoformat(),
            "tool_version": __version__, "profile_version": self.profile.version,
            "profile_digest": self.profile.digest, "profile_in_file": self.file_profile or self.profile.name,
            "config_digest": self.digest.to_json() if self.digest is not None else None,
            "passed": self.passed,
            "verdict": self.verdict,
            "findings": [r.to_json() for r in self.results if r.status not in ("pass", "not_applicable")],
            "waiver_problems": [{"path": f.path, "rule": f.value, "message": f.message}
                                for f in self.waiver_findings],
            "requirements": [v.to_json() for v in self.requirements()],
            "rules": {rule.id: verdict_of(self.rule_status(rule.id)) for rule in self.profile.rules},
            "checked": {rule.id: check_kind(rule.check) for rule in self.profile.rules},
        }


def _id_key(ident: str) -> tuple[tuple[int, str], ...]:
    """Sort key: ``4.2.1`` before ``10.3.3``, ``SC-8`` before ``SC-12``."""
    parts = re.split(r"(\d+)", ident)
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts if p)


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
    kind = check_kind(rule.check)
    for o in outcomes:
        status: Status
        if o.not_verified:
            status = "not_verified"  # not a finding a waiver can accept: nothing was judged
        elif o.ok:
            status = "warn" if o.warning else "pass"
        elif o.warning or rule.severity == "warning":
            status = "warn"
        else:
            status = "fail"
        waiver = find_waiver(states, rule.id, o.scope) if status in ("fail", "warn") else None
        if waiver is not None:
            status = "waived"
        results.append(RuleResult(rule, status, o.scope, o.value, o.message, o.file, o.target, waiver, kind))
    return results


def evaluate(config: LoadedConfig, profile: Profile | None = None, *, now: dt.datetime,
             runtime: Mapping[str, Any] | None = None, open_tokens: bool = False) -> Report:
    """Run every rule of the profile (default: the config's) over the config at time ``now``; ``runtime`` is
    what the running gateway reported over its control socket (None: runtime rules are "not verified");
    ``open_tokens``: ``key.matches-cert`` logs in to PKCS#11 tokens (``ikeguard check``; ``run`` opens them
    itself when it builds its plan, so enforcement does not)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    profile = profile or load_profile(config.profile_name)
    ctx = CheckContext(config, profile, now, runtime=runtime, open_tokens=open_tokens)
    states, waiver_findings = waiver_states(config.model.waivers, profile, now, str(config.path))
    results: list[RuleResult] = []
    for rule in profile.rules:
        results.extend(_results_for(rule, ctx, states))
    return Report(profile, str(config.path), now, tuple(results), tuple(waiver_findings),
                  config_digest(config), config.file_profile)


def enforcement_points(rule: Rule) -> tuple[str, ...]:
    """Where a rule is enforced: load, wire, report (empty: not implemented)."""
    return enforced_at(rule.check)
