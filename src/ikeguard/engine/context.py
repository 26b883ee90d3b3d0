"""What every IKE SA of one engine shares: settings, randomness, validator, connections, the output queue."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ikeguard.crypto.random import RandomSource
from ikeguard.engine.events import EngineEvent
from ikeguard.engine.pools import AddressPool, PoolSettings
from ikeguard.engine.rekey_calendar import RekeyCalendar
from ikeguard.engine.settings import ConnectionSettings, EngineSettings, PeerSelectors
from ikeguard.engine.validator import CertificateValidator


class TimerTable(dict[str, float]):
    """An SA's named deadlines; every new deadline is also pushed on the engine-wide heap, so the manager
    finds the next timer in O(log n) instead of scanning every SA."""

    __slots__ = ("_heap", "_uniqueid")  # issue 22: no instance dict per SA

    def __init__(self, heap: list[tuple[float, int]], uniqueid: int) -> None:
        super().__init__()
        self._heap = heap
        self._uniqueid = uniqueid

    def __setitem__(self, name: str, deadline: float) -> None:
        super().__setitem__(name, deadline)
        heapq.heappush(self._heap, (deadline, self._uniqueid))

    def setdefault(self, name: str, deadline: float) -> float:
        """dict.setdefault that also schedules."""
        if name not in self:
            self[name] = deadline
        return self[name]


@dataclass(frozen=True)
class OcspStaple:
    """A verified OCSP response (DER OCSPResponse) for our certificate and until when it may be sent."""

    der: bytes
    next_update: float | None  # POSIX time of its nextUpdate; None: the responder gave none
    status: str = "good"


@dataclass
class EngineContext:
    """Shared, injected dependencies of an engine instance (no globals inside tasks)."""

    settings: EngineSettings
    random: RandomSource
    validator: CertificateValidator
    connections: dict[str, ConnectionSettings]
    peer_selectors: PeerSelectors | None = None
    outputs: deque[EngineEvent] = field(default_factory=deque)
    reauth_hook: Callable[[Any, str], None] | None = None  # manager: start a new IKE SA replacing an old one
    adopt_hook: Callable[[Any], None] | None = None  # manager: register an IKE SA created by a rekey
    established_hook: Callable[[Any], None] | None = None  # manager: INITIAL_CONTACT and ``unique`` policy
    closed: list[Any] = field(default_factory=list)
    redirect_hook: Callable[[Any, str, str], None] | None = None  # manager: follow a REDIRECT (RFC 5685)
    ike_sa_count: Callable[[], int] | None = None  # manager: established IKE SAs (redirect under load)
    # inbound Child SA SPI -> uniqueid of the IKE SA holding it (IkeSa.add_child/remove_child/take_children):
    # data-plane upcalls name an inbound SPI; found in O(1) instead of a scan over every IKE SA
    child_homes: dict[int, int] = field(default_factory=dict)
    now: float = 0.0  # the time of the input being handled, set once per input by IkeManager (IkeSa.now)
    new_child_refusal: str | None = None  # why new Child SAs are refused (PCI DSS 10.7); None: allowed
    timer_heap: list[tuple[float, int]] = field(
        default_factory=list
    )  # (deadline, IKE SA uniqueid), lazy  # IKE SAs closed since the manager last swept
    pools: dict[str, AddressPool] = field(default_factory=dict)  # virtual IP leases by pool name
    # makes a pool on first use; [gateway] workers > 1: one whose leases the supervisor holds (issue 22)
    pool_factory: Callable[[PoolSettings], AddressPool] = AddressPool
    child_rekeys: RekeyCalendar = field(default_factory=RekeyCalendar)  # issue 22: rekey storms spread
    ike_rekeys: RekeyCalendar = field(default_factory=RekeyCalendar)
    worker_id: int | None = None  # issue 22, [gateway] workers: the first octet of every IKE SPI we allocate
    half_open_elsewhere: Callable[[], int] | None = None  # issue 22: half-open IKE SAs of the other workers
    uniqueid_step: int = 1  # issue 22: worker i of N numbers its SAs i+1, i+1+N, ...: unique across workers
    # RFC 4806: connection name -> the OCSP response for our own certificate that we staple when a peer asks
    # (kept fresh by the service, service/ocsp_staple.py; engine/ocsp_stapling.py sends it)
    ocsp_staples: dict[str, OcspStaple] = field(default_factory=dict)
    _next_uniqueid: int = 1

    def timer_table(self, uniqueid: int) -> TimerTable:
        """A fresh deadline table for the IKE SA ``uniqueid``."""
        return TimerTable(self.timer_heap, uniqueid)

    def number_uniqueids(self, first: int, step: int) -> None:
        """Number SAs ``first``, ``first + step``, ... (worker ``first - 1`` of ``step``, issue 22)."""
        self._next_uniqueid, self.uniqueid_step = first, step

    def new_uniqueid(self) -> int:
        """A fresh unique ID for an IKE or Child SA (``sas --uniqueid``)."""
        value = self._next_uniqueid
        self._next_uniqueid += self.uniqueid_step
        return value

    def ike_spi(self) -> bytes:
        """A random IKE SPI (RFC 7296 §2.6) for us; with ``worker_id`` its first octet names this worker,
        which the kernel's steering program reads (service/reuseport.py)."""
        spi = self.random.bytes(8)
        return spi if self.worker_id is None else bytes([self.worker_id]) + spi[1:]

    def random_fraction(self) -> float:
        """A float in [0, 1) from the injected random source (jitter)."""
        return int.from_bytes(self.random.bytes(4), "big") / 2**32
