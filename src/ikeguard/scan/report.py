"""The scan report: verdicts joined to observations, the exit code, and the stable JSON form.

Exit code (docs/scan.md): 0 = the scan verified every transform and found nothing; 1 = at least one
finding (also from a partial scan: what was seen is real); 2 = could not scan (no IKEv2 answer) or a partial
scan without findings (an unverified transform is never reported as passing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ikeguard.policy.profile import Profile
from ikeguard.scan.catalog import CLASSES, ESP_CLASSES, Observation
from ikeguard.scan.scanner import ScanResult
from ikeguard.scan.verdict import (
    ScanFinding,
    Verdict,
    ikev1_findings,
    pfs_findings,
    policy_findings,
    transform_verdict,
)
from ikeguard.wire.iana import KeId, name_of

SCHEMA = "ikeguard-scan/1"


@dataclass
class Row:
    """One transform row of the report."""

    observation: Observation
    verdict: Verdict | None
    findings: list[ScanFinding] = field(default_factory=list)


@dataclass
class ScanReport:
    """A scan judged under a profile (and optionally a policy file)."""

    result: ScanResult
    profile: Profile
    rows: list[Row]
    findings: list[ScanFinding]
    policy_path: str | None = None

    @property
    def errors(self) -> list[ScanFinding]:
        """Findings that fail the scan (sunset warnings excluded)."""
        return [f for f in self.findings if not f.warning]

    @property
    def status(self) -> str:
        """'complete', 'partial' or 'failed' (no IKEv2 answer at all)."""
        if not self.result.answered:
            return "failed"
        return "complete" if self.result.complete and self.result.stop_reason is None else "partial"

    @property
    def exit_code(self) -> int:
        """0 nothing found, 1 findings, 2 could not scan (or partial without findings)."""
        if self.errors:
            return 1
        return 0 if self.status == "complete" else 2

    def to_json(self) -> dict[str, Any]:
        """The stable ``ikeguard-scan/1`` document (every key always present)."""
        r = self.result
        return {
            "schema": SCHEMA,
            "target": {"host": r.host, "address": r.address[0], "port": r.address[1]},
            "profile": self.profile.name,
            "policy": self.policy_path,
            "status": self.status,
            "stop_reason": r.stop_reason,
            "exit_code": self.exit_code,
            "transforms": [
                {"class": row.observation.candidate.cls, "name": row.observation.candidate.profile_name,
                 "label": row.observation.candidate.label, "id": row.observation.candidate.transform.id,
                 "key_length": row.observation.candidate.transform.key_length,
                 "status": row.observation.status, "evidence": row.observation.evidence,
                 "verdict": row.verdict, "rules": sorted({f.rule for f in row.findings})}
                for row in self.rows],
            "ke_preference": [name_of(KeId, g) for g in r.ke_preference],
            "ke_order": r.ke_order,
            "chosen_proposal": r.chosen,
            "behaviours": r.behaviours,
            "findings": [f.to_json() for f in self.findings],
            "probes": r.probes,
            "datagrams": r.datagrams,
            "half_open_sas_left": r.half_open_left,
            "unparsable_datagrams": r.garbage,
            "duration_s": round(r.duration, 2),
            "notes": list(r.notes),
            "authenticated": r.authenticated.to_json() if r.authenticated is not None else None,
        }


def judge(result: ScanResult, profile: Profile,
          policy: Mapping[str, frozenset[tuple[int, int | None]]] | None = None,
          policy_path: str | None = None) -> ScanReport:
    """Attach the profile's verdict to every accepted transform and collect the findings."""
    rows: list[Row] = []
    findings: list[ScanFinding] = []
    for cls in (*CLASSES, *ESP_CLASSES):
        for o in result.by_class(cls):
            if o.status != "accepted":
                rows.append(Row(o, None))
                continue
            verdict, row_findings = transform_verdict(profile, o.candidate)
            rows.append(Row(o, verdict, row_findings))
            findings.extend(row_findings)
    findings.extend(ikev1_findings(result, profile))
    findings.extend(pfs_findings(result, profile))
    if policy is not None:
        findings.extend(policy_findings(result, policy))
    return ScanReport(result, profile, rows, findings, policy_path)
