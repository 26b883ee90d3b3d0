"""An in-memory stand-in for the kernel's XFRM SAD/SPD, for the paths this machine's kernel (no ESP) cannot
run: it decodes every request with the struct codecs, keeps states and policies, answers like the kernel
(EEXIST, ESRCH, GETSA with counters and replay state) and records the requests. In addition to the real
kernel tests, never instead of them."""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field, replace

from ikeguard.dataplane.xfrm.netlink import XfrmError
from ikeguard.dataplane.xfrm.structs import (
    USERSA_INFO_LEN,
    XFRM_MSG_ALLOCSPI,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    XFRM_MSG_UPDPOLICY,
    XFRM_MSG_UPDSA,
    XFRMA_ENCAP,
    XFRMA_REPLAY_VAL,
    XFRMA_TMPL,
    EncapTmpl,
    IpAddress,
    LifetimeCur,
    Selector,
    UserpolicyInfo,
    UsersaInfo,
    UserTmpl,
    XfrmId,
    attr,
    parse_attrs,
    unpack_address,
)

NAMES = {
    XFRM_MSG_NEWSA: "NEWSA",
    XFRM_MSG_DELSA: "DELSA",
    XFRM_MSG_GETSA: "GETSA",
    XFRM_MSG_UPDSA: "UPDSA",
    XFRM_MSG_ALLOCSPI: "ALLOCSPI",
    XFRM_MSG_NEWPOLICY: "NEWPOLICY",
    XFRM_MSG_UPDPOLICY: "UPDPOLICY",
    XFRM_MSG_DELPOLICY: "DELPOLICY",
}


@dataclass
class MemState:
    info: UsersaInfo
    attrs: dict[int, bytes]
    encap: EncapTmpl | None = None


@dataclass
class MemPolicy:
    info: UserpolicyInfo
    tmpl: UserTmpl | None


@dataclass
class MemKernel:
    states: dict[tuple[IpAddress | None, int], MemState] = field(default_factory=dict)
    policies: dict[tuple[Selector, int], MemPolicy] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    events: list[tuple[int, bytes]] = field(default_factory=list)
    _spis: itertools.count[int] = field(default_factory=lambda: itertools.count(0xC0000100))

    def request(self, msg_type: int, payload: bytes, flags: int = 0, what: str = "") -> list[bytes]:
        self.log.append(NAMES.get(msg_type, str(msg_type)))
        if msg_type in (XFRM_MSG_NEWSA, XFRM_MSG_UPDSA):
            info = UsersaInfo.unpack(payload)
            attrs = dict(parse_attrs(payload[USERSA_INFO_LEN:]))
            key = (info.id.daddr, info.id.spi)
            if msg_type == XFRM_MSG_NEWSA and key in self.states:
                raise XfrmError(errno.EEXIST, what)
            if msg_type == XFRM_MSG_UPDSA and key not in self.states:
                raise XfrmError(errno.ESRCH, what)
            encap = EncapTmpl.unpack(attrs[XFRMA_ENCAP], info.family) if XFRMA_ENCAP in attrs else None
            self.states[key] = MemState(info, attrs, encap)
            return []
        if msg_type in (XFRM_MSG_DELSA, XFRM_MSG_GETSA):
            daddr = unpack_address(payload[:16], int.from_bytes(payload[20:22], "little"))
            spi = int.from_bytes(payload[16:20], "big")
            state = self.states.get((daddr, spi))
            if state is None:
                raise XfrmError(errno.ESRCH, what)
            if msg_type == XFRM_MSG_DELSA:
                del self.states[(daddr, spi)]
                return []
            replay = attr(XFRMA_REPLAY_VAL, (7).to_bytes(4, "little") * 2 + bytes(4))  # oseq, seq, bitmap
            return [state.info.pack() + replay]
        if msg_type == XFRM_MSG_ALLOCSPI:
            info = UsersaInfo.unpack(payload)
            spi = next(self._spis)
            larval = replace(info, id=XfrmId(info.id.daddr, spi))
            self.states[(info.id.daddr, spi)] = MemState(larval, {})
            return [larval.pack()]
        if msg_type in (XFRM_MSG_NEWPOLICY, XFRM_MSG_UPDPOLICY):
            pol = UserpolicyInfo.unpack(payload)
            attrs = dict(parse_attrs(payload[168:]))
            if msg_type == XFRM_MSG_NEWPOLICY and (pol.sel, pol.dir) in self.policies:
                raise XfrmError(errno.EEXIST, what)
            tmpl = UserTmpl.unpack(attrs[XFRMA_TMPL]) if XFRMA_TMPL in attrs else None
            self.policies[(pol.sel, pol.dir)] = MemPolicy(pol, tmpl)
            return []
        if msg_type == XFRM_MSG_DELPOLICY:
            pkey = (Selector.unpack(payload[:56]), payload[60])
            if self.policies.pop(pkey, None) is None:
                raise XfrmError(errno.ENOENT, what)
            return []
        raise XfrmError(errno.EOPNOTSUPP, what)

    def count(
        self, daddr: IpAddress, spi: int, byte_count: int, packets: int, stats: tuple[int, int, int]
    ) -> None:
        """Traffic went through a state."""
        state = self.states[(daddr, spi)]
        state.info = replace(state.info, curlft=LifetimeCur(byte_count, packets), stats=stats)

    def dump(self, msg_type: int, payload: bytes = b"") -> list[bytes]:
        return [s.info.pack() for s in self.states.values()]

    def read_events(self) -> list[tuple[int, bytes]]:
        out, self.events = self.events, []
        return out

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass
