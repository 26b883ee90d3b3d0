"""ESP packet protection (RFC 4303) for the userspace data plane: pure, no IO.

Transforms (all primitives from ``cryptography``): AES-GCM with a 16-octet ICV (RFC 4106), ChaCha20-Poly1305
(RFC 7634), AES-CBC (RFC 3602) with HMAC-SHA2 (RFC 4868) or HMAC-SHA1-96 for interop. AEAD nonce = 4-octet
salt from the key material || 8-octet IV, and the IV is the 64-bit sequence number (unique per SA by the one
sender per SA invariant, RFC 4106 §3.1 allows a counter). ESN: the high 32 bits enter the AAD (RFC 4106 §5,
RFC 7634 §2.1) or are appended for the ICV only (RFC 4303 §2.2.1); they are never sent.
Written by hand where no library exists: ESP framing, padding and trailer.
"""

from __future__ import annotations

import hmac as _hmac_mod
import os
import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ikeguard.crypto.zeroize import wipe
from ikeguard.wire.iana import EncrId, IntegId

_HDR = struct.Struct("!II")
_HDR_IV = struct.Struct("!IIQ")  # SPI, sequence number (low 32 bits), 8-octet IV = the 64-bit sequence number
_NONCE = struct.Struct("!4sQ")  # AEAD nonce: salt || IV (RFC 4106 §4, RFC 7634 §2)
_ESN_AAD = struct.Struct("!III")  # SPI || Seq high || Seq low (RFC 4106 §5, RFC 7634 §2.1)
_MASK32 = 0xFFFFFFFF
_PAD = bytes(range(1, 256))  # RFC 4303 §2.4 default padding 1, 2, 3, ...

NEXT_HEADER_IPV4 = 4
NEXT_HEADER_IPV6 = 41
NEXT_HEADER_DUMMY = 59  # RFC 4303 §2.6: TFC dummy packet, discarded by the receiver

# (ENCR id, key bits) -> (cipher key octets, salt octets); the transforms this module implements
AEAD_TRANSFORMS: dict[tuple[int, int | None], tuple[int, int]] = {
    (EncrId.AES_GCM_16, 128): (16, 4),
    (EncrId.AES_GCM_16, 192): (24, 4),
    (EncrId.AES_GCM_16, 256): (32, 4),
    (EncrId.CHACHA20_POLY1305, None): (32, 4),
}
CBC_TRANSFORMS: dict[tuple[int, int | None], int] = {
    (EncrId.AES_CBC, 128): 16,
    (EncrId.AES_CBC, 192): 24,
    (EncrId.AES_CBC, 256): 32,
}
# INTEG id -> (hash, key octets, ICV octets) (RFC 4868 §2.3, RFC 2404)
INTEG_TRANSFORMS: dict[int, tuple[str, int, int]] = {
    IntegId.HMAC_SHA2_256_128: ("sha256", 32, 16),
    IntegId.HMAC_SHA2_384_192: ("sha384", 48, 24),
    IntegId.HMAC_SHA2_512_256: ("sha512", 64, 32),
    IntegId.HMAC_SHA1_96: ("sha1", 20, 12),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha1": hashes.SHA1,
}  # fmt: skip


