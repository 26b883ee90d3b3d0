"""``dataplane = "xfrm"``: the Linux kernel carries ESP; ikeguard programs XFRM states and policies.

Policies (RFC 4301 §4.4.1 SPD) are installed per set of traffic selectors, shared by the Child SAs that
rekey each other, with one ``reqid`` tying them to their states (SAD, §4.4.2): ``out`` selects what to
protect, ``in``/``fwd`` require that inbound traffic for those selectors arrived through an SA of that
reqid. Fail closed: before the first outbound SA the ``out`` policy blocks; after an SA is gone its
template still points at the peer, so the kernel finds no state, drops the packet and raises an ACQUIRE.
Make-before-break: the kernel picks the newest valid state of a reqid, so a rekeyed outbound SA takes over
when it is added and the old one stays until ``delete_sa``. Netlink messages are hand-written (see structs).

Duplicate SPIs (issue 13 S3). Our SAs are keyed by (SPI, direction, Child SA unique id), so an operation
on one Child SA never reaches another Child SA's state. The kernel keys a state by (destination, SPI,
protocol): an outbound SPI is chosen by the peer, so two peers at different addresses may use the same one
and get two distinct states. Two peers behind the same address (one NAT) choosing the same SPI would need
the same kernel state; the kernel cannot keep them apart, so the second one is refused (``add_sa`` raises
and emits :class:`InstallFailed` naming the Child SA holding it; the engine audits ``child.failed`` with
that reason and deletes the refused Child SA, which removes nothing of the first one). The same holds for
moving an SA (MOBIKE, NAT mapping change) onto a destination where another Child SA has that SPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ikeguard.dataplane.base import (
    DataPlaneError,
    DataPlaneEvent,
    DataPlaneFeatures,
    EventCallback,
    IkeShare,
    InstallFailed,
    LifetimeReached,
    SaConfig,
    SaCounters,
    SaDirection,
    SaEndpoint,
)
from ikeguard.dataplane.xfrm import messages as msg
from ikeguard.dataplane.xfrm.events import AcquireRequested, KernelExpire, decode_acquire, decode_expire
from ikeguard.dataplane.xfrm.netlink import XfrmError, XfrmSocket
from ikeguard.dataplane.xfrm.probe import probe
from ikeguard.dataplane.xfrm.sockets import bypass_policies, enable_esp_in_udp
from ikeguard.dataplane.xfrm.structs import (
    AF_INET,
    AF_INET6,
    NLM_F_CREATE,
    NLM_F_EXCL,
    USERSA_INFO_LEN,
    XFRM_MODE_TRANSPORT,
    XFRM_MODE_TUNNEL,
    XFRM_MSG_ACQUIRE,
    XFRM_MSG_ALLOCSPI,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_EXPIRE,
    XFRM_MSG_GETPOLICY,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    XFRM_MSG_UPDPOLICY,
    XFRM_MSG_UPDSA,
    XFRM_POLICY_ALLOW,
    XFRM_POLICY_BLOCK,
    XFRM_POLICY_FWD,
    XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
    XFRMA_LTIME_VAL,
    XFRMA_REPLAY_ESN_VAL,
    XFRMA_REPLAY_VAL,
    XFRMNLGRP_ACQUIRE,
    XFRMNLGRP_EXPIRE,
    IpAddress,
    LifetimeCur,
    Selector,
    UserpolicyInfo,
    UsersaInfo,
    family_of,
    parse_attrs,
)
from ikeguard.policy.ts import TrafficSelector

log = logging.getLogger(__name__)
AcquireCallback = Callable[[AcquireRequested], None]
TsPair = tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]
SaKey = tuple[int, SaDirection, int]  # (SPI, direction, Child SA unique id)
StateId = tuple[IpAddress, int]  # the kernel's identity of an ESP state: (destination, SPI)
ANY_V4 = "0.0.0.0"  # noqa: S104 - the larval state of ALLOCSPI, not a bind address


@dataclass
class PolicySet:
    """The policies of one (local_ts, remote_ts) set: shared by a Child SA and its rekeyed successors."""

    reqid: int
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    out: list[Selector]
    inbound: list[Selector]
    children: set[int] = field(default_factory=set)
    local_outer: IpAddress | None = None  # tunnel endpoints once an SA told us
    remote_outer: IpAddress | None = None
    outbound_ready: bool = False
    mode: int = XFRM_MODE_TUNNEL  # of the SAs (RFC 4301 §4.1): the templates must say the same

    def family(self) -> int:
        """Outer address family of the templates (the inner one until an SA is known)."""
        if self.remote_outer is not None:
            return family_of(self.remote_outer)
        return AF_INET if (self.local_ts or self.remote_ts)[0].version == 4 else AF_INET6


@dataclass
class InstalledSa:
    """One state we installed."""

    config: SaConfig
    reqid: int


class XfrmTransport(Protocol):
    """What the plane needs from a netlink socket (:class:`XfrmSocket`; tests may pass an in-memory one)."""

    def request(self, msg_type: int, payload: bytes, flags: int = 0, what: str = "") -> list[bytes]: ...
    def dump(self, msg_type: int, payload: bytes = b"") -> list[bytes]: ...
    def read_events(self) -> list[tuple[int, bytes]]: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


class XfrmDataPlane:
    """Implements :class:`ikeguard.dataplane.base.DataPlane` over the kernel's XFRM (netlink).

    ``netns`` programs another network namespace (tests); ``if_id`` puts every state and policy on an XFRM
    interface (``ip link add ipsec0 type xfrm if_id N``); ``mark`` = (value, mask) marks them instead.
    ``features`` skips the probe (which otherwise refuses with :class:`DataPlaneError` on a kernel without
    ESP)."""

    def __init__(self, *, netns: str | None = None, if_id: int = 0, mark: tuple[int, int] | None = None,
                 features: DataPlaneFeatures | None = None, priority_base: int = msg.PRIORITY_BASE,
                 events: bool = True, sock: XfrmTransport | None = None,
                 monitor: XfrmTransport | None = None) -> None:
        if features is None:
            result = probe(netns)
            if result.reason is not None:
                raise DataPlaneError(result.reason)
            features = result.features
        self._features = features
        self.options = msg.XfrmOptions(if_id=if_id, mark=mark)
        self.priority_base = priority_base
        self.sock: XfrmTransport = sock if sock is not None else XfrmSocket(netns)
        groups = (1 << (XFRMNLGRP_ACQUIRE - 1)) | (1 << (XFRMNLGRP_EXPIRE - 1))
        if monitor is None and events:
            monitor = XfrmSocket(netns, groups)
        self.monitor: XfrmTransport | None = monitor
        self._callbacks: list[EventCallback] = []
        self._acquire_callbacks: list[AcquireCallback] = []
        self._sas: dict[SaKey, InstalledSa] = {}
        self._states: dict[StateId, SaKey] = {}  # which of our SAs holds each kernel state
        self._inbound_spis: set[int] = set()  # ours: unique
        self._larval: set[int] = set()  # SPIs allocated but not yet installed
        self._sets: dict[TsPair, PolicySet] = {}
        self._child_set: dict[int, PolicySet] = {}
        self._reqids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- DataPlane ------------------------------------------------------------------------------
    @property
    def features(self) -> DataPlaneFeatures:
        """The transforms the kernel accepted in the probe."""
        return self._features

    def alloc_spi(self) -> int:
        """XFRM_MSG_ALLOCSPI: the kernel picks an SPI above 255 (RFC 4303 §2.1) unused by any ESP state and
        holds it as a larval state (address 0.0.0.0) until ``add_sa`` or ``net.core.xfrm_acq_expires``."""
        while True:
            try:
                replies = self.sock.request(XFRM_MSG_ALLOCSPI, msg.allocspi(_any_v4(), self.options),
                                            0, "ALLOCSPI")
            except XfrmError as exc:
                raise DataPlaneError(f"cannot allocate an SPI: {exc}") from exc
            if not replies:
                raise DataPlaneError("cannot allocate an SPI: the kernel sent no state back")
            spi = UsersaInfo.unpack(replies[0]).id.spi
            if spi not in self._inbound_spis and spi not in self._larval:
                self._larval.add(spi)
                return spi

    def add_sa(self, sa: SaConfig) -> None:
        """XFRM_MSG_NEWSA for one direction, then point the Child SA's policies at the tunnel endpoints.
        Refused when another Child SA holds the kernel state (destination, SPI) it needs (see the module
        docstring: two peers behind one address choosing the same outbound SPI)."""
        key: SaKey = (sa.spi, sa.direction, sa.child_uniqueid)
        state: StateId = (sa.destination.address, sa.spi)
        try:
            owner = self._states.get(state)
            if owner is not None:
                raise DataPlaneError(_collision(sa, owner))
            policy = self._child_set.get(sa.child_uniqueid)
            if policy is None:
                self.add_policy(sa.child_uniqueid, sa.local_ts, sa.remote_ts)
                policy = self._child_set[sa.child_uniqueid]
            # templates first: a template naming the peer with no state yet still drops (fail closed)
            local, remote = ((sa.source.address, sa.destination.address)
                             if sa.direction is SaDirection.OUTBOUND
                             else (sa.destination.address, sa.source.address))
            mode = XFRM_MODE_TRANSPORT if sa.mode == "transport" else XFRM_MODE_TUNNEL
            if (policy.local_outer, policy.remote_outer, policy.mode) != (local, remote, mode):
                policy.local_outer, policy.remote_outer, policy.mode = local, remote, mode
                self._install_policies(policy, XFRM_MSG_UPDPOLICY)
            payload = msg.newsa(sa, policy.reqid, self.options)
            self.sock.request(XFRM_MSG_NEWSA, payload, NLM_F_CREATE | NLM_F_EXCL, f"NEWSA spi {sa.spi:#010x}")
        except (XfrmError, DataPlaneError) as exc:
            reason = str(exc)
            sa.wipe_keys()
            self._emit(InstallFailed(sa.spi, sa.direction, reason, sa.child_uniqueid))
            raise DataPlaneError(reason) from exc
        self._sas[key] = InstalledSa(sa, policy.reqid)
        self._states[state] = key
        if sa.direction is SaDirection.INBOUND:
            self._inbound_spis.add(sa.spi)
        if sa.direction is SaDirection.INBOUND and sa.spi in self._larval:
            self._larval.discard(sa.spi)
            self._delete_state(_any_v4(), sa.spi)
        if sa.direction is SaDirection.OUTBOUND and not policy.outbound_ready:
            policy.outbound_ready = True  # the out policy stops blocking only once a state exists
            self._install_policies(policy, XFRM_MSG_UPDPOLICY)

    def add_trap(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                 remote_ts: tuple[TrafficSelector, ...], local: IpAddress, remote: IpAddress) -> None:
        """On-demand policies (``start_action = trap``): traffic for the selectors, with no SA yet, is
        dropped and raises an ACQUIRE (see :meth:`subscribe_acquire`) for tunnel ``local`` -> ``remote``."""
        self.add_policy(child_uniqueid, local_ts, remote_ts)
        policy = self._child_set[child_uniqueid]
        policy.local_outer, policy.remote_outer, policy.outbound_ready = local, remote, True
        self._install_policies(policy, XFRM_MSG_UPDPOLICY)

    def policies(self) -> list[UserpolicyInfo]:
        """Every XFRM policy of the namespace (XFRM_MSG_GETPOLICY dump), as the kernel holds it."""
        return [UserpolicyInfo.unpack(p) for p in self.sock.dump(XFRM_MSG_GETPOLICY)]

    def states(self) -> list[UsersaInfo]:
        """Every XFRM state of the namespace (XFRM_MSG_GETSA dump), with the kernel's counters."""
        return [UsersaInfo.unpack(p) for p in self.sock.dump(XFRM_MSG_GETSA)]

    def update_sa_addresses(self, spis: tuple[int, ...], local: SaEndpoint, remote: SaEndpoint,
                            encap: bool, children: Collection[int] | None = None) -> None:
        """Move SAs to new outer endpoints (RFC 4555 MOBIKE, RFC 7296 §2.23 NAT-T switch): UPDSA when only
        the UDP ports change, else a new state carrying the old one's replay state and counters, then the
        old one deleted; the templates of their policies follow. With ``children`` only SAs of those Child
        SAs move (another peer's SA with one of these SPIs stays); without it each SPI must be unambiguous."""
        wanted = set(spis)
        keys = [k for k in self._sas if k[0] in wanted and (children is None or k[2] in children)]
        if children is None and len({k[:2] for k in keys}) != len(keys):
            raise DataPlaneError("SPIs used by several Child SAs: name the Child SAs to move")
        touched: set[int] = set()
        for key in keys:
            spi, direction, child = key
            installed = self._sas[key]
            old = installed.config
            src, dst = (local, remote) if direction is SaDirection.OUTBOUND else (remote, local)
            new = replace(old, source=src, destination=dst, encap=encap)
            old_state: StateId = (old.destination.address, spi)
            new_state: StateId = (new.destination.address, spi)
            owner = self._states.get(new_state)
            if owner is not None and owner != key:
                raise DataPlaneError(f"cannot move SA {spi:#010x}: {_collision(new, owner)}")
            self._move_state(old, new, installed.reqid)
            self._sas[key] = InstalledSa(new, installed.reqid)
            if self._states.get(old_state) == key:
                del self._states[old_state]
            self._states[new_state] = key
            touched.add(child)
        for policy in {id(p): p for c in touched if (p := self._child_set.get(c)) is not None}.values():
            policy.local_outer, policy.remote_outer = local.address, remote.address
            self._install_policies(policy, XFRM_MSG_UPDPOLICY)

    def _key(self, spi: int, direction: SaDirection, child_uniqueid: int | None) -> SaKey | None:
        """Our SA ``spi``/``direction`` of Child SA ``child_uniqueid``; without a Child SA the SPI must name
        exactly one SA of that direction (several: DataPlaneError, never a guess)."""
        if child_uniqueid is not None:
            key = (spi, direction, child_uniqueid)
            return key if key in self._sas else None
        keys = [k for k in self._sas if k[:2] == (spi, direction)]
        if len(keys) > 1:
            raise DataPlaneError(f"SPI {spi:08x} ({direction.value}) is used by Child SAs "
                                 f"{', '.join(str(k[2]) for k in keys)}: name the Child SA")
        return keys[0] if keys else None

    def _forget(self, key: SaKey) -> InstalledSa | None:
        installed = self._sas.pop(key, None)
        if installed is not None:
            state = (installed.config.destination.address, key[0])
            if self._states.get(state) == key:
                del self._states[state]
            if key[1] is SaDirection.INBOUND:
                self._inbound_spis.discard(key[0])
        return installed

    def delete_sa(self, spi: int, direction: SaDirection,
                  child_uniqueid: int | None = None) -> SaCounters | None:
        """Read the final counters, then XFRM_MSG_DELSA; policies stay (fail closed). Only the SA of Child SA
        ``child_uniqueid``: the state of another Child SA with the same SPI is never deleted."""
        key = self._key(spi, direction, child_uniqueid)
        installed = self._forget(key) if key is not None else None
        if installed is None:
            return None
        cfg = installed.config
        counters = self._read_counters(cfg)
        self._delete_state(cfg.destination.address, spi, cfg.source.address)
        cfg.wipe_keys()  # the kernel had its own copy; ours was kept only to move the SA (MOBIKE)
        return counters

    def add_policy(self, child_uniqueid: int, local_ts: tuple[TrafficSelector, ...],
                   remote_ts: tuple[TrafficSelector, ...]) -> None:
        """Install out (blocking until an SA exists), in and fwd policies for the selectors."""
        key = (local_ts, remote_ts)
        policy = self._sets.get(key)
        if policy is None:
            if not local_ts or not remote_ts:
                raise DataPlaneError("a policy needs local and remote traffic selectors")
            out = msg.policy_selectors(local_ts, remote_ts, inbound=False)
            inbound = msg.policy_selectors(local_ts, remote_ts, inbound=True)
            if not out:
                raise DataPlaneError("the traffic selectors have no pair of the same IP version and protocol")
            policy = PolicySet(next(self._reqids), local_ts, remote_ts, out, inbound)
            self._install_policies(policy, XFRM_MSG_NEWPOLICY)
            self._sets[key] = policy
        policy.children.add(child_uniqueid)
        self._child_set[child_uniqueid] = policy

    def remove_policy(self, child_uniqueid: int) -> None:
        """Remove the policies once no Child SA uses them (a rekeyed successor keeps them)."""
        policy = self._child_set.pop(child_uniqueid, None)
        if policy is None:
            return
        policy.children.discard(child_uniqueid)
        if policy.children:
            return
        del self._sets[(policy.local_ts, policy.remote_ts)]
        for direction, selectors in self._directions(policy):
            for sel in selectors:
                with contextlib.suppress(XfrmError):
                    self.sock.request(XFRM_MSG_DELPOLICY, msg.userpolicy_id(sel, direction, self.options),
                                      0, "DELPOLICY")

    def counters(self, spi: int, direction: SaDirection,
                 child_uniqueid: int | None = None) -> SaCounters | None:
        """XFRM_MSG_GETSA: the kernel's byte/packet counters (curlft) and drop statistics."""
        key = self._key(spi, direction, child_uniqueid)
        installed = self._sas.get(key) if key is not None else None
        return None if installed is None else self._read_counters(installed.config)

    def subscribe(self, callback: EventCallback) -> None:
        """Deliver lifetime and install-failure upcalls to ``callback``."""
        self._callbacks.append(callback)

    def subscribe_acquire(self, callback: AcquireCallback) -> None:
        """Deliver kernel ACQUIREs (traffic for selectors without an SA) to ``callback``."""
        self._acquire_callbacks.append(callback)

    # --- event loop -------------------------------------------------------------------------------
    def prepare_ike_socket(self, sock: socket.socket, natt: bool) -> None:
        """IKE bypasses our IPsec policies; the NAT-T socket decapsulates ESP-in-UDP (RFC 3948) in the
        kernel."""
        bypass_policies(sock)
        if natt:
            enable_esp_in_udp(sock)

    def ike_shares(self) -> Sequence[IkeShare]:
        """The kernel owns no IKE socket: the service binds its own."""
        return ()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read kernel notifications on ``loop``."""
        self._loop = loop
        if self.monitor is not None:
            loop.add_reader(self.monitor.fileno(), self.poll_events)

    def close(self) -> None:
        """Stop reading and close the sockets (states and policies stay: ``flush`` removes ours)."""
        if self._loop is not None and self.monitor is not None:
            self._loop.remove_reader(self.monitor.fileno())
        if self.monitor is not None:
            self.monitor.close()
        self.sock.close()

    def flush(self) -> None:
        """Delete every state and policy this instance installed (gateway shutdown)."""
        for spi, direction, child in list(self._sas):
            self.delete_sa(spi, direction, child)
        for spi in list(self._larval):
            self._delete_state(_any_v4(), spi)
        self._larval.clear()
        for child in list(self._child_set):
            self.remove_policy(child)

    def poll_events(self) -> int:
        """Turn waiting EXPIRE/ACQUIRE notifications into upcalls; returns how many were handled."""
        if self.monitor is None:
            return 0
        handled = 0
        for kind, payload in self.monitor.read_events():
            try:
                if kind == XFRM_MSG_EXPIRE:
                    handled += self._on_expire(payload)
                elif kind == XFRM_MSG_ACQUIRE:
                    handled += self._on_acquire(payload)
            except ValueError as exc:
                log.warning("malformed XFRM notification %d dropped: %s", kind, exc)
        return handled

    def _on_expire(self, payload: bytes) -> int:
        expire = decode_expire(payload)
        spi = expire.state.id.spi
        if spi in self._larval and expire.hard:
            self._larval.discard(spi)  # an allocated SPI never used: nothing to tell the engine
            return 0
        daddr = expire.state.id.daddr
        key = self._states.get((daddr, spi)) if daddr is not None else None
        event = expire_event(expire, {key: self._sas[key]} if key is not None else {})
        if event is None or key is None:
            return 0
        if event.hard:
            gone = self._forget(key)  # the kernel removed it already
            if gone is not None:
                gone.config.wipe_keys()
        self._emit(event)
        return 1

    def _on_acquire(self, payload: bytes) -> int:
        acquire = decode_acquire(payload)
        policy = next((p for p in self._sets.values() if p.reqid == acquire.reqid), None)
        if policy is None:
            return 0
        event = replace(acquire, child_uniqueids=tuple(sorted(policy.children)))
        for cb in self._acquire_callbacks:
            cb(event)
        return 1

    # --- helpers --------------------------------------------------------------------------------
    def _emit(self, event: DataPlaneEvent) -> None:
        for cb in self._callbacks:
            cb(event)

    def _directions(self, policy: PolicySet) -> tuple[tuple[int, list[Selector]], ...]:
        return ((XFRM_POLICY_OUT, policy.out), (XFRM_POLICY_IN, policy.inbound),
                (XFRM_POLICY_FWD, policy.inbound))

    def _install_policies(self, policy: PolicySet, msg_type: int) -> None:
        family = policy.family()
        for direction, selectors in self._directions(policy):
            if direction == XFRM_POLICY_OUT:
                tmpl = msg.tunnel_template(policy.local_outer, policy.remote_outer, family, policy.reqid,
                                           policy.mode)
                action = XFRM_POLICY_ALLOW if policy.outbound_ready else XFRM_POLICY_BLOCK
            else:
                tmpl = msg.tunnel_template(policy.remote_outer, policy.local_outer, family, policy.reqid,
                                           policy.mode)
                action = XFRM_POLICY_ALLOW
            for sel in selectors:
                payload = msg.userpolicy(sel, direction, msg.selector_priority(sel, self.priority_base),
                                         self.options, tmpl, action)
                flags = NLM_F_CREATE | (NLM_F_EXCL if msg_type == XFRM_MSG_NEWPOLICY else 0)
                try:
                    self.sock.request(msg_type, payload, flags, f"policy {sel_text(sel)} dir {direction}")
                except XfrmError as exc:
                    raise DataPlaneError(f"cannot install XFRM policy: {exc}") from exc

    def _delete_state(self, daddr: IpAddress, spi: int, saddr: IpAddress | None = None) -> None:
        try:
            self.sock.request(XFRM_MSG_DELSA, msg.usersa_id(daddr, spi, self.options, saddr), 0,
                              f"DELSA spi {spi:#010x}")
        except XfrmError as exc:
            if exc.errno != errno.ESRCH:  # already gone (hard expire) is fine
                raise DataPlaneError(str(exc)) from exc

    def _get_state(self, cfg: SaConfig) -> tuple[UsersaInfo, list[tuple[int, bytes]]] | None:
        try:
            replies = self.sock.request(XFRM_MSG_GETSA, msg.usersa_id(cfg.destination.address, cfg.spi,
                                                                      self.options), 0, "GETSA")
        except XfrmError as exc:
            if exc.errno == errno.ESRCH:
                return None
            raise DataPlaneError(str(exc)) from exc
        if not replies:
            return None
        return UsersaInfo.unpack(replies[0]), parse_attrs(replies[0][USERSA_INFO_LEN:])

    def _read_counters(self, cfg: SaConfig) -> SaCounters | None:
        got = self._get_state(cfg)
        if got is None:
            return None
        info = got[0]
        counters = SaCounters(bytes=info.curlft.byte_count, packets=info.curlft.packet_count)
        for name, value in zip(("replay_window", "replay", "integrity"), info.stats, strict=True):
            if value:
                counters.drops[name] = value
        return counters

    def _move_state(self, old: SaConfig, new: SaConfig, reqid: int) -> None:
        got = self._get_state(old)
        replay: bytes | None = None
        curlft: LifetimeCur | None = None
        if got is not None:
            curlft = got[0].curlft
            for kind, value in got[1]:
                if kind in (XFRMA_REPLAY_VAL, XFRMA_REPLAY_ESN_VAL):
                    replay = msg.replay_attr(kind, value)
                if kind == XFRMA_LTIME_VAL:
                    curlft = LifetimeCur.unpack(value)
        same_key = old.destination.address == new.destination.address
        try:
            if same_key and old.source.address == new.source.address and old.encap and new.encap:
                self.sock.request(XFRM_MSG_UPDSA, msg.newsa(new, reqid, self.options, replay=replay,
                                                            curlft=curlft), 0, "UPDSA")
                return
            if same_key:
                self._delete_state(old.destination.address, old.spi)
            self.sock.request(XFRM_MSG_NEWSA, msg.newsa(new, reqid, self.options, replay=replay,
                                                        curlft=curlft), NLM_F_CREATE | NLM_F_EXCL, "NEWSA")
            if not same_key:
                self._delete_state(old.destination.address, old.spi)
        except XfrmError as exc:
            raise DataPlaneError(f"cannot move SA {old.spi:#010x}: {exc}") from exc


def expire_event(expire: KernelExpire, installed: Mapping[object, InstalledSa]) -> LifetimeReached | None:
    """The upcall for a kernel EXPIRE of one of our SAs (None for states that are not ours): the state is
    matched by the kernel's own identity (destination, SPI), so it names the one Child SA holding it."""
    for sa in installed.values():
        cfg = sa.config
        if cfg.spi == expire.state.id.spi and cfg.destination.address == expire.state.id.daddr:
            return LifetimeReached(cfg.spi, cfg.direction, expire.hard, expire.kind, cfg.child_uniqueid)
    return None


def _collision(sa: SaConfig, owner: SaKey) -> str:
    """Why an SA is refused: another Child SA holds the kernel state (destination, SPI) it needs."""
    return (f"{sa.direction.value}bound SPI {sa.spi:08x} to {sa.destination.address} is already used by "
            f"Child SA {owner[2]}: the kernel keys ESP states by (destination, SPI, protocol), so two peers "
            f"behind one address cannot use the same SPI (refused, the first Child SA is kept)")


def _any_v4() -> IpAddress:
    return ipaddress.IPv4Address(ANY_V4)


def sel_text(sel: Selector) -> str:
    """``src/len -> dst/len`` of a selector, for messages."""
    return f"{sel.saddr}/{sel.prefixlen_s} -> {sel.daddr}/{sel.prefixlen_d}"
