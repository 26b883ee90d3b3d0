"""Verdicts on a scan: the profile's own transform rules, and an optional expected-set policy file.

No algorithm list lives here: whether an accepted transform is allowed, warned about or forbidden is what
``policy.proposals.transform_violations`` says under the chosen profile — the same function `ikeguard check`,
config load and the gateway's proposal selection call — with the rule's id, sources, controls and fix.

A policy file (``--policy FILE``, TOML) is a regression test for one gateway, as ssh-audit's policies are:
for each class it names, the accepted set must equal the listed one::

    [ike]
    encr = ["AES_GCM_16/256", "AES_CBC/256"]   # profile names; key length after "/"
    prf = ["HMAC_SHA2_384"]
    integ = ["HMAC_SHA2_384_192"]
    ke = ["ECP_384", "CURVE25519"]

    [esp]                                      # needs the scan with credentials
    encr = ["AES_GCM_16/256"]
    ke = ["ECP_384"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ikeguard.policy.profile import TYPE_NAMES, Profile
from ikeguard.policy.proposals import transform_violations
from ikeguard.scan.catalog import CLASSES, ESP_CLASSES, Candidate
from ikeguard.scan.scanner import ScanResult

Verdict = Literal["pass", "warn", "fail"]

POLICY_RULE = "scan.policy"
POLICY_SOURCES = ("PCI DSS 4.0.1 11.3", "PCI DSS 4.0.1 2.2.4")
"""A policy mismatch is a configuration drift: what the vulnerability scan (11.3) is for, judged against the
system's documented configuration standard (2.2.4)."""


class PolicyFileError(ValueError):
    """The ``--policy`` file cannot be used (unreadable, not TOML, unknown class or transform name)."""


@dataclass(frozen=True)
class ScanFinding:
    """One finding: a rule the responder's behaviour violates (or a sunset warning)."""

    rule: str
    severity: str
    transform: str | None
    message: str
    sources: tuple[str, ...]
    fix: str
    pci: tuple[str, ...] = ()
    nist: tuple[str, ...] = ()
    warning: bool = False

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (docs/scan.md)."""
        return {"rule": self.rule, "severity": "warning" if self.warning else self.severity,
                "transform": self.transform, "message": self.message, "sources": list(self.sources),
                "fix": self.fix, "pci_dss": list(self.pci), "nist_800_53": list(self.nist)}


def transform_verdict(profile: Profile, candidate: Candidate) -> tuple[Verdict, list[ScanFinding]]:
    """The profile's verdict on one accepted IKE or Child SA transform, with a finding per violated rule."""
    findings: list[ScanFinding] = []
    where = "IKE_SA_INIT" if candidate.protocol == "ike" else "CREATE_CHILD_SA (ESP)"
    for v in transform_violations(profile, candidate.protocol, candidate.transform):
        r = v.rule
        findings.append(ScanFinding(
            r.id, r.severity, candidate.label,
            f"the responder accepts {candidate.label} in {where}: {v.message}",
            r.sources, r.fix, r.pci, r.nist, warning=v.warning))
    if any(not f.warning for f in findings):
        return "fail", findings
    return ("warn" if findings else "pass"), findings


