"""XFRM struct codecs: sizes of the C structs, round trips, and decoders that reject garbage with a typed
error (a malformed kernel notification must never crash the gateway)."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.dataplane.base import SaDirection
from ikeguard.dataplane.xfrm.events import decode_acquire, decode_expire
from ikeguard.dataplane.xfrm.plane import InstalledSa, expire_event
from ikeguard.dataplane.xfrm.structs import (
    AF_INET,
    AF_INET6,
    EncapTmpl,
    IpAddress,
    LifetimeCfg,
    LifetimeCur,
    ReplayEsn,
    Selector,
    UserpolicyInfo,
    UsersaInfo,
    UserTmpl,
    XfrmDecodeError,
    XfrmId,
    attr,
    nlmsg,
    parse_attrs,
    split_nlmsgs,
)
from tests.dataplane.xfrm.sas import GW, PEER, gcm_udp_sa

u8, u16, u32, u64 = (st.integers(0, 2**n - 1) for n in (8, 16, 32, 64))
v4: st.SearchStrategy[IpAddress] = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6: st.SearchStrategy[IpAddress] = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    family = draw(st.sampled_from([AF_INET, AF_INET6]))
    addr = v4 if family == AF_INET else v6
    return Selector(
        family,
        draw(addr),
        draw(addr),
        draw(st.integers(0, 32)),
        draw(st.integers(0, 32)),
        draw(u16),
        draw(u16),
        draw(u16),
        draw(u16),
        draw(u8),
        draw(st.integers(-(2**31), 2**31 - 1)),
        draw(u32),
    )


@st.composite
def sa_infos(draw: st.DrawFn) -> UsersaInfo:
    sel = draw(selectors())
    addr = v4 if sel.family == AF_INET else v6
    return UsersaInfo(
        sel,
        XfrmId(draw(addr), draw(u32), draw(u8)),
        draw(addr),
        sel.family,
        draw(u8),
        draw(u32),
        draw(u8),
        draw(u8),
        LifetimeCfg(*(draw(u64) for _ in range(8))),
        LifetimeCur(*(draw(u64) for _ in range(4))),
        (draw(u32), draw(u32), draw(u32)),
        draw(u32),
    )


def test_struct_sizes_match_the_kernel_abi() -> None:
    sel = Selector(AF_INET)
    info = UsersaInfo(sel, XfrmId(GW, 1), GW, AF_INET)
    assert len(sel.pack()) == 56 and len(info.pack()) == 224
    assert len(UserpolicyInfo(sel, 0).pack()) == 168
    assert len(UserTmpl(XfrmId(GW, 0), AF_INET, GW, 1).pack()) == 64
    assert len(EncapTmpl(4500, 4500).pack()) == 24
    assert len(ReplayEsn(64).pack()) == 24 + 8


@settings(max_examples=80, deadline=None)
@given(sa_infos())
def test_usersa_info_round_trip(info: UsersaInfo) -> None:
    assert UsersaInfo.unpack(info.pack()) == info


@settings(max_examples=60, deadline=None)
@given(selectors(), u8, u32, u32, u8, u8)
def test_policy_and_template_round_trip(
    sel: Selector, direction: int, prio: int, reqid: int, mode: int, action: int
) -> None:
    pol = UserpolicyInfo(sel, direction, prio, 0, action)
    assert UserpolicyInfo.unpack(pol.pack()) == pol
    tmpl = UserTmpl(XfrmId(sel.daddr, 0), sel.family, sel.saddr, reqid, mode)
    assert UserTmpl.unpack(tmpl.pack()) == tmpl


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4096), u32, u32, u32, u32)
def test_replay_esn_round_trip(window: int, oseq: int, seq: int, oseq_hi: int, seq_hi: int) -> None:
    state = ReplayEsn(window, oseq, seq, oseq_hi, seq_hi, (0,) * ((window + 31) // 32))
    assert ReplayEsn.unpack(state.pack()) == state


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 0x3FFF), st.binary(max_size=40)), max_size=6), u16, u32)
def test_netlink_framing_round_trip(attrs: list[tuple[int, bytes]], msg_type: int, seq: int) -> None:
    body = b"".join(attr(k, v) for k, v in attrs)
    assert parse_attrs(body) == attrs
    assert split_nlmsgs(nlmsg(msg_type, 5, seq, body) * 2) == [(msg_type, 5, seq, body)] * 2


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_reject_garbage_with_a_typed_error(data: bytes) -> None:
    for decode in (decode_expire, decode_acquire, parse_attrs, split_nlmsgs):
        with contextlib.suppress(XfrmDecodeError):
            decode(data)  # anything else than XfrmDecodeError fails the test


def test_expire_becomes_lifetime_reached_for_our_sa_only() -> None:
    sa = gcm_udp_sa(soft_packets=100, hard_packets=200)
    installed = {(sa.spi, SaDirection.OUTBOUND): InstalledSa(sa, 1)}
    state = UsersaInfo(
        Selector(),
        XfrmId(PEER, sa.spi),
        GW,
        AF_INET,
        lft=LifetimeCfg(900, 1000, 100, 200),
        curlft=LifetimeCur(5000, 100),
    )
    soft = decode_expire(state.pack() + bytes([0]) + bytes(7))
    event = expire_event(soft, installed)
    assert event is not None and (event.spi, event.direction, event.hard, event.kind) == (
        sa.spi,
        SaDirection.OUTBOUND,
        False,
        "packets",
    )
    assert event.child_uniqueid == 3
    hard = decode_expire(
        UsersaInfo(
            Selector(),
            XfrmId(PEER, sa.spi),
            GW,
            AF_INET,
            lft=LifetimeCfg(900, 1000, 100, 200),
            curlft=LifetimeCur(1000, 7),
        ).pack()
        + b"\x01"
        + bytes(7)
    )
    hard_event = expire_event(hard, installed)
    assert hard_event is not None and hard_event.hard and hard_event.kind == "bytes"
    other = decode_expire(UsersaInfo(Selector(), XfrmId(GW, sa.spi), GW, AF_INET).pack() + bytes(8))
    assert expire_event(other, installed) is None  # same SPI, other destination: not ours


def test_short_notifications_are_refused() -> None:
    with pytest.raises(XfrmDecodeError):
        decode_expire(bytes(100))
    with pytest.raises(XfrmDecodeError):
        decode_acquire(bytes(279))
