"""What every IKE SA of one engine shares: settings, randomness, validator, connections, the output queue."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ikeguard.crypto.random import RandomSource
from ikeguard.engine.events import EngineEvent
from ikeguard.engine.settings import ConnectionSettings, EngineSettings, PeerSelectors
from ikeguard.engine.validator import CertificateValidator


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
    closed: list[Any] = field(default_factory=list)  # IKE SAs closed since the manager last swept
    _next_uniqueid: int = 1

    def new_uniqueid(self) -> int:
        """A fresh unique ID for an IKE or Child SA (``sas --uniqueid``)."""
        value = self._next_uniqueid
        self._next_uniqueid += 1
        return value

    def random_fraction(self) -> float:
        """A float in [0, 1) from the injected random source (jitter)."""
        return int.from_bytes(self.random.bytes(4), "big") / 2**32
