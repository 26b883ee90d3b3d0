"""Issue 13 S2 in the codec: what a payload declares can cost no more than its octets (RFC 7296 §3.2-§3.16),
Delete follows §3.11, and the exchange rules see the payload types before any body is decoded.

Every hostile chain of tests/wire/hostile.py either parses or raises a ParseError within a few milliseconds of
CPU time (``time.process_time``, the least of three runs), and the reported datagram no longer builds a
65,535-entry tuple from 8 octets.
"""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc

import pytest

from ikeguard.wire.errors import FieldError, LengthError, ParseError
from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, NotifyType, PayloadType, ProtocolId
from ikeguard.wire.message import MAX_CHAIN_PAYLOADS, decode_payloads, parse_message, scan_payloads
from ikeguard.wire.payloads import MAX_CP_ATTRIBUTES, DeletePayload
from ikeguard.wire.rules import MAX_OCCURRENCES, MessageRole, PayloadScreen, RuleError
from ikeguard.wire.sa import MAX_ATTRIBUTES, MAX_PROPOSALS, MAX_TRANSFORMS

from .hostile import MAX_UDP, chain, datagram, init_request_chains, the_reported_datagram, worst_case_chains

BOUND = 0.005
"""A few milliseconds of CPU for any datagram of at most 64 KiB (issue 13 S2)."""

PT = PayloadType


def _cpu(fn: object) -> float:
    def once() -> float:
        start = time.process_time()
        with contextlib.suppress(ParseError):
            fn()  # type: ignore[operator]
        return time.process_time() - start

    once()  # warm (first use of a code path imports and caches)
    return min(once() for _ in range(3))


# --- RFC 7296 §3.11 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "size", "count", "words"),
    [
        (1, 0, 0xFFFF, "names 65535 SPIs"),  # the report: SPI size 0, count 65535, no SPI octets
        (1, 4, 1, "SPI size 4 for protocol 1"),
        (3, 0, 5, "SPI size 0 for protocol 3"),
        (3, 8, 1, "SPI size 8 for protocol 3"),
        (2, 1, 4, "SPI size 1 for protocol 2"),
        (0, 0, 0, "protocol 0"),
        (9, 1, 4, "protocol 9"),
    ],
)
def test_delete_spi_size_and_count_follow_section_3_11(protocol: int, size: int, count: int,
                                                       words: str) -> None:
    body = struct.pack("!BBH", protocol, size, count) + bytes(size * count if size * count < 64 else 0)
    with pytest.raises(FieldError) as err:
        DeletePayload.decode_body(body, 100, False)
    assert words in str(err.value)


