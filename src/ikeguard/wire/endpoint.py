"""An IP address and UDP port, and the direction of an SA: named once for the engine and the data plane
(which may not import each other, docs/architecture.md) and the service between them.

``Direction`` is RFC 4301 §4.4.2's: an SA protects traffic one way, inbound (our SPI, RFC 4301 §4.1) or
outbound (the peer's SPI).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address

__all__ = ["Direction", "Endpoint", "IpAddress"]

IpAddress = IPv4Address | IPv6Address

NATT_PORT = 4500  # RFC 3948 §2: ESP in UDP and IKE after a NAT was detected


@dataclass(frozen=True, order=True, slots=True)
class Endpoint:
    """An IP address and UDP port (ESP-in-UDP SAs default to port 4500, RFC 3948). Slotted: several per SA
    (issue 22, memory per SA)."""

    address: IpAddress
    port: int = NATT_PORT

    def __str__(self) -> str:
        return _endpoint_text(self.address, self.port)


@lru_cache(maxsize=4096)
def _endpoint_text(address: IpAddress, port: int) -> str:
    """``addr:port`` / ``[v6]:port``, memoized (every audit record of an SA names both endpoints); a bounded
    module memo rather than a per-instance cache, which would give every Endpoint its own __dict__."""
    return f"[{address}]:{port}" if isinstance(address, IPv6Address) else f"{address}:{port}"


class Direction(Enum):
    """Direction of one ESP SA (RFC 4301 §4.4.2)."""

    INBOUND = "in"
    OUTBOUND = "out"
