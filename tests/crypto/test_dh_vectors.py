"""Key exchange known-answer tests: every case of tests/vectors/dh through ikeguard.crypto.dh."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from ikeguard.crypto import dh, registry
from ikeguard.crypto.errors import UnsupportedTransform
from ikeguard.wire.iana import KeId
from tests.crypto.vectorfiles import hx, load

RFC5903 = load("dh/rfc5903-ecp.json")["groups"]
XCURVES = load("dh/rfc7748-rfc8031-curve25519-448.json")["vectors"]
RFC5114 = load("dh/rfc5114-ecp-modp.json")["vectors"]


def ke_payload(method: int, ke_data: bytes) -> bytes:
    """Complete KE payload, last in its chain: next payload 0, flags 0, length, DH group, reserved (§3.4)."""
    return struct.pack("!BBHHH", 0, 0, 8 + len(ke_data), method, 0) + ke_data


@pytest.mark.parametrize("group", RFC5903, ids=lambda g: "rfc5903-" + g["section"])
def test_rfc5903_ecp_public_values_ke_payloads_and_shared_secret(group: dict[str, Any]) -> None:
    method = KeId(group["ike_group"])
    initiator = dh.EcpKeyExchange(method, private_value=int.from_bytes(hx(group["i"]), "big"))
    responder = dh.EcpKeyExchange(method, private_value=int.from_bytes(hx(group["r"]), "big"))
    assert initiator.public_value == hx(group["gix"]) + hx(group["giy"])
    assert responder.public_value == hx(group["grx"]) + hx(group["gry"])
    assert ke_payload(method, initiator.public_value) == hx(group["kei"])
    assert ke_payload(method, responder.public_value) == hx(group["ker"])
    # g^ir is the x coordinate only (RFC 5903 §7), from either side
    assert initiator.shared_secret(responder.public_value) == hx(group["girx"])
    ke_data, shared = responder.respond(initiator.public_value)
    assert (ke_data, shared) == (hx(group["grx"]) + hx(group["gry"]), hx(group["girx"]))
    assert registry.ke(method).shared_len == len(hx(group["girx"]))


@pytest.mark.parametrize("v", XCURVES, ids=lambda v: v["name"])
def test_rfc7748_rfc8031_x25519_x448(v: dict[str, Any]) -> None:
    method = KeId.CURVE25519 if v["method"] == "CURVE_25519" else KeId.CURVE448
    seed = hx(v["seed"])
    half = len(seed) // 2
    initiator = dh.MontgomeryKeyExchange(method, private_bytes=seed[:half])
    responder = dh.MontgomeryKeyExchange(method, private_bytes=seed[half:])
    assert initiator.public_value == hx(v["pub_i"])
    assert responder.public_value == hx(v["pub_r"])
    assert initiator.shared_secret(responder.public_value) == hx(v["shared"])
    assert responder.shared_secret(initiator.public_value) == hx(v["shared"])


ECP_5114 = {
    "ECP_192_BIT": KeId.ECP_192,
    "ECP_224_BIT": KeId.ECP_224,
    "ECP_256_BIT": KeId.ECP_256,
    "ECP_384_BIT": KeId.ECP_384,
    "ECP_521_BIT": KeId.ECP_521,
}
MODP_5114 = {
    "MODP_1024_160": KeId.MODP_1024_160,
    "MODP_2048_224": KeId.MODP_2048_224,
    "MODP_2048_256": KeId.MODP_2048_256,
}


@pytest.mark.parametrize("v", [v for v in RFC5114 if v["method"] in ECP_5114], ids=lambda v: v["name"])
def test_rfc5114_ecp_groups(v: dict[str, Any]) -> None:
    method = ECP_5114[v["method"]]
    seed = hx(v["seed"])
    half = len(seed) // 2
    initiator = dh.EcpKeyExchange(method, private_value=int.from_bytes(seed[:half], "big"))
    responder = dh.EcpKeyExchange(method, private_value=int.from_bytes(seed[half:], "big"))
    assert initiator.public_value == hx(v["pub_i"])
    assert responder.public_value == hx(v["pub_r"])
    assert initiator.shared_secret(responder.public_value) == hx(v["shared"])


@pytest.mark.parametrize("v", [v for v in RFC5114 if v["method"] in MODP_5114], ids=lambda v: v["name"])
def test_rfc5114_modp_subgroup_groups_are_not_offered(v: dict[str, Any]) -> None:
    """Groups 22-24 (RFC 8247 §2.4: MUST NOT / SHOULD NOT) are refused by name, never half-supported."""
    with pytest.raises(UnsupportedTransform):
        dh.new_key_exchange(MODP_5114[v["method"]])
    assert MODP_5114[v["method"]] not in dh.KE_METHODS


def test_every_rfc5114_case_is_covered() -> None:
    assert {v["method"] for v in RFC5114} == set(ECP_5114) | set(MODP_5114)
