"""The userspace data plane's packet logic without IO: policies, SAs, demultiplexing, MTU handling.

Fail closed (RFC 4301 §4.4.1 DISCARD): a policy's route/trap exists independently of its SAs; a packet that
matches a policy with no outbound SA (not yet up, deleted, between SAs) is dropped and counted, never
returned for sending in the clear. Make-before-break: installing a policy's new outbound SA replaces the
reference in one assignment (atomic under the GIL); the old SA object stays decryptable/countable until
``delete_sa``; inbound SAs are looked up by SPI, so old and new coexist during a rekey.

Outbound SAs are keyed by (Child SA unique id, SPI), not by the SPI: the peer chooses an outbound SPI, and two
peers may choose the same one (issue 13 S3: a peer copying another peer's SPI from the wire). Each stays its
own entry, bound to its own Child SA's policy; deleting, moving or counting one never touches the other.
Inbound SPIs are ours and unique (a duplicate is refused); an inbound SA is still only deleted for the Child
SA it belongs to, so the cleanup of a Child SA refused for a colliding SPI cannot remove the first one.

With several data-plane workers (:mod:`ikeguard.dataplane.userspace.workers`) each worker has its own table
and only the worker owning an outbound SA holds it (one sender per SA: the sequence number is the AES-GCM
nonce, RFC 4106 §3.1). A worker whose TUN queue reads a packet of a policy whose outbound SA lives in another
worker gets :class:`Forward` (``set_forward``) and hands the packet over; a policy with an own SA (RFC 9611
per-resource SAs: one per worker, same selectors) never forwards.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    EventCallback,
    InstallFailed,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
    random_inbound_spi,
)
from ikeguard.dataplane.esp import EspError
from ikeguard.dataplane.packet import Flow, clamp_mss, icmp_too_big, needs_too_big, parse_flow, ts_match
from ikeguard.dataplane.sa import InboundSa, OutboundSa
from ikeguard.policy.ts import TrafficSelector
from ikeguard.wire.iana import EncrId

log = logging.getLogger("ikeguard.dataplane")
FLOW_CACHE_SIZE = 4096
_ESP_HEADER = struct.Struct("!II")  # SPI, sequence number (RFC 4303 §2)
IPV4_UDP_OVERHEAD = 20 + 8
IPV6_UDP_OVERHEAD = 40 + 8


@dataclass
class Policy:
    """The selectors of one Child SA and its current outbound SA (None = drop: fail closed)."""

    child_uniqueid: int
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    outbound: OutboundSa | None = None
    no_sa_drops: int = 0
    forward: dict[int, int] = field(default_factory=dict)  # Child SA -> worker holding its outbound SA
    forward_to: int | None = None  # a worker of ``forward`` (used only while ``outbound`` is None)


@dataclass(slots=True)  # not frozen: built once per packet, and frozen dataclass construction is slower
class Send:
    """Send ``data`` (an ESP packet) to ``destination``: in UDP (RFC 3948) when ``encap``, else as IP
    protocol 50."""

    data: bytes
    destination: SaEndpoint
    encap: bool = True
    sockaddr: tuple[str, int] = ("", 0)  # destination as the socket API wants it


@dataclass(slots=True)
class Forward:
    """Hand ``data`` (an IP packet from the TUN) to data-plane worker ``worker``: it owns the outbound SA."""

    worker: int
    data: bytes


@dataclass(slots=True)
class ToTun:
    """Write ``data`` (an IP packet) back into the TUN device (ICMP errors)."""

    data: bytes


class _MtuCache(dict[OutboundSa, int]):
    """Outbound SA -> its inner MTU at one path MTU (replaced wholesale when the path MTU changes)."""

    def __init__(self, path_mtu: int) -> None:
        super().__init__()
        self.path_mtu = path_mtu


class _FlowCache(dict[Flow, Policy]):
    """Flow -> policy; replaced wholesale (with a fresh policy snapshot) whenever policies change, so the
    packet path never iterates a dict another thread is changing."""

    def __init__(self, policies: tuple[Policy, ...] = ()) -> None:
        super().__init__()
        self.policies = policies


@dataclass
class SaTable:
    """All policies and SAs of one data plane; :meth:`outbound` and :meth:`inbound` process packets."""

    path_mtu: int = 1500
    drops: dict[str, int] = field(default_factory=dict)  # drops not attributable to an SA
    icmp_source4: bytes | None = None  # None: the offending packet's destination (passes rp_filter, and
    icmp_source6: bytes | None = None  # a local address would be dropped as a martian source)
    _inbound: dict[int, InboundSa] = field(default_factory=dict)
    _outbound: dict[tuple[int, int], OutboundSa] = field(default_factory=dict)  # (child uniqueid, SPI)
    _policies: dict[int, Policy] = field(default_factory=dict)
    _callbacks: list[EventCallback] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flow_cache: _FlowCache = field(default_factory=lambda: _FlowCache())
    _mtus: _MtuCache = field(default_factory=lambda: _MtuCache(0))

    # --- control --------------------------------------------------------------------------------
    def subscribe(self, callback: EventCallback) -> None:
        """Deliver upcalls to ``callback``."""
        self._callbacks.append(callback)

    def emit(self, event: DataPlaneEvent) -> None:
        """Hand an upcall to every subscriber."""
        for cb in self._callbacks:
            cb(event)

    def alloc_spi(self) -> int:
        """A random unused inbound SPI >= 256 (RFC 4303 §2.1)."""
        with self._lock:
            return random_inbound_spi(self._inbound)

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> Policy:
        """Create or update the policy of a Child SA (keeping its current outbound SA). A Child SA with
        the same selectors as an existing policy shares it: a rekeyed Child SA has a new unique id, and its
        outbound SA must replace the old one in the same policy (make-before-break), not sit behind it."""
        with self._lock:
            policy = self._policies.get(child_uniqueid)
            if policy is None:
                policy = next((p for p in self._policies.values()
                               if p.local_ts == local_ts and p.remote_ts == remote_ts), None)
            if policy is None:
                policy = Policy(child_uniqueid, local_ts, remote_ts)
            else:
                policy.local_ts, policy.remote_ts = local_ts, remote_ts
            self._policies[child_uniqueid] = policy
            self._refresh()
            return policy

    def remove_policy(self, child_uniqueid: int) -> Policy | None:
        """Forget a Child SA's policy; returns it when no other Child SA shares it (its routes may go)."""
        with self._lock:
            policy = self._policies.pop(child_uniqueid, None)
            self._refresh()
            if policy is None or any(p is policy for p in self._policies.values()):
                return None
            return policy

    def _refresh(self) -> None:
        unique = {id(p): p for p in self._policies.values()}
        self._flow_cache = _FlowCache(tuple(unique.values()))

    def set_forward(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                    remote_ts: tuple[TrafficSelector, ...], worker: int | None) -> None:
        """Child SA ``child_uniqueid``'s outbound SA lives in data-plane worker ``worker`` (None: no longer):
        packets of its policy go there while this table has no outbound SA of its own for the policy."""
        policy = self.add_policy(child_uniqueid, local_ts, remote_ts)
        with self._lock:
            if worker is None:
                policy.forward.pop(child_uniqueid, None)
            else:
                policy.forward[child_uniqueid] = worker
            policy.forward_to = next(iter(policy.forward.values()), None)

    def has_sa_in(self, inner: bytes, worker: int) -> bool:
        """Whether the policy of packet ``inner`` has an outbound SA here and one in data-plane worker
        ``worker`` too (RFC 9611 per-resource SAs): a new flow may then be encrypted by either."""
        flow = parse_flow(inner)
        if flow is None:
            return False
        policy = self._flow_cache.get(flow) or self._lookup(flow)
        return policy is not None and policy.outbound is not None and worker in policy.forward.values()

    def policy(self, child_uniqueid: int) -> Policy | None:
        """The policy a Child SA uses."""
        return self._policies.get(child_uniqueid)

    def policies(self) -> list[Policy]:
        """The current policies (each once, also when shared by several Child SAs)."""
        return list(self._flow_cache.policies)

    def add_sa(self, config: SaConfig) -> None:
        """Install one direction; outbound switches its policy to the new SA (make-before-break)."""
        try:
            if config.mode != "tunnel":
                raise EspError("unsupported_mode", "the userspace data plane does tunnel mode only")
            if config.integ_id == 0 and config.encr_id == EncrId.AES_CBC:
                raise EspError("unsupported_transform", "ESP without integrity is refused")
            if config.spi < 256:
                raise EspError("invalid_spi", "SPIs 0-255 are reserved (RFC 4303 §2.1)")
            if config.direction is SaDirection.INBOUND:
                sa_in = InboundSa(config, self.emit)
                with self._lock:
                    if config.spi in self._inbound:
                        raise EspError("duplicate_spi", f"inbound SPI {config.spi:08x} exists")
                    self._inbound[config.spi] = sa_in
                return
            sa_out = OutboundSa(config, self.emit)
            key = (config.child_uniqueid, config.spi)
            with self._lock:
                if key in self._outbound:
                    raise EspError("duplicate_spi", f"outbound SPI {config.spi:08x} of Child SA "
                                   f"{config.child_uniqueid} exists")
                others = [c for c, spi in self._outbound if spi == config.spi]
        except EspError as exc:
            config.wipe_keys()  # refused: nothing will use these keys
            self.emit(InstallFailed(config.spi, config.direction, str(exc), config.child_uniqueid))
            raise DataPlaneError(str(exc)) from None
        if others:  # another peer chose the same SPI: legal (it is the peer's choice), kept apart
            log.info("outbound SPI %08x of Child SA %d is also used by Child SA(s) %s: kept apart "
                     "(SAs are keyed by their Child SA)", config.spi, config.child_uniqueid,
                     ", ".join(map(str, others)))
        policy = self.add_policy(config.child_uniqueid, config.local_ts, config.remote_ts)
        with self._lock:
            self._outbound[key] = sa_out
            policy.outbound = sa_out  # the atomic switch

    def _outbound_key(self, spi: int, child_uniqueid: int | None) -> tuple[int, int] | None:
        """The key of the outbound SA ``spi`` of Child SA ``child_uniqueid``; without a Child SA the SPI must
        name exactly one outbound SA (several: DataPlaneError, never a guess). Call with the lock held."""
        if child_uniqueid is not None:
            key = (child_uniqueid, spi)
            return key if key in self._outbound else None
        keys = [k for k in self._outbound if k[1] == spi]
        if len(keys) > 1:
            raise DataPlaneError(f"outbound SPI {spi:08x} is used by Child SAs "
                                 f"{', '.join(str(k[0]) for k in keys)}: name the Child SA")
        return keys[0] if keys else None

    def _inbound_sa(self, spi: int, child_uniqueid: int | None) -> InboundSa | None:
        sa = self._inbound.get(spi)
        if sa is None or (child_uniqueid is not None and sa.config.child_uniqueid != child_uniqueid):
            return None
        return sa

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Remove one direction of the Child SA ``child_uniqueid`` (see :meth:`_outbound_key` without it);
        a policy losing its outbound SA falls back to another live outbound SA of a Child SA sharing it
        (newest first), else drops its traffic from now on. Another Child SA's SA with the same SPI stays."""
        with self._lock:
            if direction is SaDirection.INBOUND:
                sa_in = self._inbound_sa(spi, child_uniqueid)
                if sa_in is None:
                    return None
                del self._inbound[spi]
                sa_in.wipe()
                return sa_in.counters
            key = self._outbound_key(spi, child_uniqueid)
            if key is None:
                return None
            sa_out = self._outbound.pop(key)
            self._mtus.pop(sa_out, None)
            for policy in self._policies.values():
                if policy.outbound is sa_out:
                    policy.outbound = self._fallback_outbound(policy)
            sa_out.wipe()
            return sa_out.counters

    def _fallback_outbound(self, policy: Policy) -> OutboundSa | None:
        """The newest remaining outbound SA of a Child SA sharing ``policy``. After a simultaneous rekey
        (RFC 7296 §2.8.1) the loser installs its redundant Child SA last and deletes it first: the winner's
        SA, installed earlier, must carry the traffic again instead of the policy dropping it."""
        candidates = [sa for sa in self._outbound.values()
                      if self._policies.get(sa.config.child_uniqueid) is policy]
        return max(candidates, key=lambda sa: sa.config.child_uniqueid, default=None)

    def has_successor(self, spi: int, child_uniqueid: int | None = None) -> bool:
        """Is inbound SA ``spi`` replaced by a live inbound SA of a newer Child SA (higher unique id: the
        engine numbers them in order) with the same selectors, i.e. rekeyed (RFC 7296 §2.8)? Its late
        packets then may still be decrypted for a short while."""
        with self._lock:
            sa = self._inbound_sa(spi, child_uniqueid)
            if sa is None:
                return False
            cfg = sa.config
            return any(other is not sa and other.config.child_uniqueid > cfg.child_uniqueid
                       and other.config.local_ts == cfg.local_ts and other.config.remote_ts == cfg.remote_ts
                       for other in self._inbound.values())

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            children: Collection[int] | None = None) -> None:
        """Point the listed SAs at new outer endpoints (NAT-T, MOBIKE). With ``children`` only SAs of those
        Child SAs move: one IKE SA's SPIs may equal another peer's outbound SPI (its choice), and that SA
        must keep sending to its own peer. Without it each SPI must be unambiguous (see ``delete_sa``)."""
        with self._lock:
            if children is None:
                outs = [self._outbound[k] for spi in spis if (k := self._outbound_key(spi, None)) is not None]
            else:
                wanted = set(spis)
                outs = [sa for (child, spi), sa in self._outbound.items()
                        if child in children and spi in wanted]
            for out in outs:
                out.retarget(replace(out.config, source=local, destination=remote))
                self._mtus.pop(out, None)  # the outer family (overhead) may have changed
            for spi in spis:
                inb = self._inbound.get(spi)
                if inb is not None and (children is None or inb.config.child_uniqueid in children):
                    inb.config = replace(inb.config, source=remote, destination=local)

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """The live counters of one SA (of Child SA ``child_uniqueid`` when given)."""
        with self._lock:
            if direction is SaDirection.INBOUND:
                sa_in = self._inbound_sa(spi, child_uniqueid)
                return sa_in.counters if sa_in is not None else None
            key = self._outbound_key(spi, child_uniqueid)
            return self._outbound[key].counters if key is not None else None

    def all_counters(self) -> list[tuple[int, SaDirection, SaCounters]]:
        """(SPI, direction, counters) of every installed SA."""
        with self._lock:
            return [(spi, SaDirection.INBOUND, sa.counters) for spi, sa in self._inbound.items()] + [
                (spi, SaDirection.OUTBOUND, sa.counters) for (_, spi), sa in self._outbound.items()
            ]

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # --- packets ----------------------------------------------------------------------------------
    def _lookup(self, flow: Flow) -> Policy | None:
        """The first policy whose selectors contain the flow (RFC 4301 §4.4.1), remembered per flow."""
        cache = self._flow_cache
        for policy in cache.policies:
            if ts_match(policy.local_ts, flow.version, flow.src, flow.protocol, flow.sport) and ts_match(
                policy.remote_ts, flow.version, flow.dst, flow.protocol, flow.dport
            ):
                if len(cache) >= FLOW_CACHE_SIZE:
                    cache.clear()
                cache[flow] = policy
                return policy
        return None

    def inner_mtu(self, sa: OutboundSa) -> int:
        """Largest inner packet that fits the path MTU after ESP-in-UDP (RFC 3948) encapsulation."""
        outer = IPV6_UDP_OVERHEAD if sa.config.destination.address.version == 6 else IPV4_UDP_OVERHEAD
        return self.path_mtu - outer - sa.transform.overhead

    def outbound(self, inner: bytes) -> Send | ToTun | Forward | None:
        """Process a packet read from the TUN: ESP to send, an ICMP error for the TUN, the packet for the
        worker owning the policy's SA, or None (dropped)."""
        flow = parse_flow(inner)
        if flow is None:
            self._drop("malformed")
            return None
        policy = self._flow_cache.get(flow)
        if policy is None:
            policy = self._lookup(flow)
            if policy is None:
                self._drop("no_policy")
                return None
        sa = policy.outbound
        if sa is None:  # fail closed
            if policy.forward_to is not None:
                return Forward(policy.forward_to, inner)
            policy.no_sa_drops += 1
            self._drop("no_sa")
            return None
        mtus = self._mtus
        if mtus.path_mtu != self.path_mtu:  # set_path_mtu() changed it: every SA's inner MTU changes
            mtus = self._mtus = _MtuCache(self.path_mtu)
        mtu = mtus.get(sa)
        if mtu is None:
            mtu = mtus[sa] = self.inner_mtu(sa)
        version, _, _, protocol, sport, _ = flow
        if len(inner) > mtu and needs_too_big(inner, mtu):
            sa.counters.drop("too_big")
            source = self.icmp_source4 if version == 4 else self.icmp_source6
            if source is None:
                source = inner[16:20] if version == 4 else inner[24:40]
            icmp = icmp_too_big(inner, mtu, source)
            return ToTun(icmp) if icmp is not None else None
        if protocol == 6 and sport is not None:  # a first (or only) TCP fragment: SYN?
            flags = ((inner[0] & 0x0F) * 4 if version == 4 else 40) + 13
            if len(inner) > flags and inner[flags] & 0x02:
                inner = clamp_mss(inner, mtu - (40 if version == 4 else 60))
        try:
            data = sa.protect(inner)
        except EspError:
            return None
        config = sa.config
        return Send(data, config.destination, config.encap, sa.sockaddr)

    def inbound(self, esp: bytes) -> bytes | None:
        """Process one ESP packet (after the UDP header / non-ESP marker): the inner packet or None."""
        if len(esp) < 8:
            self._drop("malformed")
            return None
        spi, seq_low = _ESP_HEADER.unpack_from(esp)
        sa = self._inbound.get(spi)
        if sa is None:
            self._drop("unknown_spi")
            return None
        try:
            return sa.unprotect(esp, seq_low)
        except EspError:
            return None
