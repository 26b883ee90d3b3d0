"""Hypothesis strategies for every payload type, headers and messages (known and unknown code points)."""

from __future__ import annotations

from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ExchangeType,
    IdType,
    KeId,
    NotifyType,
    ProtocolId,
    TransformType,
    TsType,
    lookup,
)
from ikeguard.wire.message import Message
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ikeguard.wire.sa import Proposal, SaPayload
from ikeguard.wire.transforms import Transform, TransformAttribute
from ikeguard.wire.ts import RawSelector, TrafficSelector, TsiPayload, TsrPayload

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
small_bytes = st.binary(max_size=48)
critical = st.booleans()


def code_point(registry: type[IntEnum], bits: int = 8) -> st.SearchStrategy[int]:
    """A registry value: mostly known members, sometimes an unknown number (kept as int by lookup)."""
    top = (1 << bits) - 1
    members: list[int] = [m for m in registry if int(m) <= top]
    return st.one_of(st.sampled_from(members), st.integers(0, top).map(lambda v: lookup(registry, v)))


transform_attributes = st.builds(
    TransformAttribute,
    type=st.integers(0, 0x7FFF).filter(lambda t: t != 14),
    value=st.one_of(u16, st.binary(max_size=12)),
)

transforms = st.builds(
    Transform,
    type=code_point(TransformType),
    id=u16,
    key_length=st.one_of(st.none(), st.sampled_from([128, 192, 256]), u16),
    attributes=st.lists(transform_attributes, max_size=2).map(tuple),
)

proposals = st.builds(
    Proposal,
    number=u8,
    protocol=code_point(ProtocolId),
    spi=st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(range(8))]),
    transforms=st.lists(transforms, max_size=6).map(tuple),
)

sa_payloads = st.builds(
    SaPayload, proposals=st.lists(proposals, min_size=1, max_size=4).map(tuple), critical=critical
)
ke_payloads = st.builds(KePayload, group=code_point(KeId, 16), data=small_bytes, critical=critical)
idi_payloads = st.builds(
    IdiPayload,
    id_type=code_point(IdType),
    data=small_bytes,
    reserved=st.integers(0, (1 << 24) - 1),
    critical=critical,
)
idr_payloads = st.builds(IdrPayload, id_type=code_point(IdType), data=small_bytes, critical=critical)
cert_payloads = st.builds(CertPayload, encoding=code_point(CertEncoding), data=st.binary(max_size=600))
certreq_payloads = st.builds(CertReqPayload, encoding=code_point(CertEncoding), data=st.binary(max_size=60))
auth_payloads = st.builds(AuthPayload, method=code_point(AuthMethod), data=small_bytes, critical=critical)
nonce_payloads = st.builds(NoncePayload, data=st.binary(min_size=16, max_size=256))
notify_payloads = st.builds(
    NotifyPayload,
    notify_type=code_point(NotifyType, 16),
    data=small_bytes,
    protocol=code_point(ProtocolId),
    spi=st.sampled_from([b"", b"\xaa\xbb\xcc\xdd", bytes(8)]),
    critical=critical,
)
delete_payloads = st.one_of(
    st.builds(DeletePayload, protocol=st.just(ProtocolId.IKE)),
    st.builds(
        DeletePayload,
        protocol=st.sampled_from([ProtocolId.ESP, ProtocolId.AH]),
        spis=st.lists(st.binary(min_size=4, max_size=4), max_size=5).map(tuple),
    ),
    # RFC 7296 §3.11: any other protocol or SPI size is refused by the codec (tests/wire/test_bounded_cost.py)
    st.builds(DeletePayload, protocol=st.sampled_from([ProtocolId.ESP, ProtocolId.AH]), spis=st.just(())),
)
vendor_payloads = st.builds(VendorIdPayload, data=small_bytes)

ipv4 = st.integers(0, (1 << 32) - 1).map(IPv4Address)
ipv6 = st.integers(0, (1 << 128) - 1).map(IPv6Address)
selectors = st.one_of(
    st.builds(TrafficSelector, start_addr=ipv4, end_addr=ipv4, ip_protocol=u8, start_port=u16, end_port=u16),
    st.builds(TrafficSelector, start_addr=ipv6, end_addr=ipv6, ip_protocol=u8, start_port=u16, end_port=u16),
    st.builds(
        RawSelector,
        ts_type=st.one_of(st.just(TsType.SECLABEL), st.integers(0, 255).filter(lambda t: t not in (7, 8))),
        data=st.binary(min_size=1, max_size=20),
    ),
)
tsi_payloads = st.builds(TsiPayload, selectors=st.lists(selectors, max_size=4).map(tuple), critical=critical)
tsr_payloads = st.builds(TsrPayload, selectors=st.lists(selectors, max_size=4).map(tuple), critical=critical)

cfg_attributes = st.builds(CfgAttribute, type=code_point(CfgAttr, 15), value=st.binary(max_size=20))
cp_payloads = st.builds(
    CpPayload, cfg_type=code_point(CfgType), attributes=st.lists(cfg_attributes, max_size=4).map(tuple)
)


@st.composite
def eap_payloads(draw: st.DrawFn) -> EapPayload:
    """A well-framed EAP message: code, identifier, length, type data."""
    rest = draw(st.binary(max_size=40))
    code, ident = draw(u8), draw(u8)
    data = bytes([code, ident]) + (4 + len(rest)).to_bytes(2, "big") + rest
    return EapPayload(data)


unknown_payloads = st.builds(
    UnknownPayload,
    unknown_type=st.one_of(st.integers(1, 32), st.integers(50, 52), st.integers(54, 255), st.just(49)),
    data=small_bytes,
)

plain_payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads,
    ke_payloads,
    idi_payloads,
    idr_payloads,
    cert_payloads,
    certreq_payloads,
    auth_payloads,
    nonce_payloads,
    notify_payloads,
    delete_payloads,
    vendor_payloads,
    tsi_payloads,
    tsr_payloads,
    cp_payloads,
    eap_payloads(),
    unknown_payloads,
)
"""Any payload that may appear in a chain (not SK/SKF)."""

sk_payloads = st.builds(SkPayload, first_inner=u8, body=st.binary(max_size=80))
skf_payloads = st.integers(1, 0xFFFF).flatmap(
    lambda total: st.builds(
        SkfPayload,
        first_inner=u8,
        number=st.integers(1, total),
        total=st.just(total),
        body=st.binary(max_size=60),
    )
)

headers = st.builds(
    IkeHeader,
    spi_i=st.binary(min_size=8, max_size=8),
    spi_r=st.binary(min_size=8, max_size=8),
    exchange_type=code_point(ExchangeType),
    flags=st.sampled_from(list(HeaderFlags)).map(HeaderFlags) | u8.map(HeaderFlags),
    message_id=st.integers(0, (1 << 32) - 1),
    minor_version=st.integers(0, 15),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A header and a chain of payloads, optionally ending with SK or SKF."""
    chain = draw(st.lists(plain_payloads, max_size=6))
    tail = draw(st.one_of(st.none(), sk_payloads, skf_payloads))
    if tail is not None:
        chain.append(tail)
    return Message(draw(headers), tuple(chain))
