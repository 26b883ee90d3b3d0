"""Transform registry: lookups, sizes, capability and legacy marks, typed errors."""

from __future__ import annotations

import pytest

from ikeguard.crypto import registry
from ikeguard.crypto.errors import UnsupportedTransform
from ikeguard.crypto.registry import Capability
from ikeguard.wire.iana import EncrId, IntegId, KeId, PrfId, TransformType


def test_aead_key_material_includes_the_salt() -> None:
    """RFC 5282 §7.1 (GCM 4, CCM 3 octets of salt), RFC 7634 §2 (ChaCha20-Poly1305: 32 + 4)."""
    assert registry.encr(EncrId.AES_GCM_16, 256).keymat_len == 36
    assert registry.encr(EncrId.AES_GCM_16, 128).keymat_len == 20
    assert registry.encr(EncrId.AES_CCM_12, 128).keymat_len == 19
    assert registry.encr(EncrId.CHACHA20_POLY1305).keymat_len == 36
    cbc = registry.encr(EncrId.AES_CBC, 192)
    assert (cbc.keymat_len, cbc.iv_len, cbc.block_size, cbc.aead) == (24, 16, 16, False)


def test_generic_lookup_by_type_id_and_key_length() -> None:
    assert registry.lookup(TransformType.ENCR, EncrId.AES_GCM_16, 128).name == "aes128gcm16"
    assert registry.lookup(TransformType.PRF, PrfId.HMAC_SHA2_384).name == "prfsha384"
    assert registry.lookup(TransformType.INTEG, IntegId.HMAC_SHA2_512_256).name == "sha512"
    assert registry.lookup(TransformType.KE, KeId.CURVE25519).name == "x25519"
    assert registry.encr(EncrId.CHACHA20_POLY1305, 256).legacy  # strongSwan "chacha20poly1305compat"
    assert registry.lookup(TransformType.ADDKE1, KeId.ECP_384).name == "ecp384"
    assert registry.by_name("aes256gcm16")[1] is registry.encr(20, 256)


@pytest.mark.parametrize(
    ("ttype", "tid", "bits"),
    [(TransformType.ENCR, EncrId.AES_GCM_16, None), (TransformType.ENCR, EncrId.AES_CBC, 512),
     (TransformType.ENCR, EncrId.TRIPLE_DES, None), (TransformType.ENCR, EncrId.CHACHA20_POLY1305, 128),
     (TransformType.PRF, PrfId.HMAC_MD5, None), (TransformType.INTEG, IntegId.HMAC_MD5_96, None),
     (TransformType.INTEG, IntegId.NONE, None), (TransformType.KE, KeId.MODP_1024, None),
     (TransformType.PRF, PrfId.HMAC_SHA2_256, 256), (TransformType.ESN, 0, None), (99, 1, None)],
)  # fmt: skip
def test_unsupported_combinations_raise_a_typed_error(ttype: int, tid: int, bits: int | None) -> None:
    with pytest.raises(UnsupportedTransform):
        registry.lookup(ttype, tid, bits)
    assert not registry.supports(ttype, tid, bits)


def test_legacy_marks() -> None:
    legacy = {t.name for _, t in registry.all_transforms() if t.legacy}
    assert {"modp2048", "modp3072", "modp4096", "sha1", "aesxcbc", "prfsha1", "prfaesxcbc"} <= legacy
    modern = {"aes256gcm16", "aes128gcm16", "chacha20poly1305", "aes256", "sha256", "sha384", "prfsha384",
              "ecp256", "ecp384", "x25519"}  # fmt: skip
    assert not modern & legacy


def test_capabilities() -> None:
    for ttype, t in registry.all_transforms():
        if ttype != TransformType.KE:
            assert Capability.IKE in t.capabilities  # type: ignore[union-attr]
    assert Capability.ESP_XFRM in registry.encr(EncrId.AES_GCM_16, 256).capabilities
    assert registry.encr(EncrId.AES_GCM_16, 256).xfrm_name == "rfc4106(gcm(aes))"
    assert Capability.ESP_USERSPACE not in registry.prf(PrfId.HMAC_SHA2_256).capabilities


def test_names_are_unique() -> None:
    names = [t.name for _, t in registry.all_transforms()]
    assert len(names) == len(set(names))
