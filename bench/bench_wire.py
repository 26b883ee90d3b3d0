"""Wire codec micro-benchmark: parse + build of a cert-sized IKE_AUTH message (plain chain and SK-wrapped).

Prints microseconds per operation. The certificate is 1.2 kB of opaque octets (the size of an ECDSA P-384
device certificate with a CA chain entry); the SK protector is the real AES-GCM-16-256 one from
``ikeguard.crypto`` so the "sealed" numbers include encryption.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.crypto.registry import encr
from ikeguard.crypto.sk import AeadSkProtector
from ikeguard.wire import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    HeaderFlags,
    IdiPayload,
    IdrPayload,
    IkeHeader,
    Message,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
    decode_encrypted_message,
    decode_payloads,
    encode_encrypted_message,
    encode_message,
    encode_payloads,
    parse_message,
    parse_proposal,
)
from ikeguard.wire.iana import (
    AuthMethod,
    CertEncoding,
    CfgType,
    EncrId,
    ExchangeType,
    IdType,
    NotifyType,
    ProtocolId,
)
from ikeguard.wire.payload_base import Payload


def ike_auth_payloads() -> tuple[Payload, ...]:
    """A realistic initiator IKE_AUTH content: IDi, CERT, CERTREQ, IDr, AUTH, CP, SA, TSi, TSr, notifies."""
    esp = parse_proposal("aes256gcm16-ecp384", ProtocolId.ESP)
    return (
        IdiPayload(IdType.FQDN, b"merchant-a.merchants.processor.example"),
        CertPayload(CertEncoding.X509_SIGNATURE, bytes(range(256)) * 4 + bytes(200)),
        NotifyPayload(NotifyType.INITIAL_CONTACT),
        CertReqPayload(CertEncoding.X509_SIGNATURE, bytes(40)),
        IdrPayload(IdType.FQDN, b"gw.processor.example"),
        AuthPayload(AuthMethod.DIGITAL_SIGNATURE, bytes(16) + bytes(104)),
        CpPayload(CfgType.REQUEST, ()),
        SaPayload((Proposal.from_spec(1, esp, b"\xc1\xa9\x65\x6b"),)),
        TsiPayload((TrafficSelector.from_network("198.51.100.0/24"),)),
        TsrPayload((TrafficSelector.from_network("203.0.113.0/24", 6, (443, 443)),)),
        NotifyPayload(NotifyType.MOBIKE_SUPPORTED),
        NotifyPayload(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED),
    )


def _time(label: str, fn: Callable[[], object], size: int) -> None:
    fn()
    rounds = 0
    start = time.perf_counter()
    deadline = start + 0.5
    while True:
        for _ in range(100):
            fn()
        rounds += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    per_op = (now - start) / rounds * 1e6
    print(f"{label:<44} {per_op:8.1f} µs/op   ({size} octets, {rounds} rounds)")


def main() -> None:
    """Print µs per op for build/parse of the plain chain and of the encrypted message."""
    header = IkeHeader(b"\x11" * 8, b"\x22" * 8, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    inner = ike_auth_payloads()
    first, chain = encode_payloads(inner)
    plain = encode_message(Message(header, inner))
    gcm = encr(EncrId.AES_GCM_16, 256)
    protector = AeadSkProtector(gcm, bytes(range(gcm.keymat_len)), DeterministicRandom(0))
    sealed = encode_encrypted_message(header, inner, protector)
    assert decode_encrypted_message(sealed, protector).inner == inner

    _time("build IKE_AUTH payload chain", lambda: encode_payloads(inner), len(chain))
    _time("parse IKE_AUTH payload chain", lambda: decode_payloads(chain, first), len(chain))
    _time(
        "build + parse plain IKE_AUTH message",
        lambda: parse_message(encode_message(Message(header, inner))),
        len(plain),
    )
    _time(
        "build sealed IKE_AUTH (AES-GCM-256)",
        lambda: encode_encrypted_message(header, inner, protector),
        len(sealed),
    )
    _time(
        "parse + open sealed IKE_AUTH (AES-GCM-256)",
        lambda: decode_encrypted_message(sealed, protector),
        len(sealed),
    )
    _time("parse outer only (SK opaque)", lambda: parse_message(sealed), len(sealed))


if __name__ == "__main__":
    main()
