"""Waivers: time-boxed, owned, ticketed exceptions to one rule in one scope ([[waivers]]).

A waiver applies to a failing result when the rule id matches, the result's key path equals the waiver
scope or lies under it (``connections.legacy`` covers ``connections.legacy.children.x.esp_proposals[0]``),
the rule is waivable, and ``now`` is before ``expires``. Waivers longer than ``MAX_WAIVER`` are not
applied: an exception must come back for review at least yearly (PCI DSS 12.3.3-style review).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ikeguard.policy.errors import Finding
from ikeguard.policy.model import Waiver
from ikeguard.policy.profile import Profile

MAX_WAIVER = dt.timedelta(days=366)


@dataclass(frozen=True)
class WaiverState:
    """A configured waiver and whether it can apply at ``now`` (with the reason when not)."""

    index: int
    waiver: Waiver
    usable: bool
    problem: str | None = None

    @property
    def until(self) -> str:
        """``waived until 2026-12-31`` text."""
        return f"waived until {self.waiver.expires:%Y-%m-%d}"


def scope_covers(scope: str, path: str) -> bool:
    """Whether a waiver scope covers a result's key path."""
    if scope in ("*", ""):
        return True
    return path == scope or path.startswith(scope + ".") or path.startswith(scope + "[")


def waiver_states(waivers: Sequence[Waiver], profile: Profile, now: dt.datetime,
                  file: str | None = None) -> tuple[list[WaiverState], list[Finding]]:
    """Judge each waiver; findings say which ones cannot apply and why."""
    states: list[WaiverState] = []
    findings: list[Finding] = []
    for i, w in enumerate(waivers):
        problem = None
        if not profile.has_rule(w.rule):
            problem = f"profile {profile.name} has no rule {w.rule!r}"
        elif not profile.rule(w.rule).waivable:
            problem = f"rule {w.rule!r} cannot be waived"
        elif w.expires <= now:
            problem = f"expired on {w.expires:%Y-%m-%d}"
        elif w.expires - now > MAX_WAIVER:
            problem = f"expires {w.expires:%Y-%m-%d}, more than a year ahead: waivers are time-boxed"
        states.append(WaiverState(i, w, problem is None, problem))
        if problem:
            findings.append(Finding("waiver.invalid", f"waiver not applied: {problem} (owner {w.owner}, "
                                    f"ticket {w.ticket})", path=f"waivers[{i}]", value=w.rule, file=file,
                                    severity="warning"))
    return states, findings


def find_waiver(states: Sequence[WaiverState], rule_id: str, path: str) -> WaiverState | None:
    """The usable waiver covering (rule, path), if any."""
    for s in states:
        if s.usable and s.waiver.rule == rule_id and scope_covers(s.waiver.scope, path):
            return s
    return None
