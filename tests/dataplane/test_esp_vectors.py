"""ESP packets from third parties (RFC 3602, RFC 7634, draft-mcgrew-gcm-test-01, Linux XFRM via scapy):
we decrypt theirs, and produce the same bytes from the same key, IV and sequence number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ikeguard.dataplane.esp import EspError, EspTransform, parse_header
from ikeguard.wire.iana import EncrId


def _load(vectors_dir: Path, name: str) -> Any:
    return json.loads((vectors_dir / "esp" / name).read_text())


def _rfc3602_cases(vectors_dir: Path) -> list[dict[str, Any]]:
    return [c for c in _load(vectors_dir, "rfc3602-aes-cbc-esp.json")["cases"] if "esp" in c]


def test_rfc3602_esp_packets_decrypt_and_reencrypt(vectors_dir: Path) -> None:
    cases = _rfc3602_cases(vectors_dir)
    assert len(cases) == 4
    for case in cases:
        esp = bytes.fromhex(case["esp"])
        t = EspTransform(EncrId.AES_CBC, 128, bytes.fromhex(case["key"]))
        spi, seq = parse_header(esp)
        assert (spi, seq) == (int(case["spi"], 16), case["seq"])
        payload = t.open(esp, seq)
        assert payload.data == bytes.fromhex(case["plaintext_payload"])
        assert payload.next_header == case["next_header"]
        again = t.seal(spi, seq, payload.data, payload.next_header, iv=bytes.fromhex(case["iv"]))
        assert again == esp


def test_rfc7634_esp_example(vectors_dir: Path) -> None:
    ex = _load(vectors_dir, "rfc7634-chacha20-poly1305.json")["esp_example"]
    esp = bytes.fromhex(ex["spi"]) + ex["seq"].to_bytes(4, "big") + bytes.fromhex(ex["iv"])
    esp += bytes.fromhex(ex["ciphertext_and_tag"])
    t = EspTransform(EncrId.CHACHA20_POLY1305, None, bytes.fromhex(ex["keymat"]))
    payload = t.open(esp, ex["seq"])
    trailer = bytes.fromhex(ex["plaintext_with_trailer"])
    assert payload.next_header == 4
    assert payload.data == trailer[: -2 - trailer[-2]]
    assert t.seal(0x01020304, 5, payload.data, 4, iv=bytes.fromhex(ex["iv"])) == esp


@pytest.mark.parametrize("index,bits", [(0, 128), (1, 256)])
def test_mcgrew_gcm_esp_packets(vectors_dir: Path, index: int, bits: int) -> None:
    case = _load(vectors_dir, "draft-mcgrew-gcm-test-01.json")["cases"][index]
    esp = bytes.fromhex(case["esp"])
    t = EspTransform(EncrId.AES_GCM_16, bits, bytes.fromhex(case["keymat"]))
    spi, seq = parse_header(esp)
    payload = t.open(esp, seq)
    decrypted = bytes.fromhex(case["decrypted"])  # the plaintext with its ESP trailer
    assert payload.data == decrypted[: -2 - decrypted[-2]]
    assert payload.next_header == decrypted[-1]
    assert t.seal(spi, seq, payload.data, payload.next_header, iv=esp[8:16]) == esp


def _xfrm(vectors_dir: Path, title: str) -> dict[str, Any]:
    for v in _load(vectors_dir, "linux-xfrm-esp-via-scapy.json")["vectors"]:
        if v["title"] == title:
            return dict(v)
    raise AssertionError(title)


def test_linux_xfrm_aes_cbc_packet(vectors_dir: Path) -> None:
    v = _xfrm(vectors_dir, "IPv4 / ESP - Transport - AES-CBC - NULL")
    esp = bytes.fromhex(v["esp"])
    t = EspTransform(EncrId.AES_CBC, 128, bytes.fromhex(v["key"]))
    payload = t.open(esp, v["seq"])
    assert t.seal(int(v["spi"], 16), v["seq"], payload.data, payload.next_header, iv=esp[8:24]) == esp


def test_linux_xfrm_aes_gcm_packet_and_esn_icv(vectors_dir: Path) -> None:
    plain = _xfrm(vectors_dir, "IPv4 / ESP - Transport - AES-GCM - NULL")
    esn = _xfrm(vectors_dir, "IPv4 / ESP - Transport - AES-GCM - NULL -- ESN")
    key = bytes.fromhex(plain["key"])
    t = EspTransform(EncrId.AES_GCM_16, 128, key)
    a = bytes.fromhex(plain["esp"])
    b = bytes.fromhex(esn["esp"])
    pa = t.open(a, 1)
    # the ESN packet authenticates only with the high 32 bits (1) in the AAD, RFC 4106 §5
    pb = t.open(b, (esn["esn_high"] << 32) | esn["seq"], esn=True)
    assert pa == pb
    with pytest.raises(EspError) as err:
        t.open(b, 1)
    assert err.value.reason == "icv"
    assert t.seal(0x222, 1, pa.data, pa.next_header, iv=a[8:16]) == a
    assert t.seal(0x222, (1 << 32) | 1, pb.data, pb.next_header, esn=True, iv=b[8:16]) == b
