"""PRF and INTEG known-answer tests: tests/vectors/prf (RFC 4868, RFC 3566/4434) via the registry."""

from __future__ import annotations

from typing import Any

import pytest

from ikeguard.crypto import keymat, registry, xcbc
from ikeguard.wire.iana import IntegId, PrfId
from tests.crypto.vectorfiles import hx, load

RFC4868 = load("prf/rfc4868-hmac-sha2.json")["vectors"]
XCBC = load("prf/rfc3566-rfc4434-aes-xcbc.json")["vectors"]

PRF_IDS = {
    "PRF_HMAC_SHA2_256": PrfId.HMAC_SHA2_256,
    "PRF_HMAC_SHA2_384": PrfId.HMAC_SHA2_384,
    "PRF_HMAC_SHA2_512": PrfId.HMAC_SHA2_512,
    "PRF_AES128_XCBC": PrfId.AES128_XCBC,
}
INTEG_IDS = {
    "AUTH_HMAC_SHA2_256_128": IntegId.HMAC_SHA2_256_128,
    "AUTH_HMAC_SHA2_384_192": IntegId.HMAC_SHA2_384_192,
    "AUTH_HMAC_SHA2_512_256": IntegId.HMAC_SHA2_512_256,
    "AUTH_AES_XCBC_96": IntegId.AES_XCBC_96,
}


def _check(v: dict[str, Any]) -> None:
    if v["type"] == "prf_test_vector_t":
        assert keymat.prf(PRF_IDS[v["alg"]], hx(v["key"]), hx(v["seed"])) == hx(v["out"])
    else:
        assert v["type"] == "signer_test_vector_t"
        algorithm = registry.integ(INTEG_IDS[v["alg"]])
        mac = hx(v["mac"])
        assert algorithm.compute(hx(v["key"]), hx(v["data"])) == mac
        assert algorithm.verify(hx(v["key"]), hx(v["data"]), mac)
        tampered = bytes([mac[0] ^ 1]) + mac[1:]
        assert not algorithm.verify(hx(v["key"]), hx(v["data"]), tampered)


@pytest.mark.parametrize("v", RFC4868, ids=lambda v: v["name"])
def test_rfc4868_hmac_sha2_prf_and_truncated_integ(v: dict[str, Any]) -> None:
    _check(v)


@pytest.mark.parametrize("v", XCBC, ids=lambda v: v["name"])
def test_rfc3566_rfc4434_aes_xcbc(v: dict[str, Any]) -> None:
    _check(v)


def test_rfc4868_sizes() -> None:
    """RFC 4868 §2: key = hash output, ICV = half of it; PRF output = full hash."""
    for integ_id, key_len, icv_len in ((12, 32, 16), (13, 48, 24), (14, 64, 32)):
        algorithm = registry.integ(integ_id)
        assert (algorithm.key_len, algorithm.icv_len) == (key_len, icv_len)
    for prf_id, out in ((5, 32), (6, 48), (7, 64)):
        assert registry.prf(prf_id).output_len == out


def test_xcbc_rejects_wrong_mac_key_length() -> None:
    with pytest.raises(ValueError, match="128-bit"):
        xcbc.xcbc_mac(b"\x00" * 15, b"data")