def test_valid_deletes_still_decode_and_the_constructor_refuses_what_the_decoder_refuses() -> None:
    assert DeletePayload.decode_body(bytes([1, 0, 0, 0]), 0, False) == DeletePayload(ProtocolId.IKE)
    esp = DeletePayload.decode_body(bytes([3, 4, 0, 2]) + b"\x01\x02\x03\x04\x05\x06\x07\x08", 0, False)
    assert esp.spis == (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    with pytest.raises(LengthError):  # count and octets must still agree
        DeletePayload.decode_body(bytes([3, 4, 0, 3]) + bytes(8), 0, False)
    for bad in (
        lambda: DeletePayload(ProtocolId.IKE, (b"\0\0\0\1",)),
        lambda: DeletePayload(ProtocolId.ESP, (), spi_size=0),
        lambda: DeletePayload(9),
    ):
        with pytest.raises(ValueError, match=r"RFC 7296 §3\.11"):
            bad()


def test_the_reported_datagram_costs_neither_time_nor_memory() -> None:
    data = the_reported_datagram()
    assert len(data) <= 1468
    with pytest.raises(ParseError):
        parse_message(data)
    assert _cpu(lambda: parse_message(data)) < BOUND
    tracemalloc.start()
    try:
        with pytest.raises(ParseError):
            parse_message(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak  # was ~100 MB


# --- every payload type: declared counts against real octets ------------------------------------------------


@pytest.mark.parametrize(("name", "first_and_chain"), sorted(worst_case_chains().items()))
def test_every_worst_case_chain_is_cheap_whether_it_parses_or_not(name: str, first_and_chain: tuple) -> None:  # type: ignore[type-arg]
    first, octets = first_and_chain
    for inner in (False, True):
        cost = _cpu(lambda inner=inner: decode_payloads(octets, first, HEADER_LEN, inner=inner))
        assert cost < BOUND, f"{name}: {cost * 1000:.2f} ms for {len(octets)} octets"


def test_a_chain_holds_at_most_max_chain_payloads() -> None:
    first, octets = chain([(200, b"")] * MAX_CHAIN_PAYLOADS)
    assert len(scan_payloads(octets, first)) == MAX_CHAIN_PAYLOADS
    first, octets = chain([(200, b"")] * (MAX_CHAIN_PAYLOADS + 1))
    with pytest.raises(FieldError, match=f"more than {MAX_CHAIN_PAYLOADS} payloads"):
        scan_payloads(octets, first)


def test_sa_and_cp_bounds_are_enforced_and_the_limits_themselves_pass() -> None:
    from tests.wire.hostile import _proposals

    def sa(octets: bytes) -> object:
        first, data = chain([(PT.SA, octets)])
        return decode_payloads(data, first)

    assert len(sa(_proposals(MAX_PROPOSALS, 1))[0].proposals) == MAX_PROPOSALS  # type: ignore[index,attr-defined]
    with pytest.raises(FieldError, match="proposals"):
        sa(_proposals(MAX_PROPOSALS + 1, 1))
    assert sa(_proposals(MAX_TRANSFORMS // 16, 16))
    with pytest.raises(FieldError, match=f"more than {MAX_TRANSFORMS} transforms"):
        sa(_proposals(MAX_TRANSFORMS // 16 + 1, 16))
    assert sa(_proposals(1, 1, MAX_ATTRIBUTES + 1))  # Key Length does not count among the others
    with pytest.raises(FieldError, match="transform attributes"):
        sa(_proposals(1, 1, MAX_ATTRIBUTES + 2))
    attr = b"\x00\x01\x00\x00"
    first, data = chain([(PT.CP, b"\x01\0\0\0" + attr * MAX_CP_ATTRIBUTES)])
    cp = decode_payloads(data, first)
    assert len(cp[0].attributes) == MAX_CP_ATTRIBUTES  # type: ignore[attr-defined]
    with pytest.raises(FieldError, match="CP attributes"):
        first, data = chain([(PT.CP, b"\x01\0\0\0" + attr * (MAX_CP_ATTRIBUTES + 1))])
        decode_payloads(data, first)


# --- the rules see types before bodies ----------------------------------------------------------------------


def _screen(exchange: ExchangeType = ExchangeType.IKE_SA_INIT) -> PayloadScreen:
    header = IkeHeader(b"\1" * 8, bytes(8), exchange, HeaderFlags.INITIATOR, 0)
    return PayloadScreen(header, MessageRole.REQUEST)


def test_a_disallowed_payload_is_refused_before_its_body_is_decoded() -> None:
    # The Delete body is malformed (the report's SPI size 0, count 65535): without the rules it is a
    # FieldError from the Delete decoder; with them, the IKE_SA_INIT request is refused for carrying a Delete.
    data = datagram(chain([(PT.DELETE, struct.pack("!BBH", 1, 0, 0xFFFF)), (PT.NONCE, bytes(16))]))
    with pytest.raises(FieldError, match="names 65535 SPIs"):
        parse_message(data)
    with pytest.raises(RuleError) as err:
        parse_message(data, screen=_screen().outer)
    assert err.value.violation.payload_type == PT.DELETE and "not allowed in IKE_SA_INIT" in str(err.value)
    assert err.value.notify == NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize(("ptype", "body"), [
    (PT.NOTIFY, struct.pack("!BBH", 0, 0, 16390)),
    (PT.VENDOR_ID, b"v"),
    (PT.CERTREQ, b"\x04" + bytes(20)),
])
def test_repeatable_payloads_are_counted_before_decoding(ptype: int, body: bytes) -> None:
    limit = MAX_OCCURRENCES[ptype]
    base = [(PT.SA, struct.pack("!BBHBBBB", 0, 0, 8, 1, 1, 0, 0)), (PT.KE, bytes(4)), (PT.NONCE, bytes(16))]
    parse_message(datagram(chain([*base, *[(ptype, body)] * limit])), screen=_screen().outer)
    with pytest.raises(RuleError, match=f"more than {limit}"):
        parse_message(datagram(chain([*base, *[(ptype, body)] * (limit + 1)])), screen=_screen().outer)


def test_inner_chain_is_screened_with_the_exchange_rules() -> None:
    screen = _screen(ExchangeType.INFORMATIONAL)
    screen.outer([PT.SK])
    first, octets = chain([(PT.DELETE, bytes([3, 4, 0, 0]))] * 21)
    with pytest.raises(RuleError, match="more than 20 DELETE payloads"):
        decode_payloads(octets, first, inner=True, screen=screen.inner)
    first, octets = chain([(PT.SA, b"garbage")])
    with pytest.raises(RuleError, match="SA payload not allowed in INFORMATIONAL"):
        decode_payloads(octets, first, inner=True, screen=screen.inner)


@pytest.mark.parametrize(("name", "first_and_chain"), sorted(init_request_chains().items()))
def test_hostile_ike_sa_init_requests_are_cheap_with_the_rules(name: str, first_and_chain: tuple) -> None:  # type: ignore[type-arg]
    data = datagram(first_and_chain)
    assert len(data) <= MAX_UDP
    cost = _cpu(lambda: parse_message(data, screen=_screen().outer))
    assert cost < BOUND, f"{name}: {cost * 1000:.2f} ms"
