"""RFC 4806 §3: CERTREQ and CERT payloads of Cert Encoding 14 "OCSP Content" through the message codec, and
the engine's helpers that find them (engine/ocsp_stapling.py)."""

from __future__ import annotations

from ikeguard.engine.ocsp_stapling import ocsp_certreq
from ikeguard.wire.header import HeaderFlags, IkeHeader
from ikeguard.wire.iana import CertEncoding, ExchangeType
from ikeguard.wire.message import Message, encode_message, parse_message
from ikeguard.wire.payloads import CertPayload, CertReqPayload

RESPONDER_HASH = bytes(range(20))
OCSP_DER = bytes.fromhex("30030a0100")  # OCSPResponse{responseStatus successful} without a body


def test_certreq_ocsp_content_round_trip_with_and_without_responder_hashes() -> None:
    assert ocsp_certreq().encode_body() == bytes([14])  # §3.1: zero responder hashes
    payload = CertReqPayload(CertEncoding.OCSP_CONTENT, RESPONDER_HASH * 2)
    body = payload.encode_body()
    assert body[0] == 14 and len(body) == 41
    back = CertReqPayload.decode_body(body, 0, False)
    assert back.encoding is CertEncoding.OCSP_CONTENT and back.authorities == (RESPONDER_HASH,) * 2


def test_cert_ocsp_content_carries_the_der_response_in_a_message() -> None:
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, ExchangeType.IKE_AUTH, HeaderFlags.INITIATOR, 1)
    message = Message(header, (CertPayload(CertEncoding.X509_SIGNATURE, b"\x30\x00"),
                               CertPayload(CertEncoding.OCSP_CONTENT, OCSP_DER),
                               CertReqPayload(CertEncoding.OCSP_CONTENT, b"")))
    decoded = parse_message(encode_message(message))
    assert decoded == message
    certs = [p for p in decoded.payloads if isinstance(p, CertPayload)]
    assert [(p.encoding, p.data) for p in certs] == [(CertEncoding.X509_SIGNATURE, b"\x30\x00"),
                                                      (CertEncoding.OCSP_CONTENT, OCSP_DER)]
    (req,) = [p for p in decoded.payloads if isinstance(p, CertReqPayload)]
    assert req.encoding is CertEncoding.OCSP_CONTENT and req.data == b""
