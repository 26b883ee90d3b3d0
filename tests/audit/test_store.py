"""The store: chain, forward-secure seals and every kind of tampering an auditor worries about."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import stat
from pathlib import Path

import pytest

from ikeguard.audit.chain import fingerprint
from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.store import AuditStore

from .helpers import T0, Attacker, filled_store, verification_key


def test_initialisation_exports_the_verification_key_once(tmp_path: Path) -> None:
    store = filled_store(tmp_path, n=3)
    key_file = tmp_path / "audit-verification.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
    key = verification_key(tmp_path)
    assert store.initialised_fingerprint == fingerprint(key) == store.fingerprint
    first = store.records(1, 1)[0]
    assert first.body["event"] == "audit.initialised"
    store.close()
    again = AuditStore(tmp_path)  # re-open: no new key, no new export
    assert again.initialised_fingerprint is None and again.fingerprint == fingerprint(key)
    assert again.head()[0] == 4
    again.close()


def test_untouched_trail_verifies(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    report = store.verify(verification_key(tmp_path))
    assert report.ok and report.checked == 21 and report.last_seq == 21


def test_wrong_verification_key_fails_at_record_1(tmp_path: Path) -> None:
    store = filled_store(tmp_path, n=2)
    report = store.verify(os.urandom(32))
    assert not report.ok and report.finding is not None and report.finding.seq == 1


def test_one_field_changed(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    attacker = Attacker(tmp_path)
    body = attacker.rows()[6][2]
    body["remote_addr"] = "203.0.113.66"
    attacker.set_body(7, body)
    report = store.verify(verification_key(tmp_path))
    assert (
        report.finding is not None and report.finding.seq == 7 and "content changed" in report.finding.reason
    )


def test_record_deleted(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    Attacker(tmp_path).db.execute("DELETE FROM records WHERE seq=9")
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 9 and "missing" in report.finding.reason


def test_tail_truncated(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    Attacker(tmp_path).db.execute("DELETE FROM records WHERE seq >= 19")
    report = store.verify(verification_key(tmp_path))
    assert (
        report.finding is not None
        and report.finding.seq == 19
        and "missing at the end" in report.finding.reason
    )


def test_records_swapped(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    attacker = Attacker(tmp_path)
    rows = attacker.rows()
    a, b = rows[4], rows[5]  # seq 5 and 6
    attacker.db.execute("DELETE FROM records WHERE seq IN (5, 6)")
    for seq, src in ((5, b), (6, a)):
        attacker.db.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?)",
            (seq, src[1], __import__("json").dumps(src[2], sort_keys=True), src[3], src[4], src[5]),
        )
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 5


def test_record_inserted_and_rechained(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    attacker = Attacker(tmp_path)
    rows = attacker.rows()
    forged = {"event": "admin.command", "outcome": "success", "admin": "alice", "reason": "nothing to see"}
    tail = [(r[0], r[1], r[2]) for r in rows[10:]]
    new_rows = [(11, tail[0][1], forged)] + [(s + 1, t, b) for s, t, b in tail]
    attacker.rewrite_from(11, new_rows)
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 11 and "seal invalid" in report.finding.reason


def test_changed_and_whole_chain_resealed_with_current_key(tmp_path: Path) -> None:
    """The real attack: change record 6, recompute every hash after it and seal with root's key now."""
    store = filled_store(tmp_path)
    attacker = Attacker(tmp_path)
    rows = [(s, t, b) for s, t, b, *_ in attacker.rows()]
    rows[5][2]["outcome"] = "success"
    rows[5][2]["reason"] = "benign"
    attacker.rewrite_from(6, rows[5:])
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 6 and "seal invalid" in report.finding.reason
    # and the writer notices nothing wrong with the key, yet the trail stays provably broken at 6
    store.append(AuditEvent(EventName.CONFIG_LOADED), now=T0 + dt.timedelta(hours=1))
    assert store.verify(verification_key(tmp_path)).finding.seq == 6  # type: ignore[union-attr]


