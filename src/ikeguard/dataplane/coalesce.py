"""Receive-side coalescing of decrypted TCP segments into one TUN write (a software GRO): pure, no IO.

The userspace plane decrypts the ESP packets of one socket read (UDP GRO delivers up to 64 at once); runs of
consecutive in-order IPv4 TCP segments of one connection are merged into one packet that is written into the
TUN device with a virtio-net header (``IFF_VNET_HDR``, ``VIRTIO_NET_HDR_GSO_TCPV4``, ``NEEDS_CSUM``), so the
kernel's TCP receive path runs once per run instead of once per segment; forwarded, the kernel segments it
again (GSO) with the original segment size. The merge rules follow what Linux GRO merges (tcp_gro_receive):
same addresses, TOS, TTL and ports; IPv4 without options and not fragmented; the same TCP header length,
ACK number, window and options; only ACK (and PSH on the last) set; contiguous sequence numbers; every
segment but the last exactly the first one's payload size. Anything else is written as it came.

Written by hand: no Python library implements GRO; the packet layout is RFC 791 / RFC 9293, the header
``struct virtio_net_hdr`` (Linux include/uapi/linux/virtio_net.h).
"""

from __future__ import annotations

import struct

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_NONE = VNET_HDR.pack(0, 0, 0, 0, 0, 0)
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_TCPV4 = 1
MAX_MERGED = 65535 - 64
_TCP_ACK, _TCP_PSH = 0x10, 0x08


def _fold(value: int) -> int:
    while value >> 16:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def ip_checksum(header: bytes) -> int:
    """The RFC 791 header checksum of ``header`` (its checksum field zero)."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    return ~_fold(total) & 0xFFFF


# one unpack per packet (version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol, checksum,
# addresses | ports, sequence number, ACK number, data offset, flags, window): cheaper than slicing the fields
_HEADERS = struct.Struct("!BBHHHBBH8s4sI4sBB2s")
_NOT_MERGED = ~(_TCP_ACK | _TCP_PSH)
MergeKey = tuple[int, int, bytes, bytes, bytes, bytes, bytes]


def _key(pkt: bytes) -> tuple[MergeKey, int, int, int] | None:
    """(merge key, payload length, TCP flags, sequence number) of a mergeable IPv4 TCP segment, else None."""
    if len(pkt) < 40:
        return None
    vihl, tos, total, _id, frag, ttl, proto, _csum, addrs, ports, seq, ack, doff, flags, window = \
        _HEADERS.unpack_from(pkt)
    doff = (doff >> 4) * 4
    payload = total - 20 - doff
    if (vihl != 0x45 or proto != 6 or frag & 0x3FFF or doff < 20 or flags & _NOT_MERGED
            or not flags & _TCP_ACK or total != len(pkt) or payload <= 0):
        return None  # not IPv4 without options, not TCP, a fragment (MF or an offset), or other flags
    # addresses, TOS, TTL, ports, ack, window, options: everything that must be equal to merge
    return (tos, ttl, addrs, ports, ack, window, pkt[40 : 20 + doff]), payload, flags, seq


def _merge(run: list[bytes], mss: int, psh: bool) -> tuple[bytes, int]:
    first = run[0]
    doff = (first[32] >> 4) * 4
    hlen = 20 + doff
    payload = b"".join([p[hlen:] for p in run])
    total = hlen + len(payload)
    ip = bytearray(first[:20])
    ip[2:4] = total.to_bytes(2, "big")
    ip[10:12] = b"\x00\x00"
    ip[10:12] = ip_checksum(bytes(ip)).to_bytes(2, "big")
    tcp = bytearray(first[20:hlen])
    if psh:
        tcp[13] |= _TCP_PSH
    # NEEDS_CSUM: the checksum field holds the pseudo-header sum (RFC 9293 §3.1), the kernel (or nobody, when
    # delivered locally: a partial checksum counts as verified) completes it
    pseudo = _fold(sum(struct.unpack("!4H", first[12:20])) + 6 + total - 20)
    tcp[16:18] = pseudo.to_bytes(2, "big")
    return bytes(ip) + bytes(tcp) + payload, mss


def coalesce(packets: list[bytes]) -> list[tuple[bytes, int]]:
    """Merge runs of consecutive segments (module docstring): (packet, segment size; 0 = not merged)."""
    out: list[tuple[bytes, int]] = []
    run: list[bytes] = []
    key: MergeKey | None = None
    mss = size = next_seq = 0
    psh = False

    def flush() -> None:
        if len(run) == 1:
            out.append((run[0], 0))
        elif run:
            out.append(_merge(run, mss, psh))
        run.clear()

    for pkt in packets:
        info = _key(pkt)
        if info is None:
            flush()
            out.append((pkt, 0))
            continue
        k, payload, flags, seq = info
        if (run and k == key and seq == next_seq and payload <= mss and size + payload <= MAX_MERGED
                and not psh):
            run.append(pkt)
        else:
            flush()
            run.append(pkt)
            key, mss, size, psh = k, payload, 20 + (pkt[32] >> 4) * 4, False
        size += payload
        next_seq = (seq + payload) & 0xFFFFFFFF
        psh = psh or bool(flags & _TCP_PSH)
        if payload < mss:  # a short segment ends a run
            flush()
            psh = False
    flush()
    return out


def vnet_header(packet: bytes, gso_size: int) -> bytes:
    """The virtio-net header for a TUN write: none, or TCPv4 GSO with a partial checksum."""
    if not gso_size:
        return VNET_NONE
    hdr_len = 20 + (packet[32] >> 4) * 4
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, hdr_len, gso_size, 20, 16)
