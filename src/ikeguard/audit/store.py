"""The append-only audit store: SQLite (WAL, ``synchronous=FULL``) in ``state_dir``, hash-chained and sealed.

``append``/``append_batch`` return only once the records are on disk (one fsync per batch): a crash loses no
acknowledged record. When a write fails (disk full, I/O error) ``healthy`` turns false and ``failure`` says
why; the gateway must then refuse new SAs (PCI DSS 10.7.2). The next successful write records
``audit.store.failed``
and ``audit.store.recovered`` with the cause and duration (PCI DSS 10.7.3). Several processes may append (the
gateway, the CLI): the SQLite write lock serialises them and the sealing key is read inside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ikeguard.audit import archive, bundle, keyfile
from ikeguard.audit.chain import (
    GENESIS,
    KEY_LEN,
    Finding,
    Record,
    VerifyReport,
    bundle_seal,
    canonical_body,
    chain_hash,
    evolve,
    fingerprint,
    key_at,
    seal,
    verify_records,
)
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.retention import RetentionPlan, plan_retention

DB_NAME = "audit.db"
SEALING_KEY_NAME = "audit.sealkey"
VERIFICATION_KEY_NAME = "audit-verification.key"
ARCHIVE_DIR = "audit-archive"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, body TEXT NOT NULL,
                                    prev BLOB NOT NULL, hash BLOB NOT NULL, seal BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS archives (path TEXT PRIMARY KEY, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL, sealed_by INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS disposed (path TEXT PRIMARY KEY, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL, recorded_by INTEGER NOT NULL);
"""