def test_sealing_key_is_overwritten_in_place(tmp_path: Path) -> None:
    store = filled_store(tmp_path, n=2)
    key_file = tmp_path / "audit.sealkey"
    before = key_file.read_bytes()
    inode = key_file.stat().st_ino
    store.append(AuditEvent(EventName.CONFIG_LOADED), now=T0)
    after = key_file.read_bytes()
    assert key_file.stat().st_ino == inode and len(after) == len(before) and after[16:] != before[16:]
    assert before[16:] not in (tmp_path / "audit.db").read_bytes()


def test_export_bundle_verifies_and_detects_edits(tmp_path: Path) -> None:
    from ikeguard.audit import bundle

    store = filled_store(tmp_path)
    data = store.export(5, 12, now=T0, admin="alice")
    key = verification_key(tmp_path)
    assert bundle.verify(data, key).ok
    last = store.records(store.head()[0])[0]
    assert last.body["event"] == "audit.exported" and last.body["admin"] == "alice"
    dropped = dict(data, records=data["records"][:-1], to_seq=11)  # type: ignore[index]
    report = bundle.verify(dropped, key)
    assert report.finding is not None and "bundle seal" in report.finding.reason
    edited = dict(data)
    recs = [dict(r) for r in data["records"]]  # type: ignore[attr-defined]
    recs[2] = dict(recs[2], time="2020-01-01T00:00:00.000000Z")
    edited["records"] = recs
    report = bundle.verify(edited, key)
    assert report.finding is not None and report.finding.seq == 7


def test_archive_moves_records_and_full_verify_spans_it(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    path = store.archive_through(10, now=T0)
    assert path is not None and path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert store.first_online_seq() == 11
    report = store.verify(verification_key(tmp_path))
    assert report.ok, report.finding
    assert report.checked == store.head()[0]
    path.chmod(0o600)  # segments are gzip-compressed (audit/archive.py)
    text = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(text.replace(b"m3.merchants", b"mX.merchants")))
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 5


def test_online_records_without_archive_are_missing(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    store.archive_through(10, now=T0)
    for p in store.archive_files():
        p.unlink()
    report = store.verify(verification_key(tmp_path))
    assert report.finding is not None and report.finding.seq == 1


@pytest.mark.parametrize("n", [1, 7])
def test_sequence_numbers_are_dense(tmp_path: Path, n: int) -> None:
    store = filled_store(tmp_path, n=n, batch=3)
    assert [r.seq for r in store.records()] == list(range(1, n + 2))


def test_two_processes_appending_keep_one_valid_chain(tmp_path: Path) -> None:
    """The gateway and the CLI may append at the same time: one chain, dense seqs, every seal valid."""
    import subprocess
    import sys

    AuditStore(tmp_path, now=T0).close()
    code = (
        "import sys\nfrom ikeguard.audit.store import AuditStore\n"
        "from tests.audit.helpers import sample_event\n"
        "s = AuditStore(sys.argv[1], create=False)\n"
        "for i in range(150): s.append(sample_event(i))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=repo) for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    store = AuditStore(tmp_path, create=False)
    report = store.verify(verification_key(tmp_path))
    assert report.ok, report.finding
    assert store.head()[0] == 301
    store.close()


def test_a_sealed_digest_names_its_own_record_and_only_the_verification_key_checks_it(tmp_path: Path) -> None:
    """append_sealing (the evidence pack's manifest): the seq returned is the appended record's, and the seal
    is made with that record's key, derivable from the verification key only."""
    from ikeguard.audit.chain import bundle_seal, key_at

    store = filled_store(tmp_path, n=6)
    digest = bytes(range(32))
    seq, seal = store.append_sealing(AuditEvent(EventName.AUDIT_EXPORTED, reason="pack"), digest,
                                     now=T0 + dt.timedelta(minutes=1))
    last = store.records(seq, seq)
    assert [r.seq for r in last] == [seq] and last[0].body["event"] == "audit.exported"
    assert store.records(seq + 1, seq + 1) == []
    assert seal == bundle_seal(key_at(verification_key(tmp_path), 1, seq), digest)
