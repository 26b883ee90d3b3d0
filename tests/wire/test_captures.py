"""Real third-party captures (tcpdump and scapy test suites) through our codec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ikeguard.wire.errors import LengthError, ParseError, TruncatedError, UnsupportedVersion
from ikeguard.wire.header import HEADER_LEN, HeaderFlags
from ikeguard.wire.iana import (
    AuthMethod,
    CertEncoding,
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    KeId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)
from ikeguard.wire.message import Message, decode_payloads, encode_message, encode_payloads, parse_message
from ikeguard.wire.natt import Esp, Ike, Keepalive, classify_udp4500
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkPayload,
    VendorIdPayload,
)
from ikeguard.wire.rules import MessageRole, check_exchange_rules
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.transforms import Transform
from ikeguard.wire.ts import TsiPayload, TsrPayload

from .pcap import UdpDatagram, read_udp

TCPDUMP = "tcpdump-ipsec"
SCAPY = "scapy-ikev2"


def ike_messages(path: Path) -> list[tuple[UdpDatagram, bytes]]:
    """IKE messages of a capture: port 500 as is, port 4500 behind the non-ESP marker."""
    out = []
    for d in read_udp(path):
        if 4500 in (d.src_port, d.dst_port):
            kind = classify_udp4500(d.payload)
            if isinstance(kind, Ike):
                out.append((d, kind.data))
        elif 500 in (d.src_port, d.dst_port):
            out.append((d, d.payload))
    return out


IKEV2_CAPTURES = [
    (TCPDUMP, "ikev2four.pcap", 21),
    (TCPDUMP, "ikev2pI2.pcap", 2),
    (SCAPY, "ikev2_nat_t.pcapng", 30),
    (SCAPY, "ikev2_notify_redirect.pcap", 4),
]


@pytest.mark.parametrize(("folder", "name", "count"), IKEV2_CAPTURES)
def test_ikev2_captures_parse_and_re_encode_byte_identically(
    vectors_dir: Path, folder: str, name: str, count: int
) -> None:
    messages = ike_messages(vectors_dir / folder / name)
    assert len(messages) == count
    for _d, data in messages:
        msg = parse_message(data)
        assert msg.header.major_version == 2
        assert encode_message(msg) == data


def test_ikev1_on_500_and_4500_is_refused_as_another_major_version(vectors_dir: Path) -> None:
    messages = ike_messages(vectors_dir / TCPDUMP / "isakmp4500.pcap")
    assert len(messages) == 15
    for _d, data in messages:
        with pytest.raises(UnsupportedVersion) as err:
            parse_message(data)
        assert err.value.major == 1
        assert err.value.notify == NotifyType.INVALID_MAJOR_VERSION


def test_port_4500_capture_separates_keepalive_ike_and_esp(vectors_dir: Path) -> None:
    kinds = [
        classify_udp4500(d.payload)
        for d in read_udp(vectors_dir / TCPDUMP / "isakmp4500.pcap")
        if d.dst_port == 4500 or d.src_port == 4500
    ]
    assert any(isinstance(k, Keepalive) for k in kinds)
    assert any(isinstance(k, Ike) for k in kinds)
    assert any(isinstance(k, Esp) for k in kinds)
    esp = [classify_udp4500(d.payload) for d in read_udp(vectors_dir / TCPDUMP / "espudp1.pcap")]
    assert len(esp) == 8 and all(isinstance(k, Esp) and k.spi == 0x12345678 for k in esp)
    nat_t = [classify_udp4500(d.payload) for d in read_udp(vectors_dir / SCAPY / "ikev2_nat_t.pcapng")]
    assert sum(isinstance(k, Ike) for k in nat_t) == 30
    assert {k.spi for k in nat_t if isinstance(k, Esp)} >= {0xAC0FAF03, 0xC1A9656B}


def test_tcpdump_id_robustness_inputs_get_precise_errors(vectors_dir: Path) -> None:
    # Crafted by tcpdump's tests: IDi payload of length 9 followed by 39 stray octets inside the header Length
    ((_d, normal),) = ike_messages(vectors_dir / TCPDUMP / "ikev2-id-normal.pcap")
    with pytest.raises(LengthError) as err:
        parse_message(normal)
    assert err.value.offset == HEADER_LEN + 9 and "39 octets after the last payload" in str(err.value)
    # ... and an IDi payload of length 5: one body octet where the ID header needs four, and 43 stray octets.
    # The chain is walked before any body is decoded, so the stray octets are reported first ...
    ((_d, short),) = ike_messages(vectors_dir / TCPDUMP / "ikev2-id-short.pcap")
    with pytest.raises(LengthError) as err_tail:
        parse_message(short)
    assert err_tail.value.offset == HEADER_LEN + 5
    assert "43 octets after the last payload" in str(err_tail.value)
    # ... and without them, the body that is too short for the ID header.
    cut = short[:24] + (HEADER_LEN + 5).to_bytes(4, "big") + short[HEADER_LEN : HEADER_LEN + 5]
    with pytest.raises(TruncatedError) as err2:
        parse_message(cut)
    assert err2.value.payload_type == PayloadType.IDI and err2.value.offset == HEADER_LEN + 4
    # the payload itself is fine on its own: same bytes without the stray tail
    first, chain = encode_payloads([IdiPayload(IdType.IPV4_ADDR, b"\xde")])
    assert normal[HEADER_LEN : HEADER_LEN + 9] == chain and first == PayloadType.IDI


# --- ikev2four: the payload chain as tcpdump prints it ---------------------------------------------------

_EXCHANGE_WORDS = {"ikev2_init": 34, "ikev2_auth": 35, "child_sa": 36, "inf2": 37}
_TRANSFORM_TYPES = {1: "encr", 2: "prf", 3: "integ", 4: "dh"}
_TRANSFORM_IDS: dict[tuple[int, int], str] = {
    (1, EncrId.AES_CBC): "aes",
    (1, EncrId.TRIPLE_DES): "3des",
    (2, PrfId.HMAC_SHA1): "hmac-sha",
    (2, PrfId.HMAC_MD5): "hmac-md5",
    (2, PrfId.AES128_XCBC): "aes128_xcbc",
    (3, IntegId.HMAC_SHA1_96): "hmac-sha",
    (3, IntegId.HMAC_MD5_96): "hmac-md5",
    (3, IntegId.AES_XCBC_96): "aes-xcbc",
    (4, KeId.MODP_1024): "modp1024",
    (4, KeId.MODP_2048): "modp2048",
    (4, KeId.MODP_1536): "modp1536",
}
_NOTIFY_NAMES: dict[int, str] = {
    NotifyType.NAT_DETECTION_SOURCE_IP: "nat_detection_source_ip",
    NotifyType.NAT_DETECTION_DESTINATION_IP: "nat_detection_destination_ip",
    NotifyType.COOKIE: "cookie",
}


def _data(raw: bytes) -> str:
    """tcpdump's short form: up to 30 octets in full, else the first 10 '...' the last 20."""
    return raw.hex() if len(raw) <= 30 else f"{raw[:10].hex()}...{raw[-20:].hex()}"


