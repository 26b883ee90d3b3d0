"""The vici codec: strongSwan's README encoding example byte for byte, agreement with the ``vici`` package's
own encoder/decoder (strongSwan's Python client), and bounded refusal of malformed input, fuzzed with
more than 10,000 inputs (random bytes, mutations of valid packets, adversarial shapes)."""

from __future__ import annotations

import contextlib
import random
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vici.protocol import Message, Packet

from ikeguard.control.vici_codec import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_SEGMENT,
    PacketType,
    ViciDecodeError,
    decode_message,
    decode_packet,
    encode_message,
    encode_packet,
    segment_length,
)

# README "Encoding example": key1 = value1, section1 { sub-section { key2 = value2 } list1 = [item1, item2] }
README_EXAMPLE = bytes([
    3, 4, *b"key1", 0, 6, *b"value1",
    1, 8, *b"section1",
    1, 11, *b"sub-section",
    3, 4, *b"key2", 0, 6, *b"value2",
    2,
    4, 5, *b"list1",
    5, 0, 5, *b"item1",
    5, 0, 5, *b"item2",
    6,
    2,
])
README_TREE = {"key1": b"value1",
               "section1": {"sub-section": {"key2": b"value2"}, "list1": [b"item1", b"item2"]}}


def test_readme_example_decodes_and_encodes_byte_for_byte() -> None:
    assert decode_message(README_EXAMPLE) == README_TREE
    assert encode_message(README_TREE) == README_EXAMPLE


def test_agrees_with_the_vici_package_both_ways() -> None:
    tree = {"up": "yes", "ikg": {"uniqueid": "3", "child-sas": {"net-4": {"spi-in": "c1a2b3c4",
                                                                          "local-ts": ["10.0.0.0/24"]}},
                                 "tasks-queued": []}}
    ours = encode_message(tree)
    assert ours == Message.serialize(tree)
    assert decode_message(ours) == _bytes(tree)
    request = Packet.request("list-sas", Message.serialize({"ike": "ikg"}))
    packet = decode_packet(request)
    assert (packet.type, packet.name, packet.message) == (PacketType.CMD_REQUEST, "list-sas", {"ike": b"ikg"})
    segment = encode_packet(PacketType.EVENT, {"ikg": {"state": "ESTABLISHED"}}, "list-sa")
    parsed = Packet.parse(segment[4:])
    assert parsed.event_type == b"list-sa"
    assert Message.deserialize(parsed.payload) == {"ikg": {"state": b"ESTABLISHED"}}
    assert struct.unpack("!I", segment[:4])[0] == len(segment) - 4


def _bytes(tree: object) -> object:
    if isinstance(tree, dict):
        return {k: _bytes(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [str(v).encode() for v in tree]
    return str(tree).encode()


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty packet"),
    (bytes([9]), "unknown packet type"),
    (bytes([0]), "truncated: name length missing"),
    (bytes([0, 5, *b"abc"]), "name shorter"),
    (bytes([0, 3, *b"abc", 3, 1, *b"k", 0, 5, *b"v"]), "value shorter"),
    (bytes([0, 3, *b"abc", 1, 1, *b"s"]), "section not closed"),
    (bytes([0, 3, *b"abc", 2]), "section end without a section"),
    (bytes([0, 3, *b"abc", 4, 1, *b"l", 5, 0, 1, *b"x"]), "list not closed"),
    (bytes([0, 3, *b"abc", 4, 1, *b"l", 3, 1, *b"k", 0, 0, 6]), "only list items"),
    (bytes([0, 3, *b"abc", 5, 0, 0]), "outside a list"),
    (bytes([0, 3, *b"abc", 3, 1, *b"k", 0, 0, 3, 1, *b"k", 0, 0]), "duplicate name"),
    (bytes([0, 3, *b"abc", 3, 0, 0, 0]), "empty name"),
    (bytes([0, 3, *b"abc", 3, 1, 0xFF, 0, 0]), "not ASCII"),
    (bytes([0, 3, *b"abc", 3, 1, 0x0A, 0, 0]), "control characters"),
    (bytes([0, 3, *b"abc", 77]), "unknown element type"),
])
def test_malformed_packets_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ViciDecodeError, match=reason):
        decode_packet(data)


