"""Transform registry: (transform type, id, key length) -> implementation over pyca/cryptography.

Each entry carries capability flags (usable for IKE, userspace ESP, Linux XFRM), a ``legacy`` mark for
algorithms kept only for interop (policy decides whether they may be offered), and its sizes. Policy,
the engine and the data planes read algorithm facts from here; no algorithm list is written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Flag, auto

from ikeguard.crypto import primitives, xcbc
from ikeguard.crypto.dh import KE_METHODS, KeMethodInfo
from ikeguard.crypto.errors import UnsupportedTransform
from ikeguard.crypto.primitives import Key
from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, TransformType


class Capability(Flag):
    """Where an algorithm may be used."""

    IKE = auto()
    ESP_USERSPACE = auto()
    ESP_XFRM = auto()


ALL = Capability.IKE | Capability.ESP_USERSPACE | Capability.ESP_XFRM

_AeadFn = Callable[[Key, bytes, bytes, bytes, int], bytes]
_MacFn = Callable[[Key, bytes], bytes]


@dataclass(frozen=True)
class EncrAlgorithm:
    """An ENCR transform (RFC 7296 §3.3.2): AES-CBC or an AEAD with salt in the key material (RFC 5282)."""

    id: EncrId
    key_bits: int | None  # the Key Length attribute; None where the transform has none (ChaCha20)
    name: str  # swanctl keyword
    key_len: int  # cipher key octets
    salt_len: int  # implicit nonce part taken from the end of the key material (RFC 5282 §7.1)
    iv_len: int
    icv_len: int  # AEAD tag length; 0 for CBC (integrity from an INTEG transform)
    block_size: int
    capabilities: Capability = ALL
    legacy: bool = False
    xfrm_name: str = ""
    _seal: _AeadFn | None = field(default=None, repr=False, compare=False)
    _open: _AeadFn | None = field(default=None, repr=False, compare=False)

    @property
    def aead(self) -> bool:
        """True for combined-mode ciphers (no INTEG transform is negotiated with them)."""
        return self.icv_len > 0

    @property
    def keymat_len(self) -> int:
        """Octets of SK_e / ESP key material: key || salt (RFC 5282 §7.1, RFC 7634 §2)."""
        return self.key_len + self.salt_len

    def split_key(self, keymat: Key) -> tuple[Key, bytes]:
        """(cipher key, salt) from key material of length :attr:`keymat_len`."""
        if len(keymat) != self.keymat_len:
            raise ValueError(f"{self.name} needs {self.keymat_len} octets of key material")
        return keymat[: self.key_len], bytes(keymat[self.key_len :])

    def seal(self, keymat: Key, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AEAD: ciphertext || ICV with nonce = salt || IV (RFC 5282 §4, RFC 7634 §2)."""
        if self._seal is None:
            raise TypeError(f"{self.name} is not an AEAD")
        key, salt = self.split_key(keymat)
        return self._seal(key, salt + iv, aad, plaintext, self.icv_len)

    def open(self, keymat: Key, iv: bytes, aad: bytes, data: bytes) -> bytes:
        """AEAD decryption of ciphertext || ICV; raises IntegrityError."""
        if self._open is None:
            raise TypeError(f"{self.name} is not an AEAD")
        key, salt = self.split_key(keymat)
        return self._open(key, salt + iv, aad, data, self.icv_len)

    def encrypt(self, key: Key, iv: bytes, data: bytes) -> bytes:
        """CBC encryption of block-aligned ``data`` (RFC 3602)."""
        if self.aead:
            raise TypeError(f"{self.name} is an AEAD; use seal()")
        return primitives.aes_cbc_encrypt(key, iv, data)

    def decrypt(self, key: Key, iv: bytes, data: bytes) -> bytes:
        """CBC decryption of block-aligned ``data``."""
        if self.aead:
            raise TypeError(f"{self.name} is an AEAD; use open()")
        return primitives.aes_cbc_decrypt(key, iv, data)


@dataclass(frozen=True)
class PrfAlgorithm:
    """A PRF transform (RFC 7296 §2.13)."""

    id: int  # a PrfId; KAT-only PRFs built by hmac_prf() use 0
    name: str
    output_len: int
    key_len: int  # preferred key size = size of SK_d, SK_pi, SK_pr (RFC 7296 §2.14)
    fixed_key: bool  # RFC 7296 §2.14: Ni/Nr halves form SKEYSEED's key for fixed-key PRFs
    compute: _MacFn = field(repr=False, compare=False)
    capabilities: Capability = Capability.IKE
    legacy: bool = False