class _Transaction:
    """The open write of :meth:`AuditStore._transaction`: what to append (the evolved key is written to the
    key file after COMMIT), and, read only when asked (exports seal with it), the key of the next record."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store
        self._sealing: tuple[int, bytes] | None = None
        self.next: tuple[int, bytes] | None = None

    @property
    def sealed_by(self) -> int:
        """Sequence number of the record the current sealing key belongs to."""
        return self._sealing_key()[0]

    @property
    def key(self) -> bytes:
        """The current sealing key (erased from the gateway once the transaction commits)."""
        return self._sealing_key()[1]

    def _sealing_key(self) -> tuple[int, bytes]:
        if self._sealing is None:
            last_seq, _ = self._store._head()
            self._sealing = self._store._current_key(last_seq)
        return self._sealing

    def append(self, items: Sequence[tuple[AuditEvent, dt.datetime]]) -> list[int]:
        """Append ``items`` in this transaction; their sequence numbers."""
        seqs, next_seq, next_key = self._store._append_locked(items)
        self.next = (next_seq, next_key)
        return seqs


class AuditStoreError(RuntimeError):
    """The store could not record (the alarm state is set; see ``AuditStore.failure``)."""


def rfc3339(when: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds (AU-8)."""
    if when.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    utc = when.astimezone(dt.UTC)
    if utc.year >= 1000:  # isoformat is ~2x faster than strftime; same text for 4-digit years
        return utc.isoformat(timespec="microseconds")[:-6] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """Inverse of ``rfc3339`` (accepts any RFC 3339 offset)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def utc_now() -> dt.datetime:
    """The wall clock (only the IO layer reads it)."""
    return dt.datetime.now(dt.UTC)


def read_verification_key(path: Path) -> bytes:
    """The verification key from the file written at initialisation (``key: <hex>`` line)."""
    for line in path.read_text().splitlines():
        if line.startswith("key:"):
            key = bytes.fromhex(line.split(":", 1)[1].strip())
            if len(key) == KEY_LEN:
                return key
    raise ValueError(f"{path}: no verification key in it")


def _row_record(row: tuple[int, str, str, bytes, bytes, bytes]) -> Record:
    seq, time, body, prev, hsh, sl = row
    return Record(int(seq), str(time), json.loads(body), bytes(prev), bytes(hsh), bytes(sl))


class AuditStore:
    """One audit trail in ``state_dir`` (created and initialised on first open)."""

    def __init__(
        self, state_dir: str | os.PathLike[str], *, now: dt.datetime | None = None, create: bool = True
    ) -> None:
        self.state_dir = Path(state_dir)
        self.db_path = self.state_dir / DB_NAME
        self.key_path = self.state_dir / SEALING_KEY_NAME
        self.lock_path = self.state_dir / "audit.lock"
        self.verification_key_path = self.state_dir / VERIFICATION_KEY_NAME
        self.archive_dir = self.state_dir / ARCHIVE_DIR
        self._lock = threading.RLock()
        self._failure: str | None = None
        self._failed_since: dt.datetime | None = None
        self.initialised_fingerprint: str | None = None
        if not create and not self.db_path.exists():
            raise FileNotFoundError(f"no audit trail in {self.state_dir}")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
        os.chmod(self.db_path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        if create and self._meta("fingerprint") is None:
            self._initialise(now or utc_now())

    # -- initialisation -------------------------------------------------------------------------------------
    def _initialise(self, now: dt.datetime) -> None:
        """Create the first sealing key, export it ONCE (0400) as the verification key."""
        key = os.urandom(KEY_LEN)
        fpr = fingerprint(key)
        fd = os.open(self.verification_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(
                fd,
                (
                    f"# ikeguard audit verification key (seals record 1 onwards).\n"
                    f"# Move it OFF this host and keep it with the auditor: see docs/audit.md.\n"
                    f"fingerprint: {fpr}\nkey: {key.hex()}\n"
                ).encode(),
            )
            os.fsync(fd)
        finally:
            os.close(fd)
        keyfile.create(self.key_path, 1, key)
        self._db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fpr,))
        self.initialised_fingerprint = fpr
        self.append(
            AuditEvent(
                EventName.AUDIT_INITIALISED, reason="new audit trail", details={"key_fingerprint": fpr}
            ),
            now=now,
        )

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def fingerprint(self) -> str:
        """Fingerprint of this trail's verification key (as printed at initialisation)."""
        return self._meta("fingerprint") or ""

    # -- health (PCI DSS 10.7) ------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """False while the store cannot write: the gateway must refuse new SAs."""
        return self._failure is None

    @property
    def failure(self) -> str | None:
        """Why the store cannot write (None when healthy)."""
        return self._failure

    def _fail(self, exc: BaseException, now: dt.datetime) -> None:
        if self._failure is None:
            self._failed_since = now
        self._failure = f"{type(exc).__name__}: {exc}"

    def _recovery_events(self, now: dt.datetime) -> list[tuple[AuditEvent, dt.datetime]]:
        if self._failure is None or self._failed_since is None:
            return []
        seconds = int((now - self._failed_since).total_seconds())
        return [
            (
                AuditEvent(EventName.AUDIT_STORE_FAILED, Outcome.FAILURE, reason=self._failure[:500]),
                self._failed_since,
            ),
            (
                AuditEvent(
                    EventName.AUDIT_STORE_RECOVERED,
                    reason=f"store writable again after {seconds} s",
                    details={"outage_seconds": seconds},
                ),
                now,
            ),
        ]

    # -- writing --------------------------------------------------------------------------------------------
    def append(self, event: AuditEvent, *, now: dt.datetime | None = None) -> int:
        """Record one event; returns its sequence number once it is on disk."""
        return self.append_batch([(event, now or utc_now())])[-1]

    def append_batch(
        self, items: Sequence[tuple[AuditEvent, dt.datetime]], *, now: dt.datetime | None = None
    ) -> list[int]:
        """Record events in one transaction (one fsync); returns their sequence numbers once on disk.

        Raises ``AuditStoreError`` (and sets the alarm) when the store cannot write. An empty batch while
        unhealthy is a probe: it records the failure and recovery if the store is writable again.
        """
        with self._lock:
            now = now or (items[-1][1] if items else utc_now())
            todo = self._recovery_events(now) + list(items)
            if not todo:
                return []
            with self._transaction(now) as txn:
                seqs = txn.append(todo)
            self._failure = None
            self._failed_since = None
            return seqs[len(todo) - len(items) :]

    @contextlib.contextmanager
    def _transaction(self, now: dt.datetime) -> Iterator[_Transaction]:
        """One write: the writer flock, BEGIN IMMEDIATE, the body, COMMIT, then the sealing key overwritten
        (rolled back on any error; a database or file error sets the alarm and becomes AuditStoreError).
        The caller holds ``self._lock``. The one place every append, export and archive commits through."""
        try:
            writer = self._writer_lock()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                txn = _Transaction(self)
                yield txn
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                os.close(writer)
                raise
            try:
                if txn.next is not None:
                    keyfile.overwrite(self.key_path, *txn.next)
            finally:
                os.close(writer)  # releases the flock
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc, now)
            raise AuditStoreError(self._failure or "audit store failure") from exc

    def _writer_lock(self) -> int:
        """An exclusive flock held from BEGIN until the sealing key is overwritten, so two processes (gateway,
        CLI) never interleave COMMIT and key update. Returns the fd; closing it releases the lock."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _rollback(self) -> None:
        # SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR); keep the original error
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _head(self) -> tuple[int, bytes]:
        row = self._db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return int(row[0]), bytes(row[1])
        row = self._db.execute(
            "SELECT last_seq, last_hash FROM archives ORDER BY last_seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return int(row[0]), bytes(row[1])
        return 0, GENESIS

    def _current_key(self, last_seq: int) -> tuple[int, bytes]:
        key_seq, key = keyfile.read(self.key_path)
        if key_seq <= last_seq:  # crash between COMMIT and the key overwrite: evolve forward
            key = key_at(key, key_seq, last_seq + 1)
            key_seq = last_seq + 1
        elif key_seq > last_seq + 1:
            raise keyfile.SealingKeyError(
                0,
                f"sealing key is at seq {key_seq} but the trail ends at {last_seq}: "
                f"records were removed; run `ikeguard audit verify`",
            )
        return key_seq, key

    def _append_locked(self, items: Sequence[tuple[AuditEvent, dt.datetime]]) -> tuple[list[int], int, bytes]:
        last_seq, prev = self._head()
        seq, key = self._current_key(last_seq)
        rows: list[tuple[int, str, str, bytes, bytes, bytes]] = []
        for event, when in items:
            time = rfc3339(when)
            body = event.fields_dict()
            body_json = canonical_body(body)
            digest = chain_hash(prev, seq, time, body, body_json)
            rows.append(
                (
                    seq,
                    time,
                    body_json,
                    prev,
                    digest,
                    seal(key, digest),
                )
            )
            prev, seq, key = digest, seq + 1, evolve(key)
        self._db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?)", rows)
        return [r[0] for r in rows], seq, key

    def probe(self, now: dt.datetime | None = None) -> bool:
        """While unhealthy, try to write again (records failure + recovery); returns ``healthy``."""
        if self._failure is None:
            return True
        try:
            self.append_batch([], now=now)
        except AuditStoreError:
            return False
        return self.healthy

    # -- reading --------------------------------------------------------------------------------------------
    def head(self) -> tuple[int, bytes]:
        """``(last seq, its chain hash)``: the chain head."""
        with self._lock:
            return self._head()

    def first_online_seq(self) -> int | None:
        """Lowest sequence number still in the database (older ones are archived)."""
        row = self._db.execute("SELECT MIN(seq) FROM records").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def records(
        self, from_seq: int = 0, to_seq: int | None = None, *, limit: int | None = None
    ) -> list[Record]:
        """Records with ``from_seq <= seq <= to_seq`` in order (a consistent snapshot)."""
        sql = "SELECT seq, time, body, prev, hash, seal FROM records WHERE seq >= ?"
        args: list[int] = [from_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            args.append(to_seq)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            return [_row_record(r) for r in self._db.execute(sql, args).fetchall()]

    def iter_records(self, from_seq: int = 0, chunk: int = 2000) -> Iterator[Record]:
        """All records from ``from_seq`` in order, read in chunks."""
        while True:
            batch = self.records(from_seq, limit=chunk)
            yield from batch
            if len(batch) < chunk:
                return
            from_seq = batch[-1].seq + 1

    def seq_at_or_after(self, when: dt.datetime) -> int | None:
        """The first sequence number recorded at or after ``when``."""
        row = self._db.execute("SELECT MIN(seq) FROM records WHERE time >= ?", (rfc3339(when),)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def seq_before(self, when: dt.datetime) -> int | None:
        """The last sequence number recorded before or at ``when``."""
        row = self._db.execute("SELECT MAX(seq) FROM records WHERE time <= ?", (rfc3339(when),)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # -- sink cursors (the store is the spool) --------------------------------------------------------------
    def cursor(self, sink: str) -> int:
        """Highest sequence number the sink has confirmed (0 when none)."""
        row = self._db.execute("SELECT seq FROM cursors WHERE sink=?", (sink,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, sink: str, seq: int) -> None:
        """Durably move a sink's cursor forward (never backward)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT(sink) DO UPDATE SET "
                "seq = MAX(seq, excluded.seq)",
                (sink, seq),
            )

    def spool_depth(self, sinks: Sequence[str]) -> int:
        """Records not yet confirmed by the slowest of ``sinks``."""
        if not sinks:
            return 0
        last, _ = self.head()
        return max(0, last - min(self.cursor(s) for s in sinks))

    # -- verification ---------------------------------------------------------------------------------------
    def verify(self, verification_key: bytes, *, include_archives: bool = True) -> VerifyReport:
        """Verify archives (in order) then the online records, then that the sealing key was not run ahead."""
        start_seq, prev = 1, GENESIS
        checked = 0
        disposed_notes: list[str] = []
        if include_archives:
            for name, lo, hi, last_hash in self.disposed_segments():
                if lo == start_seq and not (self.archive_dir / name).exists():
                    start_seq, prev = hi + 1, last_hash
                    disposed_notes.append(f"records {lo}..{hi} disposed of after retention ({name})")
            for path in self.archive_files():
                if self._is_disposed_prefix(path, start_seq):
                    continue
                report = bundle.verify(archive.read_segment(path), verification_key)
                if report.ok and report.first_seq is not None and report.first_seq != start_seq:
                    report.finding = Finding(start_seq, f"archive {path.name} starts at {report.first_seq}")
                if not report.ok:
                    report.notes.append(f"in archive {path.name}")
                    return report
                if report.last_seq is not None:
                    start_seq, prev = report.last_seq + 1, report.last_hash
                checked += report.checked
        else:
            first = self.first_online_seq()
            start_seq, prev_opt = (first or 1), None
            report = verify_records(self.iter_records(), verification_key, start_seq=start_seq, prev=prev_opt)
            report.notes.append("archives not checked")
            return self._check_key_position(report)
        report = verify_records(self.iter_records(), verification_key, start_seq=start_seq, prev=prev)
        report.checked += checked
        report.notes[:0] = disposed_notes
        return self._check_key_position(report)

    def archive_index(self) -> list[tuple[str, int, int, bytes, int]]:
        """Every segment ever archived: ``(file name, first seq, last seq, last hash, sealed by seq)``."""
        rows = self._db.execute("SELECT path, first_seq, last_seq, last_hash, sealed_by FROM archives "
                                "ORDER BY first_seq")
        return [(str(r[0]), int(r[1]), int(r[2]), bytes(r[3]), int(r[4])) for r in rows.fetchall()]

    def disposed_segments(self) -> list[tuple[str, int, int, bytes]]:
        """Archive segments disposed of after their retention: ``(file name, first, last seq, last hash)``."""
        rows = self._db.execute("SELECT path, first_seq, last_seq, last_hash FROM disposed "
                                "ORDER BY first_seq")
        return [(str(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows.fetchall()]

    def _is_disposed_prefix(self, path: Path, start_seq: int) -> bool:
        """A segment recorded as disposed whose file is still there (a crash before the unlink)."""
        row = self._db.execute("SELECT last_seq FROM disposed WHERE path=?", (path.name,)).fetchone()
        return row is not None and int(row[0]) < start_seq

    def _check_key_position(self, report: VerifyReport) -> VerifyReport:
        if not report.ok:
            return report
        last_seq, _ = self.head()
        try:
            key_seq, _key = keyfile.read(self.key_path)
        except keyfile.SealingKeyError as exc:
            report.notes.append(f"sealing key: {exc.strerror}")
            return report
        if key_seq > last_seq + 1:
            report.finding = Finding(
                last_seq + 1,
                f"records {last_seq + 1}..{key_seq - 1} missing at the end "
                f"(the sealing key has already evolved past them)",
            )
        return report

    def archive_files(self) -> list[Path]:
        """Archive files in sequence order."""
        if not self.archive_dir.is_dir():
            return []
        return sorted(p for p in self.archive_dir.glob("audit-*") if archive.is_segment(p))

    # -- export and archive ---------------------------------------------------------------------------------
    def export(
        self,
        from_seq: int,
        to_seq: int,
        *,
        now: dt.datetime | None = None,
        admin: str = "",
        kind: str = "export",
    ) -> dict[str, object]:
        """A sealed bundle of records ``from_seq..to_seq``; appends ``audit.exported`` atomically."""
        now = now or utc_now()
        with self._lock, self._transaction(now) as txn:
            records = self.records(from_seq, to_seq)
            if not records:
                raise ValueError(f"no records in {from_seq}..{to_seq}")
            data = bundle.build(kind, records, self.fingerprint, txn.sealed_by, txn.key)
            name = EventName.AUDIT_EXPORTED if kind == "export" else EventName.AUDIT_ARCHIVED
            event = AuditEvent(
                name,
                admin=admin,
                reason=f"records {records[0].seq}..{records[-1].seq}",
                details={
                    "from_seq": records[0].seq,
                    "to_seq": records[-1].seq,
                    "digest": str(data["digest"]),
                },
            )
            txn.append([(event, now)])
            if kind == "archive":
                self._write_archive(data, records, txn.sealed_by, now)
        return data

    def append_sealing(
        self, event: AuditEvent, digest: bytes, *, now: dt.datetime | None = None
    ) -> tuple[int, bytes]:
        """Append ``event``; seal ``digest`` with its key: ``(seq, HMAC(k_seq, "bundle" || digest))``.

        Used for files made outside the store (an evidence pack's manifest): like a bundle seal, only the
        verification key can check it, and nobody can make it later (``k_seq`` is erased at commit).
        """
        seq, key = self.append_with(event, now=now)
        return seq, bundle_seal(key, digest)

    def append_with(
        self,
        event: AuditEvent,
        *,
        now: dt.datetime | None = None,
        during: Callable[[sqlite3.Connection], None] | None = None,
    ) -> tuple[int, bytes]:
        """Append ``event`` in one transaction with ``during(db)`` (e.g. the index row of a disposed segment);
        returns the record's ``seq`` and its sealing key (erased from the gateway at commit)."""
        now = now or utc_now()
        with self._lock, self._transaction(now) as txn:
            sealing = txn.sealed_by, txn.key  # the appended record's own key, before it is appended
            if during is not None:
                during(self._db)
            txn.append([(event, now)])
        return sealing

    def _write_archive(
        self, data: dict[str, object], records: Sequence[Record], sealed_by: int, now: dt.datetime
    ) -> None:
        self.archive_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.archive_dir / f"audit-{records[0].seq:012d}-{records[-1].seq:012d}.json.gz"
        archive.write_file(path, archive.compress(json.dumps(data, sort_keys=True).encode()))
        self._db.execute(
            "INSERT OR REPLACE INTO archives VALUES (?,?,?,?,?,?)",
            (path.name, records[0].seq, records[-1].seq, records[-1].hash, sealed_by, rfc3339(now)),
        )
        self._db.execute("DELETE FROM records WHERE seq <= ?", (records[-1].seq,))

    def archive_through(self, last_seq: int, *, now: dt.datetime | None = None) -> Path | None:
        """Move online records up to ``last_seq`` into a sealed archive file (never deleted unarchived)."""
        first = self.first_online_seq()
        if first is None or last_seq < first:
            return None
        self.export(first, last_seq, now=now, kind="archive")
        return self.archive_files()[-1]

    def apply_retention(self, *, now: dt.datetime, online_days: int, retention_days: int,
                        sinks: Sequence[str] = ()) -> tuple[RetentionPlan, Path | None]:
        """Archive what ``plan_retention`` says (only records all sinks confirmed); report expired ones."""
        old = self.seq_before(now - dt.timedelta(days=online_days))
        delivered = min(self.cursor(s) for s in sinks) if sinks else None
        archives = []
        for path in self.archive_files():
            data = archive.read_segment(path)
            records = data.get("records")
            if isinstance(records, list) and records:
                archives.append((path.name, parse_time(str(records[-1]["time"]))))
        plan = plan_retention(now=now, online_days=online_days, retention_days=retention_days,
                              newest_old_seq=old, delivered_seq=delivered, head_seq=self.head()[0],
                              archives=archives)
        written = self.archive_through(plan.archive_through, now=now) if plan.archive_through else None
        return plan, written

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
