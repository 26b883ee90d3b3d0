"""strongSwan-style one-line message summaries."""

from __future__ import annotations

from pathlib import Path

from ikeguard.wire.describe import describe_message, payload_label
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import CfgType, ExchangeType, NotifyType
from ikeguard.wire.message import Message, parse_message
from ikeguard.wire.payloads import CpPayload, EapPayload, NotifyPayload, SkfPayload, UnknownPayload

from .test_captures import TCPDUMP, ike_messages


def test_captured_ike_sa_init_reads_like_a_charon_log_line(vectors_dir: Path) -> None:
    (_d, first), *_rest = ike_messages(vectors_dir / TCPDUMP / "ikev2four.pcap")
    assert (
        describe_message(parse_message(first))
        == "IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) ]"
    )
    fifth = ike_messages(vectors_dir / TCPDUMP / "ikev2four.pcap")[4][1]
    assert describe_message(parse_message(fifth)) == "IKE_AUTH request 1 [ E ]"


def test_decrypted_content_is_listed_and_secrets_are_not() -> None:
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.INFORMATIONAL, HeaderFlags.RESPONSE, 5)
    inner = (
        NotifyPayload(NotifyType.COOKIE2, b"secret-cookie"),
        CpPayload(CfgType.REPLY),
        EapPayload(b"\x03\x01\x00\x04"),
        NotifyPayload(40000),
        UnknownPayload(200, b"x"),
    )
    text = describe_message(Message(header, (), inner))
    assert text == "INFORMATIONAL response 5 [ N(COOKIE2) CPRP EAP/SUCC N(UNKNOWN(40000)) UNKNOWN(200) ]"
    assert "secret" not in text
    assert payload_label(SkfPayload(0, 2, 3, b"")) == "EF(2/3)"


def test_eap_contents_stay_out_of_repr() -> None:
    eap = EapPayload(b"\x02\x07\x00\x0c\x06hunter2")  # EAP-GTC response carries the password in clear
    assert "hunter2" not in repr(eap) and "68756e746572" not in repr(eap)
