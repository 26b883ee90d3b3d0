"""Issue 13 S6: private key files are secrets, checked like PSK secret files (key.file-mode, one rule with
psk.file-mode): `ikeguard check` fails `pci-dss-4` when the gateway's IKE key or its SIEM client key can be
read by group or others, and `ikeguard run` refuses that configuration with the same finding.

The configuration is the processor example with the PKI examples/make-pki.sh makes with strongSwan's `pki`
(keys written under umask 077, as an operator following the docs does); the test then loosens one mode.
Both commands run as the real CLI processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ikeguard.policy.checks.keyfiles import owner_only
from tests.conftest import EXAMPLES

CONFIG = "processor-gateway.toml"  # "Passes: profile pci-dss-4"


@pytest.fixture(scope="module")
def examples_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("pki") is None:
        pytest.fail("strongSwan's pki tool is missing (make test installs strongswan-pki)")
    target = tmp_path_factory.mktemp("examples-keys")
    shutil.copytree(EXAMPLES, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("pki", "state*"))
    made = subprocess.run([str(target / "make-pki.sh")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert made.returncode == 0, made.stderr
    return target


@pytest.fixture
def example(examples_pki: Path, tmp_path: Path) -> Path:
    """A private copy (modes preserved) whose key modes a test may change."""
    return Path(shutil.copytree(examples_pki, tmp_path / "examples"))


def ikeguard(directory: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ikeguard", *args], cwd=directory, capture_output=True,
                          text=True, timeout=timeout, check=False)


def failing(directory: Path) -> list[dict[str, str]]:
    checked = ikeguard(directory, "check", "-c", CONFIG, "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    return [f for f in json.loads(checked.stdout)["findings"] if f["status"] == "fail"]


def assert_run_refuses(directory: Path, scope: str) -> None:
    ran = ikeguard(directory, "run", "-c", CONFIG)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 1, out
    assert "ikeguard run: configuration refused" in out
    assert f"{scope} = " in out and "[key.file-mode]" in out


def test_operator_made_keys_at_0600_pass(example: Path) -> None:
    keys = sorted((example / "pki").glob("*.key"))
    assert keys and all(k.stat().st_mode & 0o077 == 0 for k in keys)
    checked = ikeguard(example, "check", "-c", CONFIG, "--json")
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["passed"], report["findings"]
    assert report["rules"]["key.file-mode"] == "pass"


def test_world_readable_gateway_key_fails_check_and_run_refuses(example: Path) -> None:
    (example / "pki" / "gw.key").chmod(0o644)
    (finding,) = failing(example)
    assert finding["rule"] == "key.file-mode" and finding["scope"] == "connections.merchants.local.key"
    assert finding["value"] == "pki/gw.key (mode 0644)"
    assert "group/other can access the file" in finding["message"] and finding["fix"]
    text = ikeguard(example, "check", "-c", CONFIG)
    assert text.returncode == 1 and "key.file-mode" in text.stdout and "FAIL" in text.stdout
    assert_run_refuses(example, "connections.merchants.local.key")


def test_group_readable_siem_client_key_fails_check_and_run_refuses(example: Path) -> None:
    (example / "pki" / "gw-siem.key").chmod(0o640)
    (finding,) = failing(example)
    assert finding["rule"] == "key.file-mode" and finding["scope"] == "audit.sinks[0].key"
    assert finding["value"] == "pki/gw-siem.key (mode 0640)"
    assert_run_refuses(example, "audit.sinks[0].key")


def test_psk_files_and_keys_share_one_rule(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("x")
    for mode, ok in ((0o600, True), (0o400, True), (0o640, False), (0o604, False), (0o660, False)):
        path.chmod(mode)
        found = owner_only(path)
        assert found is not None and found[0] == mode and (found[1] is None) is ok, oct(mode)
    assert owner_only(tmp_path / "missing") is None  # files.present reports it, not a pass
