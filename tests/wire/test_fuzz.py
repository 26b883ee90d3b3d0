"""Mutated real captures and random bytes never raise anything but the codec's ParseError (seeded, CI-stable).

Budgets (datagrams per target) add up to 120k; the whole file runs in a few seconds. Every datagram that
does parse must also survive a rebuild: parse(encode(parse(x))) == parse(x).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import CfgType, ExchangeType, NotifyType, ProtocolId
from ikeguard.wire.message import Message, decode_payloads, encode_message, encode_payloads, parse_message
from ikeguard.wire.natt import classify_udp4500
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import CfgAttribute, CpPayload, DeletePayload, EapPayload, NotifyPayload
from ikeguard.wire.sk import (
    decode_encrypted_message,
    encode_encrypted_message,
    encode_fragments,
    open_fragment,
)
from ikeguard.wire.ts import RawSelector, TrafficSelector, TsiPayload, TsrPayload

from .protectors import IntegrityFailure, NullProtector
from .test_captures import IKEV2_CAPTURES, ike_messages

BUDGET_CAPTURES = 70_000
BUDGET_INNER = 30_000
BUDGET_SEALED = 10_000
BUDGET_RANDOM = 10_000

_INTERESTING_U16 = (0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 0x7FFF, 0x8000, 0xFFFF)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, bytes, 16-bit length-like values, cuts, inserts, duplicates."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(out)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            out[pos] = rng.choice((0, 0xFF, 0x80, rng.randrange(256)))
        elif op == 2 and n > 1:
            value = rng.choice(_INTERESTING_U16) if rng.random() < 0.7 else rng.randrange(0x10000)
            out[pos : pos + 2] = value.to_bytes(2, "big")
        elif op == 3:
            del out[rng.randrange(n + 1) :]
        elif op == 4:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 24)))
        elif op == 5 and n:
            end = min(n, pos + rng.randint(1, 40))
            del out[pos:end]
        elif op == 6 and n:
            end = min(n, pos + rng.randint(1, 40))
            out[pos:pos] = out[pos:end]
        elif op == 7 and n > 28:
            # keep the header Length consistent so the payload chain is what gets exercised
            out[24:28] = len(out).to_bytes(4, "big")
        elif op == 8 and n:
            out[pos] = rng.choice(
                (0, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53, 200)
            )
    if rng.random() < 0.5 and len(out) >= 28:
        out[24:28] = len(out).to_bytes(4, "big")
    return bytes(out)


def _check_parses_or_parse_error(parse: Callable[[bytes], object], data: bytes, label: str) -> object | None:
    try:
        return parse(data)
    except ParseError:
        return None
    except Exception as exc:  # pragma: no cover - a failure report
        pytest.fail(f"{label}: {type(exc).__name__}: {exc} for input {data.hex()}")


@pytest.fixture(scope="module")
def capture_corpus(vectors_dir: Path) -> list[bytes]:
    return [
        data for folder, name, _n in IKEV2_CAPTURES for _d, data in ike_messages(vectors_dir / folder / name)
    ]


def _built_inner_chains() -> list[tuple[int, bytes]]:
    chains: list[tuple[Payload, ...]] = [
        (
            TsiPayload(
                (TrafficSelector.from_network("192.0.2.0/24", 6, (80, 443)), RawSelector(10, b"\x00label"))
            ),
            TsrPayload((TrafficSelector.from_network("2001:db8::/32"),)),
        ),
        (
            CpPayload(CfgType.REQUEST, (CfgAttribute(1), CfgAttribute(8, bytes(17)))),
            EapPayload(b"\x02\x07\x00\x09\x01user"),
        ),
        (
            DeletePayload(ProtocolId.ESP, (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")),
            NotifyPayload(NotifyType.COOKIE2, b"x" * 8),
        ),
    ]
    return [encode_payloads(c) for c in chains]


def _scapy_inner_chains(vectors_dir: Path) -> list[tuple[int, bytes]]:
    doc = json.loads((vectors_dir / "scapy-ikev2" / "ikev2_nat_t-frames.json").read_text())
    out = []
    for f in doc["frames"]:
        if f["i"] < 0:
            frame = bytes.fromhex(f["ether_frame"])
            ip = frame[14:]
            udp = ip[(ip[0] & 0x0F) * 4 :]
            ike = udp[12 : int.from_bytes(udp[4:6], "big")]  # after the UDP header and non-ESP marker
            out.append((ike[16], ike[HEADER_LEN:]))
    return out


def test_mutated_captures_only_raise_parse_error(capture_corpus: list[bytes]) -> None:
    rng = random.Random(0x1CE)
    parsed_ok = 0
    for i in range(BUDGET_CAPTURES):
        data = mutate(capture_corpus[i % len(capture_corpus)], rng)
        msg = _check_parses_or_parse_error(parse_message, data, f"capture mutation {i}")
        if isinstance(msg, Message):
            parsed_ok += 1
            assert parse_message(encode_message(msg)) == msg
    # the mutator must leave a fair share parseable, or the rebuild property was barely tested
    assert parsed_ok > BUDGET_CAPTURES // 20


def test_mutated_decrypted_chains_only_raise_parse_error(vectors_dir: Path) -> None:
    corpus = _scapy_inner_chains(vectors_dir) + _built_inner_chains()
    rng = random.Random(0x5EED)
    parsed_ok = 0
    for i in range(BUDGET_INNER):
        first, chain = corpus[i % len(corpus)]
        data = mutate(chain, rng)
        if rng.random() < 0.2:
            first = rng.randrange(256)
        payloads = _check_parses_or_parse_error(
            functools.partial(decode_payloads, first_type=first, inner=True),
            data,
            f"inner mutation {i} first={first}",
        )
        if isinstance(payloads, tuple):
            parsed_ok += 1
            again_first, again = encode_payloads(payloads)
            assert decode_payloads(again, again_first, inner=True) == payloads
    assert parsed_ok > BUDGET_INNER // 20


def test_mutated_plaintext_under_a_valid_icv_only_raises_parse_error(vectors_dir: Path) -> None:
    """What an authenticated but buggy or hostile peer can send: the ICV checks, the content is broken."""
    corpus = _scapy_inner_chains(vectors_dir) + _built_inner_chains()
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    protector = NullProtector(block=16)
    rng = random.Random(0xACE)
    for i in range(BUDGET_SEALED):
        first, chain = corpus[i % len(corpus)]
        plaintext = mutate(chain, rng)
        sk_len = 4 + len(plaintext) + protector.overhead(len(plaintext))
        aad = header.encode(46, HEADER_LEN + sk_len) + bytes([first, 0]) + sk_len.to_bytes(2, "big")
        data = aad + protector.seal(aad, plaintext)
        _check_parses_or_parse_error(lambda d: decode_encrypted_message(d, protector), data, f"sealed {i}")
    # and whole encrypted messages / fragments mutated on the wire: ParseError or the protector's ICV error
    inner = decode_payloads(corpus[0][1], corpus[0][0], inner=True)
    wire = [
        encode_encrypted_message(header, inner, protector),
        *encode_fragments(header, inner, protector, 400),
    ]
    for i in range(BUDGET_SEALED // 2):
        data = mutate(wire[i % len(wire)], rng)
        opener = open_fragment if data[16:17] == b"\x35" else decode_encrypted_message
        with contextlib.suppress(ParseError, IntegrityFailure):
            opener(data, protector)


def test_random_bytes_only_raise_parse_error() -> None:
    rng = random.Random(0xB17E)
    for i in range(BUDGET_RANDOM):
        size = rng.choice((0, 1, 3, 4, 8, 27, 28, 29, 40, 100, 500))
        body = bytes(rng.randrange(256) for _ in range(size))
        if size >= 28 and rng.random() < 0.8:
            # a plausible header so the payload walker sees the random part
            body = body[:16] + bytes([rng.choice((33, 34, 40, 41, 46, 53)), 0x20]) + body[18:24]
            body += len(body).to_bytes(4, "big") if len(body) == 24 else b""
            body = body[:24] + size.to_bytes(4, "big") + body[28:]
        _check_parses_or_parse_error(parse_message, body, f"random {i}")
        _check_parses_or_parse_error(classify_udp4500, body, f"udp4500 {i}")
