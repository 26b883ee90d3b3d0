"""Per-SA state of the userspace data plane: protect (outbound) and unprotect (inbound) one packet,
with counters, lifetimes (RFC 4301 §4.4.2.1), sequence-number exhaustion (RFC 4303 §3.3.3), the
anti-replay window (RFC 4303 §3.4.3: checked before, updated only after the ICV verified), and the inbound
selector check (RFC 4301 §5.2 step 4: a tunnelled packet must match the SA's selectors)."""

from __future__ import annotations

from collections.abc import Callable

from ikeguard.dataplane.base import (
    DataPlaneEvent,
    LifetimeReached,
    SaConfig,
    SaCounters,
    SaDirection,
    SequenceNearOverflow,
)
from ikeguard.dataplane.esp import (
    NEXT_HEADER_DUMMY,
    NEXT_HEADER_IPV4,
    NEXT_HEADER_IPV6,
    EspError,
    EspTransform,
)
from ikeguard.dataplane.packet import Flow, parse_flow, ts_match
from ikeguard.dataplane.replay import ReplayWindow
from ikeguard.dataplane.sequence import SequenceCounter, SequenceExhausted, SharedSequenceCounter

Emit = Callable[[DataPlaneEvent], None]
SEQ_SOFT_MARGIN = 1 << 20  # rekey this many numbers before the limit
FLOW_CACHE_SIZE = 4096


def transform_for(config: SaConfig) -> EspTransform:
    """The ESP transform of an SA description (raises UnsupportedEspTransform)."""
    return EspTransform(config.encr_id, config.encr_key_bits, config.encr_key, config.integ_id,
                        config.integ_key)


class _Lifetimes:
    """Soft/hard byte and packet limits; each upcall fires once."""

    def __init__(self, config: SaConfig, counters: SaCounters, emit: Emit) -> None:
        self.config, self.counters, self.emit = config, counters, emit
        self.fired: set[tuple[bool, str]] = set()
        self.expired = False
        self.active = any((config.soft_bytes, config.hard_bytes, config.soft_packets, config.hard_packets))

    def check(self) -> None:
        if not self.active:
            return
        c, cfg = self.counters, self.config
        for hard, kind, limit, value in (
            (False, "bytes", cfg.soft_bytes, c.bytes), (False, "packets", cfg.soft_packets, c.packets),
            (True, "bytes", cfg.hard_bytes, c.bytes), (True, "packets", cfg.hard_packets, c.packets),
        ):  # fmt: skip
            if limit and value >= limit and (hard, kind) not in self.fired:
                self.fired.add((hard, kind))
                if hard:
                    self.expired = True
                self.emit(LifetimeReached(cfg.spi, cfg.direction, hard, kind, cfg.child_uniqueid))


def _next_header(inner: bytes) -> int:
    return NEXT_HEADER_IPV6 if inner and inner[0] >> 4 == 6 else NEXT_HEADER_IPV4


class OutboundSa:
    """One outbound SA: the single owner of its sequence counter (see :mod:`sequence`)."""

    def __init__(self, config: SaConfig, emit: Emit,
                 counter: SequenceCounter | SharedSequenceCounter | None = None) -> None:
        self.config = config
        self.sockaddr = (str(config.destination.address), config.destination.port)
        self.transform = transform_for(config)
        start = config.seq_out + 1  # after the numbers another node used (HA takeover), else 1
        self.counter = counter if counter is not None else SequenceCounter(config.esn, start=start)
        self.counters = SaCounters()
        self._emit = emit
        self._life = _Lifetimes(config, self.counters, emit)
        self._soft_seq_at = max(1, self.counter.limit - SEQ_SOFT_MARGIN)
        self._seq_warned = False

    def wipe(self) -> None:
        """The SA is deleted: zero its keys (transform and description) and refuse further packets."""
        self.transform.wipe()
        self.config.wipe_keys()

    def retarget(self, config: SaConfig) -> None:
        """Same keys and sequence numbers, new outer endpoints (NAT mapping change, MOBIKE)."""
        self.config = config
        self.sockaddr = (str(config.destination.address), config.destination.port)

    def protect(self, inner: bytes) -> bytes:
        """The ESP packet for ``inner`` (tunnel mode); raises EspError('hard_lifetime' / 'seq_exhausted')."""
        if self._life.expired:
            self.counters.drop("hard_lifetime")
            raise EspError("hard_lifetime")
        try:
            seq = self.counter.take()
        except SequenceExhausted:
            self.counters.drop("seq_exhausted")
            if (True, "seq") not in self._life.fired:
                self._life.fired.add((True, "seq"))
                self._emit(SequenceNearOverflow(self.config.spi, True, self.config.child_uniqueid))
            raise EspError("seq_exhausted") from None
        if seq >= self._soft_seq_at and not self._seq_warned:
            self._seq_warned = True
            self._emit(SequenceNearOverflow(self.config.spi, False, self.config.child_uniqueid))
        packet = self.transform.seal(self.config.spi, seq, inner, _next_header(inner), self.config.esn)
        self.counters.bytes += len(inner)
        self.counters.packets += 1
        self._life.check()
        return packet


class InboundSa:
    """One inbound SA: replay window, integrity, trailer and selector checks."""

    def __init__(self, config: SaConfig, emit: Emit) -> None:
        if config.direction is not SaDirection.INBOUND:
            raise ValueError("InboundSa needs an inbound SA description")
        self.config = config
        self.transform = transform_for(config)
        self.window = ReplayWindow(config.replay_window, config.esn)
        if config.replay_top:
            self.window.seed(config.replay_top)
        self.counters = SaCounters()
        self._life = _Lifetimes(config, self.counters, emit)
        self._allowed: set[Flow] = set()  # flows already found inside the selectors (bounded cache)

    def wipe(self) -> None:
        """The SA is deleted: zero its keys (transform and description) and refuse further packets."""
        self.transform.wipe()
        self.config.wipe_keys()

    def unprotect(self, packet: bytes, seq_low: int) -> bytes | None:
        """The inner packet, or None for a TFC dummy; raises EspError(reason) after counting the drop."""
        try:
            return self._unprotect(packet, seq_low)
        except EspError as exc:
            self.counters.drop(exc.reason)
            raise

    def _unprotect(self, packet: bytes, seq_low: int) -> bytes | None:
        if self._life.expired:
            raise EspError("hard_lifetime")
        seq = self.window.check(seq_low)
        if seq is None:
            raise EspError("replay")
        payload = self.transform.open(packet, seq, self.config.esn)
        if not self.window.update(seq):
            raise EspError("replay")
        if payload.next_header == NEXT_HEADER_DUMMY:
            return None
        inner = payload.data
        if payload.next_header not in (NEXT_HEADER_IPV4, NEXT_HEADER_IPV6):
            raise EspError("malformed", "tunnel mode carries IPv4/IPv6 only")
        flow = parse_flow(inner)
        if flow is None or flow.version != (4 if payload.next_header == NEXT_HEADER_IPV4 else 6):
            raise EspError("malformed", "inner packet is not IP")
        if flow not in self._allowed:
            cfg = self.config
            if not (ts_match(cfg.remote_ts, flow.version, flow.src, flow.protocol, flow.sport)
                    and ts_match(cfg.local_ts, flow.version, flow.dst, flow.protocol, flow.dport)):
                raise EspError("selector")
            if len(self._allowed) >= FLOW_CACHE_SIZE:
                self._allowed.clear()
            self._allowed.add(flow)
        self.counters.bytes += len(inner)
        self.counters.packets += 1
        self._life.check()
        return inner
