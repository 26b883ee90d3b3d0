"""Every configuration in examples/ passes `ikeguard check` with the profile its header names, once the PKI
that examples/make-pki.sh makes (with strongSwan's pki tool, as an operator would) is next to it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from tests.conftest import EXAMPLES

CONFIGS = sorted(p.name for p in EXAMPLES.glob("*.toml") if "[gateway]" in p.read_text())


@pytest.fixture(scope="module")
def examples_with_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("pki") is None:
        pytest.fail("strongSwan's pki tool is missing (make test installs strongswan-pki)")
    target = tmp_path_factory.mktemp("examples-pki")
    shutil.copytree(EXAMPLES, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("pki", "state*"))
    result = subprocess.run([str(target / "make-pki.sh")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return target


def test_examples_cover_processor_merchant_and_site_to_site() -> None:
    assert {"processor-gateway.toml", "merchant-a.toml", "site-east.toml", "site-west.toml"} <= set(CONFIGS)


def test_every_profile_that_can_pass_has_a_minimal_example() -> None:
    """README's quick start points at one working example per profile (cnsa-2 needs ML-DSA, not implemented:
    no configuration can pass it, README says so; pq-hybrid passes since RFC 9370 key exchanges exist)."""
    named = {m.group(1) for p in EXAMPLES.glob("*.toml")
             if (m := re.search(r"^# Passes: profile (\S+)", p.read_text(), re.MULTILINE))}
    assert {"baseline", "pci-dss-4", "nist-800-77r1", "bsi-tr-02102-3", "cnsa-1", "pq-hybrid"} <= named
    minimal = {p.name for p in EXAMPLES.glob("minimal-*.toml")}
    assert {f"minimal-{n}.toml" for n in ("baseline", "pci-dss-4", "bsi-tr-02102-3", "cnsa-1",
                                          "pq-hybrid")} <= minimal


@pytest.mark.parametrize("name", CONFIGS)
def test_example_passes_the_profile_its_header_names(examples_with_pki: Path, name: str) -> None:
    text = (examples_with_pki / name).read_text()
    header = re.search(r"^# Passes: profile (\S+)", text, re.MULTILINE)
    assert header, f"{name} does not say in its header which profile it passes"
    profile = header.group(1)
    assert f'profile = "{profile}"' in text
    result = CliRunner().invoke(main, ["check", "-c", str(examples_with_pki / name), "--json"])
    report = json.loads(result.output)
    failing = [f for f in report["findings"] if f["status"] in ("fail", "not_implemented")]
    assert result.exit_code == 0 and report["passed"] is True and report["profile"] == profile, failing
    warnings = [f["rule"] for f in report["findings"] if f["status"] == "warn"]
    assert warnings == []


def test_make_pki_writes_private_keys_only_the_owner_can_read(examples_with_pki: Path) -> None:
    keys = sorted((examples_with_pki / "pki").glob("*.key"))
    assert keys
    assert all(k.stat().st_mode & 0o077 == 0 for k in keys)
