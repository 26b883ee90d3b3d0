"""Waivers: time-boxed, owned, shown as "waived until", never "pass"; expired ones do not apply."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ikeguard.policy.enforce import enforce
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config
from ikeguard.policy.report import evaluate
from tests.policy.conftest import edit

GW = "processor-gateway.toml"


def _waiver(rule: str, scope: str, expires: str) -> str:
    return (f'\n[[waivers]]\nrule = "{rule}"\nscope = "{scope}"\nreason = "legacy terminal fleet"\n'
            f'owner = "alice@processor.example"\nticket = "RISK-77"\nexpires = {expires}\n')


def _weak(example_copy: Path, waiver: str) -> Path:
    edit(example_copy / GW, 'proposals = ["aes256gcm16-prfsha384-ecp384"]',
         'proposals = ["3des-sha256-ecp384"]')
    with (example_copy / GW).open("a") as fh:
        fh.write(waiver)
    return example_copy / GW


def test_active_waiver_is_shown_as_waived_until(example_copy: Path, now: dt.datetime) -> None:
    path = _weak(example_copy, _waiver("crypto.ike.encr", "connections.merchants", "2027-01-31"))
    report = evaluate(load_config(path), now=now)
    assert report.rule_status("crypto.ike.encr") == "waived"
    (result,) = [r for r in report.results if r.rule.id == "crypto.ike.encr" and r.status == "waived"]
    finding = result.finding()
    assert ("compensating control: RISK-77, owner alice@processor.example, expires 2027-01-31"
            in finding.message)
    assert finding.severity == "warning"
    (req,) = [v for v in report.requirements() if (v.document, v.id) == ("PCI DSS 4.0.1", "4.2.1")]
    assert req.verdict != "pass"  # waived is never "satisfied"


def test_waived_failure_does_not_refuse(example_copy: Path, now: dt.datetime) -> None:
    path = _weak(example_copy, _waiver("crypto.ike.encr", "connections.merchants", "2027-01-31"))
    with pytest.raises(ConfigError) as info:  # PKI files are missing in the copy: those still refuse
        enforce(load_config(path), now=now)
    assert "crypto.ike.encr" not in {f.rule for f in info.value.findings}


@pytest.mark.parametrize(("rule", "scope", "expires", "problem"), [
    ("crypto.ike.encr", "connections.merchants", "2026-11-01", "expired on 2026-11-01"),
    ("crypto.ike.encr", "connections.merchants", "2029-01-01", "more than a year ahead"),
    ("crypto.ike.encr", "connections.other", "2027-01-31", None),
    ("crypto.ike.enrc", "connections.merchants", "2027-01-31", "has no rule"),
])
def test_waivers_that_do_not_apply(example_copy: Path, now: dt.datetime, rule: str, scope: str, expires: str,
                                   problem: str | None) -> None:
    path = _weak(example_copy, _waiver(rule, scope, expires))
    report = evaluate(load_config(path), now=now)
    assert report.rule_status("crypto.ike.encr") == "fail"
    if problem:
        (finding,) = report.waiver_findings
        assert problem in finding.message and finding.path == "waivers[0]"


def test_structural_rules_cannot_be_waived(example_copy: Path, now: dt.datetime) -> None:
    edit(example_copy / GW, 'remote_ts = ["%peer"]', 'remote_ts = ["10.20.0.0/16"]')
    with (example_copy / GW).open("a") as fh:
        fh.write(_waiver("seg.wildcard-fixed-ts", "connections.merchants", "2027-01-31"))
    report = evaluate(load_config(example_copy / GW), now=now)
    assert report.rule_status("seg.wildcard-fixed-ts") == "fail"
    assert "cannot be waived" in report.waiver_findings[0].message


def test_waiver_needs_owner_reason_ticket_expiry(example_copy: Path) -> None:
    with (example_copy / GW).open("a") as fh:
        fh.write('\n[[waivers]]\nrule = "crypto.ike.encr"\nscope = "connections.merchants"\n')
    with pytest.raises(ConfigError) as info:
        load_config(example_copy / GW)
    assert {f.path for f in info.value.findings} == {f"waivers[0].{k}" for k in ("reason", "owner", "ticket",
                                                                              "expires")}
