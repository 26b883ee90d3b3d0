"""Issue 18 + 24: ``ikeguard evidence --ca DIR`` puts an ``ikeguard pki`` CA's issuance log, its key's HSM
access log and its certificate inventory into the pack (``ca/NAME/``) from the CA's own trail, verified with
that trail's key; ``evidence verify --ca-key`` checks them, and a pack re-made around changed CA records is
caught. The token case (hsm.login / hsm.sign of a SoftHSM2 CA key) is tests/interop/test_pki_ca.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.audit.store import DB_NAME, read_verification_key
from ikeguard.control.cli import main
from ikeguard.evidence.pack import VOLATILE, read
from ikeguard.evidence.verify import verify_pack

from .conftest import MonthLab


def _ok(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _ca(tmp_path: Path) -> tuple[Path, str]:
    """A file-key CA: root, two devices, one revoked, one CRL; the revoked serial."""
    key = tmp_path / "ca.key"
    key.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ca = tmp_path / "vpn-ca"
    _ok("pki", "init", "--dir", str(ca), "--key", str(key), "--dn", "C=US, O=Processor, CN=Processor VPN CA")
    serials = []
    for till in ("till-1", "till-2"):
        out = _ok("pki", "issue", "--dir", str(ca), "--dn", f"CN={till}.merchants.example", "--san",
                  f"{till}.merchants.example", "--key-out", str(tmp_path / f"{till}.key"), "--lifetime", "3d",
                  "--out", str(tmp_path / f"{till}.pem"))
        serials.append(out.split()[1])
    _ok("pki", "revoke", "--dir", str(ca), serials[0], "--reason", "key_compromise")
    _ok("pki", "crl", "--dir", str(ca), "--out", str(tmp_path / "ca.crl"))
    return ca, serials[0]


def _ca_key(ca: Path) -> bytes:
    return read_verification_key(ca / "audit" / "audit-verification.key")


def _pack(lab: MonthLab, out: Path, *extra: str) -> tuple[int, str]:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    result = CliRunner().invoke(main, ["evidence", "-c", str(lab.config), "--from", lab.period[0],
                                       "--to", tomorrow, "-o", str(out), *extra])
    return result.exit_code, result.output


def test_the_ca_trail_goes_into_the_pack_and_verifies_with_its_own_key(month_lab: MonthLab,
                                                                        tmp_path: Path) -> None:
    ca, revoked = _ca(tmp_path)
    code, output = _pack(month_lab, tmp_path / "pack.zip", "--ca", str(ca))
    assert code == 0, output
    files = read(tmp_path / "pack.zip")
    ca_records = files["ca/vpn-ca/records.jsonl"].decode().splitlines()
    assert f"CA vpn-ca: audit verify: {len(ca_records)} records intact" in output  # all in the period

    issuance = list(csv.DictReader(io.StringIO(files["ca/vpn-ca/issuance.csv"].decode())))
    assert [r["event"] for r in issuance] == ["pki.issued"] * 3 + ["pki.revoked", "pki.crl"]
    assert [r["kind"] for r in issuance[:3]] == ["root", "device", "device"]
    assert issuance[3]["cert_serial"] == revoked and issuance[3]["reason"] == "key_compromise"
    assert issuance[4]["crl_number"] == "1" and issuance[4]["revoked"] == "1"
    assert all(r["admin"] for r in issuance)
    # a file key: no token, so no HSM access log lines (the token case: tests/interop/test_pki_ca.py)
    assert files["ca/vpn-ca/hsm-access.csv"].decode().splitlines() == [
        "seq,time,event,outcome,reason,key,count,error"]
    inventory = json.loads(files["ca/vpn-ca/certificates.json"])
    assert {c["subject"]: c["status"] for c in inventory} == {
        "CN=till-1.merchants.example": "revoked", "CN=till-2.merchants.example": "valid"}
    period = json.loads(files["ca/vpn-ca/period.json"])
    assert period["ca"]["subject"] == "CN=Processor VPN CA,O=Processor,C=US" and period["ca"]["key"] == "file"
    assert period["summary"]["issued"] == 3 and period["summary"]["revoked"] == 1
    assert json.loads(files[VOLATILE])["ca"]["vpn-ca"]["audit_verify"]["ok"] is True
    assert b"ca/vpn-ca/" in files["pki/issuance.txt"]
    report = files["report.html"].decode()
    assert 'id="certificate-authority"' in report and "CN=Processor VPN CA" in report
    assert "CN=till-1.merchants.example" in report.split('id="certificate-authority"')[1]

    ca_key = f"vpn-ca={ca / 'audit' / 'audit-verification.key'}"
    checked = verify_pack(files, month_lab.key, ca_keys={"vpn-ca": _ca_key(ca)})
    assert checked.ok, checked.problems
    full = CliRunner().invoke(main, ["evidence", "verify", str(tmp_path / "pack.zip"), "--key",
                                     str(month_lab.key_file), "--ca-key", ca_key])
    assert full.exit_code == 0, full.output
    partial = CliRunner().invoke(main, ["evidence", "verify", str(tmp_path / "pack.zip"), "--key",
                                        str(month_lab.key_file)])
    assert partial.exit_code == 1 and "CA vpn-ca: no verification key given" in partial.output


def test_changed_ca_records_are_named(month_lab: MonthLab, tmp_path: Path) -> None:
    ca, _ = _ca(tmp_path)
    code, output = _pack(month_lab, tmp_path / "pack.zip", "--ca", str(ca))
    assert code == 0, output
    files = dict(read(tmp_path / "pack.zip"))
    key = _ca_key(ca)
    # a pack re-made without the revocation: issuance log and records edited together
    lines = files["ca/vpn-ca/records.jsonl"].decode().splitlines()
    files["ca/vpn-ca/records.jsonl"] = "".join(line + "\n" for line in lines
                                               if '"pki.revoked"' not in line).encode()
    report = verify_pack(files, month_lab.key, ca_keys={"vpn-ca": key})
    assert any(p.startswith("ca/vpn-ca/records.jsonl: seq") for p in report.problems), report.problems
    assert "ca/vpn-ca/issuance.csv: does not match the CA trail records in the pack" in report.problems
    # a CA trail tampered with before the pack: the pack is made, says so and exits 1
    db = sqlite3.connect(ca / "audit" / DB_NAME)
    with db:
        db.execute("UPDATE records SET body = replace(body, 'key_compromise', 'superseded')")
    db.close()
    code, output = _pack(month_lab, tmp_path / "pack2.zip", "--ca", str(ca))
    assert code == 1 and "FAILED: the audit trail of CA vpn-ca does not verify: seq" in output, output


def test_a_directory_without_a_ca_is_refused(month_lab: MonthLab, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = _pack(month_lab, tmp_path / "pack.zip", "--ca", str(tmp_path / "empty"))
    assert code == 2 and "no CA here" in output