def _transform_line(index: int, t: Transform) -> str:
    kind = _TRANSFORM_TYPES[int(t.type)]
    line = f"(t: #{index} type={kind} id={_TRANSFORM_IDS[(int(t.type), t.id)]}"
    if t.key_length is not None:
        line += f" (type=keylen value={t.key_length:04x}"
    return line


def render_like_tcpdump(payloads: tuple[Payload, ...]) -> list[str]:
    """Our parse rendered in tcpdump's ikev2 format (closing parentheses dropped)."""
    lines: list[str] = []
    for p in payloads:
        if isinstance(p, SaPayload):
            lines.append(f"(sa: len={len(p.encode_body())}")
            for prop in p.proposals:
                size = 8 + len(prop.spi) + len(SaPayload((prop,)).encode_body()) - 8 - len(prop.spi)
                proto = "isakmp" if prop.protocol == ProtocolId.IKE else str(int(prop.protocol))
                lines.append(
                    f"(p: #{prop.number} protoid={proto} transform={len(prop.transforms)} len={size}"
                )
                lines += [_transform_line(i, t) for i, t in enumerate(prop.transforms, start=1)]
        elif isinstance(p, KePayload):
            lines.append(f"(v2ke: len={len(p.data)} group={_TRANSFORM_IDS[(4, int(p.group))]}")
        elif isinstance(p, NoncePayload):
            lines.append(f"(nonce: len={len(p.data)} data=({_data(p.data)}")
        elif isinstance(p, NotifyPayload):
            line = f"(n: prot_id=#{int(p.protocol)} type={int(p.notify_type)}({_NOTIFY_NAMES[p.notify_type]}"
            if p.notify_type == NotifyType.COOKIE:
                line += f") data=({_data(p.data)}"
            lines.append(line)
        elif isinstance(p, SkPayload):
            lines.append(f"(v2e: len={len(p.body)}")
        else:
            raise AssertionError(f"unexpected payload {p!r}")
    return lines


