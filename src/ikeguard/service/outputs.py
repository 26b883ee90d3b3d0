"""Applies the engine's Child SA outputs to the data plane (ARCHITECTURE rule 2: in the order emitted).

``InstallChildSa`` -> ``add_policy`` (outbound, before the SA: fail closed) + ``add_sa``; ``DeleteChildSa`` ->
``delete_sa`` with the final counters folded into :class:`GatewayStats`; ``UpdateSaAddresses`` ->
``update_sa_addresses``. A Child SA that is gone keeps its policy (traffic for its selectors is dropped, never
sent in the clear, RFC 4301 §4.4.1) until a new Child SA with the same selectors takes it over, its
connection is removed from the configuration, or the gateway stops. Data-plane upcalls are translated back
into engine inputs by the Child SA they name.

Every data-plane call names the Child SA (issue 13 S3): an outbound SPI is the peer's choice and two peers may
choose the same one, so an SPI alone never selects which SA to delete, move, count or rekey.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ikeguard.dataplane.base import (
    DataPlane,
    DataPlaneError,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
)
from ikeguard.engine.events import DeleteChildSa, Direction, InstallChildSa, UpdateSaAddresses
from ikeguard.policy.ts import TrafficSelector
from ikeguard.service.stats import GatewayStats

log = logging.getLogger("ikeguard.service")

Selectors = tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]


@dataclass(slots=True)  # one per Child SA (issue 22, memory per SA)
class ChildRecord:
    """What the service remembers of an installed Child SA (no key material)."""

    connection: str
    ike_uniqueid: int
    child_uniqueid: int
    spi_in: int = 0
    spi_out: int = 0
    selectors: Selectors | None = None
    directions: set[SaDirection] = field(default_factory=set)


@dataclass(frozen=True)
class InstallError:
    """An ``add_sa`` that failed: the engine gets it back via ``install_failed``."""

    ike_uniqueid: int
    child_uniqueid: int
    reason: str


class ChildSaDriver:
    """Keeps the data plane in step with the engine's Child SAs."""

    def __init__(self, dataplane: DataPlane, stats: GatewayStats,
                 configured: Callable[[str], bool] = lambda connection: True) -> None:
        self.dataplane = dataplane
        self.stats = stats
        self.configured = configured  # is this connection still in the configuration? (else no fail-closed)
        self.children: dict[int, ChildRecord] = {}  # child uniqueid -> record
        self._by_spi_in: dict[int, int] = {}
        self._policies: dict[int, Selectors] = {}  # child uniqueid -> selectors with a policy installed
        self._orphans: dict[Selectors, tuple[int, str]] = {}  # gone Child SA (uid, conn): policy kept
        # IKE uniqueid -> [in octets, out octets, in packets, out packets] of its deleted Child SAs, kept
        # only for the IKE SAs ``counted`` says RADIUS accounting follows (it drops them at Stop)
        self.ike_traffic: dict[int, list[int]] = {}
        self.counted: Callable[[int], bool] = lambda ike_uniqueid: False

    # ------------------------------------------------------------------ engine outputs
    def install(self, event: InstallChildSa, connection: str) -> InstallError | None:
        """Install one direction; an error comes back for ``engine.install_failed``."""
        config = SaConfig.from_install(event)
        record = self.children.setdefault(
            event.child_uniqueid, ChildRecord(connection, event.ike_uniqueid, event.child_uniqueid)
        )
        try:
            if config.direction is SaDirection.OUTBOUND:
                self._add_policy(event.child_uniqueid, (config.local_ts, config.remote_ts))
            self.dataplane.add_sa(config)
        except DataPlaneError as exc:
            return InstallError(event.ike_uniqueid, event.child_uniqueid, str(exc))
        except OSError as exc:  # e.g. a route the kernel refused
            return InstallError(event.ike_uniqueid, event.child_uniqueid, f"{type(exc).__name__}: {exc}")
        record.directions.add(config.direction)
        record.selectors = (config.local_ts, config.remote_ts)
        if config.direction is SaDirection.INBOUND:
            record.spi_in = config.spi
            self._by_spi_in[config.spi] = event.child_uniqueid
        else:
            record.spi_out = config.spi
        return None

    def delete(self, event: DeleteChildSa) -> None:
        """Remove one direction; its final counters survive in the stats."""
        direction = SaDirection(event.direction.value)
        try:
            counters = self.dataplane.delete_sa(event.spi, direction, event.child_uniqueid)
        except (DataPlaneError, OSError) as exc:
            log.warning("data plane could not delete SA %08x (%s): %s", event.spi, direction.value, exc)
            counters = None
        record = self.children.get(event.child_uniqueid)
        if record is not None:
            record.directions.discard(direction)
            if counters is not None:
                inbound = direction is SaDirection.INBOUND
                self.stats.add_traffic(record.connection, inbound=inbound, octets=counters.bytes,
                                       packets=counters.packets)
                if self.counted(record.ike_uniqueid):
                    totals = self.ike_traffic.setdefault(record.ike_uniqueid, [0, 0, 0, 0])
                    totals[0 if inbound else 1] += counters.bytes
                    totals[2 if inbound else 3] += counters.packets
        if direction is SaDirection.INBOUND and self._by_spi_in.get(event.spi) == event.child_uniqueid:
            del self._by_spi_in[event.spi]

    def update_addresses(self, event: UpdateSaAddresses) -> None:
        """Move the IKE SA's Child SAs to new outer endpoints (NAT-T switch, MOBIKE)."""
        spis = tuple(spi for pair in event.child_spis for spi in pair if spi)
        if not spis:
            return
        # the Child SAs of this IKE SA, found by our own (unique) inbound SPIs: another peer's SA that happens
        # to use one of these SPIs as its outbound SPI must not move
        children = {child for spi_in, _ in event.child_spis if (child := self._by_spi_in.get(spi_in))}
        try:
            self.dataplane.update_sa_addresses(spis, SaEndpoint(event.local.address, event.local.port),
                                               SaEndpoint(event.remote.address, event.remote.port),
                                               event.encap, children)
        except (DataPlaneError, OSError) as exc:
            log.warning("data plane could not move the SAs of IKE SA %d: %s", event.ike_uniqueid, exc)

    def child_gone(self, child_uniqueid: int) -> None:
        """A Child SA reached DELETED: forget it; its policy stays until its selectors are reused."""
        record = self.children.pop(child_uniqueid, None)
        if record is None:
            return
        if self._by_spi_in.get(record.spi_in) == child_uniqueid:
            del self._by_spi_in[record.spi_in]
        selectors = self._policies.get(child_uniqueid)
        if selectors is None:
            return
        shared = any(s == selectors for cid, s in self._policies.items() if cid != child_uniqueid)
        if shared or not self.configured(record.connection):
            self._remove_policy(child_uniqueid)  # a rekeyed Child SA has the selectors, or the conn left
        else:
            old = self._orphans.get(selectors)
            self._orphans[selectors] = (child_uniqueid, record.connection)
            if old is not None:
                self._remove_policy(old[0])

    def release_unconfigured(self) -> None:
        """After a reload: drop the kept policies of connections that are no longer configured."""
        for selectors, (child, connection) in list(self._orphans.items()):
            if not self.configured(connection):
                del self._orphans[selectors]
                self._remove_policy(child)

    # ------------------------------------------------------------------ queries and upcalls
    def counters(self, spi: int, inbound: bool, child_uniqueid: int | None = None) -> SaCounters | None:
        """Live counters of one SA direction of Child SA ``child_uniqueid`` (None when the data plane does
        not know it)."""
        try:
            return self.dataplane.counters(spi, SaDirection.INBOUND if inbound else SaDirection.OUTBOUND,
                                           child_uniqueid)
        except (DataPlaneError, OSError):
            return None

    def inbound_spi_for(self, spi: int, direction: SaDirection, child_uniqueid: int = 0) -> int | None:
        """The inbound SPI of the Child SA that owns ``spi`` (upcalls name either direction, and the Child
        SA: an outbound SPI alone may belong to several peers' Child SAs, see :meth:`child_for_spi`)."""
        record = self.child_for_spi(spi, direction, child_uniqueid)
        return record.spi_in if record is not None and record.spi_in else None

    def child_for_spi(self, spi: int, direction: SaDirection, child_uniqueid: int = 0) -> ChildRecord | None:
        """The record of the Child SA with ``spi`` in ``direction``: Child SA ``child_uniqueid`` when given
        (and only if it has that SPI); else, inbound, the owner of our SPI, and outbound, the one Child SA
        with that peer-chosen SPI (None when several have it: never a guess)."""
        if child_uniqueid:
            record = self.children.get(child_uniqueid)
            if record is None:
                return None
            own = record.spi_in if direction is SaDirection.INBOUND else record.spi_out
            return record if own == spi else None
        if direction is SaDirection.INBOUND:
            child = self._by_spi_in.get(spi)
            return self.children.get(child) if child is not None else None
        found = [r for r in self.children.values() if r.spi_out == spi]
        return found[0] if len(found) == 1 else None

    # ------------------------------------------------------------------ teardown
    def remove_everything(self) -> None:
        """Gateway stop: delete every SA still installed and every policy (routes, blackholes)."""
        for record in list(self.children.values()):
            for direction in list(record.directions):
                spi = record.spi_in if direction is SaDirection.INBOUND else record.spi_out
                self.delete(DeleteChildSa(record.ike_uniqueid, record.child_uniqueid,
                                          Direction(direction.value), spi, "gateway shutdown"))
        for child in list(self._policies):
            self._remove_policy(child)
        self._orphans.clear()
        self.children.clear()

    def _add_policy(self, child_uniqueid: int, selectors: Selectors) -> None:
        if self._policies.get(child_uniqueid) == selectors:
            return
        self.dataplane.add_policy(child_uniqueid, *selectors)
        self._policies[child_uniqueid] = selectors
        old = self._orphans.pop(selectors, None)
        if old is not None and old[0] != child_uniqueid:
            self._remove_policy(old[0])  # the new Child SA took the selectors over

    def _remove_policy(self, child_uniqueid: int) -> None:
        if self._policies.pop(child_uniqueid, None) is None:
            return
        try:
            self.dataplane.remove_policy(child_uniqueid)
        except (DataPlaneError, OSError) as exc:
            log.warning("data plane could not remove the policy of Child SA %d: %s", child_uniqueid, exc)
