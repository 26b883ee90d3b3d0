"""Exact bytes of the XFRM requests, checked field by field at their C offsets (<linux/xfrm.h>) with
offsets written out here, independently of the struct code that builds them."""

from __future__ import annotations

import ipaddress
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.dataplane.base import DataPlaneError, SaDirection
from ikeguard.dataplane.xfrm import messages as msg
from ikeguard.dataplane.xfrm.structs import XFRM_INF, parse_attrs
from ikeguard.policy.ts import TrafficSelector
from tests.dataplane.xfrm.sas import GCM_KEY, GW, PEER, gcm_udp_sa

OPTIONS = msg.XfrmOptions(if_id=7, mark=(0x10, 0xFF))
ORDER = "<" if sys.byteorder == "little" else ">"  # host order of netlink's non-__be fields


def u(fmt: str, data: bytes, off: int) -> tuple[int, ...]:
    return struct.unpack_from(ORDER + fmt, data, off)


def test_aes_gcm_tunnel_with_udp_encapsulation_field_by_field() -> None:
    """The Done-when message: NEWSA for AES-GCM-16 in tunnel mode with ESP-in-UDP, every field checked."""
    payload = msg.newsa(gcm_udp_sa(), reqid=5, options=OPTIONS)
    # xfrm_usersa_info (224 octets): selector wildcard, the policies select (tunnel mode)
    assert payload[0:56] == bytes(56)
    assert payload[56:72] == PEER.packed + bytes(12)  # id.daddr
    assert payload[72:76] == bytes.fromhex("c1a2b3c4")  # id.spi, network order
    assert payload[76:80] == bytes([50, 0, 0, 0])  # id.proto = ESP
    assert payload[80:96] == GW.packed + bytes(12)  # saddr
    assert u("8Q", payload, 96) == (900_000_000, 1_000_000_000, XFRM_INF, XFRM_INF, 0, 0, 0, 0)
    assert payload[160:204] == bytes(44)  # curlft, stats
    seq, reqid, family, mode, window, flags = u("IIHBBB", payload, 204)
    assert (seq, reqid, family, mode, window, flags) == (0, 5, 2, 1, 32, 32)  # AF_INET, tunnel, AF_UNSPEC
    assert payload[217:224] == bytes(7)
    attrs = parse_attrs(payload[224:])
    assert [kind for kind, _ in attrs] == [18, 4, 21, 31]  # ALG_AEAD, ENCAP, MARK, IF_ID
    aead = attrs[0][1]
    assert aead[:64] == b"rfc4106(gcm(aes))".ljust(64, b"\x00")
    assert u("II", aead, 64) == (160, 128)  # key bits incl. the 32-bit salt, ICV bits
    assert aead[72:] == GCM_KEY and aead[-4:] == b"\xa1\xa2\xa3\xa4"  # salt last (RFC 4106 §8.1)
    encap = attrs[1][1]
    assert len(encap) == 24 and u("H", encap, 0) == (2,)  # UDP_ENCAP_ESPINUDP
    assert struct.unpack_from("!HH", encap, 2) == (4500, 31337) and encap[6:] == bytes(18)
    assert u("II", attrs[2][1], 0) == (0x10, 0xFF) and u("I", attrs[3][1], 0) == (7,)
    # attribute framing: each nlattr length covers header + payload, padded to 4
    assert struct.unpack_from(ORDER + "HH", payload, 224) == (4 + 72 + 20, 18)
    assert len(payload) == 224 + 96 + 28 + 12 + 8


def test_inbound_sa_swaps_endpoints_and_keeps_gcm_layout() -> None:
    payload = msg.newsa(gcm_udp_sa(SaDirection.INBOUND), reqid=5, options=msg.XfrmOptions())
    assert payload[56:60] == GW.packed and payload[80:84] == PEER.packed
    encap = dict(parse_attrs(payload[224:]))[4]
    assert struct.unpack_from("!HH", encap, 2) == (31337, 4500)
    assert {k for k, _ in parse_attrs(payload[224:])} == {18, 4}  # no mark / if_id when unset


def test_chacha20_poly1305_key_and_salt() -> None:
    key = bytes(range(36))
    payload = msg.newsa(gcm_udp_sa(encr_id=28, encr_key_bits=None, encr_key=key), 1, msg.XfrmOptions())
    aead = dict(parse_attrs(payload[224:]))[18]
    assert aead[:64].rstrip(b"\x00") == b"rfc7539esp(chacha20,poly1305)"
    assert u("II", aead, 64) == (288, 128) and aead[72:] == key


