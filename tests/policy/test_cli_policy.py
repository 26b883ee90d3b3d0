"""`ikeguard check` and `ikeguard profiles` as a user sees them: output, JSON and exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ikeguard.control.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_check_example_names_missing_files_and_not_implemented(examples_dir: Path) -> None:
    code, out = run("check", "-c", str(examples_dir / "processor-gateway.toml"))
    assert code == 1
    assert "files.present" in out and "pki/gw.pem" in out and "file not found" in out
    assert "0 not implemented" in out
    assert "verdict per requirement" in out and "10.5.1" in out and "AU-11" in out
    assert "FAIL" in out


def test_check_json_lists_exactly_the_not_implemented_rules(examples_dir: Path) -> None:
    code, out = run("check", "-c", str(examples_dir / "processor-gateway.toml"), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["profile"] == "pci-dss-4" and data["passed"] is False
    not_implemented = sorted(r for r, s in data["rules"].items() if s == "not_implemented")
    assert not_implemented == []
    verdicts = {(r["document"], r["id"]): r["verdict"] for r in data["requirements"]}
    assert verdicts[("PCI DSS 4.0.1", "10.5.1")] == "pass" and verdicts[("PCI DSS 4.0.1", "4.2.1")] == "fail"
    finding = next(f for f in data["findings"] if f["rule"] == "files.present")
    assert finding["sources"] and finding["fix"] and finding["value"]


def test_check_profile_override_and_unknown_profile(examples_dir: Path) -> None:
    cfg = str(examples_dir / "processor-gateway.toml")
    code, out = run("check", "-c", cfg, "--profile", "cnsa-2", "--json")
    assert code == 1
    assert json.loads(out)["rules"]["crypto.addke-required"] == "fail"
    code, out = run("check", "-c", cfg, "--profile", "pci-dss4")
    assert code == 2 and "did you mean 'pci-dss-4'" in out


def test_check_unreadable_is_2_invalid_is_1(tmp_path: Path) -> None:
    code, out = run("check", "-c", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read file" in out and len(out.strip().splitlines()) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nprofle = "pci-dss-4"\n')
    code, out = run("check", "-c", str(bad), "--json")
    assert code == 1
    (finding,) = json.loads(out)["findings"]
    assert finding["path"] == "gateway.profle" and "did you mean 'profile'" in finding["message"]
    code, _ = run("check")
    assert code == 2


def test_schema_export() -> None:
    code, out = run("check", "--schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["additionalProperties"] is False
    assert {"gateway", "connections", "secrets", "waivers"} <= set(schema["properties"])
    code, out = run("check", "--peers-schema")
    assert code == 0 and "peer" in json.loads(out)["properties"]


def test_profiles_list_and_show() -> None:
    code, out = run("profiles")
    assert code == 0
    for name in ("baseline", "pci-dss-4", "nist-800-77r1", "cnsa-1", "cnsa-2", "bsi-tr-02102-3", "pq-hybrid"):
        assert name in out
    code, out = run("profiles", "pci-dss-4", "--json")
    assert code == 0
    rules = {r["id"]: r for r in json.loads(out)["rules"]}
    assert "RFC 8247 §2.1" in rules["crypto.ike.encr"]["sources"]
    assert rules["crypto.ike.encr"]["enforced_at"] == ["load", "wire", "report"]
    assert rules["audit.siem-delivery"]["enforced_at"] == ["run", "report"]
    assert rules["audit.retention"]["pci_dss"] == ["10.5.1"]
    code, out = run("profiles", "pci")
    assert code == 2 and "unknown profile" in out


def test_pq_hybrid_intermediate_rule_is_checked_not_unimplemented(examples_dir: Path) -> None:
    """Issue 25: `ike.intermediate` (pq-hybrid, cnsa-2) is a real check now: ML-KEM proposals with IKE
    fragmentation pass, without it fail (ML-KEM KE payloads in IKE_INTERMEDIATE exceed one datagram)."""
    cfg = examples_dir / "minimal-pq-hybrid.toml"
    code, out = run("check", "-c", str(cfg), "--json")
    rules = json.loads(out)["rules"]
    assert rules["ike.intermediate"] == "pass" and rules["crypto.addke-required"] == "pass", rules
    text = cfg.read_text().replace('dpd_delay = "30s"\n', 'dpd_delay = "30s"\nfragmentation = "no"\n', 1)
    cfg.write_text(text)
    code, out = run("check", "-c", str(cfg), "--json")
    data = json.loads(out)
    assert code == 1 and data["rules"]["ike.intermediate"] == "fail"
    finding = next(f for f in data["findings"] if f["rule"] == "ike.intermediate")
    assert finding["scope"] == "connections.west.fragmentation" and "IKE fragmentation" in finding["message"]
