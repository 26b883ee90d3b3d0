"""Typed errors raised by ``ikeguard.crypto``; messages never contain key material."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by ``ikeguard.crypto``."""


class UnsupportedTransform(CryptoError):
    """A (transform type, id, key length) combination that the registry does not implement."""


class InvalidKeyExchange(CryptoError):
    """The peer's KE data is unacceptable (RFC 7296 §2.12, RFC 5903 §9, RFC 7748 §6, RFC 6989)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IntegrityError(CryptoError):
    """ICV / AEAD tag verification failed: the message was altered or the key is wrong (RFC 7296 §3.14)."""


class MalformedCiphertext(CryptoError):
    """The SK payload body is too short, not block aligned, or carries an impossible pad length."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IvExhausted(CryptoError):
    """An AEAD key has used every IV of its counter: the SA must be rekeyed (RFC 5282 §3.1)."""


class SignatureInvalid(CryptoError):
    """An AUTH signature does not verify with the given public key."""


class UnsupportedSignatureAlgorithm(CryptoError):
    """The AUTH method, AlgorithmIdentifier, hash or key type is not supported or not allowed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