@pytest.mark.parametrize(
    ("integ_id", "name", "key_len", "trunc"),
    [(12, b"hmac(sha256)", 32, 128), (13, b"hmac(sha384)", 48, 192), (14, b"hmac(sha512)", 64, 256)],
)
def test_aes_cbc_with_hmac_sha2_truncation(integ_id: int, name: bytes, key_len: int, trunc: int) -> None:
    ekey, ikey = bytes(range(32)), bytes([7]) * key_len
    sa = gcm_udp_sa(
        encr_id=12, encr_key_bits=256, encr_key=ekey, integ_id=integ_id, integ_key=ikey, encap=False
    )
    attrs = dict(parse_attrs(msg.newsa(sa, 1, msg.XfrmOptions())[224:]))
    assert set(attrs) == {2, 20}  # ALG_CRYPT, ALG_AUTH_TRUNC; no ENCAP for raw ESP
    assert attrs[2][:64].rstrip(b"\x00") == b"cbc(aes)" and u("I", attrs[2], 64) == (256,)
    assert attrs[2][68:] == ekey
    assert attrs[20][:64].rstrip(b"\x00") == name and u("II", attrs[20], 64) == (key_len * 8, trunc)
    assert attrs[20][72:] == ikey


def test_esn_and_large_window_use_the_esn_replay_attribute() -> None:
    payload = msg.newsa(gcm_udp_sa(esn=True, replay_window=128), 1, msg.XfrmOptions())
    window, flags = payload[215], payload[216]
    assert window == 0 and flags == 32 | 128  # the kernel wants 0 here when XFRMA_REPLAY_ESN_VAL is sent
    esn = dict(parse_attrs(payload[224:]))[23]
    bmp_len, oseq, seq, oseq_hi, seq_hi, replay_window = u("6I", esn, 0)
    assert (bmp_len, oseq, seq, oseq_hi, seq_hi, replay_window) == (4, 0, 0, 0, 0, 128)
    assert len(esn) == 24 + 4 * 4
    # a 1024-packet window without ESN still needs the ESN-style replay state (bitmap > 32 bits)
    big = msg.newsa(gcm_udp_sa(replay_window=1024), 1, msg.XfrmOptions())
    assert big[216] == 32 and u("I", dict(parse_attrs(big[224:]))[23], 0) == (32,)


def test_packet_lifetimes_and_unlimited_defaults() -> None:
    payload = msg.newsa(
        gcm_udp_sa(soft_bytes=0, hard_bytes=0, soft_packets=1000, hard_packets=2000), 1, msg.XfrmOptions()
    )
    assert u("4Q", payload, 96) == (XFRM_INF, XFRM_INF, 1000, 2000)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"encr_id": 3}, "not supported"),
        ({"encr_key": GCM_KEY[:16]}, "key and salt"),
        ({"integ_id": 12}, "no integrity"),
        ({"spi": 255}, "reserved"),
        ({"mode": "beet"}, "neither tunnel nor transport"),
        (
            {"encr_id": 12, "encr_key_bits": 128, "encr_key": bytes(16), "integ_id": 2},
            "integrity transform 2",
        ),
    ],
)
def test_sas_the_kernel_would_misread_are_refused(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(DataPlaneError, match=needle) as err:
        msg.newsa(gcm_udp_sa(**changes), 1, msg.XfrmOptions())  # type: ignore[arg-type]
    assert GCM_KEY.hex() not in str(err.value)


def test_usersa_id_and_allocspi_layout() -> None:
    sid = msg.usersa_id(PEER, 0x1234, OPTIONS, saddr=GW)
    assert sid[:16] == PEER.packed + bytes(12) and sid[16:20] == b"\x00\x00\x12\x34"
    assert u("HB", sid, 20) == (2, 50) and len(sid) == 24 + 20 + 12
    assert dict(parse_attrs(sid[24:]))[13] == GW.packed + bytes(12)  # XFRMA_SRCADDR
    spi = msg.allocspi(ipaddress.ip_address("2001:db8::1"), msg.XfrmOptions())
    assert len(spi) == 232 and u("H", spi, 212) == (10,) and u("II", spi, 224) == (256, 0xFFFFFFFF)


def test_policy_and_template_layout() -> None:
    sel = msg.policy_selectors(
        (TrafficSelector.for_network(ipaddress.ip_network("198.51.100.0/25")),),
        (TrafficSelector.for_network(ipaddress.ip_network("198.51.100.128/25"), 6, 443, 443),),
        inbound=False,
    )[0]
    tmpl = msg.tunnel_template(GW, PEER, 2, reqid=9)
    payload = msg.userpolicy(sel, 1, 1234, OPTIONS, tmpl)
    assert payload[0:4] == bytes([198, 51, 100, 128]) and payload[16:20] == bytes([198, 51, 100, 0])
    assert struct.unpack_from("!HHHH", payload, 32) == (443, 0xFFFF, 0, 0)
    assert u("HBBB", payload, 40) == (2, 25, 25, 6)
    assert u("IIBBBB", payload, 152) == (1234, 0, 1, 0, 0, 0)  # priority, index, dir out, allow
    t = dict(parse_attrs(payload[168:]))[5]
    assert len(t) == 64 and t[0:4] == PEER.packed and t[20] == 50 and u("H", t, 24) == (2,)
    assert t[28:32] == GW.packed and u("IBBB", t, 44) == (9, 1, 0, 0)
    assert u("III", t, 52) == (0xFFFFFFFF,) * 3


def _ts(version: int, a: int, b: int, proto: int = 0, sp: int = 0, ep: int = 65535) -> TrafficSelector:
    return TrafficSelector(version, min(a, b), max(a, b), proto, min(sp, ep), max(sp, ep))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 65535))