def test_segment_lengths_are_bounded() -> None:
    assert segment_length(struct.pack("!I", 12)) == 12
    assert segment_length(struct.pack("!I", MAX_SEGMENT)) == MAX_SEGMENT
    for bad in (0, MAX_SEGMENT + 1, 0xFFFFFFFF):
        with pytest.raises(ViciDecodeError):
            segment_length(struct.pack("!I", bad))
    with pytest.raises(ViciDecodeError):
        segment_length(b"\0\0")


def test_deep_nesting_and_huge_lists_are_refused_quickly() -> None:
    deep = bytes([0, 1, *b"x"]) + b"".join(bytes([1, 1, *b"s"]) for _ in range(MAX_DEPTH + 1))
    deep += bytes([2]) * (MAX_DEPTH + 1)
    with pytest.raises(ViciDecodeError, match="nested deeper"):
        decode_packet(deep)
    at_limit = bytes([0, 1, *b"x"]) + bytes([1, 1, *b"s"]) * MAX_DEPTH + bytes([2]) * MAX_DEPTH
    assert decode_packet(at_limit).name == "x"
    # a 512 KiB segment of empty list items: 170,000 elements, over the element bound
    items = bytes([5, 0, 0]) * ((MAX_SEGMENT - 20) // 3)
    huge = bytes([0, 1, *b"x", 4, 1, *b"l"]) + items + bytes([6])
    start = time.process_time()
    with pytest.raises(ViciDecodeError, match=f"more than {MAX_ELEMENTS} elements"):
        decode_packet(huge)
    with pytest.raises(ViciDecodeError, match="larger than 512 KiB"):
        decode_packet(bytes([0, 1, *b"x"]) + bytes(MAX_SEGMENT))
    assert time.process_time() - start < 1.0


def _valid_samples() -> list[bytes]:
    return [
        bytes([0, 8, *b"list-sas"]) + encode_message({"ike": "ikg", "ike-id": "3"}),
        bytes([3, 7, *b"list-sa"]),
        bytes([0, 9, *b"load-conn"]) + encode_message(
            {"c": {"local_addrs": ["192.0.2.1"], "local": {"auth": "psk", "id": "a"},
                   "children": {"net": {"local_ts": ["10.0.0.0/24"], "esp_proposals": ["aes256gcm16"]}}}}),
        bytes([0, 7, *b"version"]),
        bytes([0, 3, *b"abc"]) + README_EXAMPLE,
    ]


def test_fuzz_more_than_ten_thousand_inputs_only_decode_or_refuse() -> None:
    """12,000 inputs: random bytes, bit flips / truncations / insertions of valid packets, random element
    streams. Each either decodes to a tree whose re-encoding decodes to the same tree, or raises
    ViciDecodeError; nothing else escapes, and the whole run stays within a CPU budget."""
    rng = random.Random(0x51C1)  # fixed seed: a failure is reproducible
    samples = _valid_samples()
    decoded = refused = 0
    start = time.process_time()
    for i in range(12_000):
        mode = i % 4
        if mode == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        elif mode == 1:
            data = bytearray(rng.choice(samples))
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
            data = bytes(data)
        elif mode == 2:
            base = rng.choice(samples)
            cut = rng.randrange(len(base) + 1)
            data = base[:cut] + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 4))) + base[cut:][:8]
        else:
            parts = [bytes([0, 1, *b"x"])]
            for _ in range(rng.randrange(0, 40)):
                kind = rng.randrange(0, 8)
                name = bytes(rng.choice(b"abc-_") for _ in range(rng.randrange(0, 3)))
                value = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 3)))
                if kind in (1, 4):
                    parts.append(bytes([kind, len(name)]) + name)
                elif kind == 3:
                    parts.append(bytes([3, len(name)]) + name + struct.pack("!H", len(value)) + value)
                elif kind == 5:
                    parts.append(bytes([5]) + struct.pack("!H", len(value)) + value)
                else:
                    parts.append(bytes([kind]))
            data = b"".join(parts)
        try:
            packet = decode_packet(data)
        except ViciDecodeError:
            refused += 1
            continue
        decoded += 1
        assert decode_message(encode_message(packet.message)) == packet.message
    assert decoded + refused == 12_000 and decoded > 100 and refused > 5_000
    assert time.process_time() - start < 30


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hypothesis_any_bytes_decode_or_refuse(data: bytes) -> None:
    with contextlib.suppress(ViciDecodeError):
        decode_packet(data)
