"""Issue 23 item 4: the importers against a corpus of 20 configurations written the way operators write them
(tests/policy/import_corpus/: strongSwan ipsec.conf + ipsec.secrets, libreswan ipsec.conf, swanctl.conf;
site-to-site, road warriors with EAP, certificates made with strongSwan's ``pki``, PSK with 0x/0s/quoted
secrets, several children, IPv6, also= templates, IKEv1 leftovers, weak algorithms).

Each case's ``expected.json`` is the import result a reviewer agreed with: the connections written, those
not imported, every key without an equivalent with the line it came from (nothing is dropped silently), and
the compliance verdict under ``baseline`` and ``pci-dss-4`` (failing rule ids) of the written TOML, which
must load. Secrets never show in the report. Regenerate after a deliberate change with
``IKG_UPDATE_CORPUS=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.control.cli import main
from ikeguard.policy.loader import load_config
from tests.harness.pki_tool import PkiTool

CORPUS = Path(__file__).parent / "import_corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
PROFILES = ("baseline", "pci-dss-4")


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """gw.pem / gw.key / ca.pem as an operator makes them with strongSwan's `pki` (ECDSA P-384)."""
    if shutil.which("pki") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strongSwan's pki tool is missing (packaging/system-packages.txt)")
        pytest.skip("strongSwan's pki tool is not installed")
    tool = PkiTool(tmp_path_factory.mktemp("corpus-pki"))
    ca = tool.self_signed_ca("ca", "C=US, O=Example, CN=Example Root CA")
    gw = tool.issue("gw", ca, "C=US, O=Example, CN=gw.example.com", sans=["gw.example.com"])
    return {"cert": gw.cert_path, "key": gw.key_path, "ca": ca.cert_path}


def _stage(case: str, tmp_path: Path, credentials: dict[str, Path]) -> Path:
    """Copy the case where an operator keeps it, with the credentials in its folders; return the source."""
    work = tmp_path / "etc"
    shutil.copytree(CORPUS / case, work, ignore=shutil.ignore_patterns("expected.json"))
    if (work / "ipsec.conf").exists():
        dirs = {"cert": "ipsec.d/certs", "ca": "ipsec.d/cacerts", "key": "ipsec.d/private"}
        source = work / "ipsec.conf"
    else:
        dirs = {"cert": "x509", "ca": "x509ca", "key": "private"}
        source = work / "swanctl.conf"
    names = {"cert": "gw.pem", "ca": "ca.pem", "key": "gw.key"}
    for kind, sub in dirs.items():
        (work / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(credentials[kind], work / sub / names[kind])
    return source


def _run(source: Path, out: Path, profile: str) -> dict[str, Any]:
    # EAP rounds are relayed to the site's RADIUS server
    secret = source.parent / "radius.secret"
    secret.write_text("corpus-radius-secret\n")
    secret.chmod(0o600)
    radius = ["--radius-server", "192.0.2.250", "--radius-secret-file", str(secret)]
    result = CliRunner().invoke(main, ["import", str(source), "-o", str(out), "--profile", profile,
                                       "--dataplane", "none", "--force", "--json", *radius])
    assert result.exit_code in (0, 1), result.output
    report: dict[str, Any] = json.loads(result.output)
    assert report["exit_code"] == result.exit_code
    return report


def _summary(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    first = reports[PROFILES[0]]
    return {
        "flavour": first["flavour"],
        "connections": first["connections"],
        "skipped": first["skipped"],
        "unmapped": sorted(f"{u['key']} @ {Path(u['where'].rsplit(':', 1)[0]).name}:"
                           f"{u['where'].rsplit(':', 1)[1]}" if u["where"] else u["key"]
                           for u in first["unmapped"]),  # the set matters, not the report's order
        "verdicts": {p: {"passed": r["passed"],
                         "failing": sorted({f["rule"] for f in r["findings"] if f.get("status") == "fail"})}
                     for p, r in reports.items()},
    }


def test_the_corpus_has_twenty_configurations_of_every_kind() -> None:
    kinds = {c: next(p.name for p in (CORPUS / c).iterdir() if p.name.endswith(".conf")) for c in CASES}
    assert len(CASES) >= 20
    assert sum(k == "swanctl.conf" for k in kinds.values()) >= 5
    assert sum(k == "ipsec.conf" for k in kinds.values()) >= 10
    flavours = {json.loads((CORPUS / c / "expected.json").read_text())["flavour"] for c in CASES}
    assert flavours == {"swanctl", "strongswan", "libreswan"}


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_imports_as_expected(case: str, tmp_path: Path, credentials: dict[str, Path]) -> None:
    source = _stage(case, tmp_path, credentials)
    reports = {}
    for profile in PROFILES:
        out = tmp_path / profile / "gateway.toml"
        reports[profile] = _run(source, out, profile)
        assert reports[profile]["loaded"], reports[profile]["findings"]
        load_config(out)  # the written file loads as `ikeguard run` would load it
        for name in reports[profile]["secret_files"]:
            assert stat.S_IMODE((out.parent / name).stat().st_mode) == 0o600
        text = out.read_text() + json.dumps(reports[profile])
        for secret_source in source.parent.glob("*.secrets"):
            for word in ("Xr4n7w9T2pQm8LzV5bN3cK6jH1gF0dSa", "partner2014", "not-a-real-password",
                         "carol-password", "group-secret-for-ios"):
                if word in secret_source.read_text():
                    assert word not in text
        assert "not-a-real-password" not in text and "labsecret" not in text.replace("lab-", "")
    got = _summary(reports)
    expected_file = CORPUS / case / "expected.json"
    if os.environ.get("IKG_UPDATE_CORPUS") == "1":
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_file.read_text())