@dataclass(frozen=True)
class IntegAlgorithm:
    """An INTEG transform: truncated MAC (RFC 4868 §2.3, RFC 2404, RFC 3566)."""

    id: IntegId
    name: str
    key_len: int
    icv_len: int
    _mac: _MacFn = field(repr=False, compare=False)
    capabilities: Capability = ALL
    legacy: bool = False
    xfrm_name: str = ""

    def compute(self, key: Key, data: bytes) -> bytes:
        """The truncated ICV of ``data``."""
        return self._mac(key, data)[: self.icv_len]

    def verify(self, key: Key, data: bytes, icv: bytes) -> bool:
        """Constant-time ICV check."""
        return len(icv) == self.icv_len and primitives.equal(self.compute(key, data), icv)


def _hmac(hash_name: str) -> _MacFn:
    def mac(key: Key, data: bytes) -> bytes:
        return primitives.hmac_digest(hash_name, key, data)

    return mac


def _gcm(bits: int, icv: int, legacy: bool = False) -> EncrAlgorithm:
    eid = {8: EncrId.AES_GCM_8, 12: EncrId.AES_GCM_12, 16: EncrId.AES_GCM_16}[icv]
    return EncrAlgorithm(
        eid, bits, f"aes{bits}gcm{icv}", bits // 8, 4, 8, icv, 1, legacy=legacy,
        xfrm_name="rfc4106(gcm(aes))", _seal=primitives.gcm_seal, _open=primitives.gcm_open,
    )  # fmt: skip


def _ccm(bits: int, icv: int, legacy: bool = False) -> EncrAlgorithm:
    eid = {8: EncrId.AES_CCM_8, 12: EncrId.AES_CCM_12, 16: EncrId.AES_CCM_16}[icv]
    return EncrAlgorithm(
        eid, bits, f"aes{bits}ccm{icv}", bits // 8, 3, 8, icv, 1, legacy=legacy,
        xfrm_name="rfc4309(ccm(aes))", _seal=primitives.ccm_seal, _open=primitives.ccm_open,
    )  # fmt: skip


