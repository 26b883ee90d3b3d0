"""What happens to archive segments after `audit archive` (PCI DSS 10.5.1): disposal once the retention is
over (refused inside it; both recorded as ``audit.disposed``), restore of a segment brought back from offline
storage (verified against the trail's archive index first; ``audit.restored``), and verification of the whole
trail including its disposals: a segment counts as disposed only when the sealed trail itself says so, so
root cannot hide deleted records by writing an index row.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ikeguard.audit import archive, bundle
from ikeguard.audit.chain import Finding, Record, VerifyReport
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.store import AuditStore, parse_time, rfc3339


class LifecycleError(ValueError):
    """A disposal or restore that cannot be done (reason in the message)."""


def all_records(store: AuditStore) -> Iterator[Record]:
    """Every record still kept, in sequence order: archive segments first, then the database."""
    last = 0
    for path in store.archive_files():
        try:
            data = archive.read_segment(path)
        except (OSError, bundle.BundleError) as exc:
            raise LifecycleError(f"archive {path.name}: {exc}") from exc
        raw = data.get("records")
        if not isinstance(raw, list):
            raise LifecycleError(f"archive {path.name}: no records")
        for entry in raw:
            record = Record.from_json(entry)
            if record.seq > last:
                last = record.seq
                yield record
    yield from store.iter_records(last + 1)


@dataclass(frozen=True)
class Segment:
    """One row of the trail's archive index."""

    name: str
    first_seq: int
    last_seq: int
    last_hash: bytes


def _segment(store: AuditStore, name: str) -> Segment:
    row = store._db.execute("SELECT path, first_seq, last_seq, last_hash FROM archives WHERE path=?",
                            (name,)).fetchone()
    if row is None:
        raise LifecycleError(f"{name}: not an archive segment of this trail")
    return Segment(str(row[0]), int(row[1]), int(row[2]), bytes(row[3]))


def dispose(store: AuditStore, name: str, *, now: dt.datetime, retention_days: int,
            admin: str = "") -> tuple[bool, str]:
    """Delete archive segment ``name`` if its newest record is past the retention; else refuse. Both are
    recorded (``audit.disposed``, success or failure). Only the oldest segment kept can go, so what remains
    is still one verifiable chain."""
    segment = _segment(store, name)
    path = store.archive_dir / name
    details: dict[str, str | int | bool] = {"file": name, "from_seq": segment.first_seq,
                                            "to_seq": segment.last_seq}
    try:
        records = archive.read_segment(path).get("records")
    except (OSError, bundle.BundleError) as exc:
        raise LifecycleError(f"{name}: cannot read it ({exc}); restore it first") from exc
    if not isinstance(records, list) or not records:
        raise LifecycleError(f"{name}: no records in it")
    newest = parse_time(str(records[-1]["time"]))
    until = newest + dt.timedelta(days=retention_days)
    kept = [p.name for p in store.archive_files()]
    reason = ""
    if now < until:
        reason = (f"refused: {name} holds records up to {rfc3339(newest)}, inside the retention of "
                  f"{retention_days} days (PCI DSS 10.5.1) until {rfc3339(until)}")
    elif kept and kept[0] != name:
        reason = (f"refused: {kept[0]} is older and still kept; segments go oldest first (the chain "
                  "stays whole)")
    if reason:
        store.append(AuditEvent(EventName.AUDIT_DISPOSED, Outcome.FAILURE, admin=admin, reason=reason,
                                details=details), now=now)
        return False, reason

    def index(db: sqlite3.Connection) -> None:
        head = db.execute("SELECT MAX(seq) FROM records").fetchone()[0] or segment.last_seq
        db.execute("INSERT OR REPLACE INTO disposed VALUES (?,?,?,?,?)",
                   (name, segment.first_seq, segment.last_seq, segment.last_hash, int(head) + 1))

    details["last_hash"] = segment.last_hash.hex()
    store.append_with(AuditEvent(EventName.AUDIT_DISPOSED, admin=admin, details=details,
                                 reason=f"records {segment.first_seq}..{segment.last_seq} disposed of after "
                                        f"the retention of {retention_days} days"), now=now, during=index)
    os.chmod(path, 0o600)
    path.unlink()
    return True, f"{name}: records {segment.first_seq}..{segment.last_seq} disposed of"


def restore(store: AuditStore, source: Path, key: bytes, *, now: dt.datetime | None = None,
            admin: str = "") -> Path:
    """Put a segment brought back from offline storage into place, after checking its seals and that it is
    the segment the trail's index names (same range, same last hash). Recorded as ``audit.restored``."""
    try:
        data = archive.read_segment(source)
        report = bundle.verify(data, key)
    except (OSError, bundle.BundleError) as exc:
        raise LifecycleError(f"{source}: not an archive segment ({exc})") from exc
    if not report.ok:
        assert report.finding is not None
        raise LifecycleError(f"{source}: does not verify: seq {report.finding.seq}: {report.finding.reason}")
    name = f"audit-{report.first_seq:012d}-{report.last_seq:012d}.json.gz"
    segment = _segment(store, name)
    if (segment.first_seq, segment.last_seq, segment.last_hash) != (report.first_seq, report.last_seq,
                                                                    report.last_hash):
        raise LifecycleError(f"{source}: not the segment the trail archived as {name}")
    target = store.archive_dir / name
    if not target.exists():
        store.archive_dir.mkdir(mode=0o700, exist_ok=True)
        archive.write_file(target, archive.compress(bundle_text(data)))
    details: dict[str, str | int | bool] = {"file": name, "from_seq": segment.first_seq,
                                            "to_seq": segment.last_seq}
    store.append(AuditEvent(EventName.AUDIT_RESTORED, admin=admin, reason=f"archive segment {name} restored",
                            details=details), now=now)
    return target


def bundle_text(data: dict[str, object]) -> bytes:
    """A segment's JSON as the store writes it."""
    return json.dumps(data, sort_keys=True).encode()


def verify_trail(store: AuditStore, key: bytes) -> VerifyReport:
    """``AuditStore.verify`` plus: every disposed segment's disposal is a sealed ``audit.disposed`` record."""
    report = store.verify(key)
    disposed = store.disposed_segments()
    if not report.ok or not disposed:
        return report
    recorded = set()
    for record in all_records(store):
        body = record.body
        details = body.get("details")
        if body.get("event") == EventName.AUDIT_DISPOSED.value and body.get("outcome") == "success" \
                and isinstance(details, dict):
            recorded.add((details.get("file"), details.get("from_seq"), details.get("to_seq"),
                          details.get("last_hash")))
    first_kept = store.first_online_seq()
    for path in store.archive_files():
        data = archive.read_segment(path)
        first_kept = int(str(data.get("from_seq")))
        break
    for name, first, last, last_hash in disposed:
        if (name, first, last, last_hash.hex()) in recorded:
            continue
        rows = store._db.execute("SELECT recorded_by FROM disposed WHERE path=?", (name,)).fetchone()
        if first_kept is not None and rows is not None and int(rows[0]) < first_kept:
            report.notes.append(f"{name}: its disposal record was itself disposed of later")
            continue
        report.finding = Finding(first, f"records {first}..{last} missing: the index says {name} was "
                                        "disposed of, but no sealed audit.disposed record says so")
        return report
    return report
