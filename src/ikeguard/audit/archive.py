"""Archive segments of the audit trail (PCI DSS 10.5.1): compressed, sealed, verifiable across the chain.

A segment is an ``ikeguard-audit-bundle/1`` file (docs/audit.md §5) compressed with gzip (``.json.gz``, no
name or time in the gzip header, so the same records always give the same octets). Older, uncompressed
``.json`` segments are still read. A retention span is written the way people say it (``"1y"``, ``"3mo"``,
``"13w"``, ``"90d"``) and counted in days rounded *up* (a year 366 days, a month 31, a week 7), so nothing
leaves the database or is disposed of earlier than the calendar reading allows.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

from ikeguard.audit import bundle

SUFFIXES = (".json.gz", ".json")
_SPAN = re.compile(r"^\s*(\d+)\s*(y|mo|w|d)\s*$")
_DAYS = {"y": 366, "mo": 31, "w": 7, "d": 1}


def span_days(text: str | int) -> int:
    """Days of a retention span: ``"1y"`` 366, ``"3mo"`` 93, ``"2w"`` 14, ``"90d"``/``90`` 90 (ValueError)."""
    if isinstance(text, int):
        days = text
    else:
        match = _SPAN.match(text) if not text.strip().isdigit() else None
        if match is None and not text.strip().isdigit():
            raise ValueError(f"{text!r}: not a span (e.g. \"1y\", \"3mo\", \"13w\", \"90d\")")
        days = int(text) if match is None else int(match.group(1)) * _DAYS[match.group(2)]
    if days < 1:
        raise ValueError("a retention span is at least one day")
    return days


def is_segment(path: Path) -> bool:
    """``audit-FROM-TO.json[.gz]``."""
    return path.name.startswith("audit-") and path.name.endswith(SUFFIXES)


def read_segment(path: Path) -> dict[str, object]:
    """The bundle of a segment file (gzip or plain JSON); ``bundle.BundleError`` when it is not one."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise bundle.BundleError(f"not gzip: {exc}") from exc
    return bundle.parse(raw)


def compress(data: bytes) -> bytes:
    """gzip without name and time (deterministic)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably (temporary file, fsync, mode 0400, rename, fsync the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o400)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
