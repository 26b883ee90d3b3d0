"""The compliance report as an assessor reads it (issue 17): text printed as written, each result with its own
severity, ``--strict``, the configuration digest and versions in the JSON, ``run --profile`` overrides refused
unless said so and then audited."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ikeguard
from ikeguard.control.cli import main
from tests.conftest import EXAMPLES

GW = "processor-gateway.toml"
WIDE = {"COLUMNS": "400"}  # one table row per line, so a row can be read whole
IKE_ECP384 = 'proposals = ["aes256gcm16-prfsha384-ecp384"]'


@pytest.fixture(scope="module")
def pki_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples with the PKI that examples/make-pki.sh makes with strongSwan's pki."""
    if shutil.which("pki") is None:
        pytest.fail("strongSwan's pki tool is missing (make test installs strongswan-pki)")
    target = tmp_path_factory.mktemp("examples-pki")
    shutil.copytree(EXAMPLES, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("pki", "state*"))
    result = subprocess.run(
        [str(target / "make-pki.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def processor(pki_examples: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the PKI'd examples; the processor configuration in it."""
    shutil.copytree(pki_examples, tmp_path / "ex")
    return tmp_path / "ex" / GW


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=WIDE)
    return result.exit_code, result.output


def check_json(path: Path, *more: str) -> tuple[int, dict[str, Any]]:
    code, out = cli("check", "-c", str(path), "--json", *more)
    return code, json.loads(out)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


SINK = """[[audit.sinks]]
type = "syslog-tls"
address = "127.0.0.1:6514"
ca = "pki/siem-ca.pem"
cert = "pki/gw-siem.pem"
key = "pki/gw-siem.key"
"""


def test_processor_example_passes(processor: Path) -> None:
    code, report = check_json(processor)
    assert code == 0 and report["passed"] is True, [f for f in report["findings"] if f["status"] == "fail"]


# -- text output: rule and configuration text is never rich markup ----------------------------------------
def test_fix_text_with_brackets_is_printed_as_written(processor: Path) -> None:
    edit(processor, SINK, "")
    code, out = cli("check", "-c", str(processor))
    assert code == 1
    assert 'add [[audit.sinks]] type = "syslog-tls" with address and ca' in out  # was "add [] type ..."
    _, report = check_json(processor)
    fixes = {f["fix"] for f in report["findings"] if f["rule"] == "audit.siem-sink"}
    assert fixes == {'add [[audit.sinks]] type = "syslog-tls" with address and ca'}


def test_key_paths_and_values_with_brackets_survive(processor: Path) -> None:
    edit(processor, 'proposals = ["aes256gcm16-prfsha384-ecp384"]', 'proposals = ["3des-sha256-ecp384"]')
    _, out = cli("check", "-c", str(processor))
    assert "connections.merchants.proposals[0]" in out


# -- a warning is a warning ------------------------------------------------------------------------------
def test_sunset_warning_has_severity_warning(processor: Path) -> None:
    edit(processor, IKE_ECP384, 'proposals = ["aes256gcm16-prfsha384-modp2048"]')
    code, report = check_json(processor)
    assert code == 0
    (finding,) = [f for f in report["findings"] if f["rule"] == "crypto.ike.ke"]
    assert finding["status"] == "warn" and finding["severity"] == "warning"
    assert finding["rule_severity"] == "error"
    _, out = cli("check", "-c", str(processor))
    (row,) = [line for line in out.splitlines() if "crypto.ike.ke" in line and "modp2048" in line]
    assert "warning" in row and " error " not in row


# -- --strict --------------------------------------------------------------------------------------------
def test_strict_exits_1_on_warnings(processor: Path) -> None:
    edit(processor, IKE_ECP384, 'proposals = ["aes256gcm16-prfsha384-modp2048"]')
    assert cli("check", "-c", str(processor))[0] == 0
    code, report = check_json(processor, "--strict")
    assert code == 1 and report["passed"] is True and report["exit_code"] == 1 and report["strict"] is True
    assert "--strict: exit 1" in cli("check", "-c", str(processor), "--strict")[1]


def test_strict_passes_a_clean_configuration(processor: Path) -> None:
    code, report = check_json(processor, "--strict")
    assert code == 0 and report["exit_code"] == 0


# -- what the report was made from -------------------------------------------------------------------------
def test_json_names_tool_profile_and_configuration_digest(processor: Path) -> None:
    _, report = check_json(processor)
    assert report["tool_version"] == ikeguard.__version__
    assert report["profile"] == "pci-dss-4" and report["profile_version"] == "2"
    assert len(report["profile_digest"]) == 64
    digest = report["config_digest"]
    assert digest["algorithm"] == "sha256" and len(digest["sha256"]) == 64
    files = {f["scope"]: f for f in digest["files"]}
    assert files["(configuration)"]["sha256"] == hashlib.sha256(processor.read_bytes()).hexdigest()
    ca = files["authorities.processor-vpn.cacert"]
    assert ca["hashed"] == "file"
    assert ca["sha256"] == hashlib.sha256((processor.parent / "pki/ca.pem").read_bytes()).hexdigest()
    assert (
        files["connections.merchants.remote.peers"]["sha256"]
        == hashlib.sha256((processor.parent / "merchants.toml").read_bytes()).hexdigest()
    )
    key = files["connections.merchants.local.key"]  # a private key is identified by its public key only
    assert key["hashed"] == "public key of private key"
    assert key["sha256"] != hashlib.sha256((processor.parent / "pki/gw.key").read_bytes()).hexdigest()


def test_digest_changes_with_any_named_file(processor: Path) -> None:
    _, before = check_json(processor)
    crl = processor.parent / "pki/vpn.crl"
    crl.write_bytes(crl.read_bytes() + b"\n")
    _, after = check_json(processor)
    assert before["config_digest"]["sha256"] != after["config_digest"]["sha256"]


def test_psk_secret_files_are_not_hashed(tmp_path: Path) -> None:
    (tmp_path / "k.psk").write_text("0x" + "ab" * 32 + "\n")
    (tmp_path / "gw.toml").write_text("""
[gateway]
profile = "baseline"
[connections.c]
remote_addrs = ["192.0.2.10"]
local = { auth = "psk", id = "gw.example" }
remote = { auth = "psk", id = "peer.example" }
[connections.c.children.n]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
[secrets.ike.c]
ids = ["peer.example"]
secret_file = "k.psk"
""")
    _, report = check_json(tmp_path / "gw.toml")
    (entry,) = [f for f in report["config_digest"]["files"] if f["scope"] == "secrets.ike.c.secret_file"]
    assert entry["sha256"] is None and entry["hashed"] == "secret (not hashed)"
    assert hashlib.sha256(("0x" + "ab" * 32 + "\n").encode()).hexdigest() not in json.dumps(report)


# -- run --profile ----------------------------------------------------------------------------------------
def test_run_profile_differing_from_the_file_is_refused(processor: Path) -> None:
    result = CliRunner().invoke(main, ["run", "-c", str(processor), "--profile", "baseline"])
    assert result.exit_code == 2
    assert "differs from the profile 'pci-dss-4'" in result.output and "--override-profile" in result.output


def test_profile_override_is_audited(processor: Path) -> None:
    import datetime as dt

    from ikeguard.service.plan import build_plan
    from ikeguard.service.runner import startup_records

    now = dt.datetime.now(dt.UTC)
    plan = build_plan(processor, now=now, profile_override="baseline")
    (loaded,) = [r for r in startup_records(plan) if r.event.value == "config.loaded"]
    assert loaded.details["profile"] == "baseline"
    assert loaded.details["profile_in_file"] == "pci-dss-4" and loaded.details["profile_override"] is True
    plan = build_plan(processor, now=now)
    (loaded,) = [r for r in startup_records(plan) if r.event.value == "config.loaded"]
    assert "profile_override" not in loaded.details
