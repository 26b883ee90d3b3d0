"""Test helpers: fill a store, and an attacker who edits the SQLite file directly (root on the gateway)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ikeguard.audit import keyfile
from ikeguard.audit.chain import chain_hash, evolve, seal
from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.store import AuditStore, read_verification_key

T0 = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)


def sample_event(i: int) -> AuditEvent:
    """A realistic event with most fields set."""
    if i % 3 == 0:
        return AuditEvent(
            EventName.AUTH_FAILURE,
            Outcome.FAILURE,
            reason="AUTHENTICATION_FAILED: bad signature",
            connection="merchants",
            ike_uniqueid=i,
            local_addr="192.0.2.1",
            remote_addr="198.51.100.7",
            remote_id=f"m{i}.merchants.example",
            cert_subject=f"CN=m{i}.merchants.example, O=Merchants",
            cert_serial=f"{i:04x}",
            cert_issuer="CN=Merchant CA",
            details={"auth_method": "ecdsa-384"},
        )
    return AuditEvent(
        EventName.IKE_UP,
        connection="merchants",
        ike_uniqueid=i,
        local_addr="192.0.2.1",
        local_id="gw.processor.example",
        remote_addr="198.51.100.7",
        remote_id=f"m{i}.merchants.example",
        proposal="aes256gcm16-prfsha384-ecp384",
        details={"initiator": False, "spi_i": f"{i:016x}"},
    )


def filled_store(state_dir: Path, n: int = 20, batch: int = 4) -> AuditStore:
    """A store with ``n`` events after the initialisation record, appended in batches."""
    store = AuditStore(state_dir, now=T0)
    items = [(sample_event(i), T0 + dt.timedelta(seconds=i)) for i in range(n)]
    for k in range(0, n, batch):
        store.append_batch(items[k : k + batch])
    return store


def verification_key(state_dir: Path) -> bytes:
    return read_verification_key(state_dir / "audit-verification.key")


class Attacker:
    """Root on the gateway: full write access to the database and the *current* sealing key."""

    def __init__(self, state_dir: Path) -> None:
        self.db = sqlite3.connect(state_dir / "audit.db", isolation_level=None)
        self.key_path = state_dir / "audit.sealkey"

    def rows(self) -> list[tuple[int, str, dict[str, object], bytes, bytes, bytes]]:
        rows = self.db.execute(
            "SELECT seq, time, body, prev, hash, seal FROM records ORDER BY seq"
        ).fetchall()
        return [(s, t, json.loads(b), bytes(p), bytes(h), bytes(x)) for s, t, b, p, h, x in rows]

    def set_body(self, seq: int, body: dict[str, object]) -> None:
        self.db.execute("UPDATE records SET body=? WHERE seq=?", (json.dumps(body, sort_keys=True), seq))

    def rewrite_from(self, start: int, rows: list[tuple[int, str, dict[str, object]]]) -> None:
        """Replace records from ``start`` with ``rows`` and re-chain and re-seal them with the current key."""
        key_seq, key = keyfile.read(self.key_path)
        prev = self.db.execute("SELECT hash FROM records WHERE seq=?", (start - 1,)).fetchone()[0]
        self.db.execute("DELETE FROM records WHERE seq >= ?", (start,))
        for seq, time, body in rows:
            digest = chain_hash(prev, seq, time, body)
            self.db.execute(
                "INSERT INTO records VALUES (?,?,?,?,?,?)",
                (seq, time, json.dumps(body, sort_keys=True), prev, digest, seal(key, digest)),
            )
            prev, key = digest, evolve(key)
        keyfile.overwrite(self.key_path, max(key_seq, rows[-1][0] + 1), key)

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``directory`` (the disk-full tests' state directory), lazily unmounted at the end."""
    directory.mkdir()
    options = f"size={size},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill_filesystem(directory: Path) -> Path:
    """Write zeros into ``directory/filler`` until the filesystem is full, down to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler
