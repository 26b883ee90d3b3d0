"""Build the XFRM netlink requests ikeguard sends: states (NEWSA/UPDSA), policies, SPI allocation, lookups.

Hand-written over :mod:`ikeguard.dataplane.xfrm.structs` (no library covers XFRM, see there). Each builder
returns the message *payload* (fixed struct + attributes, no ``nlmsghdr``); the socket adds the header.
Transform names are the kernel crypto API's, as strongSwan and iproute2 use them: AES-GCM-16 is
``rfc4106(gcm(aes))`` with a 128-bit ICV and the 4-octet salt at the end of the key (RFC 4106 §8.1),
ChaCha20-Poly1305 is ``rfc7539esp(chacha20,poly1305)`` with its 4-octet salt likewise (RFC 7634 §2),
AES-CBC pairs with ``hmac(sha256)`` truncated to 128 bits, sha384 to 192, sha512 to 256 (RFC 4868 §2.3).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ikeguard.dataplane.base import DataPlaneError, SaConfig
from ikeguard.dataplane.xfrm.structs import (
    AF_INET,
    IPPROTO_ESP,
    XFRM_MODE_TRANSPORT,
    XFRM_MODE_TUNNEL,
    XFRM_POLICY_ALLOW,
    XFRM_STATE_AF_UNSPEC,
    XFRM_STATE_ESN,
    XFRMA_ALG_AEAD,
    XFRMA_ALG_AUTH_TRUNC,
    XFRMA_ALG_CRYPT,
    XFRMA_ENCAP,
    XFRMA_IF_ID,
    XFRMA_LTIME_VAL,
    XFRMA_MARK,
    XFRMA_REPLAY_ESN_VAL,
    XFRMA_REPLAY_VAL,
    XFRMA_SRCADDR,
    XFRMA_TMPL,
    Algo,
    EncapTmpl,
    IpAddress,
    LifetimeCfg,
    LifetimeCur,
    ReplayEsn,
    Selector,
    UserpolicyInfo,
    UsersaInfo,
    UserTmpl,
    XfrmId,
    attr,
    family_of,
    pack_address,
)
from ikeguard.policy.ts import TrafficSelector

ENCR_AES_CBC = 12
ENCR_AES_GCM_16 = 20
ENCR_CHACHA20_POLY1305 = 28
AEAD_ICV_BITS = 128  # GCM-16 and Poly1305 tags are 16 octets
AEAD_NAMES = {ENCR_AES_GCM_16: "rfc4106(gcm(aes))", ENCR_CHACHA20_POLY1305: "rfc7539esp(chacha20,poly1305)"}
# IKEv2 integrity id -> (kernel name, key octets, truncation bits)  (RFC 4868 §2.1, §2.3)
HMAC_NAMES = {12: ("hmac(sha256)", 32, 128), 13: ("hmac(sha384)", 48, 192), 14: ("hmac(sha512)", 64, 256)}
LEGACY_REPLAY_MAX = 32  # xfrm_usersa_info.replay_window counts bits of a 32-bit bitmap
ICMP_PROTOCOLS = (1, 58)
MAX_POLICY_SELECTORS = 256
PRIORITY_BASE = 0x30000


@dataclass(frozen=True)
class XfrmOptions:
    """Per-backend settings put on every state and policy: XFRM interface id and firewall mark."""

    if_id: int = 0  # 0 = no XFRMA_IF_ID (policies/states apply to all traffic)
    mark: tuple[int, int] | None = None  # (value, mask) as XFRMA_MARK

    def attrs(self) -> bytes:
        """XFRMA_MARK and XFRMA_IF_ID attributes (empty when unset)."""
        out = b""
        if self.mark is not None:
            out += attr(XFRMA_MARK, struct.pack("=II", *self.mark))
        if self.if_id:
            out += attr(XFRMA_IF_ID, struct.pack("=I", self.if_id))
        return out


def sa_algorithms(sa: SaConfig) -> bytes:
    """The algorithm attributes of ``sa``; :class:`DataPlaneError` for transforms or keys XFRM can't take."""
    bits = sa.encr_key_bits
    if sa.encr_id in AEAD_NAMES:
        cipher = 32 if sa.encr_id == ENCR_CHACHA20_POLY1305 else (bits or 0) // 8
        if sa.encr_id == ENCR_AES_GCM_16 and bits not in (128, 192, 256):
            raise DataPlaneError(f"AES-GCM-16 key size {bits} is not 128, 192 or 256 bits")
        if len(sa.encr_key) != cipher + 4:  # key || 4-octet salt (RFC 4106 §8.1, RFC 7634 §2)
            raise DataPlaneError(f"SA {sa.spi:#010x}: AEAD key material must be {cipher + 4} octets "
                                 f"(key and salt), got {len(sa.encr_key)}")
        if sa.integ_id:
            raise DataPlaneError(f"SA {sa.spi:#010x}: an AEAD transform takes no integrity algorithm")
        return attr(XFRMA_ALG_AEAD, Algo(AEAD_NAMES[sa.encr_id], sa.encr_key, AEAD_ICV_BITS).pack())
    if sa.encr_id == ENCR_AES_CBC:
        if bits not in (128, 192, 256) or len(sa.encr_key) != bits // 8:
            raise DataPlaneError(f"SA {sa.spi:#010x}: AES-CBC needs a 128/192/256-bit key matching "
                                 f"its key size attribute")
        if sa.integ_id not in HMAC_NAMES:
            raise DataPlaneError(f"SA {sa.spi:#010x}: integrity transform {sa.integ_id} is not supported "
                                 f"by the XFRM backend (HMAC-SHA2-256/384/512 are)")
        name, key_len, trunc = HMAC_NAMES[sa.integ_id]
        if len(sa.integ_key) != key_len:
            raise DataPlaneError(f"SA {sa.spi:#010x}: {name} needs a {key_len}-octet key")
        return (attr(XFRMA_ALG_CRYPT, Algo("cbc(aes)", sa.encr_key).pack())
                + attr(XFRMA_ALG_AUTH_TRUNC, Algo(name, sa.integ_key, trunc).pack()))
    raise DataPlaneError(f"SA {sa.spi:#010x}: encryption transform {sa.encr_id} is not supported by the "
                         f"XFRM backend (AES-GCM-16, ChaCha20-Poly1305, AES-CBC are)")


