"""The sealing-key file: one fixed-size slot overwritten in place, so a new key erases the old.

Layout (48 octets): magic ``IGSK0001`` | seq (8, big-endian: the record it seals next) | key (32).
The file is rewritten with ``pwrite`` at offset 0 and ``fsync``; on a filesystem that overwrites in place
(ext4, xfs, tmpfs) the previous key's bytes are gone. Copy-on-write filesystems (btrfs, zfs) may keep old
blocks: docs/audit.md says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from ikeguard.audit.chain import KEY_LEN

MAGIC = b"IGSK0001"
SIZE = len(MAGIC) + 8 + KEY_LEN


class SealingKeyError(OSError):
    """The sealing-key file is missing, unreadable or malformed."""


def create(path: Path, seq: int, key: bytes) -> None:
    """Create the key file (mode 0600); refuses to overwrite an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, MAGIC + seq.to_bytes(8, "big") + key)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> tuple[int, bytes]:
    """``(seq, key)``: the key that seals record ``seq``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SealingKeyError(exc.errno or 0, f"sealing key unreadable: {exc.strerror}") from exc
    if len(data) != SIZE or not data.startswith(MAGIC):
        raise SealingKeyError(0, "sealing key file malformed")
    return int.from_bytes(data[8:16], "big"), data[16:]


def overwrite(path: Path, seq: int, key: bytes) -> None:
    """Replace the stored key in place (the old key is overwritten, not unlinked) and fsync."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, MAGIC + seq.to_bytes(8, "big") + key, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
