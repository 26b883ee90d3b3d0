"""service/addresses.py: netlink address-event counting and the kernel's view of what is local."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from ikeguard.service.addresses import RTM_DELADDR, RTM_NEWADDR, address_events, address_is_local

RTM_NEWLINK = 16


def _nlmsg(kind: int, payload: bytes = b"") -> bytes:
    body = struct.pack("=IHHII", 16 + len(payload), kind, 0, 0, 0) + payload
    return body + b"\0" * (-len(body) % 4)


def test_counts_only_address_messages_across_a_multipart_datagram() -> None:
    datagram = _nlmsg(RTM_NEWADDR, b"x" * 9) + _nlmsg(RTM_NEWLINK, b"y" * 4) + _nlmsg(RTM_DELADDR)
    assert address_events(datagram) == 2
    assert address_events(_nlmsg(RTM_NEWLINK)) == 0


@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_raise_and_count_at_most_one_per_header(data: bytes) -> None:
    assert 0 <= address_events(data) <= len(data) // 16


@given(st.lists(st.tuples(st.sampled_from([RTM_NEWADDR, RTM_DELADDR, RTM_NEWLINK, 24, 3]),
                          st.binary(max_size=40)), max_size=12),
       st.binary(max_size=15))
def test_counts_exactly_the_address_messages_of_any_well_formed_datagram(
        messages: list[tuple[int, bytes]], tail: bytes) -> None:
    # the tail is shorter than a header: the walk stops there
    datagram = b"".join(_nlmsg(kind, payload) for kind, payload in messages) + tail
    assert address_events(datagram) == sum(kind in (RTM_NEWADDR, RTM_DELADDR) for kind, _ in messages)


def test_a_truncated_or_zero_length_header_stops_the_walk() -> None:
    assert address_events(_nlmsg(RTM_DELADDR)[:10]) == 0
    assert address_events(struct.pack("=IHHII", 0, RTM_NEWADDR, 0, 0, 0) + _nlmsg(RTM_DELADDR)) == 0


def test_loopback_is_local_and_a_documentation_address_is_not() -> None:
    assert address_is_local(ipaddress.ip_address("127.0.0.1"))
    assert not address_is_local(ipaddress.ip_address("203.0.113.254"))