def _limit(value: int) -> int:
    return value if value > 0 else 0xFFFFFFFFFFFFFFFF


def usersa_info(sa: SaConfig, reqid: int) -> UsersaInfo:
    """The fixed part of a NEWSA for ``sa`` (RFC 4301 §4.4.2 SAD entry)."""
    family = family_of(sa.destination.address)
    flags = 0
    selector = Selector()
    if sa.mode == "tunnel":
        # the policies select the inner traffic (RFC 4301 §5.2 inbound check through the policy's
        # template/reqid); the SA itself takes any inner family, as strongSwan installs it
        mode = XFRM_MODE_TUNNEL
        flags |= XFRM_STATE_AF_UNSPEC
    elif sa.mode == "transport":
        mode = XFRM_MODE_TRANSPORT
        selector = Selector(family=family, saddr=sa.source.address, daddr=sa.destination.address,
                            prefixlen_s=sa.source.address.max_prefixlen,
                            prefixlen_d=sa.destination.address.max_prefixlen)
    else:
        raise DataPlaneError(f"SA {sa.spi:#010x}: mode {sa.mode!r} is neither tunnel nor transport")
    esn_attr = sa.esn or sa.replay_window > LEGACY_REPLAY_MAX
    if sa.esn:
        flags |= XFRM_STATE_ESN
    lifetimes = LifetimeCfg(_limit(sa.soft_bytes), _limit(sa.hard_bytes), _limit(sa.soft_packets),
                            _limit(sa.hard_packets))
    return UsersaInfo(sel=selector, id=XfrmId(sa.destination.address, sa.spi, IPPROTO_ESP),
                      saddr=sa.source.address, family=family, mode=mode, reqid=reqid,
                      replay_window=0 if esn_attr else sa.replay_window, flags=flags, lft=lifetimes)


