"""Kernel XFRM notifications (multicast groups XFRMNLGRP_EXPIRE and XFRMNLGRP_ACQUIRE) decoded.

EXPIRE carries ``xfrm_user_expire`` (the state and a ``hard`` flag): a soft expire asks for a rekey, a
hard one means the kernel already removed the state (RFC 4301 §4.4.2.1 lifetimes). ACQUIRE carries
``xfrm_user_acquire`` plus the policy's templates: traffic hit a policy whose SA is missing (the packet was
dropped: fail closed) and the kernel asks the key manager to negotiate one. Hand-written (see structs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ikeguard.dataplane.xfrm.structs import (
    ID_LEN,
    SELECTOR_LEN,
    USERSA_INFO_LEN,
    XFRMA_TMPL,
    IpAddress,
    LifetimeCfg,
    LifetimeCur,
    Selector,
    UserpolicyInfo,
    UsersaInfo,
    UserTmpl,
    XfrmDecodeError,
    XfrmId,
    parse_attrs,
    unpack_address,
)

USER_EXPIRE_LEN = 232
USER_ACQUIRE_LEN = 280


@dataclass(frozen=True)
class KernelExpire:
    """A decoded XFRM_MSG_EXPIRE."""

    state: UsersaInfo
    hard: bool

    @property
    def kind(self) -> str:
        """Which limit was reached: "packets" when the packet count reached its limit, else "bytes"."""
        lft, cur = self.state.lft, self.state.curlft
        limit = lft.hard_packets if self.hard else lft.soft_packets
        return "packets" if cur.packet_count >= limit else "bytes"


@dataclass(frozen=True)
class AcquireRequested:
    """Traffic matched a policy with no SA (XFRM_MSG_ACQUIRE): the packet was dropped, an SA is wanted.

    ``child_uniqueids`` are the Child SAs whose policy asked (empty when the policy is not ours)."""

    reqid: int
    selector: Selector  # the flow that triggered it
    source: IpAddress | None  # tunnel endpoints from the template
    destination: IpAddress | None
    policy_index: int
    child_uniqueids: tuple[int, ...] = ()


def decode_expire(payload: bytes) -> KernelExpire:
    """Decode an XFRM_MSG_EXPIRE payload."""
    if len(payload) < USER_EXPIRE_LEN - 7:
        raise XfrmDecodeError(f"XFRM_MSG_EXPIRE payload too short ({len(payload)} octets)")
    try:
        return KernelExpire(UsersaInfo.unpack(payload[:USERSA_INFO_LEN]), bool(payload[USERSA_INFO_LEN]))
    except (struct.error, ValueError) as exc:
        raise XfrmDecodeError(f"malformed XFRM_MSG_EXPIRE: {exc}") from exc


def decode_acquire(payload: bytes) -> AcquireRequested:
    """Decode an XFRM_MSG_ACQUIRE payload (``xfrm_user_acquire`` + XFRMA_TMPL)."""
    if len(payload) < USER_ACQUIRE_LEN:
        raise XfrmDecodeError(f"XFRM_MSG_ACQUIRE payload too short ({len(payload)} octets)")
    try:
        sel = Selector.unpack(payload[ID_LEN + 16 : ID_LEN + 16 + SELECTOR_LEN])
        policy = UserpolicyInfo.unpack(payload[ID_LEN + 16 + SELECTOR_LEN :])
        tmpl = next((UserTmpl.unpack(value[:64]) for kind, value in parse_attrs(payload[USER_ACQUIRE_LEN:])
                     if kind == XFRMA_TMPL and len(value) >= 64), None)
        family = tmpl.family if tmpl is not None else sel.family  # outer family of the endpoints
        xid = XfrmId.unpack(payload[:ID_LEN], family)
        saddr = unpack_address(payload[ID_LEN : ID_LEN + 16], family)
    except (struct.error, ValueError) as exc:
        raise XfrmDecodeError(f"malformed XFRM_MSG_ACQUIRE: {exc}") from exc
    return AcquireRequested(tmpl.reqid if tmpl is not None else 0, sel, saddr, xid.daddr, policy.index)


__all__ = ["AcquireRequested", "KernelExpire", "LifetimeCfg", "LifetimeCur", "decode_acquire",
           "decode_expire"]
