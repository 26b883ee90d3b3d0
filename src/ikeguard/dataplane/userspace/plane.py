"""The userspace data plane: ESP (RFC 4303) in UDP (RFC 3948) over a TUN device, on the IKE NAT-T socket.

One UDP socket (normally port 4500) carries IKE and ESP; datagrams are demultiplexed by the non-ESP marker
(RFC 3948 §2.2): four zero octets = IKE (handed to ``on_ike`` without the marker), a single 0xFF = NAT
keepalive (§2.3, counted and dropped), anything else = ESP. Runs on an asyncio loop: readers on the TUN fd
and the socket drain up to ``BATCH`` packets per wake-up. Packet logic lives in :class:`SaTable`.

As one of several workers (:mod:`.workers`) a plane is given its TUN queue (``tun_fd``) and its member of the
port's ``SO_REUSEPORT`` group, leaves routes to the supervisor (``manage_routes=False``), and hands packets
whose outbound SA another worker owns to that worker (``handoff``: worker -> datagram socket); packets
handed to it arrive on ``handoff_in``.

Spreading new TCP connections over the workers: a multi-queue TUN queues an outgoing packet by the flow
table the kernel keeps per device (``tun_automq_select_queue``): a flow goes to the queue its last packet
was *written* to (symmetric flow hash), and only a flow the table does not know yet goes by its hash. With
RFC 9611 per-resource SAs the loop closes over both gateways: the SA a worker encrypts a flow with steers it
to the peer's worker of that SA, which writes it to its own queue, so the peer's replies leave on that
worker's SA and are written to our queue of the same worker. A flow stays where its first packet was hashed,
and with a few flows the hash alone often puts them all on one worker (4 flows on 2 workers: 1 in 8 runs,
and 3:1 in half of them). So each worker deals the TCP SYNs it reads round robin over the workers (starting
with itself), handing a SYN to another worker that holds its own SA for the policy; the answers then come
back on that worker's SA, the kernel's flow table follows the writes, and the connection stays there with no
further hand-offs. With every worker dealing its own SYNs in turn, two workers end up with an equal number
of new connections (within one), whichever queues the kernel chose.

The responder's side needs one more step: the kernel records a written packet's flow only *after* it has
delivered it (``tun_get_user``: ``tun_flow_update`` follows ``netif_receive_skb``), so the SYN-ACK a SYN
provokes is queued by its hash, not by the queue the SYN was written to, and would take the hash's worker's
SA back -- undoing the dealing. So the worker that decrypts a SYN first tells the other workers (a claim on
the hand-off sockets: ``0x00``, its index, the flow's addresses and ports), and the worker that reads the
SYN-ACK hands it to the claimant, which sends it on its own SA. Claims are kept at most ``CLAIMS`` at a time.
The same race on the initiator's side: the ACK that completes the handshake is provoked by the SYN-ACK's
write, so it is queued by the flow's hash too -- to the queue the SYN was read from (no entry yet, the same
hash), i.e. to the dealer; the dealer remembers the flows it dealt and hands that ACK to the same worker
(forgetting them after ``DEALT_MISSES`` short packets without a match). Without these two steps a flow dealt
away flipped back to its hash's worker (measured: 2 SYNs handed over, that SA then carried 2 packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable, Collection, Sequence

from ikeguard.dataplane.base import (
    DataPlaneFeatures,
    EventCallback,
    IkeShare,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
)
from ikeguard.dataplane.coalesce import VNET_HDR, VNET_NONE, coalesce, vnet_header
from ikeguard.dataplane.esp import AEAD_TRANSFORMS, CBC_TRANSFORMS, INTEG_TRANSFORMS
from ikeguard.dataplane.table import Forward, SaTable, Send
from ikeguard.dataplane.userspace.routes import install_routes, remove_routes
from ikeguard.dataplane.userspace.tun import configure_tun, open_tun
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire import natt
from ikeguard.wire.natt import Udp4500, demux_udp4500

log = logging.getLogger(__name__)
BATCH = 64
IPPROTO_ESP = 50
SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h: UDP GSO segment size (cmsg)
UDP_GRO = 104  # linux/udp.h: receive coalesced datagrams, segment size in a cmsg
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
SOCKET_BUFFER = 4 << 20  # bursts of a TCP window must not overflow the UDP socket
NON_ESP_MARKER = natt.NON_ESP_MARKER  # RFC 3948 §2.2
REKEYED_INBOUND_LINGER = 2.0  # s an inbound SA replaced by a rekey still decrypts (cf. strongSwan's
# charon.delete_rekeyed_delay); only when a successor with the same selectors is installed
KEEPALIVE = natt.NAT_KEEPALIVE  # RFC 3948 §2.3
VNET_LEN = VNET_HDR.size
_SYN_ACK, _SYN = 0x12, 0x02
CLAIM = b"\x00"  # first octet of a claim on the hand-off sockets (never of an IP packet)
CLAIMS = 4096
DEALT_MISSES = 256
IkeCallback = Callable[[bytes, tuple[str, int]], None]

FEATURES = DataPlaneFeatures(
    name="userspace",
    encr=frozenset((int(e), b) for e, b in (*AEAD_TRANSFORMS, *CBC_TRANSFORMS)),
    integ=frozenset(int(i) for i in INTEG_TRANSFORMS),
    udp_encap=True, esn=True, transport_mode=False, moves_packets=True,
)  # fmt: skip


def tcp_flags(pkt: bytes) -> int:
    """The TCP flags of ``pkt`` (IPv4/IPv6; RFC 9293 §3.1), 0 when it is no (first fragment of a) TCP segment
    or has IPv6 extension headers."""
    version = pkt[0] >> 4 if pkt else 0
    if version == 4:
        if len(pkt) < 20 or pkt[9] != 6 or (pkt[6] & 0x1F) or pkt[7]:  # not TCP, or not the first fragment
            return 0
        off = (pkt[0] & 0x0F) * 4 + 13
    elif version == 6:
        if len(pkt) < 40 or pkt[6] != 6:  # TCP directly after the fixed header only
            return 0
        off = 53
    else:
        return 0
    return pkt[off] if len(pkt) > off else 0


def tcp_syn(pkt: bytes) -> bool:
    """Whether ``pkt`` is a TCP SYN without ACK: a new connection's first packet (RFC 9293 §3.5)."""
    return tcp_flags(pkt) & _SYN_ACK == _SYN


