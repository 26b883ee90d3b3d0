"""Hostile payload chains and datagrams built byte by byte (no codec dataclass could build most of them):
the worst cases a peer can declare for every payload type (RFC 7296 §3.2-§3.16), for the CPU-bound tests of
issue 13 S2 and as seeds of the fuzz targets under fuzz/.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ikeguard.wire.header import HEADER_LEN, HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType, PayloadType
from ikeguard.wire.sk import SkProtector

PT = PayloadType
MAX_UDP = 65507
"""The largest IPv4 UDP payload: no IKE datagram can be longer."""
MAX_DATAGRAM = 64 * 1024
"""The bound the tests state: no datagram of at most 64 KiB may cost more than a few milliseconds."""
ROOM = MAX_UDP - HEADER_LEN - 4 - 64
"""Octets for one payload chain in a datagram of at most MAX_UDP octets (room for an SK header and ICV)."""

Chain = tuple[int, bytes]
"""(first payload type, chain octets)."""


def chain(items: Sequence[tuple[int, bytes]], *, flags: int = 0) -> Chain:
    """A payload chain from (type, body) pairs, generic headers written as the bodies say (§3.2)."""
    out = bytearray()
    for i, (_ptype, body) in enumerate(items):
        next_type = items[i + 1][0] if i + 1 < len(items) else 0
        out += struct.pack("!BBH", next_type, flags, 4 + len(body)) + body
    return (items[0][0] if items else 0), bytes(out)


def datagram(
    first_and_chain: Chain,
    *,
    exchange: int = ExchangeType.IKE_SA_INIT,
    flags: int = HeaderFlags.INITIATOR,
    spi_i: bytes = b"\x5a" * 8,
    spi_r: bytes = bytes(8),
    message_id: int = 0,
) -> bytes:
    """An IKE message around a chain, header Length right (RFC 7296 §3.1)."""
    first, octets = first_and_chain
    header = IkeHeader(spi_i, spi_r, exchange, HeaderFlags(flags), message_id)
    return header.encode(first, HEADER_LEN + len(octets)) + octets


def seal(header: IkeHeader, first_and_chain: Chain, protector: SkProtector) -> bytes:
    """``HDR, SK {chain}`` for raw inner octets, sealed with real keys (RFC 7296 §3.14)."""
    first, plaintext = first_and_chain
    sk_len = 4 + len(plaintext) + protector.overhead(len(plaintext))
    aad = header.encode(PT.SK, HEADER_LEN + sk_len) + struct.pack("!BBH", first, 0, sk_len)
    return aad + protector.seal(aad, plaintext)


def _transforms(count: int, attributes: int = 0) -> bytes:
    out = bytearray()
    attrs = b"\x80\x0e\x00\x80" * attributes  # Key Length 128, TV format
    for i in range(count):
        out += struct.pack("!BBHBBH", 3 if i < count - 1 else 0, 0, 8 + len(attrs), 1, 0, 12) + attrs
    return bytes(out)


def _proposals(number: int, transforms: int, attributes: int = 0) -> bytes:
    out = bytearray()
    for i in range(number):
        body = _transforms(transforms, attributes)
        out += struct.pack("!BBHBBBB", 2 if i < number - 1 else 0, 0, 8 + len(body), (i % 255) + 1, 1, 0,
                           transforms) + body
    return bytes(out)


def _fill(item: bytes, room: int = ROOM) -> int:
    return max(1, room // len(item))


_V4 = struct.pack("!BBHHH", 7, 0, 16, 0, 0xFFFF) + bytes(4) + b"\xff" * 4
_V6 = struct.pack("!BBHHH", 8, 0, 40, 0, 0xFFFF) + bytes(16) + b"\xff" * 16
_RAW_TS = struct.pack("!BBH", 200, 0, 4)


def worst_case_chains(room: int = ROOM) -> dict[str, Chain]:
    """Named chains that declare as much work as their octets allow, each at most ``room`` octets."""
    per_delete = 4 + 4  # generic header + Delete header
    cases: dict[str, Chain] = {
        # S2 as reported: Delete with SPI size 0 and 65535 SPIs, as many as fit
        "delete-spi-size-0-count-65535": chain([(PT.DELETE, struct.pack("!BBH", 1, 0, 0xFFFF))]
                                               * (room // per_delete)),
        "delete-ike-with-spis": chain([(PT.DELETE, struct.pack("!BBH", 1, 4, 1) + bytes(4))]),
        "delete-unknown-protocol": chain([(PT.DELETE, struct.pack("!BBH", 9, 1, 100) + bytes(100))]),
        "delete-esp-max-spis": chain([(PT.DELETE, struct.pack("!BBH", 3, 4, (room - 8) // 4)
                                       + bytes((room - 8) // 4 * 4))]),
        "delete-esp-20-payloads": chain([(PT.DELETE, struct.pack("!BBH", 3, 4, (room // 20 - 8) // 4)
                                          + bytes((room // 20 - 8) // 4 * 4))] * 20),
        "sa-many-proposals": chain([(PT.SA, _proposals(_fill(bytes(16), room - 4), 1))]),
        "sa-255-transform-proposals": chain([(PT.SA, _proposals((room - 4) // (8 + 255 * 8), 255))]),
        "sa-transform-attributes": chain([(PT.SA, _proposals(1, 1, (room - 24) // 4))]),
        "sa-count-disagrees": chain([(PT.SA, struct.pack("!BBHBBBB", 0, 0, 8 + 8 * 500, 1, 1, 0, 255)
                                      + _transforms(500))]),
        "ts-255-ipv4": chain([(PT.TSI, bytes([255, 0, 0, 0]) + _V4 * 255), (PT.TSR, bytes([255, 0, 0, 0])
                                                                            + _V4 * 255)]),
        "ts-255-ipv6": chain([(PT.TSI, bytes([255, 0, 0, 0]) + _V6 * 255), (PT.TSR, bytes([255, 0, 0, 0])
                                                                            + _V6 * 255)]),
        "ts-255-raw": chain([(PT.TSI, bytes([255, 0, 0, 0]) + _RAW_TS * 255)]),
        "ts-count-255-no-data": chain([(PT.TSI, bytes([255, 0, 0, 0]))]),
        "cp-many-attributes": chain([(PT.CP, b"\x01\x00\x00\x00" + b"\x00\x01\x00\x00" * ((room - 8) // 4))]),
        "notify-many": chain([(PT.NOTIFY, struct.pack("!BBH", 0, 0, 16390))] * (room // 8)),
        "notify-21": chain([(PT.NOTIFY, struct.pack("!BBH", 0, 0, 16390))] * 21),
        "vendor-id-many": chain([(PT.VENDOR_ID, b"")] * (room // 4)),
        "unknown-many": chain([(200, b"")] * (room // 4)),
        "certreq-many": chain([(PT.CERTREQ, b"\x04" + bytes(20))] * (room // 25)),
        "cert-many": chain([(PT.CERT, b"\x04" + bytes(16))] * (room // 21)),
        "eap-length-lies": chain([(PT.EAP, b"\x02\x01\xff\xff" + bytes(60))]),
        "nonce-many": chain([(PT.NONCE, bytes(16))] * (room // 20)),
        "huge-declared-payload-length": (PT.NOTIFY, struct.pack("!BBH", 0, 0, 0xFFFF) + bytes(60)),
        "huge-declared-proposal-length": chain([(PT.SA, struct.pack("!BBHBBBB", 0, 0, 0xFFFF, 1, 1, 0, 1)
                                                 + _transforms(1))]),
        "huge-declared-selector-length": chain([(PT.TSI, bytes([1, 0, 0, 0])
                                                 + struct.pack("!BBH", 7, 0, 0xFFFF) + bytes(12))]),
        "huge-declared-attribute-length": chain([(PT.CP, b"\x01\x00\x00\x00" + b"\x00\x01\xff\xff")]),
        "zero-length-payload": (PT.NOTIFY, struct.pack("!BBH", 0, 0, 0) + bytes(8)),
        "sk-inside": chain([(PT.NOTIFY, struct.pack("!BBH", 0, 0, 16390)), (PT.SK, bytes(32))]),
    }
    # deeply chained: a valid IKE_SA_INIT body followed by as many empty payloads as fit
    return {name: c for name, c in cases.items() if len(c[1]) <= room}


def init_request_chains(nonce: bytes = b"\x11" * 32) -> dict[str, Chain]:
    """IKE_SA_INIT-shaped chains (SA, KE, Nonce first) followed by what a hostile request may add."""
    sa = (PT.SA, _proposals(1, 4))
    ke = (PT.KE, struct.pack("!HH", 19, 0) + bytes(64))
    no = (PT.NONCE, nonce)
    base = [sa, ke, no]
    room = ROOM - len(chain(base)[1])
    cases: dict[str, Chain] = {
        "init-then-deletes": chain([*base, *[(PT.DELETE, struct.pack("!BBH", 1, 0, 0xFFFF))] * (room // 8)]),
        "init-then-empty-unknown": chain([*base, *[(200, b"")] * (room // 4)]),
        "init-then-notifies": chain([*base, *[(PT.NOTIFY, struct.pack("!BBH", 0, 0, 16390))] * (room // 8)]),
        "init-then-vendor-ids": chain([*base, *[(PT.VENDOR_ID, bytes(16))] * (room // 20)]),
        "init-then-ts": chain([*base, (PT.TSI, bytes([255, 0, 0, 0]) + _V6 * 255)]),
        "init-then-cp": chain([*base, (PT.CP, b"\x01\x00\x00\x00" + b"\x00\x01\x00\x00" * 2000)]),
        "init-big-sa": chain([(PT.SA, _proposals(64, 8)), ke, no]),
    }
    return {name: c for name, c in cases.items() if len(c[1]) <= ROOM}


def the_reported_datagram() -> bytes:
    """The datagram of the report: 1,468 octets of Delete payloads with SPI size 0 and 65535 SPIs each."""
    return datagram(chain([(PT.DELETE, struct.pack("!BBH", 1, 0, 0xFFFF))] * ((1468 - HEADER_LEN) // 8)))


def min_cpu(run: Callable[[], float], repeat: int = 3) -> float:
    """The least CPU time of ``repeat`` runs (each returns its own measured seconds): noise only adds."""
    return min(run() for _ in range(repeat))
