"""The userspace data plane for IPv4 and IPv6 outer addresses at once: one ``UserspaceDataPlane`` per IP
version (each owns that family's NAT-T socket and a TUN device), behind the one ``DataPlane`` interface.

An ESP socket carries one address family, so an SA goes to the plane of its outer (tunnel) addresses; a Child
SA's policy (routes of its remote selectors) goes to the plane that holds its SAs. Moving an SA between
families (MOBIKE from IPv4 to IPv6) is not supported and is reported as a failure.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Collection, Sequence
from typing import Protocol

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneFeatures,
    EventCallback,
    IkeShare,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
)
from ikeguard.policy.ts import TrafficSelector

log = logging.getLogger("ikeguard.service")


class FamilyPlane(Protocol):
    """What this module needs of one per-family plane (``UserspaceDataPlane``)."""

    @property
    def features(self) -> DataPlaneFeatures: ...

    def alloc_spi(self) -> int: ...

    def add_sa(self, sa: SaConfig) -> None: ...

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            encap: bool, children: Collection[int] | None = None) -> None: ...

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None: ...

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None: ...

    def remove_policy(self, child_uniqueid: int) -> None: ...

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None: ...

    def subscribe(self, callback: EventCallback) -> None: ...

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def close(self) -> None: ...

    def ike_shares(self) -> Sequence[IkeShare]: ...


class FamilyPlanes:
    """Dispatches the DataPlane calls to the plane of the SA's outer address family."""

    def __init__(self, members: dict[int, FamilyPlane]) -> None:
        if not members:
            raise ValueError("no data plane")
        self.members = members  # IP version -> plane (the transport reads each one's NAT-T socket)
        self._first = members[min(members)]
        # (SPI, direction, Child SA) -> IP version: outbound SPIs are the peers' choice and may repeat
        self._sa_family: dict[tuple[int, SaDirection, int], int] = {}
        self._inbound_spis: set[int] = set()
        self._child_family: dict[int, int] = {}
        self._policy_family: dict[int, int] = {}

    @property
    def features(self) -> DataPlaneFeatures:
        """The members share one ESP implementation: the first one's features."""
        return self._first.features

    def alloc_spi(self) -> int:
        """A fresh inbound SPI unused in every member."""
        while True:
            spi = self._first.alloc_spi()
            if spi not in self._inbound_spis:
                return spi

    def _plane(self, version: int) -> FamilyPlane:
        plane = self.members.get(version)
        if plane is None:
            raise DataPlaneError(f"no userspace data plane for IPv{version} outer addresses "
                                 f"(add an IPv{version} address to gateway.listen)")
        return plane

    def add_sa(self, sa: SaConfig) -> None:
        """Install in the plane of the SA's outer addresses."""
        version = sa.destination.address.version
        plane = self._plane(version)
        current = self._policy_family.get(sa.child_uniqueid, version)
        if sa.direction is SaDirection.OUTBOUND and current != version:
            self._move_policy(sa.child_uniqueid, version, sa.local_ts, sa.remote_ts)
        plane.add_sa(sa)
        self._sa_family[(sa.spi, sa.direction, sa.child_uniqueid)] = version
        if sa.direction is SaDirection.INBOUND:
            self._inbound_spis.add(sa.spi)
        self._child_family[sa.child_uniqueid] = version
        if sa.direction is SaDirection.OUTBOUND:
            self._policy_family[sa.child_uniqueid] = version

    def _move_policy(self, child: int, version: int, local_ts: tuple[TrafficSelector, ...],
                     remote_ts: tuple[TrafficSelector, ...]) -> None:
        old = self._policy_family.pop(child, None)
        if old is not None and old != version:
            self.members[old].remove_policy(child)
        self._plane(version).add_policy(child, local_ts, remote_ts)
        self._policy_family[child] = version

    def _key(self, spi: int, direction: SaDirection,
             child_uniqueid: int | None) -> tuple[int, SaDirection, int] | None:
        """The SA of Child SA ``child_uniqueid``; without it the SPI must name one SA (else
        DataPlaneError)."""
        if child_uniqueid is not None:
            key = (spi, direction, child_uniqueid)
            return key if key in self._sa_family else None
        keys = [k for k in self._sa_family if k[:2] == (spi, direction)]
        if len(keys) > 1:
            raise DataPlaneError(f"SPI {spi:08x} ({direction.value}) is used by several Child SAs")
        return keys[0] if keys else None

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            encap: bool, children: Collection[int] | None = None) -> None:
        """Move SAs (of the Child SAs ``children``) within their family; a change of family is refused."""
        families = {v for (spi, _, child), v in self._sa_family.items()
                    if spi in spis and (children is None or child in children)}
        if families and families != {remote.address.version}:
            raise DataPlaneError("the userspace data plane cannot move SAs between IPv4 and IPv6")
        self._plane(remote.address.version).update_sa_addresses(spis, local, remote, encap, children)

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Remove one direction of Child SA ``child_uniqueid`` from the plane that holds it."""
        key = self._key(spi, direction, child_uniqueid)
        if key is None:
            return None
        version = self._sa_family.pop(key)
        if direction is SaDirection.INBOUND:
            self._inbound_spis.discard(spi)
        return self.members[version].delete_sa(spi, direction, key[2])

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Routes into the plane holding the Child SA's SAs (the first plane while it holds none)."""
        version = self._child_family.get(child_uniqueid, min(self.members))
        self._move_policy(child_uniqueid, version, local_ts, remote_ts)

    def remove_policy(self, child_uniqueid: int) -> None:
        """Remove the Child SA's routes."""
        version = self._policy_family.pop(child_uniqueid, None)
        self._child_family.pop(child_uniqueid, None)
        if version is not None:
            self.members[version].remove_policy(child_uniqueid)

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """Live counters of one SA direction (of Child SA ``child_uniqueid``)."""
        key = self._key(spi, direction, child_uniqueid)
        return None if key is None else self.members[self._sa_family[key]].counters(spi, direction, key[2])

    def subscribe(self, callback: EventCallback) -> None:
        """Upcalls from every member."""
        for plane in self.members.values():
            plane.subscribe(callback)

    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """The service's IKE sockets need nothing (each member's own socket carries IKE on 4500)."""

    def ike_shares(self) -> Sequence[IkeShare]:
        """Every member's NAT-T socket (one per address family)."""
        return tuple(share for plane in self.members.values() for share in plane.ike_shares())

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every member's readers."""
        for plane in self.members.values():
            plane.start(loop)

    def close(self) -> None:
        """Close every member."""
        for version, plane in self.members.items():
            try:
                plane.close()
            except OSError as exc:
                log.warning("closing the IPv%d data plane: %s", version, exc)
