"""The pair's key and the sealing of HA records before they leave the process (docs/ha.md).

Records hold IKE and ESP keys (engine/ha_state.py), so they are stored in etcd only as AES-256-GCM
ciphertext (``cryptography``'s AEAD, NIST SP 800-38D) under a key both nodes read from a file. A fresh
96-bit random nonce per seal; the etcd key name is the associated data, so a record cannot be replayed under
another SA's name. Layout: ``b"IKGHA1"`` | nonce (12) | ciphertext+tag.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"IKGHA1"
NONCE_LEN = 12


class SealError(ValueError):
    """A key file or a sealed record that cannot be used (the message never contains key material)."""


class ClusterKey:
    """The AES-256 key shared by the pair; its repr names the file, never the key."""

    def __init__(self, key: bytes, source: str = "") -> None:
        if len(key) != 32:
            raise SealError(f"HA key{' in ' + source if source else ''} must be 32 octets (AES-256)")
        self._aead = AESGCM(key)
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path) -> ClusterKey:
        """Read 32 raw octets or 64 hex digits; refuses a file others may read (as other secret files)."""
        p = Path(path)
        try:
            if p.stat().st_mode & 0o077:
                raise SealError(f"HA key file {p} must not be readable by group or others (chmod 600)")
            data = p.read_bytes()
        except OSError as exc:
            raise SealError(f"HA key file {p}: {exc.strerror}") from None
        text = data.strip()
        if len(text) == 64:
            try:
                return cls(bytes.fromhex(text.decode("ascii")), str(p))
            except (UnicodeDecodeError, ValueError):
                pass
        return cls(data, str(p))

    def seal(self, name: str, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``name`` (the etcd key)."""
        nonce = os.urandom(NONCE_LEN)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, name.encode())

    def open(self, name: str, sealed: bytes) -> bytes:
        """Decrypt a :meth:`seal` output stored under ``name``; SealError if it was altered or moved."""
        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + NONCE_LEN + 16:
            raise SealError(f"HA record {name} is not a sealed record")
        nonce = sealed[len(MAGIC):len(MAGIC) + NONCE_LEN]
        try:
            return self._aead.decrypt(nonce, sealed[len(MAGIC) + NONCE_LEN:], name.encode())
        except InvalidTag:
            raise SealError(f"HA record {name} fails authentication (other key, altered or moved)") from None

    def __repr__(self) -> str:
        return f"ClusterKey({self.source or 'in memory'})"