def test_selector_split_covers_exactly_the_range(a: int, b: int, p1: int, p2: int) -> None:
    """Address ranges become prefixes and port ranges masked blocks with nothing added or lost."""
    remote = _ts(4, a, b, 6, p1, p2)
    n_addr = len(list(ipaddress.summarize_address_range(remote.start_address, remote.end_address)))
    n_port = len(msg._port_blocks(remote.start_port, remote.end_port))
    if n_addr * n_port > msg.MAX_POLICY_SELECTORS:  # refused rather than installed partially
        with pytest.raises(DataPlaneError, match="narrow them"):
            msg.policy_selectors((_ts(4, 0x0A000000, 0x0A0000FF),), (remote,), inbound=False)
        return
    sels = msg.policy_selectors((_ts(4, 0x0A000000, 0x0A0000FF),), (remote,), inbound=False)
    assert len(sels) == n_addr * n_port
    addr_blocks = sorted({(int(ipaddress.ip_address(str(s.daddr))), s.prefixlen_d) for s in sels})
    cursor = remote.start
    for start, plen in addr_blocks:  # contiguous, in order, exact
        assert start == cursor and start % (1 << (32 - plen)) == 0
        cursor = start + (1 << (32 - plen))
    assert cursor == remote.end + 1
    port_blocks = sorted({(s.dport, s.dport_mask) for s in sels})
    pcur = remote.start_port
    for port, mask in port_blocks:
        size = 65536 if mask == 0 else ((~mask) & 0xFFFF) + 1
        assert port == pcur and port % size == 0
        pcur = port + size
    assert pcur == remote.end_port + 1
    assert all(s.sport_mask == 0 and s.proto == 6 for s in sels)


def test_inbound_selectors_swap_sides_and_icmp_uses_type_and_code() -> None:
    local = _ts(4, 0xC6336400, 0xC633647F, 17, 53, 53)
    remote = _ts(4, 0xC6336480, 0xC63364FF, 17)
    (inb,) = msg.policy_selectors((local,), (remote,), inbound=True)
    assert (str(inb.saddr), inb.prefixlen_s, str(inb.daddr), inb.prefixlen_d) == (
        "198.51.100.128",
        25,
        "198.51.100.0",
        25,
    )
    assert (inb.sport, inb.sport_mask, inb.dport, inb.dport_mask) == (0, 0, 53, 0xFFFF)
    echo = _ts(4, 0xC6336400, 0xC633647F, 1, 0x0800, 0x0800)  # type 8 (echo request), code 0
    (icmp,) = msg.policy_selectors((echo,), (_ts(4, 0xC6336480, 0xC63364FF),), inbound=False)
    assert (icmp.sport, icmp.sport_mask, icmp.dport, icmp.dport_mask) == (8, 0xFFFF, 0, 0xFFFF)
    with pytest.raises(DataPlaneError, match="ICMP"):
        msg.policy_selectors((_ts(4, 1, 2, 1, 0x0300, 0x0801),), (_ts(4, 5, 6),), inbound=False)
    assert msg.policy_selectors((local,), (_ts(6, 1, 2),), inbound=False) == []  # no same-family pair


def test_more_specific_selectors_get_preferred_priorities() -> None:
    wide, narrow = (
        msg.policy_selectors((_ts(4, 0, 2**32 - 1),), (_ts(4, 0x0A000000, 0x0AFFFFFF),), inbound=False)[0],
        msg.policy_selectors(
            (_ts(4, 0x0A000001, 0x0A000001),), (_ts(4, 0x0A000002, 0x0A000002, 6, 22, 22),), inbound=False
        )[0],
    )
    assert msg.selector_priority(narrow) < msg.selector_priority(wide)


def test_too_many_selectors_are_refused() -> None:
    odd = _ts(4, 1, 2**31 - 3)  # ~60 prefixes
    with pytest.raises(DataPlaneError, match="narrow them"):
        msg.policy_selectors((odd,), (odd, _ts(4, 5, 2**30 + 7)), inbound=False)