class EspError(Exception):
    """An ESP packet could not be processed; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class UnsupportedEspTransform(EspError):
    """The transform combination is not implemented by the userspace data plane."""

    def __init__(self, detail: str) -> None:
        super().__init__("unsupported_transform", detail)


def _trailers(block: int) -> dict[int, tuple[bytes, ...]]:
    """Next Header -> padding + Pad Length + Next Header for each pad length 0 .. block-1 (RFC 4303 §2.4)."""
    return {nh: tuple(_PAD[:n] + bytes((n, nh)) for n in range(block))
            for nh in (NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_DUMMY)}


_AEAD_TRAILERS = _trailers(4)


def parse_header(packet: bytes) -> tuple[int, int]:
    """(SPI, low 32 bits of the sequence number) of an ESP packet; raises EspError('malformed')."""
    if len(packet) < 8:
        raise EspError("malformed", "shorter than the ESP header")
    spi, seq = _HDR.unpack_from(packet)
    return spi, seq


class EspPayload(NamedTuple):  # a NamedTuple: built once per packet, cheaper than a frozen dataclass
    """A decrypted ESP payload: the inner packet and its Next Header value."""

    data: bytes
    next_header: int


class _Deleted:
    """Stands in for the cipher of a wiped transform: every use is refused."""

    def encrypt(self, nonce: bytes | bytearray, data: bytes, aad: bytes | None) -> bytes:
        raise EspError("deleted")

    def decrypt(self, nonce: bytes | bytearray, data: bytes | memoryview, aad: bytes | None) -> bytes:
        raise EspError("deleted")


_DELETED = _Deleted()


class EspTransform:
    """Keys and cipher objects of one SA direction; ``seal``/``open`` whole ESP packets (RFC 4303 §2)."""

    __slots__ = ("_aead", "_cbc_key", "_hash", "_integ_key", "_salt", "block", "icv_len", "iv_len")

    def __init__(self, encr_id: int, key_bits: int | None, encr_key: bytes | bytearray, integ_id: int = 0,
                 integ_key: bytes | bytearray = b"") -> None:
        self._aead: AESGCM | ChaCha20Poly1305 | _Deleted | None = None
        self._cbc_key = bytearray()
        self._hash: type[hashes.HashAlgorithm] | None = None
        self._integ_key = bytearray()
        self._salt = bytearray()
        key_view = memoryview(encr_key)  # slices of a view copy nothing: no unwiped intermediate
        key = (encr_id, key_bits)
        if key in AEAD_TRANSFORMS:
            if integ_id:
                raise UnsupportedEspTransform("an AEAD takes no INTEG transform (RFC 7296 §3.3.3)")
            klen, slen = AEAD_TRANSFORMS[key]
            if len(encr_key) != klen + slen:
                raise UnsupportedEspTransform(f"expected {klen + slen} octets of key material")
            self._salt = bytearray(key_view[klen:])
            chacha = encr_id == EncrId.CHACHA20_POLY1305
            # cryptography copies the key into OpenSSL's context here; OpenSSL cleanses it when freed
            self._aead = ChaCha20Poly1305(key_view[:klen]) if chacha else AESGCM(key_view[:klen])
            self.block, self.iv_len, self.icv_len = 4, 8, 16
        elif key in CBC_TRANSFORMS:
            if len(encr_key) != CBC_TRANSFORMS[key]:
                raise UnsupportedEspTransform(f"expected {CBC_TRANSFORMS[key]} octets of AES key")
            self._cbc_key = bytearray(key_view)
            self.block, self.iv_len, self.icv_len = 16, 16, 0
            if integ_id:
                if integ_id not in INTEG_TRANSFORMS:
                    raise UnsupportedEspTransform(f"INTEG {integ_id}")
                name, ilen, self.icv_len = INTEG_TRANSFORMS[integ_id]
                if len(integ_key) != ilen:
                    raise UnsupportedEspTransform(f"expected {ilen} octets of integrity key")
                self._hash, self._integ_key = _HASHES[name], bytearray(integ_key)
        else:
            raise UnsupportedEspTransform(f"ENCR {encr_id} key length {key_bits}")

    def __repr__(self) -> str:
        return f"EspTransform(aead={self._aead is not None}, icv={self.icv_len})"

    def wipe(self) -> None:
        """Zero this direction's keys and drop the cipher context (the SA is deleted); from now on ``seal``
        and ``open`` raise EspError('deleted') instead of using a zero key (docs/key-hygiene.md)."""
        wipe(self._salt, self._cbc_key, self._integ_key)
        self._aead = _DELETED  # both paths now take the AEAD branch, which refuses

    @property
    def overhead(self) -> int:
        """Worst-case octets ESP adds to an inner packet (header, IV, padding, trailer, ICV)."""
        return 8 + self.iv_len + (self.block - 1) + 2 + self.icv_len

    def _aad(self, spi: int, seq: int, esn: bool) -> bytes:
        if esn:  # RFC 4106 §5 / RFC 7634 §2.1: SPI || Seq high || Seq low
            return struct.pack("!III", spi, seq >> 32, seq & _MASK32)
        return _HDR.pack(spi, seq & _MASK32)

    def _icv(self, data: bytes, seq: int, esn: bool) -> bytes:
        assert self._hash is not None
        mac = hmac.HMAC(self._integ_key, self._hash())
        mac.update(data)
        if esn:  # RFC 4303 §2.2.1: high-order bits appended for the ICV computation only
            mac.update(struct.pack("!I", seq >> 32))
        return mac.finalize()[: self.icv_len]

    def seal(self, spi: int, seq: int, payload: bytes, next_header: int, esn: bool = False,
             iv: bytes | None = None) -> bytes:
        """The ESP packet (SPI .. ICV) carrying ``payload``; ``iv`` only for known-answer tests."""
        aead = self._aead
        if aead is not None and iv is None:  # the per-packet path: IV = the sequence number (RFC 4106 §3.1)
            padlen = -(len(payload) + 2) & 3
            trailers = _AEAD_TRAILERS.get(next_header)
            trailer = (trailers[padlen] if trailers is not None
                       else _PAD[:padlen] + bytes((padlen, next_header)))
            head = _HDR_IV.pack(spi, seq & _MASK32, seq)
            aad = _ESN_AAD.pack(spi, seq >> 32, seq & _MASK32) if esn else head[:8]
            return head + aead.encrypt(_NONCE.pack(self._salt, seq), payload + trailer, aad)
        padlen = -(len(payload) + 2) % self.block
        plaintext = b"".join((payload, _PAD[:padlen], bytes((padlen, next_header))))
        header = _HDR.pack(spi, seq & _MASK32)
        if aead is not None:
            assert iv is not None
            ct = aead.encrypt(self._salt + iv, plaintext, self._aad(spi, seq, esn))
            return header + iv + ct
        if iv is None:
            iv = os.urandom(16)  # RFC 3602 §2.3: unpredictable IV
        enc = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).encryptor()
        body = header + iv + enc.update(plaintext) + enc.finalize()
        if self._hash is None:
            return body
        return body + self._icv(body, seq, esn)

    def open(self, packet: bytes, seq: int, esn: bool = False) -> EspPayload:
        """Verify and decrypt; raises EspError('icv') on a failed check, EspError('malformed') otherwise."""
        aead = self._aead
        if aead is not None:  # AEAD: ICV inside the ciphertext; header and IV read in place (no copies)
            if len(packet) < 34:  # header 8 + IV 8 + at least the 2-octet trailer + ICV 16
                raise EspError("malformed", "ESP packet length")
            spi, seq_low, iv_seq = _HDR_IV.unpack_from(packet)
            if seq & _MASK32 != seq_low:  # ``seq`` is the on-wire number plus the inferred high bits
                raise EspError("malformed", "sequence number does not match the packet")
            aad = _ESN_AAD.pack(spi, seq >> 32, seq_low) if esn else _HDR.pack(spi, seq_low)
            try:
                plaintext = aead.decrypt(_NONCE.pack(self._salt, iv_seq), memoryview(packet)[16:], aad)
            except InvalidTag:
                raise EspError("icv") from None
            return _strip_trailer(plaintext)
        iv_end = 8 + self.iv_len
        ct_len = len(packet) - iv_end - self.icv_len
        if ct_len < self.block or ct_len % self.block:
            raise EspError("malformed", "ESP packet length")
        spi, seq_low = _HDR.unpack_from(packet)
        if seq & _MASK32 != seq_low:
            raise EspError("malformed", "sequence number does not match the packet")
        iv = packet[8:iv_end]
        if self._hash is not None:
            body, icv = packet[: -self.icv_len], packet[-self.icv_len :]
            if not _hmac_mod.compare_digest(self._icv(body, seq, esn), icv):
                raise EspError("icv")
        dec = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).decryptor()
        plaintext = dec.update(packet[iv_end : iv_end + ct_len]) + dec.finalize()
        return _strip_trailer(plaintext)


def _strip_trailer(plaintext: bytes) -> EspPayload:
    """Remove padding, Pad Length and Next Header (RFC 4303 §2.4-§2.6), checking default padding."""
    padlen, next_header = plaintext[-2], plaintext[-1]
    end = len(plaintext) - 2 - padlen
    if end < 0:
        raise EspError("malformed", "pad length beyond payload")
    if padlen and plaintext[end : end + padlen] != _PAD[:padlen]:
        raise EspError("malformed", "padding is not 1, 2, 3, ...")
    return EspPayload(plaintext[:end], next_header)
