"""What a report was made from: a SHA-256 digest of the configuration file and of every file it names.

An assessor signs a report for one configuration; the digest lets anyone confirm later that the files on a
gateway are the ones that were judged. Files holding secrets are never hashed as they are (a digest of a
low-entropy pre-shared key is an offline guessing oracle): a private key is represented by the SHA-256 of its
public key (SubjectPublicKeyInfo, DER), which identifies it without revealing it, and a PSK ``secret_file`` is
listed without a digest. The combined digest covers every entry's key path, file name, kind and digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ikeguard.policy.checks.keyfiles import load_private_key
from ikeguard.policy.checks.secrets import named_files_of
from ikeguard.policy.loader import LoadedConfig

# key paths of private keys: connections.*.local.key, audit.sinks[i].key
SECRET_KEYS = (".local.key", "].key")


@dataclass(frozen=True)
class FileDigest:
    """One file of the configuration: where it is named, what was hashed, the digest (None: not hashed)."""

    scope: str
    path: str
    kind: str  # "file", "public key of private key", "secret (not hashed)", "missing", "unreadable"
    sha256: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON form (``config_digest.files[]``)."""
        return {"scope": self.scope, "path": self.path, "hashed": self.kind, "sha256": self.sha256}


@dataclass(frozen=True)
class ConfigDigest:
    """The combined digest and its parts."""

    sha256: str
    files: tuple[FileDigest, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form (``config_digest``)."""
        return {"algorithm": "sha256", "sha256": self.sha256, "files": [f.to_json() for f in self.files]}


def _named(config: LoadedConfig) -> Iterator[tuple[str, str]]:
    yield from named_files_of(config)
    for name, conn in config.model.connections.items():
        if conn.remote.peers is not None:
            yield f"connections.{name}.remote.peers", conn.remote.peers


def _file_digest(config: LoadedConfig, scope: str, relative: str) -> FileDigest:
    path = config.resolve(relative)
    if scope.endswith(".secret_file"):
        return FileDigest(scope, relative, "secret (not hashed)", None)
    if not path.is_file():
        return FileDigest(scope, relative, "missing", None)
    if scope.endswith(SECRET_KEYS):
        key = load_private_key(path)
        if key is None:
            return FileDigest(scope, relative, "secret (not hashed)", None)
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return FileDigest(scope, relative, "public key of private key", hashlib.sha256(spki).hexdigest())
    try:
        data = path.read_bytes()
    except OSError:
        return FileDigest(scope, relative, "unreadable", None)
    return FileDigest(scope, relative, "file", hashlib.sha256(data).hexdigest())


def config_digest(config: LoadedConfig) -> ConfigDigest:
    """Digest of ``config.path`` and every file it names (certificates, CRLs, keys, sinks, inventories)."""
    entries = [FileDigest("(configuration)", str(config.path), "file",
                          hashlib.sha256(Path(config.path).read_bytes()).hexdigest())]
    entries += [_file_digest(config, scope, relative) for scope, relative in _named(config)]
    combined = hashlib.sha256()
    for e in entries:
        combined.update(f"{e.scope}\t{e.path}\t{e.kind}\t{e.sha256 or '-'}\n".encode())
    return ConfigDigest(combined.hexdigest(), tuple(entries))
