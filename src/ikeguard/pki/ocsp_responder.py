"""The CA's OCSP responder (RFC 6960), and its CRL over HTTP (``serve_file``). OCSP answers for the
certificates in its inventory (``pki/ca.py``) are signed by a delegated responder certificate the CA issued
(§4.2.2.2), so the CA key (perhaps in a token) is not used per request. ``cryptography.x509.ocsp`` builds
and signs the responses.

A request for another issuer or an unknown serial gets ``unknown`` (§2.2); an unparsable one
``malformedRequest``. Only the first certificate of a request is answered (clients ask one at a time).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from asn1crypto import keys as a_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.ca import REASONS, CertificateAuthority

__all__ = ["OcspResponder", "serve_file", "serve_ocsp"]

MAX_REQUEST = 64 * 1024

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes] | None:
    """issuerNameHash and issuerKeyHash (RFC 6960 §4.1.1: the hash of the DER name, and of the public key's
    BIT STRING value) of ``issuer`` with the request's algorithm; None for one we do not know."""
    make = _HASHES.get(algorithm.name)
    if make is None:
        return None
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    key_bits = bytes(a_keys.PublicKeyInfo.load(spki)["public_key"].cast(a_keys.OctetBitString).native)
    return (make(issuer.subject.public_bytes()).digest(),
            make(key_bits).digest())


class OcspResponder:
    """Answers OCSP requests for ``ca`` with ``responder_cert`` / ``responder_key``."""

    def __init__(self, ca: CertificateAuthority, responder_cert: x509.Certificate,
                 responder_key: PrivateKey, *, validity: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.ca = ca
        self.ca_cert = ca.cert
        self.responder_cert = responder_cert
        self.responder_key = responder_key
        self.validity = validity

    def answer(self, request_der: bytes, now: dt.datetime) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            serial, algorithm = request.serial_number, request.hash_algorithm
            asked = (request.issuer_name_hash, request.issuer_key_hash)
        except (ValueError, NotImplementedError, x509.UnsupportedGeneralNameType):
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        found = self.ca.lookup(serial) if asked == _issuer_hashes(self.ca_cert, algorithm) else None
        builder = ocsp.OCSPResponseBuilder()
        next_update = now + self.validity
        if found is None:
            builder = builder.add_response_by_hash(asked[0], asked[1], serial, algorithm,
                                                   ocsp.OCSPCertStatus.UNKNOWN, now, next_update, None, None)
        else:
            record, cert = found
            revoked = record.revoked_at is not None
            builder = builder.add_response(
                cert, self.ca_cert, algorithm,
                ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD, now, next_update,
                dt.datetime.fromisoformat(record.revoked_at) if record.revoked_at else None,
                REASONS[record.reason] if revoked and record.reason else None)
        builder = (builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert)
                   .certificates([self.responder_cert]))
        digest = None if self.responder_key.__class__.__name__.startswith("Ed") else hashes.SHA256()
        return builder.sign(self.responder_key, digest).public_bytes(serialization.Encoding.DER)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _OcspServer

    def _reply(self, request: bytes) -> None:
        body = self.server.responder.answer(request, dt.datetime.now(dt.UTC))
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_REQUEST:
            self.send_error(400)
            return
        self._reply(self.rfile.read(length))

    def do_GET(self) -> None:  # RFC 6960 Appendix A.1: base64 of the DER request, URL-encoded, in the path
        text = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
        try:
            request = base64.b64decode(text, validate=False)
        except ValueError:
            self.send_error(400)
            return
        self._reply(request)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _OcspServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder: OcspResponder, listen: tuple[str, int]) -> None:
        if ":" in listen[0]:
            self.address_family = socket.AF_INET6
        super().__init__(listen, _Handler)
        self.responder = responder


def serve_ocsp(responder: OcspResponder, listen: tuple[str, int]) -> http.server.ThreadingHTTPServer:
    """An HTTP server (not yet serving: call ``serve_forever``) answering OCSP requests on ``listen``."""
    return _OcspServer(responder, listen)


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: _FileServer

    def do_GET(self) -> None:
        try:
            body = self.server.path.read_bytes()  # read per request: `pki crl` replaces it atomically
        except OSError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path: Path, content_type: str, listen: tuple[str, int]) -> None:
        if ":" in listen[0]:
            self.address_family = socket.AF_INET6
        super().__init__(listen, _FileHandler)
        self.path, self.content_type = path, content_type


def serve_file(path: Path, content_type: str, listen: tuple[str, int]) -> http.server.ThreadingHTTPServer:
    """An HTTP server answering every GET with the current contents of ``path`` (the CA's CRL, RFC 5280
    §4.2.1.13 distribution point over HTTP)."""
    return _FileServer(path, content_type, listen)
