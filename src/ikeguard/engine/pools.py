"""Virtual IP address pools for remote-access peers (RFC 7296 §3.15, §2.19), as strongSwan's ``pools``.

A pool hands out addresses of one network (network and broadcast addresses excluded for IPv4). A lease is
keyed by the user (the EAP identity, else the authenticated IKE identity): the same user gets the same
address again, also after its IKE SA went away (an offline lease), as long as nobody else needed it. A lease
counts the IKE SAs holding it: a re-authentication with make-before-break or ``unique = replace`` has the new
IKE SA take the address before the old one lets it go, so it stays online (and is never given to another
user) until the last holder releases it.
A new user takes a never-used address first, then the oldest offline lease of someone else. When every
address is online the pool is exhausted and the caller answers INTERNAL_ADDRESS_FAILURE.
Pure state, no I/O: the service may persist ``leases()`` and give them back with ``restore()``.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PoolSettings:
    """One ``[pools.NAME]``: the addresses and the attributes sent with them."""

    name: str
    network: Network
    dns: tuple[Address, ...] = ()


@dataclass
class AddressPool:
    """Leases of one pool."""

    settings: PoolSettings
    _by_user: dict[str, Address] = field(default_factory=dict)
    _online: dict[Address, str] = field(default_factory=dict)
    _offline: OrderedDict[Address, str] = field(default_factory=OrderedDict)  # oldest first
    _holds: dict[Address, int] = field(default_factory=dict)  # online address -> IKE SAs holding it
    _next: int = 0  # index of the next never-used address

    @property
    def name(self) -> str:
        return self.settings.name

    def _host(self, index: int) -> Address | None:
        net = self.settings.network
        first = 1 if net.version == 4 and net.prefixlen < 31 else 0
        last = net.num_addresses - (1 if net.version == 4 and net.prefixlen < 31 else 0)
        if first + index >= last:
            return None
        return net.network_address + first + index

    def acquire(self, user: str, wanted: Address | None = None) -> Address | None:
        """An address for ``user`` (``wanted``: one RADIUS assigned, if it is free); None: exhausted."""
        if wanted is not None:
            owner = self._online.get(wanted)
            if owner is not None and owner != user:
                return None
            self._take(wanted, user)
            return wanted
        known = self._by_user.get(user)
        if known is not None and self._online.get(known, user) == user:
            self._take(known, user)
            return known
        while (candidate := self._host(self._next)) is not None:
            self._next += 1
            if candidate not in self._online and candidate not in self._offline:
                self._take(candidate, user)
                return candidate
        if self._offline:
            address, previous = next(iter(self._offline.items()))
            self._by_user.pop(previous, None)
            self._take(address, user)
            return address
        return None

    def _take(self, address: Address, user: str) -> None:
        self._offline.pop(address, None)
        old = self._by_user.get(user)
        if old is not None and old != address and self._online.get(old) == user:
            del self._online[old]
            self._holds.pop(old, None)
        if self._online.get(address) != user:
            self._holds.pop(address, None)
        self._online[address] = user
        self._holds[address] = self._holds.get(address, 0) + 1
        self._by_user[user] = address

    def release(self, address: Address) -> bool:
        """One IKE SA holding ``address`` is gone; when it was the last, the lease goes offline (kept for the
        same user). True when it went offline."""
        holds = self._holds.get(address, 0) - 1
        if holds > 0:
            self._holds[address] = holds
            return False
        self._holds.pop(address, None)
        user = self._online.pop(address, None)
        if user is not None:
            self._offline[address] = user
        return user is not None

    def online(self) -> dict[Address, str]:
        """Addresses in use and their users."""
        return dict(self._online)

    def status(self) -> list[tuple[str, str, bool]]:
        """Every lease as (address, user, online), online first (swanctl --list-pools --leases)."""
        return ([(str(a), u, True) for a, u in self._online.items()]
                + [(str(a), u, False) for a, u in self._offline.items()])

    def leases(self) -> dict[str, str]:
        """Every lease, online or offline, as user -> address text (for persistence)."""
        return {user: str(addr) for user, addr in self._by_user.items()}

    def restore(self, leases: dict[str, str]) -> None:
        """Offline leases from a previous run (the users get their address back)."""
        for user, text in leases.items():
            address = ipaddress.ip_address(text)
            if address in self.settings.network and address not in self._online:
                self._by_user[user] = address
                self._offline[address] = user


def release_lease(pools: dict[str, AddressPool], name: str, address: Address) -> None:
    """The IKE SA holding ``address`` of pool ``name`` is gone."""
    pool = pools.get(name)
    if pool is not None:
        pool.release(address)
