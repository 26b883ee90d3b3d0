"""Raw public keys (RFC 7670): a peer authenticated by a pinned public key instead of a certificate.

RFC 7670 §3 carries a raw public key in a CERT payload with Certificate Encoding 15 ("Raw Public Key") as a
DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7). Nothing vouches for such a key: the configuration does, by
pinning it (``remote.pubkeys``): a public key file (PEM ``PUBLIC KEY`` as ``pki --pub`` writes it, DER
SubjectPublicKeyInfo, or a certificate whose key is taken) or a fingerprint, ``sha256:`` and the SHA-256 of
the DER SubjectPublicKeyInfo in hex or base64 (what ``pki --keyid`` calls the SPKI hash, and what
``openssl pkey -pubin -outform DER | sha256sum`` prints).

A fingerprint pin only works when the peer sends its key (CERT encoding 15, or an X.509 certificate whose
key is pinned); strongSwan sends no CERT payload for a raw key (its peer finds the key by the IKE identity),
so against strongSwan a pin must be a key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ikeguard.crypto.errors import CryptoError
from ikeguard.crypto.signatures import PublicKey

__all__ = [
    "PinnedKey",
    "RawKeyError",
    "authenticate_raw",
    "fingerprint_text",
    "load_pin",
    "match_pin",
    "public_key_from_spki",
    "spki_der",
]

_MAX_FILE = 64 * 1024


class RawKeyError(ValueError):
    """A pin that cannot be read, or a raw public key that cannot be parsed."""


@dataclass(frozen=True)
class PinnedKey:
    """One ``remote.pubkeys`` entry: the SHA-256 of its SubjectPublicKeyInfo and, for a file, the key."""

    source: str  # the configured text (a file name or the fingerprint), for messages
    fingerprint: bytes  # SHA-256 of the DER SubjectPublicKeyInfo
    public_key: PublicKey | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """``sha256:<hex>``: how messages and audit records name the key."""
        return fingerprint_text(self.fingerprint)


def spki_der(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key`` (the CERT encoding 15 payload data, RFC 7670 §3)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_text(fingerprint: bytes) -> str:
    """``sha256:`` and the lower-case hex SHA-256 of a SubjectPublicKeyInfo."""
    return "sha256:" + fingerprint.hex()


def public_key_from_spki(data: bytes) -> PublicKey:
    """Parse a received raw public key (DER SubjectPublicKeyInfo); RawKeyError if it is none we can use."""
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise RawKeyError(f"unparsable raw public key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        raise RawKeyError(f"raw public key of an unusable type ({type(key).__name__})")
    return key


def _parse_fingerprint(text: str) -> bytes:
    value = text.split(":", 1)[1].strip().replace(":", "")
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RawKeyError(f"{text!r}: not a SHA-256 fingerprint in hex or base64") from None
    if len(digest) != 32:
        raise RawKeyError(f"{text!r}: a SHA-256 fingerprint has 32 octets, this has {len(digest)}")
    return digest


def _key_from_file(path: Path) -> PublicKey:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE + 1)
    except OSError as exc:
        raise RawKeyError(f"cannot read the public key file: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE:
        raise RawKeyError("public key file larger than 64 KiB")
    if b"-----BEGIN CERTIFICATE" in data:
        key: object = x509.load_pem_x509_certificate(data).public_key()
    elif b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise RawKeyError(f"not a PEM public key ({type(exc).__name__})") from None
    else:
        try:
            key = serialization.load_der_public_key(data)
        except (ValueError, TypeError):
            try:
                key = x509.load_der_x509_certificate(data).public_key()
            except ValueError:
                raise RawKeyError("neither a public key (SubjectPublicKeyInfo) nor a certificate "
                                  "in PEM or DER") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        raise RawKeyError(f"a public key of an unusable type ({type(key).__name__})")
    return key


def load_pin(text: str, base: Path) -> PinnedKey:
    """One ``remote.pubkeys`` entry: ``sha256:<hex or base64>`` or a file (relative to ``base``)."""
    if text.lower().startswith("sha256:"):
        return PinnedKey(text, _parse_fingerprint(text))
    path = Path(text)
    key = _key_from_file(path if path.is_absolute() else base / path)
    return PinnedKey(text, hashlib.sha256(spki_der(key)).digest(), key)


def match_pin(pins: Sequence[PinnedKey], spki: bytes) -> PinnedKey | None:
    """The pin a received SubjectPublicKeyInfo matches (by its SHA-256), or None."""
    digest = hashlib.sha256(spki).digest()
    for pin in pins:
        if pin.fingerprint == digest:
            return pin
    return None


def authenticate_raw(pins: Sequence[PinnedKey], offered: bytes | None,
                     verify: Callable[[PublicKey], None]) -> PinnedKey:
    """Which pinned key made the peer's AUTH signature (RFC 7670 §3); RawKeyError with the reason if none.

    ``offered`` is the SubjectPublicKeyInfo the peer sent (CERT encoding 15, or its certificate's key):
    it must match a pin, and the signature is checked with it. Without one (strongSwan sends none for a
    raw key) each pinned key file is tried. ``verify`` raises ``CryptoError`` when a key does not verify."""
    if offered is not None:
        pin = match_pin(pins, offered)
        if pin is None:
            raise RawKeyError(f"raw public key {fingerprint_text(hashlib.sha256(offered).digest())} "
                              f"matches no pinned key ({', '.join(p.source for p in pins)})")
        key = pin.public_key or public_key_from_spki(offered)
        try:
            verify(key)
        except CryptoError as exc:
            raise RawKeyError(f"AUTH signature rejected with pinned key {pin.text}: {exc}") from None
        return pin
    candidates = [p for p in pins if p.public_key is not None]
    if not candidates:
        raise RawKeyError("peer sent no raw public key and every pin is a fingerprint (pin a key file)")
    problems = []
    for pin in candidates:
        assert pin.public_key is not None
        try:
            verify(pin.public_key)
        except CryptoError as exc:
            problems.append(f"{pin.source}: {exc}")
            continue
        return pin
    raise RawKeyError("AUTH signature verifies with no pinned key (" + "; ".join(problems) + ")")
