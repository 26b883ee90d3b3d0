"""Test-only SkProtector implementations: a null cipher with a keyed-hash ICV, with or without block padding.

Not cryptography: they exist so the SK/SKF framing (lengths, AAD, padding, fragment numbering) can be tested
independently of ``ikeguard.crypto``; the real ciphers are exercised in test_sk.py as well.
"""

from __future__ import annotations

import hashlib


class IntegrityFailure(Exception):
    """The test protector's ICV did not match."""


class NullProtector:
    """IV (8 zero octets) || plaintext || zero padding to ``block`` || pad length || 12-octet ICV.

    The ICV is SHA-256(key || aad || IV || ct) truncated: any change to header, SK header or body is caught.
    """

    def __init__(self, block: int = 1, key: bytes = b"test-key", iv_len: int = 8) -> None:
        self.block = block
        self.key = key
        self.iv_len = iv_len
        self.sealed_aads: list[bytes] = []

    def _pad(self, n: int) -> int:
        return (self.block - (n + 1) % self.block) % self.block

    def overhead(self, plaintext_len: int) -> int:
        return self.iv_len + self._pad(plaintext_len) + 1 + 12

    def _icv(self, aad: bytes, signed: bytes) -> bytes:
        return hashlib.sha256(self.key + aad + signed).digest()[:12]

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self.sealed_aads.append(aad)
        pad = self._pad(len(plaintext))
        signed = bytes(self.iv_len) + plaintext + bytes(pad) + bytes([pad])
        return signed + self._icv(aad, signed)

    def open(self, aad: bytes, body: bytes) -> bytes:
        if len(body) < self.iv_len + 1 + 12:
            raise IntegrityFailure("too short")
        signed, icv = body[:-12], body[-12:]
        if self._icv(aad, signed) != icv:
            raise IntegrityFailure("ICV mismatch")
        padded = signed[self.iv_len :]
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise IntegrityFailure("bad pad length")
        return padded[: len(padded) - 1 - pad]
