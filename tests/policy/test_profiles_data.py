"""Profile data files: every rule is well formed, implemented or honestly listed as not implemented."""

from __future__ import annotations

import pytest

from ikeguard.policy.checks import NOT_IMPLEMENTED, REGISTRY
from ikeguard.policy.profile import ProfileNotFound, available_profiles, load_profile

PROFILES = ["baseline", "bsi-tr-02102-3", "cnsa-1", "cnsa-2", "nist-800-77r1", "pci-dss-4", "pq-hybrid"]


def test_the_seven_profiles_ship() -> None:
    assert available_profiles() == PROFILES


@pytest.mark.parametrize("name", PROFILES)
def test_rules_are_complete(name: str) -> None:
    profile = load_profile(name)
    for rule in profile.rules:
        assert rule.check in REGISTRY or rule.check in NOT_IMPLEMENTED, rule.id
        assert rule.sources and rule.fix and rule.setting and rule.title, rule.id
        known = {"1.3.1", "2.2.4", "3.7.4", "4.2.1", "4.2.1.1", "8.3.2", "8.3.11", "10.3.3", "10.5.1",
                 "10.7.2"}
        assert all(c in known for c in rule.pci), rule.id


@pytest.mark.parametrize("name", PROFILES)
def test_structural_rules_everywhere(name: str) -> None:
    profile = load_profile(name)
    for rule_id in ("seg.wildcard-fixed-ts", "seg.inventory-overlap", "psk.binding", "crypto.aead-integrity"):
        assert not profile.rule(rule_id).waivable


def test_only_baseline_accepts_a_secret_without_ids() -> None:
    allowing = [n for n in PROFILES if load_profile(n).rule("psk.binding").params["allow_without_ids"]]
    assert allowing == ["baseline"]


def test_sources_differ_where_the_standards_do() -> None:
    assert load_profile("bsi-tr-02102-3").rule("lifetime.child.max").params["max"] == "4h"
    assert load_profile("pci-dss-4").rule("lifetime.child.max").params["max"] == "8h"
    assert load_profile("cnsa-1").rule("pfs.required").params["compare"] == "equal"
    assert "NIST SP 800-77r1 Table 1" in load_profile("nist-800-77r1").rule("crypto.ike.encr").sources


def test_unknown_or_internal_profile_names_are_refused() -> None:
    for name in ("_common", "_regulated", "pci"):
        with pytest.raises(ProfileNotFound):
            load_profile(name)


def test_auditor_doc_covers_every_rule_and_every_gap() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "compliance.md").read_text()
    for name in PROFILES:
        for rule in load_profile(name).rules:
            assert f"`{rule.id}`" in doc, rule.id
    for check in NOT_IMPLEMENTED:
        assert f"`{check}`" in doc, check