def load_policy(path: str | Path) -> dict[str, frozenset[tuple[int, int | None]]]:
    """Read an expected-set policy: class name -> set of (transform id, key length)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not TOML: {exc}") from None
    tables = {"ike": (CLASSES, ""), "esp": (ESP_CLASSES, "ESP_")}
    if not data or set(data) - set(tables) or not all(isinstance(v, Mapping) for v in data.values()):
        raise PolicyFileError(f"{path}: expected an [ike] table and/or an [esp] table")
    out: dict[str, frozenset[tuple[int, int | None]]] = {}
    for table, entries in data.items():
        known, prefix = tables[table]
        for key, names in entries.items():
            cls = prefix + str(key).upper()
            if cls not in known:
                allowed = ", ".join(c.removeprefix(prefix).lower() for c in known)
                raise PolicyFileError(f"{path}: unknown class {table}.{key} ({allowed})")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise PolicyFileError(f"{path}: {table}.{key} must be a list of transform names")
            registry = TYPE_NAMES[cls.removeprefix("ESP_")]
            items: set[tuple[int, int | None]] = set()
            for n in names:
                name, _, length = n.partition("/")
                try:
                    items.add((int(registry[name]), int(length) if length else None))
                except (KeyError, ValueError):
                    raise PolicyFileError(f"{path}: {table}.{key}: unknown transform {n!r}") from None
            out[cls] = frozenset(items)
    return out


def policy_findings(result: ScanResult,
                    policy: Mapping[str, frozenset[tuple[int, int | None]]]) -> list[ScanFinding]:
    """Differences between the accepted set and the expected one (only where both are verified)."""
    findings: list[ScanFinding] = []
    for cls, expected in policy.items():
        for o in result.by_class(cls):
            t = o.candidate.transform
            wanted = (t.id, t.key_length) in expected or (t.id, None) in expected
            if o.status == "accepted" and not wanted:
                message = f"{o.candidate.label} is accepted but not in the policy"
            elif o.status == "refused" and wanted:
                message = f"{o.candidate.label} is in the policy but refused"
            elif o.status == "not_verified" and wanted:
                message = f"{o.candidate.label} is in the policy but could not be verified ({o.evidence})"
            else:
                continue
            findings.append(ScanFinding(POLICY_RULE, "error", o.candidate.label, message, POLICY_SOURCES,
                                        "align the gateway's proposals (or the policy file) with each other"))
    return findings


IKEV1_RULE = "protocol.ikev2-esp-only"
IKEV1_FIX = ("disable IKEv1 on the responder (libreswan: ikev1-policy=drop and no ikev2=no conns; "
             "strongSwan: no version = 1 connections)")


def ikev1_findings(result: ScanResult, profile: Profile) -> list[ScanFinding]:
    """IKEv1 negotiable (a Main Mode SA answer) and Aggressive Mode with PSK (HASH_R sent), judged by the
    profile's ``protocol.ikev2-esp-only`` rule (its sources and controls); an IKEv1 error answer alone is
    reported as a behaviour, not a finding (strongSwan answers NO_PROPOSAL_CHOSEN without IKEv1 configs)."""
    v1 = result.behaviours.get("ikev1")
    if not isinstance(v1, dict) or not profile.has_rule(IKEV1_RULE):
        return []
    rule = profile.rule(IKEV1_RULE)
    out: list[ScanFinding] = []
    if v1.get("main_mode") == "accepted":
        out.append(ScanFinding(rule.id, rule.severity, "IKEv1 Main Mode",
                               f"the responder negotiates IKEv1 Main Mode ({v1.get('main_mode_choice')}): "
                               f"{rule.title}", rule.sources, IKEV1_FIX, rule.pci, rule.nist))
    if v1.get("aggressive_psk") == "accepted":
        out.append(ScanFinding(rule.id, rule.severity, "IKEv1 Aggressive Mode PSK",
                               f"the responder answers IKEv1 Aggressive Mode with a pre-shared key "
                               f"({v1.get('aggressive_choice')}): its HASH_R lets anyone who reaches UDP 500 "
                               f"attack the PSK offline (RFC 2409 §5.4)", (*rule.sources, "RFC 2409 §5.4"),
                               "turn Aggressive Mode off (libreswan: aggressive=no) and IKEv1 with it",
                               rule.pci, rule.nist))
    return out


PFS_RULE = "pfs.required"


def pfs_findings(result: ScanResult, profile: Profile) -> list[ScanFinding]:
    """A responder that creates Child SAs without a key exchange when the profile requires PFS
    (``pfs.required``: NIST SP 800-77r1 §7.2.6), seen by the scan with credentials."""
    auth = result.authenticated
    if auth is None or auth.pfs != "not_required" or not profile.has_rule(PFS_RULE):
        return []
    rule = profile.rule(PFS_RULE)
    return [ScanFinding(rule.id, rule.severity, "PFS",
                        "the responder creates a Child SA without a key exchange in CREATE_CHILD_SA "
                        f"(no perfect forward secrecy): {rule.title}", rule.sources, rule.fix, rule.pci,
                        rule.nist)]
