"""Transforms (RFC 7296 §3.3.2) as values shared by the SA payload codec and the proposal-string parser.

Display names follow strongSwan's enum names (what `swanctl --list-sas` prints), so logs, `sas` output and
an operator's strongSwan peer speak the same words. Private-use IDs that strongSwan assigns (e.g. its
HMAC-SHA2-256-96 variant, 1026) are named too, because strongSwan peers put them on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from ikeguard.wire.iana import EncrId, EsnId, IntegId, KeId, PrfId, TransformType, lookup

# strongSwan private-use integrity IDs (src/libstrongswan/crypto/signers/signer.h).
INTEG_HMAC_SHA2_256_96 = 1026  # Linux's pre-RFC 4868 96-bit truncation; strongSwan keyword sha256_96

AEAD_ENCR_IDS: frozenset[int] = frozenset(
    {
        EncrId.AES_CCM_8,
        EncrId.AES_CCM_12,
        EncrId.AES_CCM_16,
        EncrId.AES_GCM_8,
        EncrId.AES_GCM_12,
        EncrId.AES_GCM_16,
        EncrId.NULL_AUTH_AES_GMAC,
        EncrId.CAMELLIA_CCM_8,
        EncrId.CAMELLIA_CCM_12,
        EncrId.CAMELLIA_CCM_16,
        EncrId.CHACHA20_POLY1305,
        EncrId.AES_CCM_8_IIV,
        EncrId.AES_GCM_16_IIV,
        EncrId.CHACHA20_POLY1305_IIV,
    }
)

_ENCR_NAMES: dict[int, str] = {
    EncrId.DES_IV64: "DES_IV64",
    EncrId.DES: "DES_CBC",
    EncrId.TRIPLE_DES: "3DES_CBC",
    EncrId.RC5: "RC5_CBC",
    EncrId.IDEA: "IDEA_CBC",
    EncrId.CAST: "CAST_CBC",
    EncrId.BLOWFISH: "BLOWFISH_CBC",
    EncrId.TRIPLE_IDEA: "3IDEA",
    EncrId.DES_IV32: "DES_IV32",
    EncrId.NULL: "NULL",
    EncrId.AES_CBC: "AES_CBC",
    EncrId.AES_CTR: "AES_CTR",
    EncrId.AES_CCM_8: "AES_CCM_8",
    EncrId.AES_CCM_12: "AES_CCM_12",
    EncrId.AES_CCM_16: "AES_CCM_16",
    EncrId.AES_GCM_8: "AES_GCM_8",
    EncrId.AES_GCM_12: "AES_GCM_12",
    EncrId.AES_GCM_16: "AES_GCM_16",
    EncrId.NULL_AUTH_AES_GMAC: "NULL_AES_GMAC",
    EncrId.CAMELLIA_CBC: "CAMELLIA_CBC",
    EncrId.CAMELLIA_CTR: "CAMELLIA_CTR",
    EncrId.CAMELLIA_CCM_8: "CAMELLIA_CCM_8",
    EncrId.CAMELLIA_CCM_12: "CAMELLIA_CCM_12",
    EncrId.CAMELLIA_CCM_16: "CAMELLIA_CCM_16",
    EncrId.CHACHA20_POLY1305: "CHACHA20_POLY1305",
    EncrId.AES_CCM_8_IIV: "AES_CCM_8_IIV",
    EncrId.AES_GCM_16_IIV: "AES_GCM_16_IIV",
    EncrId.CHACHA20_POLY1305_IIV: "CHACHA20_POLY1305_IIV",
}

_INTEG_NAMES: dict[int, str] = {
    IntegId.NONE: "NONE",
    IntegId.HMAC_MD5_96: "HMAC_MD5_96",
    IntegId.HMAC_SHA1_96: "HMAC_SHA1_96",
    IntegId.DES_MAC: "DES_MAC",
    IntegId.KPDK_MD5: "KPDK_MD5",
    IntegId.AES_XCBC_96: "AES_XCBC_96",
    IntegId.HMAC_MD5_128: "HMAC_MD5_128",
    IntegId.HMAC_SHA1_160: "HMAC_SHA1_160",
    IntegId.AES_CMAC_96: "AES_CMAC_96",
    IntegId.AES_128_GMAC: "AES_128_GMAC",
    IntegId.AES_192_GMAC: "AES_192_GMAC",
    IntegId.AES_256_GMAC: "AES_256_GMAC",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256",
    INTEG_HMAC_SHA2_256_96: "HMAC_SHA2_256_96",
}

_PRF_NAMES: dict[int, str] = {p.value: f"PRF_{p.name}" for p in PrfId}

_KE_NAMES: dict[int, str] = {
    KeId.NONE: "KE_NONE",
    KeId.MODP_768: "MODP_768",
    KeId.MODP_1024: "MODP_1024",
    KeId.MODP_1536: "MODP_1536",
    KeId.MODP_2048: "MODP_2048",
    KeId.MODP_3072: "MODP_3072",
    KeId.MODP_4096: "MODP_4096",
    KeId.MODP_6144: "MODP_6144",
    KeId.MODP_8192: "MODP_8192",
    KeId.ECP_256: "ECP_256",
    KeId.ECP_384: "ECP_384",
    KeId.ECP_521: "ECP_521",
    KeId.MODP_1024_160: "MODP_1024_160",
    KeId.MODP_2048_224: "MODP_2048_224",
    KeId.MODP_2048_256: "MODP_2048_256",
    KeId.ECP_192: "ECP_192",
    KeId.ECP_224: "ECP_224",
    KeId.BRAINPOOL_P224R1: "ECP_224_BP",
    KeId.BRAINPOOL_P256R1: "ECP_256_BP",
    KeId.BRAINPOOL_P384R1: "ECP_384_BP",
    KeId.BRAINPOOL_P512R1: "ECP_512_BP",
    KeId.CURVE25519: "CURVE_25519",
    KeId.CURVE448: "CURVE_448",
    KeId.ML_KEM_512: "ML_KEM_512",
    KeId.ML_KEM_768: "ML_KEM_768",
    KeId.ML_KEM_1024: "ML_KEM_1024",
}

_ESN_NAMES: dict[int, str] = {EsnId.NO_ESN: "NO_ESN", EsnId.ESN: "ESN"}

_KE_TYPES = frozenset({TransformType.KE, *range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)})

_NAMES_BY_TYPE: dict[int, dict[int, str]] = {
    TransformType.ENCR: _ENCR_NAMES,
    TransformType.INTEG: _INTEG_NAMES,
    TransformType.PRF: _PRF_NAMES,
    TransformType.KE: _KE_NAMES,
    TransformType.ESN: _ESN_NAMES,
}


def is_ke_type(transform_type: int) -> bool:
    """True for KE and ADDKE1..7 (RFC 9370 §2.2): they share the KE method ID space."""
    return transform_type in _KE_TYPES


@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """A transform attribute other than Key Length, kept verbatim (RFC 7296 §3.3.5).

    ``value`` is an ``int`` for TV-format attributes (AF bit set) and ``bytes`` for TLV-format ones.
    """

    type: int
    value: int | bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type < 0x8000:
            raise ValueError("attribute type is 15 bits")
        if isinstance(self.value, int) and not 0 <= self.value < 0x10000:
            raise ValueError("TV attribute value is 16 bits")
        if isinstance(self.value, bytes) and len(self.value) > 0xFFFF:
            raise ValueError("TLV attribute value longer than 65535 octets")


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform: type, transform ID, and the Key Length attribute in bits when present (§3.3.5).

    ``type`` is a :class:`TransformType` member, or a bare ``int`` for a type we do not know (kept so that a
    received SA payload survives a round trip). ``attributes`` holds any attribute besides Key Length.
    """

    type: TransformType | int
    id: int
    key_length: int | None = None
    attributes: tuple[TransformAttribute, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= int(self.type) < 256 or not 0 <= self.id < 0x10000:
            raise ValueError("transform type is one octet and transform ID two")
        if self.key_length is not None and not 0 <= self.key_length < 0x10000:
            raise ValueError("key length is 16 bits")

    @property
    def is_aead(self) -> bool:
        """True for a combined-mode (AEAD) encryption transform (RFC 5282)."""
        return self.type == TransformType.ENCR and self.id in AEAD_ENCR_IDS

    @property
    def name(self) -> str:
        """strongSwan-style display name without key length, e.g. ``AES_GCM_16`` or ``KE1_ML_KEM_768``."""
        return transform_display_name(self.type, self.id)

    def describe(self) -> str:
        """Display name with key length as `swanctl --list-sas` prints it, e.g. ``AES_CBC-256``."""
        if self.key_length is not None:
            return f"{self.name}-{self.key_length}"
        return self.name

    def with_type(self, transform_type: TransformType | int) -> Transform:
        """The same algorithm under another transform type (e.g. KE -> ADDKE2)."""
        new_type = lookup(TransformType, int(transform_type))
        return Transform(new_type, self.id, self.key_length, self.attributes)


def transform_display_name(transform_type: int, transform_id: int) -> str:
    """strongSwan-style name of ``transform_id`` in ``transform_type``; ``UNKNOWN_<type>_<id>`` otherwise."""
    prefix = ""
    table_type = transform_type
    if is_ke_type(transform_type) and transform_type != TransformType.KE:
        prefix = f"KE{transform_type - TransformType.ADDKE1 + 1}_"
        table_type = TransformType.KE
    names = _NAMES_BY_TYPE.get(table_type)
    if names is not None and transform_id in names:
        return prefix + names[transform_id]
    return f"{prefix}UNKNOWN_{transform_type}_{transform_id}"
