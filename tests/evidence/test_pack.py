"""Issue 24, Done-when 1 and 2: ``ikeguard evidence`` over a scripted month of real IKE exchanges, and
``ikeguard evidence verify`` on the pack, on changed/removed/added files and on a pack of a tampered trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import sqlite3
import tomllib
import zipfile
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from ikeguard.audit.chain import Record
from ikeguard.audit.store import rfc3339
from ikeguard.control.cli import main
from ikeguard.evidence.pack import MANIFEST, SEAL, VOLATILE, read

from .conftest import MonthLab

REPO = Path(__file__).resolve().parents[2]
NEGOTIATED = {"ike.up": "ike", "ike.rekeyed": "ike", "child.up": "esp", "child.rekeyed": "esp"}


def _pack(lab: MonthLab, out: Path, *extra: str) -> tuple[int, str]:
    start, end = lab.period
    result = CliRunner().invoke(main, ["evidence", "-c", str(lab.config), "--from", start, "--to", end,
                                       "-o", str(out), *extra])
    return result.exit_code, result.output


def _verify(pack: Path, key: Path | None) -> tuple[int, str]:
    args = ["evidence", "verify", str(pack), "--json"] + (["--key", str(key)] if key is not None else [])
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def _trail(lab: MonthLab) -> list[Record]:
    start, end = lab.month.start.isoformat(), lab.month.end.isoformat()
    return [r for r in lab.store.iter_records()
            if start <= r.time.replace("Z", "+00:00") < end]


def test_pack_inventories_and_records_match_the_trail_and_the_peers(month_lab: MonthLab,
                                                                    tmp_path: Path) -> None:
    code, output = _pack(month_lab, tmp_path / "pack.zip")
    assert code == 0, output
    assert "records intact" in output
    files = read(tmp_path / "pack.zip")
    trail = _trail(month_lab)
    assert len(trail) > 900

    # crypto inventory (12.3.3): exactly the suites negotiated in the trail, with their counts
    crypto = json.loads(files["inventory/crypto.json"])
    in_trail = Counter((str(r.body["connection"]), str(r.body["remote_id"]), NEGOTIATED[str(r.body["event"])],
                        str(r.body["proposal"]))
                       for r in trail if r.body["event"] in NEGOTIATED and r.body["outcome"] == "success")
    assert {(u["connection"], u["peer"], u["protocol"], u["proposal"]): u["count"]
            for u in crypto["negotiated"]} == dict(in_trail)
    assert set(crypto["negotiated_suites"]) == {
        "ike:aes256gcm16-prfsha384-ecp384", "ike:aes128gcm16-prfsha256-ecp256", "ike:aes256-sha256-modp2048",
        "esp:aes256gcm16-ecp384", "esp:aes128gcm16-ecp256", "esp:aes256-sha256-modp2048",
        # Child SAs made in IKE_AUTH carry no key exchange of their own (RFC 7296 §1.2)
        "esp:aes256gcm16", "esp:aes128gcm16", "esp:aes256-sha256"}
    modp = [u for u in crypto["negotiated"] if u["proposal"] == "aes256-sha256-modp2048"]
    assert modp and all(any("sunset 2030" in n for n in u["retirement"]) for u in modp)
    assert all(any("quantum-vulnerable" in n for n in u["retirement"])
               for u in crypto["negotiated"] if "ecp" in u["proposal"] or "modp" in u["proposal"])
    rows = files["inventory/crypto.csv"].decode().splitlines()
    assert sum(1 for r in rows if r.startswith("negotiated,")) == len(crypto["negotiated"])

    # certificate inventory: exactly the peer certificates the merchants presented (the rogue one rejected)
    certs = json.loads(files["inventory/certificates.json"])
    seen = {(c["subject"], c["issuer"], c["serial"]): c["role"] for c in certs["seen"]}
    assert {k for k, role in seen.items() if role == "peer"} == month_lab.month.peer_certs
    assert {k for k, role in seen.items() if role == "local (issued)"} == month_lab.month.issued
    m1 = next(c for c in certs["seen"] if c["subject"] == "CN=m1.merchants.example")
    assert m1["key_type"] == "ECDSA secp256r1" and m1["not_after"].endswith("+00:00")  # cert.validated
    rogue = next(c for c in certs["seen"] if c["subject"] == "CN=m9.merchants.example")
    assert rogue["revocation"].startswith("rejected") and "not a trust anchor" in rogue["revocation"]
    assert {c["subject"] for c in certs["configured"]} == {"CN=gw.processor.example", "CN=Merchant CA"}

    # connection records: as many SAs as the peers established, every row with its trail seq
    summary = json.loads(files["connections/summary.json"])
    assert summary["ike_sas"] == month_lab.month.peer_ike_sas
    assert summary["child_sas"] == month_lab.month.peer_child_sas
    assert summary["auth_failures"] == month_lab.month.refused > 0
    ecs = [json.loads(line) for line in files["connections/records.ecs.jsonl"].decode().splitlines()]
    csv_rows = files["connections/records.csv"].decode().splitlines()[1:]
    assert len(ecs) == len(csv_rows) == summary["records"]
    by_seq = {r.seq: r for r in trail}
    for doc in ecs:
        record = by_seq[doc["event"]["sequence"]]
        assert doc["event"]["action"] == record.body["event"]
        assert doc["ikeguard"]["audit"]["hash"] == record.hash.hex()
    ike_docs = [d for d in ecs if d["event"]["action"] in ("ike.up", "ike.rekeyed")]
    assert len(ike_docs) == month_lab.month.peer_ike_sas

    # configuration history with who and the ticket; HSM log; no issuance CA said plainly
    changes = json.loads(files["config/changes.json"])
    assert any(c["event"] == "peer.added" and c["admin"] == "alice" and c["ticket"] == "CHG-1042"
               for c in changes)
    assert files["pki/hsm-access.csv"].decode().count("hsm.sign") == 5
    assert b"No certificate authority is included" in files["pki/issuance.txt"]
    issuance = files["pki/issuance.csv"].decode().splitlines()
    assert len(issuance) == 2 and ",pki.issued,success," in issuance[1] and ",acme," in issuance[1]
    snapshot = json.loads(files["config/snapshot.json"])
    assert snapshot["digest"]["sha256"] and "0x5e5e" not in files["config/snapshot.json"].decode()
    check = json.loads(files["compliance/check.json"])
    assert check["profile"] == "pci-dss-4" and check["requirements"] and check["rules"]


def test_pack_is_deterministic_for_the_same_period(month_lab: MonthLab, tmp_path: Path) -> None:
    assert _pack(month_lab, tmp_path / "one")[0] == 0
    assert _pack(month_lab, tmp_path / "two.zip")[0] == 0
    one, two = read(tmp_path / "one"), read(tmp_path / "two.zip")
    assert set(one) == set(two)
    differ = sorted(name for name in one if one[name] != two[name])
    assert differ == sorted([VOLATILE, MANIFEST, SEAL])  # each pack is itself recorded in the trail


def _zip_with(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in change:
                data = change.pop(info.filename)
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info, zin.read(info))
        for name, data in change.items():
            assert data is not None
            zout.writestr(name, data)


def test_verify_passes_and_names_changed_removed_added_files(month_lab: MonthLab, tmp_path: Path) -> None:
    pack = tmp_path / "pack.zip"
    assert _pack(month_lab, pack)[0] == 0
    code, out = _verify(pack, month_lab.key_file)
    assert code == 0, out
    report = json.loads(out)
    listed = json.loads(read(pack)[MANIFEST])["files"]
    assert report["ok"] and report["checked_records"] > 900 and report["checked_files"] == len(listed) == 21
    notes = tomllib.loads((REPO / "scripts/reference/notes.toml").read_text())["json"]["evidence verify"]
    assert set(report) == {f[0] for f in notes["fields"]}  # docs/reference.md documents the real fields

    original = read(pack)
    csv_text = original["connections/records.csv"].decode().splitlines(keepends=True)
    cases = {
        "changed": ({"connections/records.csv": "".join(csv_text[:-1]).encode()},
                    "connections/records.csv: changed"),
        "removed": ({"inventory/crypto.json": None}, "inventory/crypto.json: removed"),
        "added": ({"inventory/extra.csv": b"a,b\n"}, "inventory/extra.csv: added"),
    }
    for name, (change, expected) in cases.items():
        bad = tmp_path / f"{name}.zip"
        _zip_with(pack, bad, dict(change))
        code, out = _verify(bad, month_lab.key_file)
        assert code == 1, (name, out)
        assert any(expected in p for p in json.loads(out)["problems"]), (name, out)

    # a forger who also rewrites the manifest's digests cannot re-seal it (k_N is gone)
    forged = dict(original)
    forged["connections/records.csv"] = "".join(csv_text[:-1]).encode()
    manifest = json.loads(forged[MANIFEST])
    digest = hashlib.sha256(forged["connections/records.csv"]).hexdigest()
    manifest["files"]["connections/records.csv"] = digest
    forged[MANIFEST] = json.dumps(manifest).encode()
    directory = tmp_path / "forged"
    for file, data in forged.items():
        (directory / file).parent.mkdir(parents=True, exist_ok=True)
        (directory / file).write_bytes(data)
    code, out = _verify(directory, month_lab.key_file)
    problems = json.loads(out)["problems"]
    assert code == 1 and any("manifest.json: seal invalid" in p for p in problems), out
    assert any("connections/records.csv: does not match the trail records" in p for p in problems), out
    # the report is recomputed too: a summary edited to hide failures is named
    html = original["report.html"].decode()
    row = "<td>Authentication failures</td><td>"
    edited = re.sub(re.escape(row) + r"\d+</td>", row + "0</td>", html)
    assert edited != html
    doctored = tmp_path / "doctored"
    for file, data in {**original, "report.html": edited.encode()}.items():
        (doctored / file).parent.mkdir(parents=True, exist_ok=True)
        (doctored / file).write_bytes(data)
    problems = json.loads(_verify(doctored, month_lab.key_file)[1])["problems"]
    assert "report.html: changed (SHA-256 differs from the manifest)" in problems
    assert any(p.startswith("report.html: does not match") for p in problems), problems

    # without the auditor's key nothing is called verified
    code, out = _verify(pack, None)
    assert code == 1 and "NOT checked" in json.loads(out)["notes"][0]


def test_pack_of_a_tampered_trail_names_the_tampered_record(month_lab: MonthLab, tmp_path: Path) -> None:
    copy = tmp_path / "gw"
    shutil.copytree(month_lab.config.parent, copy, ignore=shutil.ignore_patterns("*.zip"))
    lab = MonthLab(copy / "gw.toml", copy / "state", month_lab.store, month_lab.month)
    # root edits one record in the database: an auth failure becomes a success
    db = sqlite3.connect(copy / "state" / "audit.db")
    seq, body = db.execute("SELECT seq, body FROM records WHERE body LIKE '%auth.failure%' "
                           "LIMIT 1").fetchone()
    db.execute("UPDATE records SET body=? WHERE seq=?",
               (body.replace('"outcome":"failure"', '"outcome":"success"'), seq))
    db.commit()
    db.close()
    code, out = _pack(lab, tmp_path / "tampered.zip")
    assert code == 1 and f"seq {seq}: content changed" in out, out
    code, out = _verify(tmp_path / "tampered.zip", lab.key_file)
    problems = json.loads(out)["problems"]
    assert code == 1 and problems == [f"trail/records.jsonl: seq {seq}: content changed: hash does not match "
                                      "the record (the trail was tampered with before the pack was made, or "
                                      "the file since)"], out


def test_a_scan_result_is_included_and_anything_else_refused(month_lab: MonthLab, tmp_path: Path) -> None:
    not_scan = tmp_path / "other.json"
    not_scan.write_text('{"schema": "something-else"}')
    code, out = _pack(month_lab, tmp_path / "refused", "--scan", str(not_scan))
    assert code == 2 and "not an `ikeguard scan --json` result" in out
    assert not (tmp_path / "refused").exists()


def test_period_is_the_contiguous_run_of_its_records(month_lab: MonthLab) -> None:
    from ikeguard.evidence.period import read_period

    start = month_lab.month.start + dt.timedelta(days=7)
    end = start + dt.timedelta(days=7)
    period = read_period(month_lab.store, start, end)
    inside = [r.seq for r in month_lab.store.iter_records()
              if rfc3339(start) <= r.time < rfc3339(end)]
    assert [r.seq for r in period.records] == inside == list(range(inside[0], inside[-1] + 1))
    assert period.anchor == next(r.hash for r in month_lab.store.iter_records() if r.seq == inside[0] - 1)
