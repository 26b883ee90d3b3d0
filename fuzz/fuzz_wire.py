"""Coverage-guided fuzz target (atheris) for the wire decoder (RFC 7296 §3, RFC 7383, RFC 3948).

The first input octet chooses what the rest is: a whole message (parsed, then rebuilt: the rebuild must
parse to the same message), a decrypted payload chain (its first type in the second octet), a port-4500
datagram, a message checked against the exchange rules before its bodies are decoded, or an SK/SKF message
opened with a test protector. Only ``ParseError`` (the codec's own error) may come out, and each input must
stay within the CPU bound (fuzz/common.py).

    python fuzz/fuzz_wire.py [libFuzzer flags] [corpus dirs]     # `make fuzz` runs it with fuzz/corpus/wire
"""

from __future__ import annotations

import contextlib
import sys

import common  # sets sys.path for tests.*; first, before the project's imports
from tests.wire.protectors import IntegrityFailure, NullProtector

from ikeguard.wire.errors import ParseError
from ikeguard.wire.header import decode_header
from ikeguard.wire.message import decode_payloads, encode_message, parse_message
from ikeguard.wire.natt import classify_udp4500
from ikeguard.wire.rules import MessageRole, PayloadScreen
from ikeguard.wire.sk import assemble_fragments, decode_encrypted_message, open_fragment

ALLOWED = (ParseError, IntegrityFailure)
"""The codec's own error, and the test protector's ICV failure (a real one raises CryptoError in crypto/)."""
_PROTECTOR = NullProtector(block=4)


def _whole(data: bytes) -> None:
    try:
        message = parse_message(data)
    except ParseError:
        return
    rebuilt = encode_message(message)
    if parse_message(rebuilt) != message:
        raise AssertionError(f"rebuild of {data.hex()} parses differently")


def _screened(data: bytes) -> None:
    header = decode_header(data)[0]
    for role in MessageRole:
        with contextlib.suppress(ParseError):
            parse_message(data, screen=PayloadScreen(header, role).outer)


def _sealed(data: bytes) -> None:
    with contextlib.suppress(*ALLOWED):
        decode_encrypted_message(data, _PROTECTOR)
    fragment = open_fragment(data, _PROTECTOR)
    if fragment.total == 1:
        assemble_fragments([fragment])


MODES = (
    _whole,
    lambda data: decode_payloads(data[1:], data[0] if data else 0, inner=True),
    classify_udp4500,
    _screened,
    _sealed,
)


def one_input(data: bytes) -> None:
    """One fuzz input: mode octet, then the octets that mode reads."""
    if not data:
        return
    mode = MODES[data[0] % len(MODES)]
    body = data[1:]
    what = f"wire mode {data[0] % len(MODES)}"
    common.within_bound(lambda: common.timed(lambda: mode(body), ALLOWED), what)


if __name__ == "__main__":
    common.run_target(one_input, sys.argv)
