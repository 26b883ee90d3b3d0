"""Protection of the SK / SKF payload body: AEAD (RFC 5282, RFC 7634) and CBC + HMAC (RFC 7296 §3.14).

Implements the ``ikeguard.wire.sk.SkProtector`` protocol structurally:
``seal(aad, plaintext) -> IV || ciphertext || ICV`` and ``open(aad, body) -> plaintext``, where ``aad`` is
every octet before the IV (IKE header with its final length + SK/SKF payload header, RFC 7383 §2.5).
One outbound protector must be used per SA direction for the key's whole life (AEAD IVs are a counter).
Protectors hold the IkeKeys bytearrays themselves (no copies), so ``IkeKeys.wipe()`` also disarms them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeguard.crypto.errors import IntegrityError, IvExhausted, MalformedCiphertext
from ikeguard.crypto.keymat import IkeKeys
from ikeguard.crypto.primitives import Key
from ikeguard.crypto.random import RandomSource, SystemRandom
from ikeguard.crypto.registry import EncrAlgorithm, IntegAlgorithm

_IV_SPACE = 1 << 64


@dataclass(repr=False, eq=False)
class AeadSkProtector:
    """SK payload with an AEAD: nonce = salt || 8-octet IV, AAD = header octets, no padding (RFC 5282 §5)."""

    encr: EncrAlgorithm
    key: Key = field(repr=False)
    rng: RandomSource = field(default_factory=SystemRandom)
    _next_iv: int = field(init=False, default=0)
    _ivs_left: int = field(init=False, default=_IV_SPACE)

    def __post_init__(self) -> None:
        if not self.encr.aead:
            raise ValueError(f"{self.encr.name} is not an AEAD")
        self.encr.split_key(self.key)  # length check
        # Counter IVs never repeat under one key; a random start adds margin against misuse (RFC 5282 §3.1)
        self._next_iv = int.from_bytes(self.rng.bytes(8), "big")

    def overhead(self, plaintext_len: int) -> int:
        """IV + pad-length octet + ICV (an AEAD needs no padding)."""
        return self.encr.iv_len + 1 + self.encr.icv_len

    def _iv(self) -> bytes:
        if self._ivs_left == 0:
            raise IvExhausted(f"{self.encr.name}: IV space exhausted, rekey the IKE SA")
        iv = self._next_iv.to_bytes(8, "big")
        self._next_iv = (self._next_iv + 1) % _IV_SPACE
        self._ivs_left -= 1
        return iv

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """IV || AEAD(plaintext || pad length 0) || ICV."""
        iv = self._iv()
        return iv + self.encr.seal(self.key, iv, aad, bytes(plaintext) + b"\x00")

    def open(self, aad: bytes, body: bytes) -> bytes:
        """Verify and decrypt; raises IntegrityError (bad ICV) or MalformedCiphertext (bad framing)."""
        iv_len, icv_len = self.encr.iv_len, self.encr.icv_len
        if len(body) < iv_len + 1 + icv_len:
            raise MalformedCiphertext("SK payload shorter than IV + pad length + ICV")
        padded = self.encr.open(self.key, body[:iv_len], aad, body[iv_len:])
        return _strip_padding(padded)

    def __repr__(self) -> str:
        return f"AeadSkProtector({self.encr.name})"


@dataclass(repr=False, eq=False)
class CbcHmacSkProtector:
    """SK payload with AES-CBC and a truncated MAC over header || IV || ciphertext (RFC 7296 §3.14)."""

    encr: EncrAlgorithm
    integ: IntegAlgorithm
    encr_key: Key = field(repr=False)
    integ_key: Key = field(repr=False)
    rng: RandomSource = field(default_factory=SystemRandom)

    def __post_init__(self) -> None:
        if self.encr.aead:
            raise ValueError(f"{self.encr.name} is an AEAD")
        if len(self.encr_key) != self.encr.key_len or len(self.integ_key) != self.integ.key_len:
            raise ValueError("SK_e / SK_a length does not match the transforms")

    def _pad_len(self, plaintext_len: int) -> int:
        block = self.encr.block_size
        return (block - (plaintext_len + 1) % block) % block

    def overhead(self, plaintext_len: int) -> int:
        """IV + padding + pad-length octet + ICV."""
        return self.encr.iv_len + self._pad_len(plaintext_len) + 1 + self.integ.icv_len

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """Random IV (RFC 7296 §3.14: unpredictable), padding of zeros, pad length, then the ICV."""
        pad_len = self._pad_len(len(plaintext))
        iv = self.rng.bytes(self.encr.iv_len)
        ct = self.encr.encrypt(self.encr_key, iv, bytes(plaintext) + bytes(pad_len) + bytes([pad_len]))
        return iv + ct + self.integ.compute(self.integ_key, bytes(aad) + iv + ct)

    def open(self, aad: bytes, body: bytes) -> bytes:
        """Check the ICV first, then decrypt and remove the padding."""
        iv_len, icv_len, block = self.encr.iv_len, self.integ.icv_len, self.encr.block_size
        if len(body) < iv_len + block + icv_len:
            raise MalformedCiphertext("SK payload shorter than IV + one block + ICV")
        signed, icv = body[:-icv_len], body[-icv_len:]
        if not self.integ.verify(self.integ_key, bytes(aad) + signed, icv):
            raise IntegrityError(f"{self.integ.name} ICV mismatch")
        ct = signed[iv_len:]
        if len(ct) % block:
            raise MalformedCiphertext("ciphertext is not a multiple of the cipher block size")
        return _strip_padding(self.encr.decrypt(self.encr_key, signed[:iv_len], ct))

    def __repr__(self) -> str:
        return f"CbcHmacSkProtector({self.encr.name}, {self.integ.name})"


SkProtectorImpl = AeadSkProtector | CbcHmacSkProtector


def _strip_padding(padded: bytes) -> bytes:
    pad_len = padded[-1]
    if pad_len + 1 > len(padded):
        raise MalformedCiphertext("pad length exceeds the decrypted data")
    return padded[: len(padded) - 1 - pad_len]


def make_sk_protector(
    encr: EncrAlgorithm, integ: IntegAlgorithm | None, encr_key: Key, integ_key: Key, rng: RandomSource
) -> SkProtectorImpl:
    """One direction's protector from its transforms and keys."""
    if encr.aead:
        if integ is not None:
            raise ValueError("an AEAD is negotiated without an INTEG transform (RFC 5282 §8)")
        return AeadSkProtector(encr, encr_key, rng)
    if integ is None:
        raise ValueError(f"{encr.name} needs an INTEG transform")
    return CbcHmacSkProtector(encr, integ, encr_key, integ_key, rng)


def make_sk_protectors(
    encr: EncrAlgorithm,
    integ: IntegAlgorithm | None,
    keys: IkeKeys,
    initiator: bool,
    rng: RandomSource | None = None,
) -> tuple[SkProtectorImpl, SkProtectorImpl]:
    """(outbound, inbound): the initiator sends with SK_ei/SK_ai, the responder with SK_er/SK_ar."""
    source = rng if rng is not None else SystemRandom()
    i_side = make_sk_protector(encr, integ, keys.sk_ei, keys.sk_ai, source)
    r_side = make_sk_protector(encr, integ, keys.sk_er, keys.sk_ar, source)
    return (i_side, r_side) if initiator else (r_side, i_side)
