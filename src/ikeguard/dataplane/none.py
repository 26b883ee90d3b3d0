"""``dataplane = "none"``: carries no packets, records every call (for tests and IKE-only benchmarks).

The gateway's own ``dataplane = "none"`` (service/dataplane.py) keeps no call log (``record_calls=False``): a
list growing by four entries per Child SA for the gateway's lifetime is test instrumentation, not state
(issue 22, memory per SA); it still holds every installed SA and policy."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ikeguard.crypto import registry
from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    DataPlaneFeatures,
    EventCallback,
    IkeShare,
    InstallFailed,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
    random_inbound_spi,
)
from ikeguard.policy.ts import TrafficSelector


def _all_esp_encr() -> frozenset[tuple[int, int | None]]:
    return frozenset((e.id.value, e.key_bits) for e in registry.ENCR.values())


@dataclass
class RecordedCall:
    """One call made on the recording data plane (key material is never recorded)."""

    method: str
    args: tuple[object, ...]


@dataclass
class NoneDataPlane:
    """Records calls; allocated SPIs are unique; ``fail_next_install`` lets tests exercise install failures.
    ``sas`` is keyed by (SPI, direction, Child SA unique id): two peers may choose the same outbound SPI."""

    calls: list[RecordedCall] = field(default_factory=list)
    sas: dict[tuple[int, SaDirection, int], SaConfig] = field(default_factory=dict)
    policies: dict[int, tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]] = field(
        default_factory=dict
    )
    fail_next_install: str = ""
    record_calls: bool = True  # False: ``calls`` stays empty (the gateway's "none" plane)
    _callbacks: list[EventCallback] = field(default_factory=list)
    _inbound_spis: set[int] = field(default_factory=set)  # of the installed inbound SAs

    def _record(self, call: RecordedCall) -> None:
        if self.record_calls:
            self.calls.append(call)

    @property
    def features(self) -> DataPlaneFeatures:
        """Everything the registry knows (nothing is carried, so nothing is restricted)."""
        return DataPlaneFeatures(
            name="none", encr=_all_esp_encr(), integ=frozenset(int(i) for i in registry.INTEG),
            udp_encap=True, esn=True, transport_mode=True, moves_packets=False,
        )  # fmt: skip

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing moves: nothing to start."""

    def close(self) -> None:
        """Nothing to release."""

    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """IKE sockets need nothing."""

    def ike_shares(self) -> Sequence[IkeShare]:
        """No socket of its own."""
        return ()

    def alloc_spi(self) -> int:
        """A random SPI above 255 that no installed inbound SA uses (``random_inbound_spi``, as the userspace
        table allocates): an SPI is held while its SA is, not for the plane's lifetime."""
        spi = random_inbound_spi(self._inbound_spis)
        self._record(RecordedCall("alloc_spi", (spi,)))
        return spi

    def add_sa(self, sa: SaConfig) -> None:
        """Record the SA (its keys stay out of the call log)."""
        self._record(RecordedCall("add_sa", (sa.spi, sa.direction, sa.child_uniqueid)))
        if self.fail_next_install:
            reason, self.fail_next_install = self.fail_next_install, ""
            self._emit(InstallFailed(sa.spi, sa.direction, reason, sa.child_uniqueid))
            raise DataPlaneError(reason)
        self.sas[(sa.spi, sa.direction, sa.child_uniqueid)] = sa
        if sa.direction is SaDirection.INBOUND:
            self._inbound_spis.add(sa.spi)

    def update_sa_addresses(
        self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint, encap: bool,
        children: Collection[int] | None = None,
    ) -> None:
        """Record the move."""
        self._record(RecordedCall("update_sa_addresses", (spis, local, remote, encap)))

    def _key(self, spi: int, direction: SaDirection,
             child_uniqueid: int | None) -> tuple[int, SaDirection, int] | None:
        if child_uniqueid is not None:
            key = (spi, direction, child_uniqueid)
            return key if key in self.sas else None
        keys = [k for k in self.sas if k[0] == spi and k[1] is direction]
        if len(keys) > 1:
            raise DataPlaneError(f"SPI {spi:08x} ({direction.value}) is used by several Child SAs")
        return keys[0] if keys else None

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Forget the SA (of Child SA ``child_uniqueid`` when given)."""
        self._record(RecordedCall("delete_sa", (spi, direction)))
        key = self._key(spi, direction, child_uniqueid)
        sa = self.sas.pop(key, None) if key is not None else None
        if sa is None:
            return None
        if direction is SaDirection.INBOUND:
            self._inbound_spis.discard(spi)
        sa.wipe_keys()
        return SaCounters()

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Record the policy."""
        self._record(RecordedCall("add_policy", (child_uniqueid, local_ts, remote_ts)))
        self.policies[child_uniqueid] = (local_ts, remote_ts)

    def remove_policy(self, child_uniqueid: int) -> None:
        """Forget the policy."""
        self._record(RecordedCall("remove_policy", (child_uniqueid,)))
        self.policies.pop(child_uniqueid, None)

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """Always zero for an installed SA: nothing is carried."""
        return SaCounters() if self._key(spi, direction, child_uniqueid) is not None else None

    def subscribe(self, callback: EventCallback) -> None:
        """Register an upcall receiver."""
        self._callbacks.append(callback)

    def _emit(self, event: DataPlaneEvent) -> None:
        for cb in self._callbacks:
            cb(event)
