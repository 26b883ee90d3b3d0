"""The gateway's own certificate from a SCEP CA (RFC 8894): first enrolment and renewal.

``obtain_certificate`` asks the CA for its capabilities and certificate (GetCACaps, GetCACert, §3.5), checks
the CA certificate against the configured SHA-256 fingerprint (§2.2: GetCACert travels unauthenticated), and
sends one PKIOperation (§3.3.1): a CMS SignedData whose content is an EnvelopedData, encrypted to the CA (or
its RA), holding the PKCS#10 request with the challenge password. The first request (PKCSReq) is signed with a
self-signed certificate for the key (§2.3); a renewal (RenewalReq, §3.3.1.2, when the CA lists ``Renewal``)
with the current certificate. The answer (CertRep, §3.3.2) is a SignedData by the CA whose signature,
transactionID, recipientNonce and pkiStatus are checked; on SUCCESS its EnvelopedData, encrypted to our key,
holds a certs-only SignedData with the certificate.

Library use and what is written here: ``cryptography`` builds the request's EnvelopedData
(``PKCS7EnvelopeBuilder``, AES-128-CBC, RSA key transport) and loads the certs-only SignedData;
``asn1crypto`` builds and parses the SignerInfo with SCEP's signed attributes (messageType, transactionID,
senderNonce, §3.2.1) and parses the answer's EnvelopedData. Written here because no library does it: the
SignerInfo's signature is made by the key's ``sign`` (cryptography's ``PKCS7SignatureBuilder`` only signs
with keys of its own backend, and the gateway's key may be a PKCS#11 token key); the answer's EnvelopedData
is opened by unwrapping the content key with the key's ``decrypt`` (RSA PKCS#1 v1.5; on the token,
``CKM_RSA_PKCS``) and decrypting the content with ``cryptography``'s ciphers (``pkcs7_decrypt_der`` also
needs a backend key); its ``encryptedContent`` is read element by element because Go's pkcs7 package
(micromdm's server) tags it explicitly, which asn1crypto's strict parser refuses. SCEP's answer is
encrypted by key transport to the requester's key (§3.3.2), so the enrolling key must be RSA.

Not implemented: a PENDING answer (manual approval at the CA) is reported, not polled (CertPoll, §3.3.3);
GetNextCACert (CA rollover, §3.5.2). Blocking HTTP: call from a worker thread or before the event loop runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import parser as a_parser
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki import cert_requests

__all__ = ["ScepError", "ScepRequest", "build_pki_message", "ca_certificates", "obtain_certificate",
           "parse_cert_rep"]

# RFC 8894 §3.2.1: the SCEP attributes (id-VeriSign 2.16.840.1.113733, id-pki 1.9)
OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"

CERT_REP, RENEWAL_REQ, PKCS_REQ = "3", "17", "19"  # §3.2.1.2 messageType
SUCCESS, FAILURE, PENDING = "0", "2", "3"  # §3.2.1.3 pkiStatus
FAIL_INFO = {"0": "badAlg", "1": "badMessageCheck", "2": "badRequest", "3": "badTime", "4": "badCertId"}

_CIPHERS = {  # content encryption of the CertRep's EnvelopedData: algorithm, key length
    "aes128_cbc": (algorithms.AES, 16), "aes192_cbc": (algorithms.AES, 24),
    "aes256_cbc": (algorithms.AES, 32),
    "tripledes_3key": (TripleDES, 24), "des": (TripleDES, 8),  # single DES: 3DES with K1 = K2 = K3
}


class ScepError(Exception):
    """An enrolment that could not complete; one line naming what failed (never the challenge password)."""


@dataclass(frozen=True)
class ScepRequest:
    """Where to enrol and what to ask for."""

    url: str  # the CA's SCEP URL, e.g. http://ca.example.net/scep
    ca_fingerprint: bytes  # SHA-256 of the CA certificate, verified out of band (RFC 8894 §2.2)
    identifiers: tuple[str, ...]  # DNS names and IP addresses (subjectAltName)
    common_name: str  # the subject's CN
    challenge: str = field(default="", repr=False)  # the challenge password (§2.2); secret
    timeout: float = 30.0  # each HTTP request


@dataclass(frozen=True)
class _Sent:
    transaction_id: str
    nonce: bytes


def _http(request: ScepRequest, operation: str, body: bytes | None = None) -> tuple[bytes, str]:
    url = f"{request.url}?{urllib.parse.urlencode({'operation': operation})}"
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",  # noqa: S310
                                 headers={"Content-Type": "application/x-pki-message"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=request.timeout) as resp:  # noqa: S310 - http(s) as configured
            return resp.read(1 << 20), resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise ScepError(f"SCEP {operation} to {request.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScepError(f"SCEP {operation} to {request.url} failed: {reason}") from None


def ca_certificates(body: bytes) -> list[x509.Certificate]:
    """GetCACert's answer (§3.5.1): one DER certificate, or a certs-only SignedData (CA and RA)."""
    try:
        return [x509.load_der_x509_certificate(body)]
    except ValueError:
        pass
    try:
        return list(pkcs7.load_der_pkcs7_certificates(body))
    except ValueError:
        raise ScepError("GetCACert: the answer is neither a certificate nor a certs-only PKCS#7") from None


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _pick(certs: Sequence[x509.Certificate], pinned: bytes) -> tuple[x509.Certificate, x509.Certificate]:
    """The CA (the certificate with the pinned fingerprint) and the certificate requests are encrypted to
    and answers are signed by: the CA itself, or an RA it issued (§2.1, §3.5.1)."""
    ca = next((c for c in certs if hmac.compare_digest(_fingerprint(c), pinned)), None)
    if ca is None:
        raise ScepError(f"GetCACert: no certificate with the configured fingerprint (got "
                        f"{', '.join(_fingerprint(c).hex()[:16] + '...' for c in certs)})")
    ras = [c for c in certs if c is not ca and c.issuer == ca.subject]
    return ca, (ras[0] if ras else ca)


