"""Verdicts per requirement (issue 17): a requirement passes only when every rule mapped to it passes, and a
waiver never turns into a pass: it is a compensating control with its reference, owner and expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.policy.test_report_assessor import IKE_ECP384, check_json, cli, edit, pki_examples, processor

__all__ = ["pki_examples", "processor"]  # fixtures shared with test_report_assessor


def _waive_3des(path: Path) -> str:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=60)).date().isoformat()  # waivers are time-boxed
    edit(path, IKE_ECP384, 'proposals = ["3des-sha256-ecp384"]')
    with path.open("a") as fh:
        fh.write(
            f'\n[[waivers]]\nrule = "crypto.ike.encr"\nscope = "connections.merchants"\n'
            f'reason = "legacy terminal fleet"\nowner = "alice@processor.example"\nticket = "RISK-77"\n'
            f"expires = {expires}\n"
        )
    return expires


def _requirement(report: dict[str, object], document: str, ident: str) -> dict[str, object]:
    found = [r for r in report["requirements"] if r["document"] == document and r["id"] == ident]  # type: ignore[attr-defined,index]
    assert len(found) == 1, (document, ident)
    return found[0]  # type: ignore[no-any-return]


def test_waived_rule_is_a_compensating_control_not_a_pass(processor: Path) -> None:
    expires = _waive_3des(processor)
    code, report = check_json(processor)
    assert code == 0  # a compensating control does not fail the profile ...
    assert report["rules"]["crypto.ike.encr"] == "compensating_control"
    assert report["verdict"] != "pass"
    requirement = _requirement(report, "PCI DSS 4.0.1", "2.2.4")
    assert requirement["verdict"] == "compensating_control"  # ... and its requirement is never a plain pass
    text = f"compensating control: RISK-77, owner alice@processor.example, expires {expires}"
    assert any(text in c for c in requirement["compensating_controls"])  # type: ignore[attr-defined]
    requirement = _requirement(report, "PCI DSS 4.0.1", "4.2.1")  # also not verified (revocation.runtime)
    assert requirement["verdict"] in ("compensating_control", "not_verified")
    assert any(text in c for c in requirement["compensating_controls"])  # type: ignore[attr-defined]
    (finding,) = [f for f in report["findings"] if f["rule"] == "crypto.ike.encr"]
    assert finding["status"] == "compensating_control"
    assert finding["compensating_control"]["reference"] == "RISK-77"
    assert finding["compensating_control"]["expires"].startswith(expires)
    code, out = cli("check", "-c", str(processor))
    assert code == 0 and text in out
    assert "PASS WITH QUALIFICATIONS" in out and "1 compensating controls" in out
    assert "[bold green]PASS" not in out and ": PASS;" not in out


def test_strict_exits_1_on_a_compensating_control(processor: Path) -> None:
    _waive_3des(processor)
    code, report = check_json(processor, "--strict")
    assert code == 1 and report["exit_code"] == 1


def test_a_requirement_fails_when_any_of_its_rules_fails(processor: Path) -> None:
    edit(processor, 'revocation = "strict"', 'revocation = "relaxed"')
    code, report = check_json(processor)
    assert code == 1
    assert report["rules"]["revocation.configured"] == "fail" and report["rules"]["crypto.ike.encr"] == "pass"
    requirement = _requirement(report, "PCI DSS 4.0.1", "4.2.1")
    assert requirement["verdict"] == "fail"
    statuses = {r["rule"]: r["status"] for r in requirement["rules"]}  # type: ignore[attr-defined]
    assert statuses["revocation.configured"] == "fail" and statuses["crypto.ike.encr"] == "pass"
    assert "controls" not in report  # no per-rule "controls satisfied" list naming 4.2.1 as met
    assert _requirement(report, "PCI DSS 4.0.1", "10.5.1")["verdict"] == "pass"


def test_passing_processor_lists_verdicts_for_each_framework(processor: Path) -> None:
    code, report = check_json(processor)
    assert code == 0
    documents = {r["document"] for r in report["requirements"]}
    assert {"PCI DSS 4.0.1", "NIST SP 800-53"} <= documents
    assert _requirement(report, "NIST SP 800-53", "AU-11")["verdict"] == "pass"
    for requirement in report["requirements"]:
        worst = {r["status"] for r in requirement["rules"]}
        if requirement["verdict"] == "pass":
            assert worst <= {"pass", "not_applicable"}, requirement


def test_stapled_ocsp_counts_as_a_revocation_source(processor: Path) -> None:
    """RFC 4806: with ``ocsp = "request"`` the peer's stapled OCSP response is the revocation source (strict
    still refuses a peer that staples none and whose CA gives no reachable source)."""
    edit(processor, 'crls = ["pki/vpn.crl"]\n', "")
    _code, report = check_json(processor)
    assert report["rules"]["revocation.configured"] == "fail"
    edit(processor, 'unique = "replace"\n', 'unique = "replace"\nocsp = "request"\n')
    _code, report = check_json(processor)
    assert report["rules"]["revocation.configured"] == "pass"
