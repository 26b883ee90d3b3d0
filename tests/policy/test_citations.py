"""Every citation a profile makes names a requirement listed in policy/requirements.toml, or is labelled
as an analogy or as ikeguard's own rule (issue 17): no unlabelled analogy, no citation of a file the product
does not ship, and the specific misattributions an assessor found stay fixed."""

from __future__ import annotations

from importlib import resources

import pytest

from ikeguard.policy.profile import available_profiles, load_profile
from ikeguard.policy.report import rule_requirements
from ikeguard.policy.requirements import NIST_800_53, PCI, documents, parse_citation

PROFILES = available_profiles()


@pytest.mark.parametrize("name", PROFILES)
def test_every_citation_names_an_existing_requirement_or_is_labelled(name: str) -> None:
    for rule in load_profile(name).rules:
        for source in rule.sources:
            citation = parse_citation(source)  # ValueError: unknown document or id
            if citation.kind == "requirement":
                assert citation.id in documents()[citation.document or ""].ids, (rule.id, source)
        for ident in rule.pci:
            assert ident in documents()[PCI].ids, (rule.id, ident)
        for ident in rule.nist:
            assert ident in documents()[NIST_800_53].ids, (rule.id, ident)


def test_unknown_documents_and_ids_are_refused() -> None:
    for bad in ("compliance.md §9.1", "PCI DSS 4.0.1 4.2.9", "RFC 7296 §99", "NIST SP 800-53 XX-1"):
        with pytest.raises(ValueError):
            parse_citation(bad)
    assert parse_citation("PCI DSS 4.0.1 3.7.4 (by analogy: cryptoperiods)").kind == "analogy"
    assert parse_citation("ikeguard recommendation").kind == "recommendation"
    assert parse_citation("CNSA 2.0 (NSA CSA PP-22-1338)").requirement == ("CNSA 2.0", "")


def test_no_profile_text_cites_a_file_the_product_does_not_ship() -> None:
    for entry in resources.files("ikeguard.policy.profiles").iterdir():
        if entry.name.endswith(".toml"):
            assert ".md" not in entry.read_text(encoding="utf-8"), entry.name


def _pci_requirements(rule_id: str) -> set[str]:
    out = set()
    for name in PROFILES:
        profile = load_profile(name)
        if profile.has_rule(rule_id):
            out |= {i for d, i in rule_requirements(profile.rule(rule_id)) if d == PCI}
    return out


def test_misattributions_stay_fixed() -> None:
    assert "4.2.1.1" not in _pci_requirements("files.present")  # 4.2.1.1 is the key/certificate inventory
    for rule in ("psk.entropy", "psk.file-mode", "psk.inline", "key.file-mode"):
        assert "8.3.2" not in _pci_requirements(rule), rule  # 8.3.2: factors unreadable by strong crypto
    for rule in ("lifetime.ike.max", "lifetime.child.max", "key.age"):
        assert "3.7.4" not in _pci_requirements(rule), rule  # stored account data: only an analogy
        sources = load_profile("pci-dss-4").rule(rule).sources
        assert any(s.startswith("PCI DSS 4.0.1 3.7.4 (by analogy") for s in sources), rule
    assert "8.3.11" not in _pci_requirements("psk.binding")  # about users' factors: an analogy for peers


def test_auditor_doc_has_a_row_per_requirement_with_what_ikeguard_cannot_check() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "compliance.md").read_text()
    section = doc[doc.index("## Verdicts per requirement"):doc.index("## Not implemented yet")]
    assert "ikeguard cannot check" in section and "the operator shows instead" in section
    rows = {line.split(" | ")[0].removeprefix("| ") for line in section.splitlines() if line.startswith("| ")}
    for name in PROFILES:
        for rule in load_profile(name).rules:
            for document, ident in rule_requirements(rule):
                assert f"{document} {ident}".strip() in rows, (rule.id, document, ident)
