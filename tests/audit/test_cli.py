"""`ikeguard audit verify|tail|export|archive` as an operator and an auditor use them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from ikeguard.audit.retention import plan_retention
from ikeguard.audit.store import AuditStore
from ikeguard.control.cli import main

from .helpers import T0, Attacker, filled_store


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_verify_untouched_then_tampered(tmp_path: Path) -> None:
    filled_store(tmp_path / "s").close()
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "verify")
    assert code == 0 and "OK" in out
    db = sqlite3.connect(tmp_path / "s" / "audit.db")
    db.execute("UPDATE records SET time='2026-01-01T00:00:00.000000Z' WHERE seq=4")
    db.commit()
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["first_bad_seq"] == 4 and "content changed" in report["reason"]


def test_verify_the_real_attack_via_cli(tmp_path: Path) -> None:
    filled_store(tmp_path / "s").close()
    attacker = Attacker(tmp_path / "s")
    rows = [(s, t, b) for s, t, b, *_ in attacker.rows()]
    rows[9][2]["reason"] = "nothing happened"
    attacker.rewrite_from(10, rows[9:])
    attacker.close()
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "verify")
    assert code == 1 and "first bad record seq 10" in out


def test_state_dir_from_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "gw.toml"
    config.write_text('[gateway]\nstate_dir = "../var/gw"\n')
    filled_store(tmp_path / "var" / "gw", n=2).close()
    code, out = _run("audit", "-c", str(config), "verify")
    assert code == 0, out
    code, out = _run("audit", "verify", "-c", str(config))  # as docs/reference.md writes it
    assert code == 0, out
    code, out = _run("audit", "tail", "-n", "1", "--state-dir", str(tmp_path / "var" / "gw"))
    assert code == 0 and "audit.accessed" in out


def test_fingerprint_mismatch_and_missing_key(tmp_path: Path) -> None:
    filled_store(tmp_path / "s", n=2).close()
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "verify", "--fingerprint", "0000")
    assert code == 1 and "expected 0000" in out
    code, _ = _run("audit", "verify")
    assert code == 2
    code, _ = _run("audit", "--state-dir", str(tmp_path / "nothing"), "tail")
    assert code == 2


def test_tail_and_export_are_themselves_audited(tmp_path: Path) -> None:
    filled_store(tmp_path / "s").close()
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "tail", "-n", "3", "--json")
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["seq"] for x in lines] == [20, 21, 22]
    assert lines[-1]["body"]["event"] == "audit.accessed" and lines[-1]["body"]["admin"]
    bundle = tmp_path / "b.json"
    code, _ = _run(
        "audit",
        "--state-dir",
        str(tmp_path / "s"),
        "export",
        "--from",
        "2",
        "--to",
        "2026-11-27T01:00:05Z",
        "-o",
        str(bundle),
    )
    assert code == 0
    data = json.loads(bundle.read_text())
    assert (data["from_seq"], data["to_seq"]) == (2, 7)
    key = str(tmp_path / "s" / "audit-verification.key")
    assert _run("audit", "verify", "--key", key, "--bundle", str(bundle))[0] == 0
    data["records"].pop(3)
    bundle.write_text(json.dumps(data))
    code, out = _run("audit", "verify", "--key", key, "--bundle", str(bundle))
    assert code == 1 and "seq 5" in out
    store = AuditStore(tmp_path / "s", create=False)
    assert store.records(store.head()[0])[0].body["event"] == "audit.exported"
    store.close()


def test_archive_command_keeps_everything_verifiable(tmp_path: Path) -> None:
    filled_store(tmp_path / "s").close()
    later = (T0 + dt.timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out = _run(
        "audit", "--state-dir", str(tmp_path / "s"), "archive", "--online-days", "90", "--now", later
    )
    assert code == 0 and "archived through seq 20" in out
    assert _run("audit", "--state-dir", str(tmp_path / "s"), "verify")[0] == 0
    much_later = (T0 + dt.timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "archive", "--now", much_later)
    assert "past retention" in out and "audit-000000000001-000000000020.json.gz" in out
    assert (tmp_path / "s" / "audit-archive" / "audit-000000000001-000000000020.json.gz").exists()


def test_retention_plan_is_pure_and_never_outruns_sinks() -> None:
    now = T0 + dt.timedelta(days=100)
    plan = plan_retention(
        now=now,
        online_days=90,
        retention_days=365,
        newest_old_seq=50,
        delivered_seq=30,
        head_seq=80,
        archives=[("a", T0 - dt.timedelta(days=400)), ("b", T0)],
    )
    assert plan.archive_through == 30 and plan.expired_archives == ("a",)
    assert (
        plan_retention(
            now=now, online_days=90, retention_days=365, newest_old_seq=80, delivered_seq=None, head_seq=80
        ).archive_through
        == 79
    )
    assert (
        plan_retention(
            now=now, online_days=90, retention_days=365, newest_old_seq=None, delivered_seq=None, head_seq=80
        ).archive_through
        is None
    )


def test_init_prints_the_fingerprint_once(tmp_path: Path) -> None:
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "init")
    assert code == 0
    fpr = out.split("fingerprint: ")[1].strip()
    store = AuditStore(tmp_path / "s", create=False)
    assert store.fingerprint == fpr
    store.close()
    code, _ = _run("audit", "--state-dir", str(tmp_path / "s"), "init")
    assert code == 2
    code, out = _run("audit", "--state-dir", str(tmp_path / "s"), "verify", "--fingerprint", fpr)
    assert code == 0, out
