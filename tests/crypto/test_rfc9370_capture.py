"""RFC 9370 key derivation against strongSwan 6.1: the values its charon logged at level 4 for an ECDH P-384 +
ML-KEM-768 IKE SA and a Child SA rekey with IKE_FOLLOWUP_KE (tests/vectors/strongswan61/README.md), recomputed
with ikeguard's key schedule (crypto/keymat.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ikeguard.crypto.keymat import (
    derive_child_keymat,
    derive_ike_keys,
    derive_rekey_skeyseed,
    derive_skeyseed,
)
from ikeguard.wire.iana import PrfId

PRF = PrfId.HMAC_SHA2_384
GCM256_KEYMAT = 36  # AES-256 key + 4-octet salt (RFC 4106)


def _load(vectors_dir: Path) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads((vectors_dir / "strongswan61" / "rfc9370-keys-capture.json").read_text())  # type: ignore[type-arg]
    assert data["prf"] == "PRF_" + PRF.name
    return data


def _sk_d(skeyseed: bytes, nonces: bytes, spi_i: bytes, spi_r: bytes) -> bytes:
    keys = derive_ike_keys(PRF, skeyseed, nonces[:32], nonces[32:], spi_i, spi_r, GCM256_KEYMAT, 0)
    return bytes(keys.sk_d)


def test_ike_intermediate_key_update_matches_strongswan(vectors_dir: Path) -> None:
    v = _load(vectors_dir)
    spi_i, spi_r = bytes.fromhex(v["spi_i"]), bytes.fromhex(v["spi_r"])
    init = v["ike_sa_init"]
    nonces = bytes.fromhex(init["nonces"])
    skeyseed = derive_skeyseed(PRF, nonces[:32], nonces[32:], bytes.fromhex(init["g_ir"]))
    assert skeyseed.hex() == init["skeyseed"]
    sk_d0 = _sk_d(skeyseed, nonces, spi_i, spi_r)
    assert sk_d0.hex() == init["sk_d"]
    # RFC 9370 §2.2.2: SKEYSEED(1) = prf(SK_d(0), SK(1) | Ni | Nr), then the SK_* again with the same SPIs
    add = v["ike_intermediate_addke1"]
    assert add["nonces"] == init["nonces"]
    k = bytes.fromhex(add["ml_kem_shared"])
    skeyseed1 = derive_rekey_skeyseed(PRF, sk_d0, k, nonces[:32], nonces[32:])
    assert skeyseed1.hex() == add["skeyseed"]
    assert _sk_d(skeyseed1, nonces, spi_i, spi_r).hex() == add["sk_d"]


def test_child_rekey_with_followup_keymat_matches_strongswan(vectors_dir: Path) -> None:
    v = _load(vectors_dir)
    sk_d = bytes.fromhex(v["ike_intermediate_addke1"]["sk_d"])
    child = v["child_rekey_followup"]
    nonces = bytes.fromhex(child["nonces"])
    g_ir, k = bytes.fromhex(child["g_ir"]), bytes.fromhex(child["ml_kem_shared"])
    assert child["seed"] == (g_ir + nonces + k).hex()  # RFC 9370 §2.2.4: the additional secret after Ni | Nr
    keymat = derive_child_keymat(PRF, sk_d, nonces[:32], nonces[32:], 2 * GCM256_KEYMAT, g_ir, k)
    assert bytes(keymat[:GCM256_KEYMAT]).hex() == child["encr_i"]
    assert bytes(keymat[GCM256_KEYMAT:]).hex() == child["encr_r"]
