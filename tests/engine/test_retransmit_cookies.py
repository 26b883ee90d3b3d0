"""Retransmission schedule (strongSwan-like back-off), message ID window and RFC 7296 §2.6 cookies."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikeguard.engine.cookies import CookieJar
from ikeguard.engine.retransmit import CachedResponse, MessageIdWindow, RetransmitPolicy


def test_default_schedule_matches_strongswan() -> None:
    policy = RetransmitPolicy()
    delays = [round(policy.delay(n, 0.0), 1) for n in range(policy.tries + 1)]
    assert delays == [4.0, 7.2, 13.0, 23.3, 42.0, 75.6]
    assert round(sum(delays), 1) == 165.1


@given(st.integers(0, 10), st.floats(0, 0.999))
def test_jitter_only_shortens_and_limit_caps(attempt: int, fraction: float) -> None:
    policy = RetransmitPolicy(jitter_percent=20, limit=60)
    plain = min(4.0 * 1.8**attempt, 60)
    assert plain * 0.8 - 1e-9 <= policy.delay(attempt, fraction) <= plain


def test_window_classifies_requests() -> None:
    window = MessageIdWindow()
    assert window.classify_request(0, b"a") == "new"
    assert window.classify_request(1, b"a") == "future"
    window.expected_peer_id = 1
    window.cached = CachedResponse(0, b"req0", [b"resp0"])
    assert window.classify_request(0, b"req0") == "retransmit"
    assert window.classify_request(0, b"other") == "stale"
    assert window.classify_request(1, b"x") == "new"


def test_cookie_round_trip_and_binding() -> None:
    jar = CookieJar(os.urandom, period=60)
    cookie = jar.make(b"n" * 32, "192.0.2.1", b"s" * 8, now=0)
    assert jar.verify(cookie, b"n" * 32, "192.0.2.1", b"s" * 8, now=1)
    assert not jar.verify(cookie, b"n" * 32, "192.0.2.2", b"s" * 8, now=1)
    assert not jar.verify(cookie, b"m" * 32, "192.0.2.1", b"s" * 8, now=1)
    assert not jar.verify(cookie[:-1], b"n" * 32, "192.0.2.1", b"s" * 8, now=1)


@pytest.mark.parametrize(("rotations", "valid"), [(1, True), (2, False)])
def test_cookie_survives_one_rotation_only(rotations: int, valid: bool) -> None:
    jar = CookieJar(os.urandom, period=60)
    cookie = jar.make(b"n", "198.51.100.7", b"12345678", now=0)
    now = 0.0
    for _ in range(rotations):
        now += 61
        jar.make(b"x", "198.51.100.9", b"87654321", now=now)
    assert jar.verify(cookie, b"n", "198.51.100.7", b"12345678", now=now) is valid