def parse_tcpdump_out(text: str) -> list[dict[str, object]]:
    """Per frame: exchange type, message ID, I/R flags, payload lines (closing parentheses dropped)."""
    frames: list[dict[str, object]] = []
    for line in text.splitlines():
        header = re.search(r"isakmp 2\.0 msgid ([0-9a-f]{8}): \w+\s+(\w+)\[(I?R?)\]:", line)
        if header:
            frames.append(
                {
                    "msgid": int(header.group(1), 16),
                    "exchange": _EXCHANGE_WORDS[header.group(2)],
                    "flags": header.group(3),
                    "lines": [],
                }
            )
        elif line.strip().startswith("(") and frames:
            lines = frames[-1]["lines"]
            assert isinstance(lines, list)
            lines.append(line.strip().rstrip(") "))
    return frames


def _matches(ours: str, theirs: str) -> bool:
    """Equal, except that tcpdump's truncated data form is compared on its first ten octets.

    (tcpdump prints the tail of the *nonce* after the COOKIE notify of frame 3 — its own quirk — so tails of
    truncated notify data are not compared.)
    """
    if "..." not in theirs:
        return ours == theirs
    head = theirs.split("...")[0]
    return ours.startswith(head)


def test_ikev2four_payload_chain_matches_tcpdump(vectors_dir: Path) -> None:
    expected = parse_tcpdump_out((vectors_dir / TCPDUMP / "ikev2four.out").read_text())
    messages = ike_messages(vectors_dir / TCPDUMP / "ikev2four.pcap")
    assert len(expected) == len(messages) == 21
    for frame, ((_d, data), want) in enumerate(zip(messages, expected, strict=True), start=1):
        msg = parse_message(data)
        flags = ("I" if msg.header.is_initiator else "") + ("R" if msg.header.is_response else "")
        assert (int(msg.header.exchange_type), msg.header.message_id, flags) == (
            want["exchange"],
            want["msgid"],
            want["flags"],
        ), frame
        ours = render_like_tcpdump(msg.payloads)
        theirs = want["lines"]
        assert isinstance(theirs, list)
        assert len(ours) == len(theirs), (frame, ours, theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert _matches(a, b), (frame, a, b)


def test_ikev2four_messages_follow_the_exchange_rules(vectors_dir: Path) -> None:
    for _d, data in ike_messages(vectors_dir / TCPDUMP / "ikev2four.pcap"):
        msg = parse_message(data)
        role = MessageRole.RESPONSE if msg.header.is_response else MessageRole.REQUEST
        assert check_exchange_rules(msg, role) is None


# --- scapy's NAT-T capture: published decrypted chains ---------------------------------------------------


def _scapy_frames(vectors_dir: Path) -> dict[int, bytes]:
    doc = json.loads((vectors_dir / SCAPY / "ikev2_nat_t-frames.json").read_text())
    out = {}
    for f in doc["frames"]:
        frame = bytes.fromhex(f["ether_frame"])
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        payload = udp[8 : int.from_bytes(udp[4:6], "big")]
        kind = classify_udp4500(payload)
        assert isinstance(kind, Ike)
        out[f["i"]] = kind.data
    return out


def test_scapy_frames_equal_the_pcapng(vectors_dir: Path) -> None:
    frames = _scapy_frames(vectors_dir)
    messages = [data for _d, data in ike_messages(vectors_dir / SCAPY / "ikev2_nat_t.pcapng")]
    assert [frames[i] for i in range(4)] == messages[:4]
    init = parse_message(frames[0])
    sa = init.get(SaPayload)
    assert sa is not None
    spec = sa.proposals[0].to_spec()
    assert Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256) in spec.encr
    assert Transform(TransformType.PRF, PrfId.HMAC_SHA2_256) in spec.prf
    assert Transform(TransformType.KE, KeId.ECP_256) in spec.ke


