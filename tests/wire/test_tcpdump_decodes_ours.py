"""Messages built by our encoder, dissected by an independent decoder: tcpdump's IKEv2 printer.

Every top-level payload must appear in tcpdump's output with our type, critical flag and length, every
proposal and transform of an SA payload with our counts and key lengths, and nothing may be truncated
(``[|...]``). tcpdump knows no SKF (RFC 7383) and treats types 1-32 as IKEv1, so those are left out here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import ExchangeType
from ikeguard.wire.message import Message, encode_message
from ikeguard.wire.payload_base import Payload
from ikeguard.wire.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SkPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.ts import TsiPayload, TsrPayload

from . import strategies as s
from .pcap import write_udp_pcap

TCPDUMP = shutil.which("tcpdump")
# As tests/conftest.py does for root/interop: skipped on a dev machine without tcpdump, a failure in CI.
pytestmark = pytest.mark.skipif(
    TCPDUMP is None and os.environ.get("CI") != "true", reason="needs tcpdump (make test installs it)"
)

_TOKENS: dict[type, str] = {
    SaPayload: "sa",
    KePayload: "v2ke",
    IdiPayload: "v2IDi",
    IdrPayload: "v2IDr",
    CertPayload: "v2cert",
    CertReqPayload: "v2cr",
    AuthPayload: "v2auth",
    NoncePayload: "nonce",
    NotifyPayload: "n",
    DeletePayload: "v2d",
    VendorIdPayload: "v2vid",
    TsiPayload: "v2TSi",
    TsrPayload: "v2TSr",
    SkPayload: "v2e",
    CpPayload: "v2cp",
    EapPayload: "v2eap",
}


def expected_lines(payloads: tuple[Payload, ...]) -> list[tuple[str, int | None]]:
    """(token with [C] when critical, length tcpdump prints or None) per top-level payload."""
    out: list[tuple[str, int | None]] = []
    for p in payloads:
        if isinstance(p, UnknownPayload):
            out.append((f"#{p.type}", None))
            continue
        token = _TOKENS[type(p)] + ("[C]" if p.critical else "")
        length: int | None = len(p.encode_body())
        if isinstance(p, KePayload):
            length = len(p.data)
        elif isinstance(p, NotifyPayload):
            length = None
        out.append((token, length))
    return out


_TOP = re.compile(r"^    \((#?\w+(?:\[C\])?)(?:: len=(\d+))?")


def tcpdump_view(message: bytes, tmp_path: Path) -> tuple[list[tuple[str, int | None]], str]:
    pcap = tmp_path / "ours.pcap"
    write_udp_pcap(pcap, [(500, 500, message)])
    assert TCPDUMP is not None, "tcpdump is not installed (packaging/system-packages.txt lists it)"
    text = subprocess.run(
        [TCPDUMP, "-r", str(pcap), "-n", "-vvv"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    lines = []
    for line in text.splitlines():
        match = _TOP.match(line)
        if match:
            lines.append((match.group(1), int(match.group(2)) if match.group(2) else None))
    return lines, text


def _tcpdump_can_print(p: Payload) -> bool:
    """tcpdump's own limits: IKEv1 type numbers, empty payload bodies and empty proposals stop its printer."""
    if not p.encode_body():
        return False
    if isinstance(p, UnknownPayload):
        return p.type >= 33
    if isinstance(p, SaPayload):
        return all(prop.transforms for prop in p.proposals)
    return True


tcpdump_payloads = s.plain_payloads.filter(_tcpdump_can_print)


@st.composite
def tcpdump_messages(draw: st.DrawFn) -> Message:
    chain = draw(st.lists(tcpdump_payloads, min_size=1, max_size=6))
    if draw(st.booleans()):
        chain.append(SkPayload(draw(s.u8), draw(st.binary(min_size=8, max_size=64))))
    header = IkeHeader(
        draw(st.binary(min_size=8, max_size=8)),
        draw(st.binary(min_size=8, max_size=8)),
        draw(st.sampled_from(list(ExchangeType)[:4])),
        draw(st.sampled_from([HeaderFlags.INITIATOR, HeaderFlags.RESPONSE])),
        draw(st.integers(0, 2**32 - 1)),
    )
    return Message(header, tuple(chain))


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(msg=tcpdump_messages())
def test_tcpdump_sees_what_we_built(msg: Message, tmp_path: Path) -> None:
    data = encode_message(msg)
    seen, text = tcpdump_view(data, tmp_path)
    assert "[|" not in text, text
    assert f"msgid {msg.header.message_id:08x}" in text
    assert seen == expected_lines(msg.payloads), text
    sa_payloads = [p for p in msg.payloads if isinstance(p, SaPayload)]
    proposals = [prop for sa in sa_payloads for prop in sa.proposals]
    assert text.count("(p: #") == len(proposals)
    transforms = [t for prop in proposals for t in prop.transforms]
    assert text.count("(t: #") == len(transforms)
    printed = [
        (14 if kind == "keylen" else int(kind[1:]), int(tv, 16) if tv else bytes.fromhex(tlv))
        for kind, tv, tlv in _ATTRIBUTE.findall(text)
    ]
    ours = [
        attr
        for t in transforms
        for attr in ([(14, t.key_length)] if t.key_length is not None else [])
        + [(a.type, a.value) for a in t.attributes]
    ]
    assert printed == ours, text


_ATTRIBUTE = re.compile(r"\(type=(keylen|#\d+) (?:value=([0-9a-f]{4})|len=\d+ value=([0-9a-f]*))\)")
