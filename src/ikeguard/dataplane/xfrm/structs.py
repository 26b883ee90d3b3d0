"""The Linux XFRM netlink structures (``<linux/xfrm.h>``) packed and unpacked with :mod:`struct`.

Hand-written because no PyPI library models XFRM messages: pyroute2 (0.9.x) only knows the
``NETLINK_XFRM`` number and the ``xfrm`` link kind, not states, policies or their attributes.
Host-order fields use ``=`` (native order, no implicit padding; padding is spelled out as ``x`` so every
layout below matches the C struct's size on the 64-bit ABIs the kernel supports); addresses, SPIs and
ports are network order (``!``), as the header declares them ``__be``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NETLINK_XFRM = 6
AF_INET = 2
AF_INET6 = 10
IPPROTO_ESP = 50

# nlmsghdr types and flags (<linux/netlink.h>)
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SOL_NETLINK = 270

# XFRM message types (enum, XFRM_MSG_BASE = 0x10)
XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ALLOCSPI = 0x16
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_POLEXPIRE = 0x1B
XFRM_MSG_MIGRATE = 0x21

# attributes (enum xfrm_attr_type_t)
XFRMA_ALG_AUTH = 1
XFRMA_ALG_CRYPT = 2
XFRMA_ENCAP = 4
XFRMA_TMPL = 5
XFRMA_SA = 6
XFRMA_POLICY = 7
XFRMA_LTIME_VAL = 9
XFRMA_REPLAY_VAL = 10
XFRMA_SRCADDR = 13
XFRMA_POLICY_TYPE = 16
XFRMA_ALG_AEAD = 18
XFRMA_ALG_AUTH_TRUNC = 20
XFRMA_MARK = 21
XFRMA_REPLAY_ESN_VAL = 23
XFRMA_SA_EXTRA_FLAGS = 24
XFRMA_IF_ID = 31

# multicast groups (enum xfrm_nlgroups); bind() takes 1 << (group - 1)
XFRMNLGRP_ACQUIRE = 1
XFRMNLGRP_EXPIRE = 2

XFRM_MODE_TRANSPORT = 0
XFRM_MODE_TUNNEL = 1
XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_FWD = 2
XFRM_POLICY_ALLOW = 0
XFRM_POLICY_BLOCK = 1
XFRM_STATE_AF_UNSPEC = 32
XFRM_STATE_ESN = 128
UDP_ENCAP_ESPINUDP = 2
XFRM_INF = 0xFFFFFFFFFFFFFFFF  # "no limit" in xfrm_lifetime_cfg

SELECTOR_LEN = 56
ID_LEN = 24
LIFETIME_CFG_LEN = 64
LIFETIME_CUR_LEN = 32
USERSA_INFO_LEN = 224
USERPOLICY_INFO_LEN = 168
USER_TMPL_LEN = 64
USERSA_ID_LEN = 24
USERPOLICY_ID_LEN = 64
USERSPI_INFO_LEN = 232
USER_EXPIRE_LEN = 232
USER_ACQUIRE_LEN = 280
USER_POLEXPIRE_LEN = 176
ENCAP_TMPL_LEN = 24
ALGO_NAME_LEN = 64

_HDR = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")


class XfrmDecodeError(ValueError):
    """Bytes that are not a well-formed XFRM netlink message."""


def family_of(address: IpAddress) -> int:
    """AF_INET or AF_INET6 for ``address``."""
    return AF_INET if address.version == 4 else AF_INET6


def pack_address(address: IpAddress | None) -> bytes:
    """``xfrm_address_t``: 16 octets, an IPv4 address in the first four."""
    if address is None:
        return bytes(16)
    return address.packed.ljust(16, b"\x00")


def unpack_address(data: bytes, family: int) -> IpAddress:
    """Inverse of :func:`pack_address` for ``family``."""
    if family == AF_INET6:
        return ipaddress.IPv6Address(data[:16])
    return ipaddress.IPv4Address(data[:4])


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True)
class Selector:
    """``struct xfrm_selector``: addresses with prefix lengths, ports with masks, protocol."""

    family: int = 0
    daddr: IpAddress | None = None
    saddr: IpAddress | None = None
    prefixlen_d: int = 0
    prefixlen_s: int = 0
    dport: int = 0
    dport_mask: int = 0
    sport: int = 0
    sport_mask: int = 0
    proto: int = 0
    ifindex: int = 0
    user: int = 0

    def pack(self) -> bytes:
        """The 56 octets of the C struct."""
        return (pack_address(self.daddr) + pack_address(self.saddr)
                + struct.pack("!HHHH", self.dport, self.dport_mask, self.sport, self.sport_mask)
                + struct.pack("=HBBB3xiI", self.family, self.prefixlen_d, self.prefixlen_s, self.proto,
                              self.ifindex, self.user))

    @classmethod
    def unpack(cls, data: bytes) -> Selector:
        """Decode 56 octets."""
        dport, dmask, sport, smask = struct.unpack_from("!HHHH", data, 32)
        family, pd, ps, proto, ifindex, user = struct.unpack_from("=HBBB3xiI", data, 40)
        return cls(family, unpack_address(data[0:16], family), unpack_address(data[16:32], family),
                   pd, ps, dport, dmask, sport, smask, proto, ifindex, user)


@dataclass(frozen=True)
class XfrmId:
    """``struct xfrm_id``: destination, SPI, IPsec protocol: the key of a state."""

    daddr: IpAddress | None
    spi: int
    proto: int = IPPROTO_ESP

    def pack(self) -> bytes:
        """24 octets."""
        return pack_address(self.daddr) + struct.pack("!I", self.spi) + struct.pack("=B3x", self.proto)

    @classmethod
    def unpack(cls, data: bytes, family: int) -> XfrmId:
        """Decode 24 octets."""
        return cls(unpack_address(data[:16], family), struct.unpack_from("!I", data, 16)[0], data[20])


@dataclass(frozen=True)
class LifetimeCfg:
    """``struct xfrm_lifetime_cfg``: soft/hard byte and packet limits and add/use expiry times."""

    soft_bytes: int = XFRM_INF
    hard_bytes: int = XFRM_INF
    soft_packets: int = XFRM_INF
    hard_packets: int = XFRM_INF
    soft_add_seconds: int = 0
    hard_add_seconds: int = 0
    soft_use_seconds: int = 0
    hard_use_seconds: int = 0

    def pack(self) -> bytes:
        """64 octets."""
        return struct.pack("=8Q", self.soft_bytes, self.hard_bytes, self.soft_packets, self.hard_packets,
                           self.soft_add_seconds, self.hard_add_seconds, self.soft_use_seconds,
                           self.hard_use_seconds)

    @classmethod
    def unpack(cls, data: bytes) -> LifetimeCfg:
        """Decode 64 octets."""
        return cls(*struct.unpack_from("=8Q", data))


@dataclass(frozen=True)
class LifetimeCur:
    """``struct xfrm_lifetime_cur``: what the kernel counted (the SA's byte/packet counters)."""

    byte_count: int = 0
    packet_count: int = 0
    add_time: int = 0
    use_time: int = 0

    def pack(self) -> bytes:
        """32 octets."""
        return struct.pack("=4Q", self.byte_count, self.packet_count, self.add_time, self.use_time)

    @classmethod
    def unpack(cls, data: bytes) -> LifetimeCur:
        """Decode 32 octets."""
        return cls(*struct.unpack_from("=4Q", data))


@dataclass(frozen=True)
class UsersaInfo:
    """``struct xfrm_usersa_info``: the fixed part of NEWSA/UPDSA/GETSA replies (224 octets)."""

    sel: Selector
    id: XfrmId
    saddr: IpAddress | None
    family: int
    mode: int = XFRM_MODE_TUNNEL
    reqid: int = 0
    replay_window: int = 0
    flags: int = 0
    lft: LifetimeCfg = field(default_factory=LifetimeCfg)
    curlft: LifetimeCur = field(default_factory=LifetimeCur)
    stats: tuple[int, int, int] = (0, 0, 0)  # replay_window, replay, integrity_failed drops
    seq: int = 0

    def pack(self) -> bytes:
        """224 octets."""
        return (self.sel.pack() + self.id.pack() + pack_address(self.saddr) + self.lft.pack()
                + self.curlft.pack() + struct.pack("=3I", *self.stats)
                + struct.pack("=IIHBBB7x", self.seq, self.reqid, self.family, self.mode, self.replay_window,
                              self.flags))

    @classmethod
    def unpack(cls, data: bytes) -> UsersaInfo:
        """Decode 224 octets."""
        if len(data) < USERSA_INFO_LEN:
            raise XfrmDecodeError(f"xfrm_usersa_info needs {USERSA_INFO_LEN} octets, got {len(data)}")
        seq, reqid, family, mode, window, flags = struct.unpack_from("=IIHBBB", data, 204)
        stats = struct.unpack_from("=3I", data, 192)
        return cls(Selector.unpack(data[0:56]), XfrmId.unpack(data[56:80], family),
                   unpack_address(data[80:96], family), family, mode, reqid, window, flags,
                   LifetimeCfg.unpack(data[96:160]), LifetimeCur.unpack(data[160:192]),
                   (stats[0], stats[1], stats[2]), seq)


@dataclass(frozen=True)
class UserpolicyInfo:
    """``struct xfrm_userpolicy_info``: selector, priority, direction and action of a policy (168 octets)."""

    sel: Selector
    dir: int
    priority: int = 0
    index: int = 0
    action: int = XFRM_POLICY_ALLOW
    flags: int = 0
    share: int = 0
    lft: LifetimeCfg = field(default_factory=LifetimeCfg)
    curlft: LifetimeCur = field(default_factory=LifetimeCur)

    def pack(self) -> bytes:
        """168 octets."""
        return (self.sel.pack() + self.lft.pack() + self.curlft.pack()
                + struct.pack("=IIBBBB4x", self.priority, self.index, self.dir, self.action, self.flags,
                              self.share))

    @classmethod
    def unpack(cls, data: bytes) -> UserpolicyInfo:
        """Decode 168 octets."""
        if len(data) < USERPOLICY_INFO_LEN:
            raise XfrmDecodeError(f"xfrm_userpolicy_info needs {USERPOLICY_INFO_LEN} octets")
        priority, index, dir_, action, flags, share = struct.unpack_from("=IIBBBB", data, 152)
        return cls(Selector.unpack(data[0:56]), dir_, priority, index, action, flags, share,
                   LifetimeCfg.unpack(data[56:120]), LifetimeCur.unpack(data[120:152]))


@dataclass(frozen=True)
class UserTmpl:
    """``struct xfrm_user_tmpl``: which SA a policy needs (tunnel endpoints, protocol, reqid, mode)."""

    id: XfrmId
    family: int
    saddr: IpAddress | None
    reqid: int
    mode: int = XFRM_MODE_TUNNEL
    share: int = 0
    optional: int = 0
    aalgos: int = 0xFFFFFFFF
    ealgos: int = 0xFFFFFFFF
    calgos: int = 0xFFFFFFFF

    def pack(self) -> bytes:
        """64 octets."""
        return (self.id.pack() + struct.pack("=H2x", self.family) + pack_address(self.saddr)
                + struct.pack("=IBBBxIII", self.reqid, self.mode, self.share, self.optional, self.aalgos,
                              self.ealgos, self.calgos))

    @classmethod
    def unpack(cls, data: bytes) -> UserTmpl:
        """Decode 64 octets."""
        family = struct.unpack_from("=H", data, 24)[0]
        reqid, mode, share, optional, a, e, c = struct.unpack_from("=IBBBxIII", data, 44)
        return cls(XfrmId.unpack(data[:24], family), family, unpack_address(data[28:44], family), reqid,
                   mode, share, optional, a, e, c)


@dataclass(frozen=True)
class EncapTmpl:
    """``struct xfrm_encap_tmpl``: ESP-in-UDP ports (RFC 3948); ``encap_oa`` is unused for ESPINUDP."""

    sport: int
    dport: int
    encap_type: int = UDP_ENCAP_ESPINUDP
    oa: IpAddress | None = None

    def pack(self) -> bytes:
        """24 octets."""
        return (struct.pack("=H", self.encap_type) + struct.pack("!HH", self.sport, self.dport) + bytes(2)
                + pack_address(self.oa))

    @classmethod
    def unpack(cls, data: bytes, family: int) -> EncapTmpl:
        """Decode 24 octets."""
        encap_type = struct.unpack_from("=H", data)[0]
        sport, dport = struct.unpack_from("!HH", data, 2)
        return cls(sport, dport, encap_type, unpack_address(data[8:24], family))


@dataclass(frozen=True)
class ReplayEsn:
    """``struct xfrm_replay_state_esn``: window, bitmap, 64-bit sequence numbers (RFC 4303 §3.3.3)."""

    replay_window: int
    oseq: int = 0
    seq: int = 0
    oseq_hi: int = 0
    seq_hi: int = 0
    bmp: tuple[int, ...] = ()

    @property
    def bmp_len(self) -> int:
        """Bitmap length in 32-bit words (the window rounded up)."""
        return len(self.bmp) if self.bmp else (self.replay_window + 31) // 32

    def pack(self) -> bytes:
        """24 octets plus the bitmap."""
        bmp = self.bmp or (0,) * self.bmp_len
        return struct.pack(f"=6I{len(bmp)}I", len(bmp), self.oseq, self.seq, self.oseq_hi, self.seq_hi,
                           self.replay_window, *bmp)

    @classmethod
    def unpack(cls, data: bytes) -> ReplayEsn:
        """Decode the struct and its bitmap."""
        bmp_len, oseq, seq, oseq_hi, seq_hi, window = struct.unpack_from("=6I", data)
        if len(data) < 24 + 4 * bmp_len:
            raise XfrmDecodeError("xfrm_replay_state_esn bitmap truncated")
        return cls(window, oseq, seq, oseq_hi, seq_hi, struct.unpack_from(f"={bmp_len}I", data, 24))


@dataclass(frozen=True)
class Algo:
    """``xfrm_algo`` / ``xfrm_algo_auth`` / ``xfrm_algo_aead``: kernel crypto name, key, ICV or truncation."""

    name: str
    key: bytes | bytearray = field(repr=False)
    icv_or_trunc_bits: int | None = None  # None for xfrm_algo (XFRMA_ALG_CRYPT)

    def pack(self) -> bytes:
        """Name (64 octets, NUL padded), key length in bits, [ICV/truncation bits], key."""
        head = self.name.encode("ascii").ljust(ALGO_NAME_LEN, b"\x00")
        if self.icv_or_trunc_bits is None:
            return head + struct.pack("=I", len(self.key) * 8) + self.key
        return head + struct.pack("=II", len(self.key) * 8, self.icv_or_trunc_bits) + self.key

    @classmethod
    def unpack(cls, data: bytes, *, with_length: bool) -> Algo:
        """Decode; ``with_length`` for the auth-trunc and AEAD forms."""
        name = data[:ALGO_NAME_LEN].split(b"\x00", 1)[0].decode("ascii", "replace")
        if with_length:
            bits, extra = struct.unpack_from("=II", data, ALGO_NAME_LEN)
            return cls(name, data[72 : 72 + bits // 8], extra)
        bits = struct.unpack_from("=I", data, ALGO_NAME_LEN)[0]
        return cls(name, data[68 : 68 + bits // 8])


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (``struct nlattr`` + payload, padded to 4 octets)."""
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + bytes(_align4(length) - length)


def parse_attrs(data: bytes) -> list[tuple[int, bytes]]:
    """Split a run of netlink attributes into (type, payload) pairs, in order."""
    out: list[tuple[int, bytes]] = []
    off = 0
    while off + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, off)
        if length < _ATTR.size or off + length > len(data):
            raise XfrmDecodeError(f"netlink attribute at {off} has bad length {length}")
        out.append((kind & 0x3FFF, data[off + _ATTR.size : off + length]))
        off += _align4(length)
    return out


def nlmsg(msg_type: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """A netlink message: ``nlmsghdr`` + payload."""
    return _HDR.pack(_HDR.size + len(payload), msg_type, flags, seq, pid) + payload


def split_nlmsgs(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split a datagram into (type, flags, seq, payload) messages."""
    out: list[tuple[int, int, int, bytes]] = []
    off = 0
    while off + _HDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < _HDR.size or off + length > len(data):
            raise XfrmDecodeError(f"netlink message at {off} has bad length {length}")
        out.append((msg_type, flags, seq, data[off + _HDR.size : off + length]))
        off += _align4(length)
    return out
