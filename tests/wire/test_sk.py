"""SK and SKF framing: AAD contract, lengths, fragments; test protector and ikeguard.crypto ciphers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.crypto.errors import IntegrityError
from ikeguard.crypto.random import DeterministicRandom
from ikeguard.crypto.registry import encr, integ
from ikeguard.crypto.sk import AeadSkProtector, CbcHmacSkProtector
from ikeguard.wire.errors import FieldError, ParseError, UnsupportedCriticalPayload
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import (
    AuthMethod,
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from ikeguard.wire.message import encode_payloads, parse_message
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    DeletePayload,
    IdiPayload,
    NotifyPayload,
    SkfPayload,
    SkPayload,
)
from ikeguard.wire.sk import (
    SKF_HEADER_LEN,
    assemble_fragments,
    decode_encrypted_message,
    encode_encrypted_message,
    encode_fragments,
    open_fragment,
)

from . import strategies as s
from .pcap import read_udp
from .protectors import IntegrityFailure, NullProtector

HEADER = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
INNER: tuple[Payload, ...] = (
    IdiPayload(IdType.FQDN, b"merchant-a.example"),
    CertPayload(4, bytes(range(256)) * 6),
    AuthPayload(AuthMethod.DIGITAL_SIGNATURE, b"\x0a" * 100),
    NotifyPayload(NotifyType.INITIAL_CONTACT),
)


def test_encrypted_message_lengths_and_aad_follow_the_contract() -> None:
    protector = NullProtector(block=16)
    data = encode_encrypted_message(HEADER, INNER, protector)
    assert int.from_bytes(data[24:28], "big") == len(data)
    assert data[16] == PayloadType.SK
    assert data[HEADER_LEN] == PayloadType.IDI  # SK's Next Payload = first inner payload
    assert int.from_bytes(data[HEADER_LEN + 2 : HEADER_LEN + 4], "big") == len(data) - HEADER_LEN
    # the AAD handed to seal() is exactly every octet before the IV
    (aad,) = protector.sealed_aads
    assert aad == data[: HEADER_LEN + 4]
    msg = decode_encrypted_message(data, protector)
    assert msg.header == HEADER
    assert msg.inner == INNER
    assert msg.content == INNER
    assert isinstance(msg.sk, SkPayload)


def test_any_change_before_or_inside_the_body_is_caught_by_the_protector() -> None:
    protector = NullProtector()
    data = bytearray(encode_encrypted_message(HEADER, INNER, protector))
    for position in (0, 19, 27, HEADER_LEN + 1, len(data) - 20, len(data) - 1):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises((IntegrityFailure, ParseError)):
            decode_encrypted_message(bytes(tampered), protector)


def test_message_without_sk_cannot_be_decrypted() -> None:
    plain = encode_payloads([NotifyPayload(NotifyType.COOKIE, b"12345678")])
    data = HEADER.encode(plain[0], HEADER_LEN + len(plain[1])) + plain[1]
    with pytest.raises(FieldError, match="no SK payload"):
        decode_encrypted_message(data, NullProtector())


def test_unknown_critical_payload_inside_sk_is_reported_with_its_type() -> None:
    protector = NullProtector()
    inner_chain = bytes([PayloadType.NONE, 0x80, 0, 6]) + b"\xaa\xbb"
    body_len = len(inner_chain) + protector.overhead(len(inner_chain))
    aad = HEADER.encode(PayloadType.SK, HEADER_LEN + 4 + body_len) + bytes([201, 0, 0, 4 + body_len])
    data = aad + protector.seal(aad, inner_chain)
    with pytest.raises(UnsupportedCriticalPayload) as err:
        decode_encrypted_message(data, protector)
    assert err.value.payload_type == 201
    assert err.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD


@pytest.mark.parametrize("block", [1, 8, 16])
@pytest.mark.parametrize("max_size", [200, 576, 1280])
def test_fragments_fit_the_size_and_reassemble(block: int, max_size: int) -> None:
    protector = NullProtector(block=block)
    fragments = encode_fragments(HEADER, INNER, protector, max_size)
    assert len(fragments) > 1
    assert all(len(f) <= max_size for f in fragments)
    # RFC 7383 §2.5: only fragment 1 names the first inner payload; all carry the header's message ID
    opened = [open_fragment(f, protector) for f in fragments]
    assert [f.number for f in opened] == list(range(1, len(fragments) + 1))
    assert {f.total for f in opened} == {len(fragments)}
    assert opened[0].first_payload == PayloadType.IDI and all(f.first_payload == 0 for f in opened[1:])
    for raw in fragments:
        msg = parse_message(raw)
        assert msg.header.message_id == 1 and isinstance(msg.payloads[-1], SkfPayload)
    reassembled = assemble_fragments(list(reversed(opened)))
    assert reassembled.inner == INNER
    assert reassembled.header == HEADER
    # AAD of each fragment includes Fragment Number and Total Fragments
    assert all(
        aad == raw[: HEADER_LEN + SKF_HEADER_LEN]
        for aad, raw in zip(protector.sealed_aads, fragments, strict=True)
    )


def test_missing_or_inconsistent_fragments_are_refused() -> None:
    protector = NullProtector()
    opened = [open_fragment(f, protector) for f in encode_fragments(HEADER, INNER, protector, 300)]
    with pytest.raises(FieldError):
        assemble_fragments(opened[:-1])
    with pytest.raises(FieldError):
        assemble_fragments(opened + opened[:1])
    with pytest.raises(FieldError):
        assemble_fragments([])


def test_fragment_size_too_small_for_any_data_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no room"):
        encode_fragments(HEADER, INNER, NullProtector(), HEADER_LEN + SKF_HEADER_LEN + 10)


@settings(max_examples=80, derandomize=True, deadline=None)
@given(
    inner=st.lists(s.plain_payloads, max_size=5), block=st.sampled_from([1, 16]), size=st.integers(120, 900)
)
def test_encrypt_decrypt_and_fragment_round_trip(inner: list[Payload], block: int, size: int) -> None:
    protector = NullProtector(block=block)
    data = encode_encrypted_message(HEADER, inner, protector)
    assert decode_encrypted_message(data, protector).inner == tuple(inner)
    opened = [open_fragment(f, protector) for f in encode_fragments(HEADER, inner, protector, size)]
    assert assemble_fragments(opened).inner == tuple(inner)


# --- with ikeguard.crypto's protectors --------------------------------------------------------------------


def _real_protectors() -> list[tuple[str, object]]:
    rng = DeterministicRandom(7)
    gcm = encr(EncrId.AES_GCM_16, 256)
    cbc = encr(EncrId.AES_CBC, 128)
    sha = integ(IntegId.HMAC_SHA2_256_128)
    chacha = encr(EncrId.CHACHA20_POLY1305)
    return [
        ("aes256gcm16", AeadSkProtector(gcm, bytes(range(gcm.keymat_len)), rng)),
        ("chacha20poly1305", AeadSkProtector(chacha, bytes(range(chacha.keymat_len)), rng)),
        ("aes128-sha256", CbcHmacSkProtector(cbc, sha, bytes(16), bytes(range(32)), rng)),
    ]


@pytest.mark.parametrize(
    ("name", "protector"), _real_protectors(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_real_sk_ciphers_round_trip_messages_and_fragments(name: str, protector: object) -> None:
    data = encode_encrypted_message(HEADER, INNER, protector)  # type: ignore[arg-type]
    assert decode_encrypted_message(data, protector).inner == INNER  # type: ignore[arg-type]
    frags = encode_fragments(HEADER, INNER, protector, 500)  # type: ignore[arg-type]
    assert all(len(f) <= 500 for f in frags)
    opened = [open_fragment(f, protector) for f in frags]  # type: ignore[arg-type]
    assert assemble_fragments(opened).inner == INNER
    tampered = bytearray(data)
    tampered[18] ^= 0x40  # exchange type: covered by the AAD
    with pytest.raises(IntegrityError):
        decode_encrypted_message(bytes(tampered), protector)  # type: ignore[arg-type]


def test_rfc7634_ikev2_example_decrypts_through_our_framing(vectors_dir: Path) -> None:
    ex = json.loads((vectors_dir / "esp" / "rfc7634-chacha20-poly1305.json").read_text())["ikev2_example"]
    data = bytes.fromhex(ex["aad"] + ex["iv"] + ex["ciphertext_and_tag"])
    protector = AeadSkProtector(
        encr(EncrId.CHACHA20_POLY1305), bytes.fromhex(ex["sk_e"]), DeterministicRandom(1)
    )
    msg = decode_encrypted_message(data, protector)
    assert msg.header.exchange_type == ExchangeType.INFORMATIONAL and msg.header.message_id == 9
    assert msg.inner == (NotifyPayload(NotifyType.SET_WINDOW_SIZE, b"\x00\x00\x00\x0a"),)


def test_wireshark_aes_ccm_informational_exchange_decrypts(vectors_dir: Path) -> None:
    doc = json.loads((vectors_dir / "ikev2-sk" / "wireshark-aes128ccm12-informational.json").read_text())
    frames = {f["n"]: bytes.fromhex(f["ether_frame"])[42:] for f in doc["frames"]}
    ccm = encr(EncrId.AES_CCM_12, 128)
    rng = DeterministicRandom(2)
    request = decode_encrypted_message(frames[3], AeadSkProtector(ccm, bytes.fromhex(doc["sk_ei"]), rng))
    assert request.header.exchange_type == ExchangeType.INFORMATIONAL and not request.header.is_response
    assert request.inner == (DeletePayload(ProtocolId.IKE),)
    response = decode_encrypted_message(frames[4], AeadSkProtector(ccm, bytes.fromhex(doc["sk_er"]), rng))
    assert response.header.is_response and response.inner == ()
    with pytest.raises(IntegrityError):  # the responder's key does not open the request
        decode_encrypted_message(frames[3], AeadSkProtector(ccm, bytes.fromhex(doc["sk_er"]), rng))


def _pi2_keys(vectors_dir: Path) -> tuple[bytes, bytes]:
    for line in (vectors_dir / "tcpdump-ipsec" / "ikev2pI2-secrets.txt").read_text().splitlines():
        fields = line.split()
        if fields[:2] == ["ikev2", "I"]:
            sha1 = bytes.fromhex(fields[4].split(":0x")[1])
            aes = bytes.fromhex(fields[5].split(":0x")[1])
            return aes, sha1
    raise AssertionError("no initiator keys")


def test_ikev2pi2_is_rejected_for_its_bad_integrity_checksum_and_decrypts_with_its_keys(
    vectors_dir: Path,
) -> None:
    datagrams = read_udp(vectors_dir / "tcpdump-ipsec" / "ikev2pI2.pcap")
    data = datagrams[1].payload
    sk_ei, sk_ai = _pi2_keys(vectors_dir)
    cbc, sha1 = encr(EncrId.AES_CBC, 128), integ(IntegId.HMAC_SHA1_96)
    protector = CbcHmacSkProtector(cbc, sha1, sk_ei, sk_ai, DeterministicRandom(3))
    outer = parse_message(data)
    sk = outer.sk
    assert sk is not None and sk.critical  # Openswan set the C bit on SK; it is a known type
    assert data[-12:].hex() == "e5119d72d74e695b1032b957"
    with pytest.raises(IntegrityError):
        decode_encrypted_message(data, protector)
    # The ICV over exactly our AAD || IV || ct is the one tshark computes (README): our framing is right,
    # the capture's checksum is wrong. With that ICV in place the message opens with the published keys.
    correct_icv = sha1.compute(sk_ai, data[:-12])
    assert correct_icv.hex() == "579ae74ad294a105b0b6f1c4"
    msg = decode_encrypted_message(data[:-12] + correct_icv, protector)
    assert msg.header.exchange_type == ExchangeType.IKE_AUTH
    idi, auth = msg.inner or ()
    assert isinstance(idi, IdiPayload) and (idi.id_type, idi.data) == (IdType.FQDN, b"west")
    assert isinstance(auth, AuthPayload) and auth.method == AuthMethod.RSA_SIG and auth.data == bytes(192)