def _decrypted_chain(data: bytes) -> tuple[Message, tuple[Payload, ...], bytes]:
    # scapy's decrypted frames replace the SK payload by its plaintext chain but keep the original Length.
    header_first = data[16]
    chain = data[HEADER_LEN:]
    return parse_message_header_only(data), decode_payloads(chain, header_first, HEADER_LEN), chain


def parse_message_header_only(data: bytes) -> Message:
    from ikeguard.wire.header import decode_header

    padded = data + bytes(max(0, int.from_bytes(data[24:28], "big") - len(data)))
    header, _first, _length = decode_header(padded)
    return Message(header, ())


def test_scapy_decrypted_ike_auth_request_chain(vectors_dir: Path) -> None:
    msg, inner, chain = _decrypted_chain(_scapy_frames(vectors_dir)[-2])
    assert msg.header.exchange_type == ExchangeType.IKE_AUTH and msg.header.flags == HeaderFlags.INITIATOR
    types = [p.type for p in inner]
    assert types[:2] == [PayloadType.IDI, PayloadType.CERT]
    idi = inner[0]
    assert isinstance(idi, IdiPayload) and (idi.id_type, idi.data) == (IdType.RFC822_ADDR, b"ikev2-cert")
    cert = inner[1]
    assert isinstance(cert, CertPayload) and cert.encoding == CertEncoding.X509_SIGNATURE
    assert cert.data[:2] == b"\x30\x82"  # a DER SEQUENCE: the client's ECDSA certificate
    assert any(isinstance(p, CertReqPayload) for p in inner)
    auth = next(p for p in inner if isinstance(p, AuthPayload))
    assert auth.method in (AuthMethod.ECDSA_SHA256_P256, AuthMethod.DIGITAL_SIGNATURE)
    assert any(isinstance(p, CpPayload) for p in inner)
    tsi, tsr = (
        next(p for p in inner if isinstance(p, TsiPayload)),
        next(p for p in inner if isinstance(p, TsrPayload)),
    )
    assert tsi.selectors and tsr.selectors
    assert encode_payloads(inner) == (idi.type, chain)
    assert check_exchange_rules(Message(msg.header, (SkPayload(0, b""),)), MessageRole.REQUEST, inner) is None


def test_scapy_decrypted_ike_auth_response_and_create_child_sa(vectors_dir: Path) -> None:
    frames = _scapy_frames(vectors_dir)
    msg, inner, chain = _decrypted_chain(frames[-3])
    assert msg.header.is_response
    assert inner[0].type == PayloadType.IDR and isinstance(inner[0], IdrPayload)
    assert encode_payloads(inner)[1] == chain
    # This peer puts a Nonce into its IKE_AUTH response, which RFC 7296 §1.2 (and strongSwan) do not allow.
    violation = check_exchange_rules(Message(msg.header, (SkPayload(0, b""),)), MessageRole.RESPONSE, inner)
    assert violation is not None and violation.payload_type == PayloadType.NONCE
    without_nonce = tuple(p for p in inner if not isinstance(p, NoncePayload))
    assert (
        check_exchange_rules(Message(msg.header, (SkPayload(0, b""),)), MessageRole.RESPONSE, without_nonce)
        is None
    )
    msg, inner, chain = _decrypted_chain(frames[-4])
    assert msg.header.exchange_type == ExchangeType.CREATE_CHILD_SA
    assert {PayloadType.SA, PayloadType.NONCE, PayloadType.TSI, PayloadType.TSR} <= {p.type for p in inner}
    assert encode_payloads(inner)[1] == chain
    assert check_exchange_rules(Message(msg.header, (SkPayload(0, b""),)), MessageRole.REQUEST, inner) is None


def test_redirect_capture_carries_the_redirect_notify(vectors_dir: Path) -> None:
    messages = [
        parse_message(data) for _d, data in ike_messages(vectors_dir / SCAPY / "ikev2_notify_redirect.pcap")
    ]
    answer = messages[1]
    redirect = answer.notify(NotifyType.REDIRECT)
    assert redirect is not None and redirect.data
    assert check_exchange_rules(answer, MessageRole.RESPONSE) is None  # notify-only answer is fine
    # RFC 5685 §3: the gateway identity, then the initiator's nonce (engine.tasks.redirect decodes it)
    from ikeguard.engine.tasks.redirect import decode
    from ikeguard.wire.payloads import NoncePayload

    gateway, nonce = decode(redirect.data)
    request_nonce = messages[0].get(NoncePayload)
    assert gateway and request_nonce is not None and nonce == request_nonce.data