def _attr(oid: str, value: a_core.Asn1Value) -> a_cms.CMSAttribute:
    return a_cms.CMSAttribute({"type": a_cms.CMSAttributeType(oid), "values": [value]})


def _issuer_serial(cert: x509.Certificate) -> a_cms.IssuerAndSerialNumber:
    parsed = a_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return a_cms.IssuerAndSerialNumber({"issuer": parsed.issuer, "serial_number": parsed.serial_number})


def transaction_id() -> str:
    """§3.2.1.1: a string unique to the transaction (a random UUID; the key-hash of older SCEP drafts would
    repeat for a renewal with the same key)."""
    return uuid.uuid4().hex


def build_pki_message(key: PrivateKey, signer: x509.Certificate, recipient: x509.Certificate,
                      csr_der: bytes, message_type: str) -> tuple[bytes, _Sent]:
    """A PKCSReq / RenewalReq (§3.3.1): the CSR enveloped to ``recipient``, signed by ``key`` with the
    ``signer`` certificate; the DER ContentInfo and what the answer must echo."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ScepError("SCEP needs an RSA key: the CA answers by RSA key transport to it (RFC 8894 §3.3.2)")
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise ScepError("the SCEP CA/RA certificate has no RSA key to encrypt the request to")
    envelope = (pkcs7.PKCS7EnvelopeBuilder().set_data(csr_der).add_recipient(recipient)
                .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    sent = _Sent(transaction_id(), secrets.token_bytes(16))
    attrs = a_cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [a_cms.Time(name="utc_time",
                                                       value=dt.datetime.now(dt.UTC).replace(microsecond=0))]},
        {"type": "message_digest", "values": [hashlib.sha256(envelope).digest()]},
        _attr(OID_MESSAGE_TYPE, a_core.PrintableString(message_type)),
        _attr(OID_TRANSACTION_ID, a_core.PrintableString(sent.transaction_id)),
        _attr(OID_SENDER_NONCE, a_core.OctetString(sent.nonce)),
    ])
    signature = key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())  # on the token for a token key
    signer_info = a_cms.SignerInfo({
        "version": "v1",
        "sid": a_cms.SignerIdentifier(name="issuer_and_serial_number", value=_issuer_serial(signer)),
        "digest_algorithm": a_algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": attrs,
        "signature_algorithm": a_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
        "signature": signature,
    })
    signed = a_cms.SignedData({
        "version": "v1",
        "digest_algorithms": [a_algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data", "content": envelope},
        "certificates": [a_cms.CertificateChoices(
            name="certificate",
            value=a_x509.Certificate.load(signer.public_bytes(serialization.Encoding.DER)))],
        "signer_infos": [signer_info],
    })
    return a_cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump(), sent


def _attributes(signer_info: a_cms.SignerInfo) -> dict[str, a_core.Asn1Value]:
    found: dict[str, a_core.Asn1Value] = {}
    for attr in signer_info["signed_attrs"]:
        values = attr["values"]
        if len(values) == 1:
            found[attr["type"].dotted] = values[0]
    return found


def _text(value: a_core.Asn1Value | None) -> str:
    if value is None:
        return ""
    parsed = value.parsed if isinstance(value, a_core.Any) else value
    return str(parsed.native) if not isinstance(parsed.native, bytes) else parsed.native.decode("ascii",
                                                                                                "replace")


def _octets(value: a_core.Asn1Value | None) -> bytes:
    if value is None:
        return b""
    parsed = value.parsed if isinstance(value, a_core.Any) else value
    native = parsed.native
    return native if isinstance(native, bytes) else b""


def _verify(signed: a_cms.SignedData, signer_info: a_cms.SignerInfo, signer: x509.Certificate) -> bytes:
    """The CertRep's signature by the CA/RA (§3.3.2) over its signed attributes, and the messageDigest of
    its content; the content."""
    content = signed["encap_content_info"]["content"]
    data = content.native if content.native is not None else b""
    attrs = signer_info["signed_attrs"]
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    digests = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),  # noqa: S303
               "sha512": hashes.SHA512()}
    if digest_name not in digests:
        raise ScepError(f"CertRep signed with an unsupported digest {digest_name}")
    algorithm = digests[digest_name]
    hasher = hashes.Hash(algorithm)
    hasher.update(data)
    wanted = _octets(_attributes(signer_info).get("1.2.840.113549.1.9.4"))
    if not hmac.compare_digest(hasher.finalize(), wanted):
        raise ScepError("CertRep: messageDigest does not match its content")
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ScepError("CertRep signer has no RSA key")
    signed_bytes = a_cms.CMSAttributes(list(attrs)).dump(force=True)
    try:
        public.verify(signer_info["signature"].native, signed_bytes, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise ScepError("CertRep: the signature is not the CA's (or its RA's)") from None
    return data


def _elements(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The (class, constructed, tag, contents) of the DER/BER elements one after another in ``data``."""
    found, offset = [], 0
    while offset < len(data):
        cls, method, tag, header, contents, trailer = a_parser.parse(data[offset:])
        found.append((cls, method, tag, contents))
        offset += len(header) + len(contents) + len(trailer)
    return found