_ENCR: tuple[EncrAlgorithm, ...] = (
    *(_gcm(bits, 16) for bits in (128, 192, 256)),
    *(_gcm(bits, 12) for bits in (128, 192, 256)),
    *(_gcm(bits, 8, legacy=True) for bits in (128, 192, 256)),
    *(_ccm(bits, 16) for bits in (128, 192, 256)),
    *(_ccm(bits, 12) for bits in (128, 192, 256)),
    *(_ccm(bits, 8, legacy=True) for bits in (128, 192, 256)),
    *(EncrAlgorithm(EncrId.AES_CBC, bits, f"aes{bits}", bits // 8, 0, 16, 0, 16, xfrm_name="cbc(aes)")
      for bits in (128, 192, 256)),
    EncrAlgorithm(
        EncrId.CHACHA20_POLY1305, None, "chacha20poly1305", 32, 4, 8, 16, 1,
        xfrm_name="rfc7539esp(chacha20,poly1305)", _seal=primitives.chacha_seal, _open=primitives.chacha_open,
    ),
    # Old strongSwan versions sent a Key Length of 256, which RFC 7634 §2 forbids: accepted for interop only
    EncrAlgorithm(
        EncrId.CHACHA20_POLY1305, 256, "chacha20poly1305compat", 32, 4, 8, 16, 1, legacy=True,
        xfrm_name="rfc7539esp(chacha20,poly1305)", _seal=primitives.chacha_seal, _open=primitives.chacha_open,
    ),
)  # fmt: skip

_PRF: tuple[PrfAlgorithm, ...] = (
    PrfAlgorithm(PrfId.HMAC_SHA2_256, "prfsha256", 32, 32, False, _hmac("sha256")),
    PrfAlgorithm(PrfId.HMAC_SHA2_384, "prfsha384", 48, 48, False, _hmac("sha384")),
    PrfAlgorithm(PrfId.HMAC_SHA2_512, "prfsha512", 64, 64, False, _hmac("sha512")),
    PrfAlgorithm(PrfId.HMAC_SHA1, "prfsha1", 20, 20, False, _hmac("sha1"), legacy=True),
    PrfAlgorithm(PrfId.AES128_XCBC, "prfaesxcbc", 16, 16, True, xcbc.xcbc_prf_128, legacy=True),
)

_INTEG: tuple[IntegAlgorithm, ...] = (
    IntegAlgorithm(IntegId.HMAC_SHA2_256_128, "sha256", 32, 16, _hmac("sha256"), xfrm_name="hmac(sha256)"),
    IntegAlgorithm(IntegId.HMAC_SHA2_384_192, "sha384", 48, 24, _hmac("sha384"), xfrm_name="hmac(sha384)"),
    IntegAlgorithm(IntegId.HMAC_SHA2_512_256, "sha512", 64, 32, _hmac("sha512"), xfrm_name="hmac(sha512)"),
    IntegAlgorithm(IntegId.HMAC_SHA1_96, "sha1", 20, 12, _hmac("sha1"), legacy=True, xfrm_name="hmac(sha1)"),
    IntegAlgorithm(IntegId.AES_XCBC_96, "aesxcbc", 16, 12, xcbc.xcbc_mac, legacy=True, xfrm_name="xcbc(aes)"),
)

ENCR: dict[tuple[int, int | None], EncrAlgorithm] = {(e.id, e.key_bits): e for e in _ENCR}
PRF: dict[int, PrfAlgorithm] = {p.id: p for p in _PRF}
INTEG: dict[int, IntegAlgorithm] = {i.id: i for i in _INTEG}

Transform = EncrAlgorithm | PrfAlgorithm | IntegAlgorithm | KeMethodInfo


def hmac_prf(hash_name: str) -> PrfAlgorithm:
    """An HMAC PRF for any hash `primitives` knows, outside the IANA registry (for NIST CAVP KATs)."""
    known = {p.name: p for p in _PRF}.get(f"prf{hash_name}")
    if known is not None:
        return known
    size = primitives.HASHES[hash_name]().digest_size
    return PrfAlgorithm(0, f"prf{hash_name}", size, size, False, _hmac(hash_name), legacy=True)


def encr(transform_id: int, key_bits: int | None = None) -> EncrAlgorithm:
    """The ENCR implementation for (id, Key Length attribute); raises UnsupportedTransform."""
    found = ENCR.get((transform_id, key_bits))
    if found is None:
        raise UnsupportedTransform(f"ENCR {transform_id} with key length {key_bits} not supported")
    return found


def prf(transform_id: int | PrfAlgorithm) -> PrfAlgorithm:
    """The PRF implementation (an algorithm object passes through); raises UnsupportedTransform."""
    if isinstance(transform_id, PrfAlgorithm):
        return transform_id
    found = PRF.get(transform_id)
    if found is None:
        raise UnsupportedTransform(f"PRF {transform_id} not supported")
    return found


def integ(transform_id: int) -> IntegAlgorithm:
    """The INTEG implementation; raises UnsupportedTransform (INTEG NONE is not a transform here)."""
    found = INTEG.get(transform_id)
    if found is None:
        raise UnsupportedTransform(f"INTEG {transform_id} not supported")
    return found


def ke(transform_id: int) -> KeMethodInfo:
    """The key exchange method; raises UnsupportedTransform."""
    found = KE_METHODS.get(transform_id)
    if found is None:
        raise UnsupportedTransform(f"key exchange method {transform_id} not supported")
    return found


def lookup(transform_type: int, transform_id: int, key_bits: int | None = None) -> Transform:
    """Generic lookup keyed by (TransformType, id, key length); raises UnsupportedTransform."""
    if transform_type == TransformType.ENCR:
        return encr(transform_id, key_bits)
    if key_bits is not None:
        raise UnsupportedTransform(f"transform type {transform_type} takes no key length attribute")
    if transform_type == TransformType.PRF:
        return prf(transform_id)
    if transform_type == TransformType.INTEG:
        return integ(transform_id)
    if transform_type in (TransformType.KE, *range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)):
        return ke(transform_id)
    raise UnsupportedTransform(f"transform type {transform_type} has no implementations")


def supports(transform_type: int, transform_id: int, key_bits: int | None = None) -> bool:
    """True when :func:`lookup` would succeed."""
    try:
        lookup(transform_type, transform_id, key_bits)
    except UnsupportedTransform:
        return False
    return True


def all_transforms() -> Iterator[tuple[TransformType, Transform]]:
    """Every implemented transform with its type (for profiles, `ikeguard profiles`, docs)."""
    for e in _ENCR:
        yield TransformType.ENCR, e
    for p in _PRF:
        yield TransformType.PRF, p
    for i in _INTEG:
        yield TransformType.INTEG, i
    for k in KE_METHODS.values():
        yield TransformType.KE, k


def by_name(name: str) -> tuple[TransformType, Transform]:
    """Look a transform up by its swanctl keyword (``aes256gcm16``, ``prfsha384``, ``ecp384``...)."""
    for ttype, t in all_transforms():
        if t.name == name:
            return ttype, t
    raise UnsupportedTransform(f"unknown algorithm keyword {name!r}")


__all__ = [
    "ALL",
    "ENCR",
    "INTEG",
    "PRF",
    "Capability",
    "EncrAlgorithm",
    "IntegAlgorithm",
    "KeId",
    "KeMethodInfo",
    "PrfAlgorithm",
    "Transform",
    "all_transforms",
    "by_name",
    "encr",
    "hmac_prf",
    "integ",
    "ke",
    "lookup",
    "prf",
    "supports",
]
