"""Virtual IP pools (engine/pools.py): leases per user, offline leases kept for their user, exhaustion,
IPv6, RADIUS-assigned addresses, persistence round trip."""

from __future__ import annotations

import ipaddress

from ikeguard.engine.pools import AddressPool, PoolSettings

ip = ipaddress.ip_address


def pool(cidr: str) -> AddressPool:
    return AddressPool(PoolSettings("p", ipaddress.ip_network(cidr)))


def test_same_user_same_address_and_offline_lease_kept() -> None:
    p = pool("203.0.113.64/29")  # .65 - .70
    a = p.acquire("alice")
    assert a == ip("203.0.113.65")
    assert p.acquire("alice") == a  # a second SA of alice: the same address
    p.release(a)
    assert p.acquire("bob") == ip("203.0.113.66")  # alice's offline lease is not handed out first
    assert p.acquire("alice") == a


def test_exhausted_then_oldest_offline_lease_reused() -> None:
    p = pool("203.0.113.64/30")  # .65, .66
    first, second = p.acquire("a"), p.acquire("b")
    assert (first, second) == (ip("203.0.113.65"), ip("203.0.113.66"))
    assert p.acquire("c") is None  # every address online
    p.release(first)
    assert p.acquire("c") == first  # a's offline lease is the only free address
    assert p.acquire("a") is None


def test_single_address_and_ipv6() -> None:
    assert pool("203.0.113.70/32").acquire("x") == ip("203.0.113.70")
    six = pool("2001:db8:0:c::/126")
    assert [six.acquire(u) for u in "abcd"] == [ip(f"2001:db8:0:c::{i}") for i in range(4)]
    assert six.acquire("e") is None


def test_radius_address_honoured_unless_taken() -> None:
    p = pool("203.0.113.64/29")
    assert p.acquire("alice", ip("203.0.113.69")) == ip("203.0.113.69")
    assert p.acquire("bob", ip("203.0.113.69")) is None


def test_persistence_round_trip() -> None:
    p = pool("203.0.113.64/29")
    p.acquire("alice")
    saved = p.leases()
    again = pool("203.0.113.64/29")
    again.restore(saved)
    assert again.acquire("bob") == ip("203.0.113.66")
    assert again.acquire("alice") == ip("203.0.113.65")


def test_a_lease_stays_online_until_its_last_ike_sa_lets_go() -> None:
    """Re-authentication with make-before-break (or unique = replace): the new IKE SA takes alice's address
    before the old one is deleted; the old one's release must not put it offline, where another user could
    be given the address alice still uses."""
    p = pool("203.0.113.64/30")  # .65, .66
    old_sa = p.acquire("alice")
    new_sa = p.acquire("alice")
    assert old_sa == new_sa == ip("203.0.113.65")
    assert p.release(old_sa) is False  # the new IKE SA still holds it
    assert p.acquire("bob") == ip("203.0.113.66")
    assert p.acquire("carol") is None  # exhausted: alice's address is online, not offline
    assert p.release(new_sa) is True
    assert p.acquire("carol") == ip("203.0.113.65")
