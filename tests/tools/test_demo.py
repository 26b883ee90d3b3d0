"""`ikeguard demo` end to end as a user runs it: a subprocess in the host namespace (root), three gateways.

Asserts what the user must see (SA table, traffic, the refused cross-merchant claim, check and audit verify
passing) and that nothing is left behind (namespaces, processes), also when the run is stopped with SIGTERM,
and that without root it says what it needs and exits 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.demo.scenario import MERCHANT_A, MERCHANT_B, MERCHANT_C, PROCESSOR

IKEGUARD = Path(sys.executable).parent / "ikeguard"
DEMO_TIMEOUT_S = 180  # with --evidence: the pack, its PDF and its verification


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (our demo's work directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def _assert_nothing_left(result: dict[str, Any]) -> None:
    assert result["namespaces"], "the run reported no namespaces"
    assert not set(result["namespaces"]) & _netns(), "namespaces left behind"
    workdir = result["workdir"]
    assert workdir, "--keep-dir should report the work directory"
    assert _processes_mentioning(workdir) == [], "processes left behind"
    assert not list(Path(workdir).rglob("*.sock")) or all(
        not p.is_socket() or _processes_mentioning(str(p)) == [] for p in Path(workdir).rglob("*.sock")
    )


@pytest.mark.root
@pytest.mark.slow
def test_demo_shows_tunnels_traffic_and_refused_claim_and_leaves_nothing_behind(tmp_path: Path) -> None:
    started = time.monotonic()
    pack = tmp_path / "evidence"
    proc = subprocess.run(
        [str(IKEGUARD), "demo", "--json", "--keep-dir", "--evidence", str(pack)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    elapsed = time.monotonic() - started
    shown = proc.stderr
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON summary (exit {proc.returncode}):\n{proc.stdout}\n{shown}")
    try:
        steps = {s["step"]: s for s in result["steps"]}
        failed = [name for name, s in steps.items() if not s["ok"]]
        assert failed == [], f"demo failed at {failed}: {result['error']}\n{shown}"
        assert proc.returncode == 0 and result["ok"] is True
        for step in (
            "pki",
            "network",
            "check",
            "gateways",
            "tunnels",
            "traffic",
            "segmentation",
            "revocation",
            "audit",
            "evidence",
        ):
            assert steps[step]["ok"], step

        # Tunnels: the processor's SA table (the real `ikeguard sas` output) shows both merchants.
        assert "$ ikeguard sas" in shown
        sas = {sa["remote_id"]: sa for sa in result["evidence"]["sas"]}
        assert set(sas) == {MERCHANT_A.identity, MERCHANT_B.identity}
        for site in (MERCHANT_A, MERCHANT_B):
            sa = sas[site.identity]
            assert sa["proposal"] == "aes256gcm16-prfsha384-ecp384"
            assert sa["remote_ts"] == [str(site.subnet)]
            assert sa["local_ts"] == [str(PROCESSOR.subnet)]
            assert re.fullmatch(r"[0-9a-f]{8}", sa["spi_in"])
            assert site.identity in shown

        # Traffic: every ping answered, and counted by the processor's Child SA.
        traffic = {t["site"]: t for t in result["evidence"]["traffic"]}
        for site in (MERCHANT_A, MERCHANT_B):
            t = traffic[site.name]
            assert t["sent"] > 0 and t["received"] == t["sent"]
            assert t["processor_packets_in"] >= t["sent"]
        assert "traffic through the tunnels" in shown

        # Segmentation: merchant B's claim on merchant A's subnet refused and audited.
        record = result["evidence"]["ts_rejected"]
        assert record["event"] == "ts.rejected"
        assert record["remote_id"] == MERCHANT_B.identity
        assert "ts.rejected" in shown and "claim" in shown.lower()

        # Revocation: the stolen device (certificate on the processor's CRL) is refused at IKE_AUTH.
        revoked = result["evidence"]["revoked_refused"]
        assert revoked["event"] == "cert.rejected" and revoked["remote_id"] == MERCHANT_C.identity
        assert "revoked" in revoked["reason"]
        assert MERCHANT_C.identity not in {sa["remote_id"] for sa in result["evidence"]["sas"]}

        # Evidence: check and audit verify passed, the SIEM received the processor's records.
        assert result["evidence"]["check"]["passed"] is True
        assert result["evidence"]["audit"]["siem_records"].get(PROCESSOR.identity, 0) > 0
        assert "demo passed" in shown

        # Issue 24 Done-when 5: the example pack (`demo --evidence DIR`) made and verified offline; its
        # inventories are the run's: the suite negotiated, the merchants' certificates, the revoked one
        # refused
        evidence = result["evidence"]["evidence"]
        assert "ike:aes256gcm16-prfsha384-ecp384" in evidence["negotiated_suites"]
        assert evidence["ike_sas"] >= 2 and "report.html" in evidence["files"]
        certs = json.loads((pack / "inventory" / "certificates.json").read_text())["seen"]
        by_subject = {c["peers"][0] if c["peers"] else c["subject"]: c for c in certs}
        assert by_subject[MERCHANT_C.identity]["revocation"].startswith("rejected")
        assert {MERCHANT_A.identity, MERCHANT_B.identity} <= set(by_subject)
        key = Path(result["workdir"]) / PROCESSOR.name / "state" / "audit-verification.key"
        verified = subprocess.run([str(IKEGUARD), "evidence", "verify", str(pack), "--key", str(key)],
                                  capture_output=True, text=True, check=False)
        assert verified.returncode == 0, verified.stdout
        _assert_nothing_left(result)
    finally:
        if result.get("workdir"):
            shutil.rmtree(result["workdir"], ignore_errors=True)
    print(f"demo took {elapsed:.1f} s")


@pytest.mark.root
@pytest.mark.slow
def test_sigterm_during_the_run_removes_everything_and_exits_1() -> None:
    proc = subprocess.Popen(
        [str(IKEGUARD), "demo", "--json", "--keep-dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    gateways_up = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "✔ Three gateways" in line:
                gateways_up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert gateways_up.wait(60), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    result = json.loads(out)
    try:
        assert proc.returncode == 1
        assert result["ok"] is False and result["failed_step"]
        assert "interrupted" in result["error"]
        _assert_nothing_left(result)
    finally:
        shutil.rmtree(result.get("workdir") or "/nonexistent", ignore_errors=True)


def test_without_root_it_says_what_it_needs_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    # The interpreter lives under /root here, so an unprivileged subprocess cannot start it: run the command
    # in-process as a non-root user would see it (geteuid != 0), before anything is created.
    from click.testing import CliRunner

    from ikeguard.control.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    before = _netns()
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 2
    assert "needs: root" in result.output
    assert "sudo make demo" in result.output
    assert _netns() == before
