"""UDP port 4500 framing (RFC 3948 §2): NAT keepalives, the non-ESP marker before IKE, and ESP.

A datagram on port 4500 is a NAT-keepalive (one 0xFF octet), an IKE message behind four zero octets
(the non-ESP marker, which no ESP SPI can be), or an ESP packet starting with its non-zero SPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ikeguard.wire.errors import TruncatedError

NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
ESP_HEADER_LEN = 8  # SPI + sequence number (RFC 4303 §2)


@dataclass(frozen=True, slots=True)
class Keepalive:
    """NAT-keepalive (RFC 3948 §2.3): ignore on receipt."""


@dataclass(frozen=True, slots=True)
class Ike:
    """An IKE message received on port 4500; ``data`` is without the non-ESP marker."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Esp:
    """A UDP-encapsulated ESP packet (RFC 3948 §2.1), starting with the SPI."""

    data: bytes

    @property
    def spi(self) -> int:
        """The ESP SPI (first four octets)."""
        return int.from_bytes(self.data[:4], "big")


class Udp4500(Enum):
    """What a port-4500 datagram is (RFC 3948 §2)."""

    IKE = "ike"  # behind the non-ESP marker
    KEEPALIVE = "keepalive"
    ESP = "esp"  # anything else: the SA table decides (an unknown or short packet is dropped there)


def demux_udp4500(datagram: bytes) -> Udp4500:
    """The one port-4500 demultiplexer of the gateway (the service's NAT-T socket and the userspace data
    plane's): cheap enough for every ESP packet, it looks at the first four octets only and copies nothing."""
    if datagram[:4] == NON_ESP_MARKER:
        return Udp4500.IKE
    if datagram == NAT_KEEPALIVE:
        return Udp4500.KEEPALIVE
    return Udp4500.ESP


def classify_udp4500(datagram: bytes) -> Keepalive | Ike | Esp:
    """Demultiplex a port-4500 UDP payload; raises ParseError for datagrams that are none of the three."""
    datagram = bytes(datagram)
    kind = demux_udp4500(datagram)
    if kind is Udp4500.KEEPALIVE:
        return Keepalive()
    if kind is Udp4500.IKE:
        return Ike(datagram[4:])
    if len(datagram) < 4:
        raise TruncatedError(
            f"{len(datagram)}-octet datagram on port 4500 is neither keepalive, IKE nor ESP", 0
        )
    if len(datagram) < ESP_HEADER_LEN:
        raise TruncatedError(f"ESP packet of {len(datagram)} octets is shorter than its header", 0)
    return Esp(datagram)


def add_non_esp_marker(ike_message: bytes) -> bytes:
    """Prefix an IKE message with the non-ESP marker for sending on port 4500 (RFC 3948 §2.2)."""
    if len(ike_message) < 28:
        raise ValueError("an IKE message is at least 28 octets")
    return NON_ESP_MARKER + ike_message
