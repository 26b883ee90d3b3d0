"""What the wire layer memoises gives what it would compute: the exchange rules' verdict
(wire/rules.check_payload_types) for any payload lists, twice in a row, a chain too long for the memo still
checked; an SA payload's octets (wire/sa: transform lists encoded once) for any proposals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, PayloadType
from ikeguard.wire.rules import _MEMO_TYPES, MessageRole, _memo_verdict, _verdict, check_payload_types
from ikeguard.wire.sa import SaPayload, _encode_transforms
from tests.wire.strategies import sa_payloads

TYPES = st.sampled_from([*map(int, PayloadType), 0, 1, 200, 255])
EXCHANGES = st.sampled_from([*map(int, ExchangeType), 0, 99])


def _header(exchange: int, response: bool) -> IkeHeader:
    flags = HeaderFlags.RESPONSE if response else HeaderFlags(0)
    return IkeHeader(b"\x01" * 8, b"\x02" * 8, exchange, flags, 1)


@settings(max_examples=400, deadline=None)
@given(EXCHANGES, st.booleans(), st.sampled_from(list(MessageRole)), st.lists(TYPES, max_size=30),
       st.none() | st.lists(TYPES, max_size=30))
def test_memoised_verdict_is_the_rules_verdict(exchange: int, response: bool, role: MessageRole,
                                               outer: list[int], inner: list[int] | None) -> None:
    header = _header(exchange, response)
    expected = _verdict(exchange, response, role, tuple(outer), None if inner is None else tuple(inner))
    for _ in range(2):  # the second answer comes from the memo when the chain is short enough
        assert check_payload_types(header, role, outer, inner) == expected


def test_a_long_chain_is_checked_without_the_memo() -> None:
    """A chain longer than ``_MEMO_TYPES`` is neither looked up nor stored (a peer's long lists cannot fill
    the memo with large keys), and still gets its verdict."""
    outer = [int(PayloadType.SK)]
    inner = [int(PayloadType.NOTIFY)] * (_MEMO_TYPES + 1) + [int(PayloadType.SA)] * 2
    header = _header(ExchangeType.INFORMATIONAL, False)
    before = _memo_verdict.cache_info()
    violation = check_payload_types(header, MessageRole.REQUEST, outer, inner)
    after = _memo_verdict.cache_info()
    assert violation is not None and "SA" in violation.reason
    assert (after.hits, after.misses) == (before.hits, before.misses)
    short = check_payload_types(header, MessageRole.REQUEST, outer, inner[-3:])
    assert short == violation and _memo_verdict.cache_info().misses + _memo_verdict.cache_info().hits > (
        after.hits + after.misses)  # a short chain goes through the memo


@settings(max_examples=300, deadline=None)
@given(sa_payloads)
def test_sa_payload_octets_are_the_same_with_the_transform_memo(payload: SaPayload) -> None:
    first, again = payload.encode_body(), payload.encode_body()
    assert first == again
    offset = 0
    for proposal in payload.proposals:  # each proposal's transforms as encoded without the memo
        header = 8 + len(proposal.spi)
        length = int.from_bytes(first[offset + 2:offset + 4], "big")
        assert first[offset + header:offset + length] == _encode_transforms(proposal.transforms)
        offset += length
    assert offset == len(first)