def newsa(sa: SaConfig, reqid: int, options: XfrmOptions, *, replay: bytes | None = None,
          curlft: LifetimeCur | None = None) -> bytes:
    """NEWSA/UPDSA payload: ``xfrm_usersa_info`` + algorithms + ESP-in-UDP + replay state + mark/if_id.
    ``replay`` (an XFRMA_REPLAY(_ESN)_VAL attribute read from the kernel) and ``curlft`` carry an SA's
    sequence numbers and counters across an address change (MOBIKE, RFC 4555)."""
    if sa.spi < 256:
        raise DataPlaneError(f"SPI {sa.spi} is reserved (RFC 4303 §2.1)")
    payload = usersa_info(sa, reqid).pack() + sa_algorithms(sa)
    if sa.encap:  # RFC 3948: ESP in UDP, non-ESP marker demultiplexing on the receiving socket
        payload += attr(XFRMA_ENCAP, EncapTmpl(sa.source.port, sa.destination.port).pack())
    if replay is not None:
        payload += replay
    elif sa.seq_out or sa.replay_top:
        payload += taken_over_replay(sa)
    elif sa.esn or sa.replay_window > LEGACY_REPLAY_MAX:  # RFC 4303 §3.3.3 / §3.4.3 (64-bit ESN, big windows)
        payload += attr(XFRMA_REPLAY_ESN_VAL, ReplayEsn(max(sa.replay_window, 1)).pack())
    if curlft is not None:
        payload += attr(XFRMA_LTIME_VAL, curlft.pack())
    return payload + options.attrs()


def usersa_id(daddr: IpAddress, spi: int, options: XfrmOptions, saddr: IpAddress | None = None) -> bytes:
    """DELSA/GETSA payload: ``xfrm_usersa_id`` (+ source address and mark)."""
    payload = (pack_address(daddr) + struct.pack("!I", spi)
               + struct.pack("=HBx", family_of(daddr), IPPROTO_ESP))
    if saddr is not None:
        payload += attr(XFRMA_SRCADDR, pack_address(saddr))
    if options.mark is not None:
        payload += attr(XFRMA_MARK, struct.pack("=II", *options.mark))
    return payload


def allocspi(daddr: IpAddress, options: XfrmOptions, low: int = 256, high: int = 0xFFFFFFFF) -> bytes:
    """ALLOCSPI payload: a larval ESP state for ``daddr`` whose SPI the kernel picks in [low, high]."""
    family = family_of(daddr)
    info = UsersaInfo(sel=Selector(), id=XfrmId(daddr, 0), saddr=None, family=family)
    return info.pack() + struct.pack("=II", low, high) + options.attrs()


def _address_blocks(ts: TrafficSelector) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return list(ipaddress.summarize_address_range(ts.start_address, ts.end_address))


def _port_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """Cover [start, end] exactly with (port, mask) blocks (selectors match ports under a mask)."""
    if start == 0 and end == 65535:
        return [(0, 0)]
    out: list[tuple[int, int]] = []
    port = start
    while port <= end:
        size = 1
        while port % (size * 2) == 0 and port + size * 2 - 1 <= end and size < 65536:
            size *= 2
        out.append((port, (0xFFFF & ~(size - 1)) if size < 65536 else 0))
        port += size
    return out


def _icmp_block(ts: TrafficSelector) -> tuple[tuple[int, int], tuple[int, int]]:
    """ICMP type (source-port field) and code (destination-port field) with masks (RFC 4301 §4.4.1.1)."""
    if ts.is_opaque or (ts.start_port == 0 and ts.end_port == 65535):
        return (0, 0), (0, 0)
    typ, code = ts.start_port >> 8, ts.start_port & 0xFF
    if ts.end_port >> 8 == typ and (ts.start_port & 0xFF, ts.end_port & 0xFF) == (0, 0xFF):
        return (typ, 0xFFFF), (0, 0)
    if ts.start_port == ts.end_port:
        return (typ, 0xFFFF), (code, 0xFFFF)
    raise DataPlaneError(f"ICMP type/code range {ts.start_port}-{ts.end_port} cannot be expressed as an "
                         f"XFRM selector (one type, or one type and code)")


