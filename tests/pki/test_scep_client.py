"""SCEP messages (RFC 8894, ``pki/scep_client.py``) built and parsed without a server: the PKCSReq's signed
attributes, signature and envelope as a CA sees them, and the CertRep checks (the CA's signature, our
nonce and transaction, pkiStatus / failInfo). With a real CA: tests/interop/test_scep_enroll.py."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import csr as a_csr
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from ikeguard.pki import cert_requests
from ikeguard.pki import scep_client as sc


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCEP unit CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _attrs(signer_info: a_cms.SignerInfo) -> dict[str, Any]:
    return {a["type"].dotted: a["values"][0] for a in signer_info["signed_attrs"]}


def test_pkcs_req_is_signed_by_the_key_and_enveloped_to_the_ca(ca: tuple[rsa.RSAPrivateKey, Any]) -> None:
    ca_key, ca_cert = ca
    key = _key()
    signer = cert_requests.self_signed_certificate(key, "gw.example.net")
    assert signer.issuer == signer.subject and signer.public_key().public_numbers() == \
        key.public_key().public_numbers()
    csr = cert_requests.build_csr(key, ["gw.example.net", "192.0.2.1"], common_name="gw.example.net",
                                  challenge="s3cret", pem=False)
    message, sent = sc.build_pki_message(key, signer, ca_cert, csr, sc.PKCS_REQ)
    signed = a_cms.ContentInfo.load(message)["content"]
    info = signed["signer_infos"][0]
    attrs = _attrs(info)
    assert attrs[sc.OID_MESSAGE_TYPE].parsed.native == "19"
    assert attrs[sc.OID_TRANSACTION_ID].parsed.native == sent.transaction_id
    again = sc.build_pki_message(key, signer, ca_cert, csr, sc.RENEWAL_REQ)[1]
    assert again.transaction_id != sent.transaction_id and again.nonce != sent.nonce  # unique per request
    assert attrs[sc.OID_SENDER_NONCE].parsed.native == sent.nonce and len(sent.nonce) == 16
    envelope = signed["encap_content_info"]["content"].native
    assert attrs["1.2.840.113549.1.9.4"].native == hashlib.sha256(envelope).digest()
    # the signature (RFC 5652 §5.4: over the DER SET OF the signed attributes) verifies with the signer
    key.public_key().verify(info["signature"].native, info["signed_attrs"].untag().dump(force=True),
                            padding.PKCS1v15(), hashes.SHA256())
    assert signed["certificates"][0].chosen.dump() == signer.public_bytes(serialization.Encoding.DER)
    # only the CA can open the envelope; inside, the CSR with the challenge password
    inner = pkcs7.pkcs7_decrypt_der(envelope, ca_cert, ca_key, [])
    request = a_csr.CertificationRequest.load(inner)
    found = {a["type"].native: a["values"][0] for a in request["certification_request_info"]["attributes"]}
    assert found["challenge_password"].native == "s3cret"
    assert request["certification_request_info"]["subject"].native == {"common_name": "gw.example.net"}


def test_scep_refuses_a_key_it_cannot_receive_an_answer_for(ca: tuple[rsa.RSAPrivateKey, Any]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = cert_requests.self_signed_certificate(key, "gw")
    csr = cert_requests.build_csr(key, ["gw"], pem=False)
    with pytest.raises(sc.ScepError, match="needs an RSA key"):
        sc.build_pki_message(key, signer, ca[1], csr, sc.PKCS_REQ)


def _issue(ca: tuple[rsa.RSAPrivateKey, x509.Certificate], key: rsa.RSAPrivateKey) -> x509.Certificate:
    ca_key, ca_cert = ca
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(42)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))


def _cert_rep(signer_key: rsa.RSAPrivateKey, signer: x509.Certificate, sent: Any, *, status: str = "0",
              fail_info: str | None = None, nonce: bytes | None = None,
              issued: x509.Certificate | None = None, to: x509.Certificate | None = None) -> bytes:
    """A CertRep as a CA makes it (RFC 8894 §3.3.2)."""
    content = b""
    if issued is not None and to is not None:
        degenerate = pkcs7.serialize_certificates([issued], serialization.Encoding.DER)
        content = (pkcs7.PKCS7EnvelopeBuilder().set_data(degenerate).add_recipient(to)
                   .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    values = [
        {"type": "content_type", "values": ["data"]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
        sc._attr(sc.OID_MESSAGE_TYPE, a_core.PrintableString("3")),
        sc._attr(sc.OID_PKI_STATUS, a_core.PrintableString(status)),
        sc._attr(sc.OID_TRANSACTION_ID, a_core.PrintableString(sent.transaction_id)),
        sc._attr(sc.OID_RECIPIENT_NONCE, a_core.OctetString(nonce if nonce is not None else sent.nonce)),
        sc._attr(sc.OID_SENDER_NONCE, a_core.OctetString(b"\x01" * 16)),
    ]
    if fail_info is not None:
        values.append(sc._attr(sc.OID_FAIL_INFO, a_core.PrintableString(fail_info)))
    attrs = a_cms.CMSAttributes(values)
    parsed = a_x509.Certificate.load(signer.public_bytes(serialization.Encoding.DER))
    info = a_cms.SignerInfo({
        "version": "v1",
        "sid": a_cms.SignerIdentifier(name="issuer_and_serial_number", value=a_cms.IssuerAndSerialNumber(
            {"issuer": parsed.issuer, "serial_number": parsed.serial_number})),
        "digest_algorithm": a_algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": attrs,
        "signature_algorithm": a_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
        "signature": signer_key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256()),
    })
    signed = a_cms.SignedData({
        "version": "v1", "digest_algorithms": [a_algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data", "content": content}, "signer_infos": [info]})
    return bytes(a_cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _sent(key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> tuple[Any, x509.Certificate]:
    signer = cert_requests.self_signed_certificate(key, "gw")
    csr = cert_requests.build_csr(key, ["gw"], pem=False)
    return sc.build_pki_message(key, signer, ca_cert, csr, sc.PKCS_REQ)[1], signer


def test_cert_rep_success_gives_the_certificate_for_our_key(ca: tuple[rsa.RSAPrivateKey, Any]) -> None:
    key = _key()
    sent, signer = _sent(key, ca[1])
    issued = _issue(ca, key)
    answer = _cert_rep(ca[0], ca[1], sent, issued=issued, to=signer)
    assert sc.parse_cert_rep(answer, sent, ca[1], key) == issued


@pytest.mark.parametrize(("change", "message"), [
    ({"status": "2", "fail_info": "2"}, "refused the request: failInfo badRequest"),
    ({"status": "3"}, "PENDING"),
    ({"nonce": b"\x00" * 16}, "recipientNonce is not our senderNonce"),
])
def test_cert_rep_refusals_are_one_line(ca: tuple[rsa.RSAPrivateKey, Any], change: dict[str, Any],
                                        message: str) -> None:
    key = _key()
    sent, _ = _sent(key, ca[1])
    with pytest.raises(sc.ScepError, match=message) as failed:
        sc.parse_cert_rep(_cert_rep(ca[0], ca[1], sent, **change), sent, ca[1], key)
    assert "\n" not in str(failed.value)


def test_cert_rep_not_signed_by_the_ca_is_refused(ca: tuple[rsa.RSAPrivateKey, Any]) -> None:
    key = _key()
    sent, signer = _sent(key, ca[1])
    forger = _key()
    answer = _cert_rep(forger, ca[1], sent, issued=_issue(ca, key), to=signer)
    with pytest.raises(sc.ScepError, match="signature is not the CA's"):
        sc.parse_cert_rep(answer, sent, ca[1], key)


def test_ca_certificate_must_match_the_pinned_fingerprint(ca: tuple[rsa.RSAPrivateKey, Any]) -> None:
    certs = sc.ca_certificates(ca[1].public_bytes(serialization.Encoding.DER))
    assert sc._pick(certs, ca[1].fingerprint(hashes.SHA256())) == (ca[1], ca[1])
    with pytest.raises(sc.ScepError, match="no certificate with the configured fingerprint"):
        sc._pick(certs, b"\x00" * 32)