def _encrypted_content(eci: a_cms.EncryptedContentInfo) -> bytes:
    """``encryptedContent`` [0]: primitive (RFC 5652 §6.1), or constructed around OCTET STRINGs (BER, and
    the explicit tagging Go's pkcs7 package writes, which asn1crypto's strict parser refuses)."""
    for cls, method, tag, contents in _elements(eci.contents):
        if cls == 2 and tag == 0:
            return contents if method == 0 else b"".join(c for _, _, _, c in _elements(contents))
    return b""


def _decrypt_envelope(key: PrivateKey, envelope_der: bytes) -> bytes:
    """The content of an EnvelopedData encrypted to ``key`` (RSA key transport, §3.3.2)."""
    info = a_cms.ContentInfo.load(envelope_der)
    if info["content_type"].native != "enveloped_data":
        raise ScepError("CertRep: the content is not an EnvelopedData")
    env = info["content"]
    ktri = [r.chosen for r in env["recipient_infos"] if r.name == "ktri"]
    if not ktri or not isinstance(key, rsa.RSAPrivateKey):
        raise ScepError("CertRep: not encrypted to our RSA key (no key transport recipient)")
    content_key = key.decrypt(ktri[0]["encrypted_key"].native, padding.PKCS1v15())  # on the token
    eci = env["encrypted_content_info"]
    name = eci["content_encryption_algorithm"]["algorithm"].native
    if name not in _CIPHERS:
        raise ScepError(f"CertRep encrypted with {name}: not supported")
    cipher_cls, length = _CIPHERS[name]
    if len(content_key) != length:
        raise ScepError("CertRep: the content key has the wrong length")
    if name == "des":
        content_key = content_key * 3
    iv = eci["content_encryption_algorithm"]["parameters"].native
    algorithm = cipher_cls(content_key)
    decryptor = Cipher(algorithm, modes.CBC(iv)).decryptor()
    padded = decryptor.update(_encrypted_content(eci)) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(algorithm.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise ScepError("CertRep: the envelope does not decrypt (wrong key?)") from None


def parse_cert_rep(body: bytes, sent: _Sent, signer: x509.Certificate, key: PrivateKey) -> x509.Certificate:
    """The certificate a CertRep (§3.3.2) grants ``key``; ScepError with the CA's failInfo when refused."""
    try:
        info = a_cms.ContentInfo.load(body)
        if info["content_type"].native != "signed_data":
            raise ScepError("CertRep is not a SignedData")
        signed = info["content"]
        signer_info = signed["signer_infos"][0]
        attrs = _attributes(signer_info)
        data = _verify(signed, signer_info, signer)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ScepError(f"CertRep unreadable: {type(exc).__name__}") from None
    if _text(attrs.get(OID_MESSAGE_TYPE)) != CERT_REP:
        raise ScepError(f"answer is not a CertRep (messageType {_text(attrs.get(OID_MESSAGE_TYPE))!r})")
    if _text(attrs.get(OID_TRANSACTION_ID)) != sent.transaction_id:
        raise ScepError("CertRep for another transaction (transactionID differs)")
    if not hmac.compare_digest(_octets(attrs.get(OID_RECIPIENT_NONCE)), sent.nonce):
        raise ScepError("CertRep: recipientNonce is not our senderNonce (replayed answer?)")
    status = _text(attrs.get(OID_PKI_STATUS))
    if status == FAILURE:
        code = _text(attrs.get(OID_FAIL_INFO))
        raise ScepError(f"the SCEP CA refused the request: failInfo {FAIL_INFO.get(code, code or '?')} "
                        f"(RFC 8894 §3.2.1.4; e.g. a wrong challenge password, or a request the CA "
                        f"does not accept)")
    if status == PENDING:
        raise ScepError("the SCEP CA answered PENDING (manual approval); polling (CertPoll) is not "
                        "implemented")
    if status != SUCCESS:
        raise ScepError(f"CertRep with unknown pkiStatus {status!r}")
    inner = _decrypt_envelope(key, data)
    try:
        certs = pkcs7.load_der_pkcs7_certificates(inner)
    except ValueError:
        raise ScepError("CertRep: the decrypted content is not a certs-only PKCS#7") from None
    ours = cert_requests.public_key_der(key)
    for cert in certs:
        if cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == ours:
            return cert
    raise ScepError("the SCEP CA returned no certificate for our key")


def obtain_certificate(request: ScepRequest, key: PrivateKey,
                       current: x509.Certificate | None = None) -> list[x509.Certificate]:
    """Enrol (or renew with ``current``, a valid certificate for ``key``); the certificate, followed by the
    issuing CA's when that is not a self-signed root. ScepError on any failure, with a one-line reason."""
    caps = {c.strip().lower() for c in _http(request, "GetCACaps")[0].decode("ascii", "replace").split()}
    certs = ca_certificates(_http(request, "GetCACert")[0])
    ca, ra = _pick(certs, request.ca_fingerprint)
    csr = cert_requests.build_csr(key, request.identifiers, common_name=request.common_name,
                                  challenge=request.challenge or None, pem=False)
    now = dt.datetime.now(dt.UTC)
    renewing = (current is not None and "renewal" in caps
                and current.not_valid_before_utc <= now < current.not_valid_after_utc
                and current.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
                == cert_requests.public_key_der(key))
    if renewing:
        assert current is not None
        signer, message_type = current, RENEWAL_REQ
    else:
        signer, message_type = cert_requests.self_signed_certificate(key, request.common_name), PKCS_REQ
    message, sent = build_pki_message(key, signer, ra, csr, message_type)
    body, _ = _http(request, "PKIOperation", message)
    leaf = parse_cert_rep(body, sent, ra, key)
    return [leaf] if ca.issuer == ca.subject else [leaf, ca]  # an intermediate CA goes with the leaf