def policy_selectors(local_ts: tuple[TrafficSelector, ...], remote_ts: tuple[TrafficSelector, ...], *,
                     inbound: bool) -> list[Selector]:
    """XFRM selectors covering exactly local x remote (RFC 4301 §4.4.1): ranges split into prefixes and
    port ranges into masked blocks; ``inbound`` swaps source and destination (in/fwd policies)."""
    out: list[Selector] = []
    for local in local_ts:
        for remote in remote_ts:
            if local.version != remote.version:
                continue
            if local.protocol and remote.protocol and local.protocol != remote.protocol:
                continue
            proto = local.protocol or remote.protocol
            if proto in ICMP_PROTOCOLS:
                side = local if not (local.start_port == 0 and local.end_port == 65535) else remote
                icmp_type, icmp_code = _icmp_block(side)
                port_pairs = [(icmp_type, icmp_code)]  # type/code, whatever the direction
            else:
                lports = [(0, 0)] if local.is_opaque or not proto else _port_blocks(local.start_port,
                                                                                    local.end_port)
                rports = [(0, 0)] if remote.is_opaque or not proto else _port_blocks(remote.start_port,
                                                                                     remote.end_port)
                port_pairs = [(lp, rp) if not inbound else (rp, lp) for lp in lports for rp in rports]
            family = AF_INET if local.version == 4 else 10
            for lnet in _address_blocks(local):
                for rnet in _address_blocks(remote):
                    src, dst = (rnet, lnet) if inbound else (lnet, rnet)
                    for (sport, smask), (dport, dmask) in port_pairs:
                        out.append(Selector(family, dst.network_address, src.network_address, dst.prefixlen,
                                            src.prefixlen, dport, dmask, sport, smask, proto))
                        if len(out) > MAX_POLICY_SELECTORS:
                            raise DataPlaneError(f"traffic selectors need more than {MAX_POLICY_SELECTORS} "
                                                 f"XFRM policies; narrow them")
    return out


def selector_priority(sel: Selector, base: int = PRIORITY_BASE) -> int:
    """Lower value = preferred: more specific selectors win (longer prefixes, protocol, ports)."""
    return (base - ((sel.prefixlen_s + sel.prefixlen_d) << 3) - (4 if sel.proto else 0)
            - (2 if sel.sport_mask else 0) - (1 if sel.dport_mask else 0))


def userpolicy(sel: Selector, direction: int, priority: int, options: XfrmOptions,
               tmpl: UserTmpl | None, action: int = XFRM_POLICY_ALLOW) -> bytes:
    """NEWPOLICY/UPDPOLICY payload: ``xfrm_userpolicy_info`` + template (+ mark/if_id)."""
    payload = UserpolicyInfo(sel=sel, dir=direction, priority=priority, action=action).pack()
    if tmpl is not None:
        payload += attr(XFRMA_TMPL, tmpl.pack())
    return payload + options.attrs()


def userpolicy_id(sel: Selector, direction: int, options: XfrmOptions) -> bytes:
    """DELPOLICY/GETPOLICY payload: ``xfrm_userpolicy_id`` (selector + direction) + mark/if_id."""
    return sel.pack() + struct.pack("=IB3x", 0, direction) + options.attrs()


def tunnel_template(src: IpAddress | None, dst: IpAddress | None, family: int, reqid: int,
                    mode: int = XFRM_MODE_TUNNEL) -> UserTmpl:
    """An ESP template (tunnel mode unless ``mode``); ``None`` addresses are wildcards (inbound before the
    SA is known; transport mode takes the packet's own addresses)."""
    return UserTmpl(id=XfrmId(dst, 0, IPPROTO_ESP), family=family, saddr=src, reqid=reqid, mode=mode)


def taken_over_replay(sa: SaConfig) -> bytes:
    """The replay state of an SA taken over from another node (HA, docs/ha.md): the kernel's next outbound
    number follows ``seq_out`` (RFC 4303 §3.3.3) and the inbound window starts at ``replay_top`` with every
    number in it marked seen (§3.4.3)."""
    mask32 = 0xFFFFFFFF
    if sa.esn or sa.replay_window > LEGACY_REPLAY_MAX:
        window = max(sa.replay_window, 1)
        words = (window + 31) // 32
        bmp = (mask32,) * words if sa.replay_top else (0,) * words
        return attr(XFRMA_REPLAY_ESN_VAL, ReplayEsn(window, sa.seq_out & mask32, sa.replay_top & mask32,
                                                    sa.seq_out >> 32, sa.replay_top >> 32, bmp).pack())
    bitmap = ((1 << sa.replay_window) - 1) if sa.replay_top else 0
    return attr(XFRMA_REPLAY_VAL, struct.pack("=III", sa.seq_out & mask32, sa.replay_top & mask32, bitmap))


def replay_attr(kind: int, value: bytes) -> bytes:
    """Re-wrap a replay attribute read from GETSA for a NEWSA (``XFRMA_REPLAY_VAL`` or ``_ESN_VAL``)."""
    if kind not in (XFRMA_REPLAY_VAL, XFRMA_REPLAY_ESN_VAL):
        raise ValueError(f"attribute {kind} is not a replay state")
    return attr(kind, value)
