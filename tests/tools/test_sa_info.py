"""vici list-sas answers become IkeSaInfo/ChildSaInfo whose proposal strings ikeguard's own parser accepts."""

from __future__ import annotations

import pytest

from ikeguard.wire.iana import ProtocolId
from ikeguard.wire.proposal_string import parse_proposal
from tests.harness.sa_info import IkeSaInfo, proposal_keyword

# Shape and values as charon 5.9 sends them over vici (all values are bytes, TS are lists).
RAW_IKE = {
    b"uniqueid": b"3",
    b"version": b"2",
    b"state": b"ESTABLISHED",
    b"local-host": b"192.0.2.2",
    b"local-port": b"4500",
    b"local-id": b"client.ss-lab.example",
    b"remote-host": b"192.0.2.1",
    b"remote-port": b"4500",
    b"remote-id": b"gw.ss-lab.example",
    b"initiator": b"yes",
    b"initiator-spi": b"8f2c33e8a1b0c4d2",
    b"responder-spi": b"00000000000000ff",
    b"nat-remote": b"yes",
    b"nat-any": b"yes",
    b"encr-alg": b"AES_GCM_16",
    b"encr-keysize": b"256",
    b"prf-alg": b"PRF_HMAC_SHA2_384",
    b"dh-group": b"ECP_384",
    b"established": b"12",
    b"rekey-time": b"14000",
    b"child-sas": {
        b"net-5": {
            b"name": b"net",
            b"uniqueid": b"5",
            b"reqid": b"1",
            b"state": b"INSTALLED",
            b"mode": b"TUNNEL",
            b"protocol": b"ESP",
            b"encap": b"yes",
            b"spi-in": b"c1a2b3c4",
            b"spi-out": b"0000abcd",
            b"encr-alg": b"AES_CBC",
            b"encr-keysize": b"128",
            b"integ-alg": b"HMAC_SHA2_256_128",
            b"dh-group": b"CURVE_25519",
            b"esn": b"1",
            b"bytes-in": b"840",
            b"packets-in": b"10",
            b"bytes-out": b"420",
            b"packets-out": b"5",
            b"rekey-time": b"3000",
            b"life-time": b"3600",
            b"install-time": b"12",
            b"local-ts": [b"198.51.100.128/25"],
            b"remote-ts": [b"198.51.100.0/25"],
        },
    },
}


def _str_keys(value: object) -> object:
    if isinstance(value, dict):
        return {k.decode(): _str_keys(v) for k, v in value.items()}
    return value


def test_parse_ike_and_child() -> None:
    sa = IkeSaInfo.parse("ikg", _str_keys(RAW_IKE))  # type: ignore[arg-type]
    assert (sa.name, sa.uniqueid, sa.state, sa.initiator) == ("ikg", 3, "ESTABLISHED", True)
    assert (sa.initiator_spi, sa.responder_spi) == (0x8F2C33E8A1B0C4D2, 0xFF)
    assert sa.nat_remote and not sa.nat_local and not sa.nat_fake
    assert sa.proposal == "aes256gcm16-prfsha384-ecp384"
    child = sa.child("net")
    assert (child.spi_in, child.spi_out, child.encap, child.esn) == (0xC1A2B3C4, 0xABCD, True, True)
    assert (child.bytes_in, child.packets_in, child.bytes_out, child.packets_out) == (840, 10, 420, 5)
    assert child.local_ts == ("198.51.100.128/25",) and child.remote_ts == ("198.51.100.0/25",)
    assert child.proposal == "aes128-sha256-curve25519-esn"
    with pytest.raises(KeyError):
        sa.child("net", state="REKEYED")
    assert "raw" not in repr(child)


@pytest.mark.parametrize(
    ("ike", "esp", "configured_ike", "configured_esp"),
    [
        (
            ("AES_GCM_16", 256, None, "PRF_HMAC_SHA2_384", "ECP_384"),
            ("AES_GCM_16", 256, None, "ECP_384"),
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16-ecp384",
        ),
        (
            ("AES_CBC", 128, "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048"),
            ("AES_CBC", 256, "HMAC_SHA2_512_256", None),
            "aes128-sha256-modp2048",
            "aes256-sha512",
        ),
        (
            ("CHACHA20_POLY1305", None, None, "PRF_HMAC_SHA2_512", "CURVE_25519"),
            ("AES_GCM_12", 128, None, "ECP_256_BP"),
            "chacha20poly1305-prfsha512-x25519",
            "aes128gcm12-ecp256bp",
        ),
    ],
)
def test_proposal_strings_mean_what_was_configured(
    ike: tuple[str, int | None, str | None, str | None, str],
    esp: tuple[str, int | None, str | None, str | None],
    configured_ike: str,
    configured_esp: str,
) -> None:
    """The negotiated-proposal string the harness prints parses (ikeguard's swanctl parser) to the config."""
    encr, size, integ, prf, dh = ike
    ike_text = "-".join(
        p
        for p in (
            proposal_keyword("encr", encr, size),
            proposal_keyword("integ", integ),
            proposal_keyword("prf", prf),
            proposal_keyword("dh", dh),
        )
        if p
    )
    assert parse_proposal(ike_text, ProtocolId.IKE) == parse_proposal(configured_ike, ProtocolId.IKE)
    e_encr, e_size, e_integ, e_dh = esp
    esp_text = "-".join(
        p
        for p in (
            proposal_keyword("encr", e_encr, e_size),
            proposal_keyword("integ", e_integ),
            proposal_keyword("dh", e_dh),
        )
        if p
    )
    assert parse_proposal(esp_text, ProtocolId.ESP) == parse_proposal(configured_esp, ProtocolId.ESP)