def flow_key(pkt: bytes, reverse: bool = False) -> bytes:
    """Addresses and ports of a TCP/UDP packet without IP options (IPv4) or extension headers (IPv6), as
    source, destination, source port, destination port; ``reverse``: as the answer's."""
    if pkt[0] >> 4 == 4:
        ports = (pkt[0] & 0x0F) * 4
        src, dst = pkt[12:16], pkt[16:20]
    else:
        ports = 40
        src, dst = pkt[8:24], pkt[24:40]
    sport, dport = pkt[ports : ports + 2], pkt[ports + 2 : ports + 4]
    return dst + src + dport + sport if reverse else src + dst + sport + dport


def _ike_ignored(data: bytes, addr: tuple[str, int]) -> None:
    """Default IKE receiver when no service is attached (standalone data plane)."""


class UserspaceDataPlane:
    """Implements :class:`ikeguard.dataplane.base.DataPlane` with a TUN device and one UDP socket."""

    def __init__(self, tun_name: str, sock: socket.socket, *, path_mtu: int = 1500,
                 tun_addresses: tuple[str, ...] = (), on_ike: IkeCallback = _ike_ignored,
                 tun_mtu: int | None = None, rekeyed_inbound_linger: float = REKEYED_INBOUND_LINGER,
                 tun_fd: int | None = None, manage_routes: bool = True,
                 handoff: dict[int, socket.socket] | None = None,
                 handoff_in: socket.socket | None = None, tun_offload: bool = False) -> None:
        self.table = SaTable(path_mtu=path_mtu)
        self.rekeyed_inbound_linger = rekeyed_inbound_linger
        self.sock = sock
        self.on_ike = on_ike
        self.stats: dict[str, int] = {"keepalives_in": 0, "ike_in": 0, "ike_errors": 0, "send_errors": 0,
                                      "tun_errors": 0, "gso_sends": 0, "gro_batches": 0,
                                      "handed_off": 0, "handed_in": 0, "handoff_drops": 0, "tun_merged": 0,
                                      "syn_spread": 0, "syn_claims": 0, "synack_followed": 0,
                                      "ack_followed": 0}
        self.manage_routes = manage_routes
        self.handoff = handoff or {}
        self.handoff_in = handoff_in
        # this worker's index: the one the hand-off map (one entry per other worker) leaves out
        self.worker_index = next(k for k in range(len(self.handoff) + 1) if k not in self.handoff)
        self._syns = 0  # TCP SYNs dealt (module docstring: spreading new connections)
        self._claims: dict[bytes, int] = {}  # flow key of a SYN another worker decrypted -> that worker
        self._claim_syns = bool(self.handoff)
        self._dealt: dict[bytes, int] = {}  # flow key of a SYN this worker dealt away -> the worker
        self._dealt_misses = 0
        self.vnet = tun_offload  # IFF_VNET_HDR: decrypted TCP runs written as one GSO packet (coalesce.py)
        if tun_fd is None:
            self.tun_fd, self.tun_name = open_tun(tun_name, vnet_hdr=tun_offload)
        else:
            self.tun_fd, self.tun_name = tun_fd, tun_name
        self._sources: dict[int, str] = {}
        for cidr in tun_addresses:
            iface = ipaddress.ip_interface(cidr)
            self._sources.setdefault(iface.version, str(iface.ip))
        self.fixed_tun_mtu = tun_mtu
        if manage_routes:
            configure_tun(self.tun_name, self.tun_mtu(), tun_addresses)
        self._routes: dict[int, list[str]] = {}
        self.gso = True
        self._raw: dict[int, socket.socket] = {}  # IP version -> raw ESP socket (opened on first use)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lingering: dict[int, asyncio.TimerHandle] = {}  # inbound SPI -> its removal (after a rekey)
        sock.setblocking(True)  # sends block briefly under pressure (backpressure); reads use MSG_DONTWAIT
        with contextlib.suppress(OSError):  # UDP GRO (Linux >= 5.0): fewer, larger reads
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # 33/32 = SO_*BUFFORCE
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)

    # --- DataPlane ------------------------------------------------------------------------------
    @property
    def features(self) -> DataPlaneFeatures:
        """What this backend implements."""
        return FEATURES

    def alloc_spi(self) -> int:
        """A fresh inbound SPI."""
        return self.table.alloc_spi()

    def add_sa(self, sa: SaConfig) -> None:
        """Install one direction (outbound: make-before-break switch of its policy)."""
        if not sa.encap:
            self._raw_socket(sa.destination.address.version)
        self.table.add_sa(sa)
        if sa.direction is SaDirection.OUTBOUND and sa.child_uniqueid not in self._routes:
            self.add_policy(sa.child_uniqueid, sa.local_ts, sa.remote_ts)

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            encap: bool, children: Collection[int] | None = None) -> None:
        """Move SAs (of the Child SAs ``children``, see :class:`SaTable`) to new outer endpoints."""
        self.table.update_sa_addresses(spis, local, remote, children)

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Remove one direction of Child SA ``child_uniqueid`` (another peer's SA with the same outbound SPI
        stays); routes stay (fail closed). An inbound SA replaced by a rekey keeps decrypting for
        ``rekeyed_inbound_linger`` seconds: the peer's packets sent on it just before it switched may still
        sit in our socket buffer when the DELETE exchange completes (IKE and ESP arrive on different sockets,
        so their order is not kept). Its counters are returned now."""
        if (direction is SaDirection.INBOUND and self.rekeyed_inbound_linger > 0 and self._loop is not None
                and not self._loop.is_closed() and self.table.has_successor(spi, child_uniqueid)):
            counters = self.table.counters(spi, direction, child_uniqueid)
            self._lingering[spi] = self._loop.call_later(self.rekeyed_inbound_linger, self._expire_inbound,
                                                         spi, child_uniqueid)
            return counters
        return self.table.delete_sa(spi, direction, child_uniqueid)

    def _expire_inbound(self, spi: int, child_uniqueid: int | None = None) -> None:
        self._lingering.pop(spi, None)
        self.table.delete_sa(spi, SaDirection.INBOUND, child_uniqueid)

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Route the remote selectors into the TUN (with the blackhole fallback)."""
        policy = self.table.add_policy(child_uniqueid, local_ts, remote_ts)
        if not self.manage_routes:
            self._routes[child_uniqueid] = []
            return
        shared = next((nets for cid, nets in self._routes.items()
                       if cid != child_uniqueid and self.table.policy(cid) is policy), None)
        self._routes[child_uniqueid] = (
            shared if shared is not None else install_routes(self.tun_name, remote_ts, self._sources))

    def remove_policy(self, child_uniqueid: int) -> None:
        """Remove a Child SA's policy and its routes."""
        nets = self._routes.pop(child_uniqueid, [])
        if self.table.remove_policy(child_uniqueid) is not None:  # not shared with a rekeyed Child SA
            remove_routes(self.tun_name, nets)

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """Live counters of one SA (of Child SA ``child_uniqueid`` when given)."""
        return self.table.counters(spi, direction, child_uniqueid)

    def subscribe(self, callback: EventCallback) -> None:
        """Deliver upcalls to ``callback``."""
        self.table.subscribe(callback)

    def _raw_socket(self, version: int) -> socket.socket:
        """The raw socket for ESP without UDP encapsulation (IP protocol 50, RFC 4303 §3.1)."""
        raw = self._raw.get(version)
        if raw is None:
            family = socket.AF_INET6 if version == 6 else socket.AF_INET
            raw = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
            raw.setblocking(False)
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)
            self._raw[version] = raw
            if self._loop is not None:
                self._loop.add_reader(raw.fileno(), self._on_raw, raw, version)
        return raw

    # --- IKE side of the shared socket -------------------------------------------------------------
    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """The service's IKE sockets need nothing (this plane's own socket carries IKE on 4500)."""

    def ike_shares(self) -> Sequence[IkeShare]:
        """This plane's NAT-T socket carries IKE (``on_ike``, ``send_ike``)."""
        return (self,)

    def send_ike(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send an IKE message on the NAT-T socket with the non-ESP marker (RFC 3948 §2.2)."""
        self.sock.sendto(NON_ESP_MARKER + data, addr)

    def send_keepalive(self, addr: tuple[str, int]) -> None:
        """Send a NAT keepalive (RFC 3948 §2.3)."""
        self.sock.sendto(KEEPALIVE, addr)

    # --- packet loop ------------------------------------------------------------------------------
    def tun_mtu(self) -> int:
        """The TUN MTU: path MTU minus the worst-case ESP-in-UDP overhead of the transforms we run
        (outer IPv4 + UDP + ESP header + 16-octet IV + 15 padding + trailer + 32-octet ICV), unless fixed.
        Packets larger than an SA's own inner MTU get ICMP "fragmentation needed"/"packet too big"."""
        if self.fixed_tun_mtu is not None:
            return self.fixed_tun_mtu
        return self.table.path_mtu - 28 - (8 + 16 + 15 + 2 + 32)

    def set_path_mtu(self, mtu: int) -> None:
        """Follow a path MTU change: new SAs' inner MTU, the TUN MTU, and MSS clamping adjust."""
        self.table.path_mtu = mtu
        if self.manage_routes:
            configure_tun(self.tun_name, self.tun_mtu())

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Register the TUN and socket readers on ``loop``."""
        self._loop = loop
        loop.add_reader(self.tun_fd, self._on_tun)
        loop.add_reader(self.sock.fileno(), self._on_udp)
        if self.handoff_in is not None:
            loop.add_reader(self.handoff_in.fileno(), self._on_handoff)
        for version, raw in self._raw.items():
            loop.add_reader(raw.fileno(), self._on_raw, raw, version)

    def close(self) -> None:
        """Stop reading and close the TUN device (its routes go with it; blackholes stay)."""
        for spi, handle in list(self._lingering.items()):
            handle.cancel()
            self.table.delete_sa(spi, SaDirection.INBOUND)
        self._lingering.clear()
        if self._loop is not None:
            self._loop.remove_reader(self.tun_fd)
            self._loop.remove_reader(self.sock.fileno())
            if self.handoff_in is not None:
                self._loop.remove_reader(self.handoff_in.fileno())
            for raw in self._raw.values():
                self._loop.remove_reader(raw.fileno())
        for raw in self._raw.values():
            raw.close()
        os.close(self.tun_fd)

    def _on_tun(self) -> None:
        """Drain the TUN: protect each packet; consecutive ESP-in-UDP packets for one destination go out as
        UDP GSO sends (equal-size segments, the last one may be shorter: the kernel's rule; at most 64
        segments and 64 KiB per send). Hot loop: bound methods and constants in locals."""
        outbound, read, fd, send = self.table.outbound, os.read, self.tun_fd, self.send_segments
        vnet, spread, dealt = self.vnet, bool(self.handoff), self._dealt
        segments: list[bytes] = []
        dest: tuple[str, int] = ("", 0)
        size = total = 0
        for _ in range(BATCH):
            try:
                pkt = read(fd, 65535)
            except BlockingIOError:
                break
            if vnet:
                pkt = pkt[VNET_LEN:]  # no offloads enabled for reads: the header is all zero
            if spread and len(pkt) > 40 and (pkt[33] & _SYN if pkt[0] == 0x45 else pkt[0] >> 4 == 6) \
                    and self._spread(pkt):
                continue
            if dealt and len(pkt) <= 100 and self._follow_dealt(pkt):
                continue
            result = outbound(pkt)
            if result is None:
                continue
            if result.__class__ is Send:
                assert isinstance(result, Send)
                if not result.encap:
                    self._send_raw(result)
                    continue
                data, addr = result.data, result.sockaddr
                n = len(data)
                if segments and (n > size or addr != dest or total + n > GSO_MAX_BYTES
                                 or len(segments) >= GSO_MAX_SEGMENTS):
                    send(segments, dest)
                    segments, total = [], 0
                if not segments:
                    dest, size = addr, n
                segments.append(data)
                total += n
                if n < size:  # a shorter segment ends a GSO batch
                    send(segments, dest)
                    segments, total = [], 0
                continue
            if result.__class__ is Forward:
                assert isinstance(result, Forward)
                self._hand_off(result)
                continue
            self.write_tun(result.data)
        if segments:
            send(segments, dest)

    def _spread(self, pkt: bytes) -> bool:
        """Deal a TCP SYN to the next worker in turn, or hand a SYN-ACK to the worker that decrypted its SYN
        (module docstring); True when the packet was handed over."""
        flags = tcp_flags(pkt)
        if flags & _SYN_ACK == _SYN:
            target = (self.worker_index + self._syns) % (len(self.handoff) + 1)
            self._syns += 1
            counter = "syn_spread"
        elif flags & _SYN_ACK == _SYN_ACK:
            self._on_handoff()  # claims sent before the SYN was written are waiting there
            claimed = self._claims.pop(flow_key(pkt, reverse=True), None)
            if claimed is None:
                return False
            target, counter = claimed, "synack_followed"
        else:
            return False
        if target == self.worker_index or not self.table.has_sa_in(pkt, target):
            return False
        if counter == "syn_spread":
            if len(self._dealt) >= CLAIMS:
                self._dealt.clear()
            self._dealt[flow_key(pkt)] = target
        self._hand_off(Forward(target, pkt))
        self.stats[counter] += 1
        return True

    def _follow_dealt(self, pkt: bytes) -> bool:
        """A short packet of a flow this worker dealt away (the handshake's ACK): to the same worker."""
        if not tcp_flags(pkt):
            return False
        target = self._dealt.pop(flow_key(pkt), None)
        if target is None:
            self._dealt_misses += 1
            if self._dealt_misses >= DEALT_MISSES:  # its ACK took the dealt worker's queue directly
                self._dealt.clear()
                self._dealt_misses = 0
            return False
        self._dealt_misses = 0
        self._hand_off(Forward(target, pkt))
        self.stats["ack_followed"] += 1
        return True

    def _claim(self, syn: bytes) -> None:
        """Tell the other workers that this one decrypted ``syn`` (before it is written: module docstring)."""
        message = CLAIM + bytes((self.worker_index,)) + flow_key(syn)
        for peer in self.handoff.values():
            with contextlib.suppress(OSError):  # a full queue: the SYN-ACK takes the hash's worker
                peer.send(message, socket.MSG_DONTWAIT)
        self.stats["syn_claims"] += 1

    def write_tun(self, packet: bytes) -> None:
        """One packet into the TUN device (with an empty virtio-net header when offloads are on)."""
        try:
            if self.vnet:
                os.writev(self.tun_fd, (VNET_NONE, packet))
            else:
                os.write(self.tun_fd, packet)
        except OSError:
            self.stats["tun_errors"] += 1

    def _write_coalesced(self, packets: list[bytes]) -> None:
        """Decrypted packets of one wake-up: TCP runs merged into GSO packets (coalesce.py)."""
        writev, fd = os.writev, self.tun_fd
        for packet, gso in coalesce(packets):
            try:
                writev(fd, (vnet_header(packet, gso), packet))
            except OSError:
                self.stats["tun_errors"] += 1
            if gso:
                self.stats["tun_merged"] += 1

    def _hand_off(self, forward: Forward) -> None:
        """Give a packet to the worker owning its policy's outbound SA (one sender per SA)."""
        peer = self.handoff.get(forward.worker)
        try:
            if peer is None:
                raise OSError
            peer.send(forward.data, socket.MSG_DONTWAIT)
            self.stats["handed_off"] += 1
        except OSError:  # the owner's queue is full or it is gone: dropped, like a full TUN queue
            self.stats["handoff_drops"] += 1

    def _on_handoff(self) -> None:
        """Packets another worker read from its TUN queue for an outbound SA this worker owns."""
        assert self.handoff_in is not None
        recv, outbound = self.handoff_in.recv, self.table.outbound
        for _ in range(BATCH):
            try:
                pkt = recv(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if pkt[:1] == CLAIM:
                if len(self._claims) >= CLAIMS:
                    self._claims.clear()
                self._claims[pkt[2:]] = pkt[1]
                continue
            self.stats["handed_in"] += 1
            result = outbound(pkt)
            if result is None:
                continue
            if isinstance(result, Send):
                if result.encap:
                    self.send_segments([result.data], result.sockaddr)
                else:
                    self._send_raw(result)
            elif isinstance(result, Forward):  # we lost the SA meanwhile: never bounce packets around
                self.stats["handoff_drops"] += 1
            else:
                self.write_tun(result.data)

    def send_segments(self, segments: list[bytes], dest: tuple[str, int]) -> None:
        """Send ESP packets to one destination: one ``sendmsg`` with UDP GSO (``UDP_SEGMENT``) when there
        are several and the kernel supports it, else one ``sendto`` each."""
        try:
            if len(segments) > 1 and self.gso:
                try:
                    self.sock.sendmsg([b"".join(segments)],
                                      [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(segments[0])))], 0, dest)
                    self.stats["gso_sends"] += 1
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        raise
                    self.gso = False  # kernel or device without UDP GSO: plain sends from now on
            for seg in segments:
                self.sock.sendto(seg, dest)
        except OSError:
            self.stats["send_errors"] += 1

    def _send_raw(self, send: Send) -> None:
        try:
            self._raw_socket(send.destination.address.version).sendto(send.data, (send.sockaddr[0], 0))
        except OSError:
            self.stats["send_errors"] += 1

    def _on_raw(self, raw: socket.socket, version: int) -> None:
        table = self.table
        for _ in range(BATCH):
            try:
                data = raw.recv(65535)
            except BlockingIOError:
                return
            if version == 4:  # IPv4 raw sockets deliver the IP header
                if len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4 :]
            inner = table.inbound(data)
            if inner is not None:
                self.write_tun(inner)

    def _on_udp(self) -> None:
        sock = self.sock
        pending: list[bytes] | None = [] if self.vnet else None  # decrypted, for coalescing
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(65535, _GRO_CMSG_SPACE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            segment = 0
            for level, kind, value in ancillary:
                if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    segment = struct.unpack("=i", value[:4])[0]
            if segment <= 0 or len(data) <= segment:
                self._datagram(data, addr, pending)
                continue
            self.stats["gro_batches"] += 1
            datagram = self._datagram
            for off in range(0, len(data), segment):  # UDP GRO: equal-size datagrams, the last may be short
                datagram(data[off : off + segment], addr, pending)
        if pending:
            self._write_coalesced(pending)

    def _datagram(self, data: bytes, addr: tuple[str, int], pending: list[bytes] | None = None) -> None:
        """Demultiplex one datagram on the shared port (RFC 3948 §2.2)."""
        kind = demux_udp4500(data)
        if kind is Udp4500.IKE:
            self.stats["ike_in"] += 1
            try:
                self.on_ike(data[4:], addr)
            except Exception:  # a receiver bug must not stop the data path; counted, the first one logged
                self.stats["ike_errors"] += 1
                if self.stats["ike_errors"] == 1:
                    log.exception("IKE message from %s on the NAT-T port could not be handled", addr[0])
            return
        if kind is Udp4500.KEEPALIVE:
            self.stats["keepalives_in"] += 1
            return
        inner = self.table.inbound(data)
        if inner is None:
            return
        if self._claim_syns and len(inner) > 40 and (inner[33] & _SYN if inner[0] == 0x45
                                                     else inner[0] >> 4 == 6) and tcp_syn(inner):
            self._claim(inner)
        if pending is not None:
            pending.append(inner)
            return
        try:
            os.write(self.tun_fd, inner)
        except OSError:
            self.stats["tun_errors"] += 1
