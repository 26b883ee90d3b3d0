"""IKEv2 KDF known-answer tests: every case of tests/vectors/ikev2-kdf through ikeguard.crypto.keymat."""

from __future__ import annotations

from typing import Any

import pytest

from ikeguard.crypto import keymat, registry
from ikeguard.crypto.registry import PrfAlgorithm
from ikeguard.wire.iana import PrfId
from tests.crypto.vectorfiles import hx, load

SP800_135 = load("ikev2-kdf/sp800-135-ikev2-kdf.json")["vectors"]
STRONGSWAN = load("ikev2-kdf/strongswan-cavp-ikev2-skeyseed-prfplus.json")["vectors"]

# SHA-224 has no IKEv2 PRF transform; NIST's vector goes through the same keymat code with an HMAC-SHA-224
# PRF object (registry.hmac_prf), so prf+, SKEYSEED, child KEYMAT and rekey logic are still exercised.
HASH_TO_PRF: dict[str, int | PrfAlgorithm] = {
    "SHA-1": PrfId.HMAC_SHA1,
    "SHA-224": registry.hmac_prf("sha224"),
    "SHA-256": PrfId.HMAC_SHA2_256,
    "SHA-384": PrfId.HMAC_SHA2_384,
    "SHA-512": PrfId.HMAC_SHA2_512,
}
SS_PRF = {
    "PRF_HMAC_SHA2_256": PrfId.HMAC_SHA2_256,
    "PRF_HMAC_SHA2_384": PrfId.HMAC_SHA2_384,
    "PRF_HMAC_SHA2_512": PrfId.HMAC_SHA2_512,
}


def _prf_id(v: dict[str, Any]) -> int | PrfAlgorithm:
    if v.get("prf") == "PRF_AES128_XCBC":
        return PrfId.AES128_XCBC
    if v["hash"] not in HASH_TO_PRF:
        pytest.fail(f"vector {v['id']} uses {v['hash']}, which IKEv2 has no PRF transform for")
    return HASH_TO_PRF[v["hash"]]


@pytest.mark.parametrize("v", SP800_135, ids=lambda v: v["id"])
def test_sp800_135_skeyseed_dkm_child_and_rekey(v: dict[str, Any]) -> None:
    prf_id = _prf_id(v)
    ni, nr, gir, spii, spir = (hx(v[k]) for k in ("ni", "nr", "gir", "spii", "spir"))
    skeyseed = keymat.derive_skeyseed(prf_id, ni, nr, gir)
    assert skeyseed == hx(v["skeyseed"])
    n = v["dkm_len_bytes"]
    assert keymat.prf_plus(prf_id, skeyseed, ni + nr + spii + spir, n) == hx(v["dkm"])
    sk_d_len = registry.prf(prf_id).key_len
    sk_d = hx(v["dkm"])[:sk_d_len]
    if "dkm_child" in v:
        child_len = v.get("dkm_child_len_bytes", n)
        assert keymat.derive_child_keymat(prf_id, sk_d, ni, nr, child_len) == hx(v["dkm_child"])
    if "dkm_child_dh" in v:
        child_len = v.get("dkm_child_len_bytes", n)
        got = keymat.derive_child_keymat(prf_id, sk_d, ni, nr, child_len, g_ir=hx(v["gir_new"]))
        assert got == hx(v["dkm_child_dh"])
    if "skeyseed_rekey" in v:
        rekey = keymat.derive_rekey_skeyseed(prf_id, sk_d, hx(v["gir_new"]), ni, nr)
        assert rekey == hx(v["skeyseed_rekey"])


@pytest.mark.parametrize("v", SP800_135, ids=lambda v: v["id"])
def test_sp800_135_dkm_splits_into_sk_keys(v: dict[str, Any]) -> None:
    """derive_ike_keys cuts the same DKM into SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr."""
    prf_id = _prf_id(v)
    ni, nr, spii, spir = (hx(v[k]) for k in ("ni", "nr", "spii", "spir"))
    dkm = hx(v["dkm"])
    prf_len = registry.prf(prf_id).key_len
    integ_len = 16
    encr_len = (len(dkm) - 3 * prf_len - 2 * integ_len) // 2
    keys = keymat.derive_ike_keys(prf_id, hx(v["skeyseed"]), ni, nr, spii, spir, encr_len, integ_len)
    parts = [keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr]
    joined = b"".join(parts)
    assert joined == dkm[: len(joined)]
    assert [len(p) for p in parts] == [prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len]


@pytest.mark.parametrize("v", STRONGSWAN, ids=lambda v: v["name"])
def test_strongswan_cavp_skeyseed_and_prf_plus(v: dict[str, Any]) -> None:
    prf_id = SS_PRF[v["arg.prf"]]
    out = hx(v["out"])
    if v["alg"] == "KDF_PRF":  # key = g^ir, salt = Ni | Nr
        salt = hx(v["salt"])
        half = len(salt) // 2
        assert keymat.derive_skeyseed(prf_id, salt[:half], salt[half:], hx(v["key"])) == out
    else:
        assert v["alg"] == "KDF_PRF_PLUS"
        assert keymat.prf_plus(prf_id, hx(v["key"]), hx(v["salt"]), len(out)) == out


def test_prf_plus_refuses_more_than_255_blocks() -> None:
    keymat.prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", 255 * 32)
    with pytest.raises(ValueError, match="prf"):
        keymat.prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", 255 * 32 + 1)
