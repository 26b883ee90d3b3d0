"""Value parsers (durations, sizes, traffic selectors, identities): round trips and precise errors."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.policy.identity import IdentityKind, Precedence, parse_identity
from ikeguard.policy.ts import TsKind, parse_ts
from ikeguard.policy.values import (
    DURATION_UNITS,
    format_duration,
    format_size,
    parse_duration,
    parse_host_port,
    parse_size,
)

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(st.integers(0, 10**6), st.sampled_from(["s", "m", "h", "d", ""]))
def test_duration_units(number: int, unit: str) -> None:
    assert parse_duration(f"{number}{unit}") == number * DURATION_UNITS[unit or "s"]


@FAST
@given(st.integers(0, 10**8))
def test_duration_format_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@FAST
@given(st.text(max_size=12).filter(lambda s: not s.strip().rstrip("smhd").strip().isdigit()))
def test_duration_garbage_is_a_precise_error(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like"):
        parse_duration(text)


@FAST
@given(st.integers(0, 10**15))
def test_size_format_round_trip(count: int) -> None:
    assert parse_size(format_size(count)) == count


def test_size_units_and_errors() -> None:
    assert parse_size("500M") == 500 * 1024**2 and parse_size("64g") == 64 * 1024**3
    for bad in ("1.5G", "-3", "12 parsecs", True):
        with pytest.raises(ValueError, match="expected a size"):
            parse_size(bad)


@FAST
@given(st.ip_addresses(v=4), st.integers(8, 32),
       st.sampled_from(["", "[tcp/8583]", "[udp]", "[tcp/1024-65535]"]))
def test_ipv4_selector_round_trip(address: ipaddress.IPv4Address, prefix: int, suffix: str) -> None:
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    spec = parse_ts(f"{network}{suffix}")
    assert spec.kind is TsKind.FIXED and spec.selector is not None
    assert spec.selector.start_address == network.network_address
    assert spec.selector.end_address == network.broadcast_address
    assert parse_ts(str(spec.selector)) == spec


@FAST
@given(st.ip_addresses(v=6), st.integers(16, 128))
def test_ipv6_selector_round_trip(address: ipaddress.IPv6Address, prefix: int) -> None:
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    spec = parse_ts(str(network))
    assert spec.selector is not None and spec.selector.version == 6
    assert parse_ts(str(spec.selector)) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.1/24", "host bits set"),
    ("10.0.0.0/24[tcpx/80]", "unknown protocol"),
    ("10.0.0.0/24[tcp/99999]", "invalid port range"),
    ("10.0.0.0/24[gre/80]", "ports are only meaningful"),
    ("ten.zero/8", "expected a traffic selector"),
])
def test_selector_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ts(text)


def test_special_selectors() -> None:
    assert parse_ts("dynamic").kind is TsKind.DYNAMIC
    peer = parse_ts("%peer[tcp/443]")
    assert peer.kind is TsKind.PEER and peer.protocol == 6 and peer.start_port == 443


LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)  # digits-only could be an IP


@FAST
@given(st.lists(LABEL, min_size=2, max_size=5), st.integers(0, 4))
def test_fqdn_wildcard_matches_exactly_one_label(labels: list[str], star: int) -> None:
    star %= len(labels)
    concrete = parse_identity(".".join(labels))
    pattern = parse_identity(".".join("*" if i == star else x for i, x in enumerate(labels)))
    assert pattern.is_pattern and pattern.precedence is Precedence.PATTERN
    assert pattern.matches(concrete)
    assert not pattern.matches(parse_identity(".".join(["extra", *labels])))
    assert parse_identity("@" + ".".join(labels)).matches(concrete)


def test_identity_kinds_and_matching() -> None:
    assert parse_identity("user@example.net").kind is IdentityKind.RFC822
    assert parse_identity("192.0.2.1").kind is IdentityKind.IPV4
    assert parse_identity("2001:db8::1").kind is IdentityKind.IPV6
    assert parse_identity("@#0a1B2c").kind is IdentityKind.KEY_ID
    assert parse_identity("%any").precedence is Precedence.ANY
    dn = parse_identity("CN=*, O=Merchants")
    assert dn.kind is IdentityKind.DN and dn.is_pattern
    assert dn.matches(parse_identity("CN=shop-1, O=Merchants"))
    assert dn.matches(parse_identity("O=Merchants, CN=shop-1"))  # either RDN order
    assert not dn.matches(parse_identity("CN=shop-1, O=Other"))
    assert not dn.matches(parse_identity("CN=shop-1, OU=x, O=Merchants"))
    assert parse_identity("%any").matches(parse_identity("gw.example"))
    assert not parse_identity("*.example").matches(parse_identity("*.example"))


@pytest.mark.parametrize(("text", "message"), [
    ("merchant*.example", "whole DNS label"),
    ("CN=shop*, O=M", "whole RDN value"),
    ("CN=gw, O", "expected TYPE=value"),
    ("@#abc", "even number of hex"),
    ("", "empty identity"),
    ("%anything", "expected an identity"),
])
def test_identity_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_identity(text)


def test_host_port() -> None:
    assert parse_host_port("127.0.0.1:6514") == ("127.0.0.1", 6514)
    assert parse_host_port("[2001:db8::1]:6514") == ("2001:db8::1", 6514)
    with pytest.raises(ValueError):
        parse_host_port("2001:db8::1:6514")


@FAST
@given(st.text(max_size=40))
def test_parsers_raise_only_value_error_on_garbage(text: str) -> None:
    for parser in (parse_identity, parse_ts, parse_duration, parse_size, parse_host_port):
        with contextlib.suppress(ValueError):
            parser(text)