def test_vendor_ids_and_nonce_of_ikev2pI2(vectors_dir: Path) -> None:
    (_d, data), _ = ike_messages(vectors_dir / TCPDUMP / "ikev2pI2.pcap")
    msg = parse_message(data)
    sa = msg.get(SaPayload)
    assert sa is not None and sa.critical  # Openswan set the C bit on a known payload: kept, not an error
    assert [p.number for p in sa.proposals] == [1, 2, 3, 4, 5, 6]
    assert sa.proposals[0].transforms[0] == Transform(
        TransformType.ENCR, EncrId.AES_CBC
    )  # no key length sent
    nonce = msg.get(NoncePayload)
    assert nonce is not None and nonce.data.hex() == "b5ce8419095c6e2b6b62d3055305b3c4"
    vid = msg.get(VendorIdPayload)
    assert vid is not None and vid.data == b"OErlA\\nQukSR"
    ke = msg.get(KePayload)
    assert ke is not None and ke.group == KeId.MODP_1536 and len(ke.data) == 192


def test_every_capture_message_fails_only_with_parse_error_when_cut(vectors_dir: Path) -> None:
    for folder, name, _count in IKEV2_CAPTURES:
        for _d, data in ike_messages(vectors_dir / folder / name):
            for cut in range(0, len(data), 7):
                with pytest.raises(ParseError):
                    parse_message(data[:cut])


def test_ikev2four_field_values_match_tcpdump_vvvv(vectors_dir: Path) -> None:
    """tcpdump -vvvv prints SPIs, KE values, nonces and the whole SK body: each must equal what we parsed."""
    text = (vectors_dir / TCPDUMP / "ikev2fourv4.out").read_text()
    frames = re.split(r"\n\s+\d+\s+2007-08-06 ", "\n" + text)[1:]
    messages = [parse_message(data) for _d, data in ike_messages(vectors_dir / TCPDUMP / "ikev2four.pcap")]
    assert len(frames) == len(messages) == 21
    seen = {"ke": 0, "nonce": 0, "sk": 0, "notify": 0}
    for number, (frame, msg) in enumerate(zip(frames, messages, strict=True), start=1):
        spis = re.search(r"cookie ([0-9a-f]{16})->([0-9a-f]{16})", frame)
        assert spis is not None, number
        assert (msg.header.spi_i.hex(), msg.header.spi_r.hex()) == spis.groups()
        kes = re.findall(r"\(v2ke: len=\d+ group=\w+ ([0-9a-f]+)\)", frame)
        assert kes == [p.data.hex() for p in msg.payloads if isinstance(p, KePayload)], number
        nonces = re.findall(r"\(nonce: len=\d+ nonce=\(([0-9a-f]+)\) \)", frame)
        assert nonces == [p.data.hex() for p in msg.payloads if isinstance(p, NoncePayload)], number
        bodies = re.findall(r"\(v2e: len=\d+ ([0-9a-f]+)\)", frame)
        assert bodies == [p.body.hex() for p in msg.payloads if isinstance(p, SkPayload)], number
        # tcpdump prints notify data from its start to the end of the datagram: ours is a prefix of that
        printed = re.findall(r"\(n: prot_id=#\d+ type=(\d+)\(\w+\) data=\(([0-9a-f]+)\)\)", frame)
        notifies = [p for p in msg.payloads if isinstance(p, NotifyPayload)]
        assert [int(t) for t, _ in printed] == [int(n.notify_type) for n in notifies], number
        for (_t, data), notify in zip(printed, notifies, strict=True):
            assert data.startswith(notify.data.hex()), number
        if printed:
            assert printed[-1][1] == notifies[-1].data.hex()  # the last one does end with the datagram
        for key, found in (("ke", kes), ("nonce", nonces), ("sk", bodies), ("notify", printed)):
            seen[key] += len(found)
    assert seen == {"ke": 3, "nonce": 3, "sk": 17, "notify": 8}
