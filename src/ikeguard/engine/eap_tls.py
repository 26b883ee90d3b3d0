"""EAP-TLS as the EAP peer (RFC 5216) when ikeguard initiates: our TLS client certificate, the responder's
EAP-TLS server, and the MSK from the TLS session.

The TLS engine is pyOpenSSL on memory BIOs (sans-IO: no socket, the records travel in EAP packets): Python's
``ssl`` cannot export keying material, and the MSK is the RFC 5705 exporter with label "client EAP
encryption" and no context, which for TLS 1.2 is exactly RFC 5216 §2.3's TLS-PRF(master_secret, label,
client.random || server.random), first 64 octets. TLS is held to 1.2 (RFC 9190's TLS 1.3 key schedule is
not done here). The EAP-TLS framing (flags L/M/S, fragments of at most ``FRAGMENT`` octets acknowledged
with empty messages, RFC 5216 §2.1.5) is written here: no library does it for Python.

The server's certificate is not judged by OpenSSL against a trust store: it must be the very certificate
the responder authenticated the IKE SA with in round 1 (already path-validated, identity-checked and
revocation-checked by ``pki``), so the EAP-TLS server is bound to the IKE peer; ``server_check`` says
whether it is. With EAP-only authentication (RFC 5998) there is no such certificate and ``server_check``
validates the server's chain like an IKE peer's (``engine.tasks.eap_initiator``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.eap_peer import (
    EAP_FAILURE,
    EAP_IDENTITY,
    EAP_NAK,
    EAP_REQUEST,
    EAP_RESPONSE,
    EAP_SUCCESS,
    EapPeerError,
)

EAP_TLS = 13
_L, _M, _S = 0x80, 0x40, 0x20
FRAGMENT = 1000  # octets of TLS data per EAP-TLS message (strongSwan's server uses 1024)


@dataclass
class EapTlsPeer:
    """One EAP-TLS conversation as the peer; same interface as ``EapPeer``."""

    identity: str
    certs: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)
    server_check: Callable[[list[x509.Certificate]], str | None] = field(repr=False)  # leaf first
    method: str = "tls"
    succeeded: bool = False
    msk: bytes = field(default=b"", repr=False)
    _conn: Any = field(default=None, repr=False)
    _incoming: bytes = field(default=b"", repr=False)
    _outgoing: bytes = field(default=b"", repr=False)
    _first_fragment: bool = True
    _done: bool = False

    def respond(self, packet: bytes) -> bytes | None:
        """Our EAP-Response to one EAP packet; None after EAP-Success (EapPeerError on failure)."""
        if len(packet) < 4:
            raise EapPeerError("EAP packet shorter than its header")
        code, ident, length = struct.unpack("!BBH", packet[:4])
        if length < 4 or length > len(packet):
            raise EapPeerError("EAP length field does not match the payload")
        packet = packet[:length]
        if code == EAP_SUCCESS:
            if not self._done or not self.msk:
                raise EapPeerError("EAP-Success before the EAP-TLS handshake completed")
            self.succeeded = True
            return None
        if code == EAP_FAILURE:
            raise EapPeerError(f"the EAP server refused EAP identity {self.identity!r} (EAP-Failure)")
        if code != EAP_REQUEST or length < 5:
            raise EapPeerError(f"unexpected EAP code {code}")
        kind = packet[4]
        if kind == EAP_IDENTITY:
            return _response(ident, EAP_IDENTITY, self.identity.encode())
        if kind != EAP_TLS:
            return _response(ident, EAP_NAK, bytes([EAP_TLS]))
        if length < 6:
            raise EapPeerError("EAP-TLS request without flags")
        flags, data = packet[5], packet[6:]
        if flags & _L:
            data = data[4:]
        if flags & _S:
            self._start()
            return self._send(ident)
        if not data and self._outgoing:  # the server acknowledged our fragment
            return self._send(ident)
        self._incoming += data
        if flags & _M:  # more fragments of the server's message: acknowledge this one
            return _response(ident, EAP_TLS, b"\x00")
        self._feed()
        return self._send(ident)

    def _start(self) -> None:
        from OpenSSL import SSL, crypto

        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        # strongSwan's EAP-TLS server (5.9) does not send RFC 5746 renegotiation_info and OpenSSL 3 refuses
        # such servers by default; renegotiation itself stays off, so the RFC 5746 attack has nothing to use
        ctx.set_options(SSL.OP_LEGACY_SERVER_CONNECT | SSL.OP_NO_RENEGOTIATION)
        ctx.use_certificate(crypto.X509.from_cryptography(self.certs[0]))
        for extra in self.certs[1:]:
            ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        ctx.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, pem))
        ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)  # judged in _feed: the IKE-validated certificate
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_connect_state()
        self._handshake()

    def _handshake(self) -> None:
        from OpenSSL import SSL

        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            raise EapPeerError(f"EAP-TLS handshake failed: {_reason(exc)}") from None
        else:
            self._finished()
        self._drain()

    def _feed(self) -> None:
        if self._conn is None:
            raise EapPeerError("EAP-TLS data before the server's start")
        data, self._incoming = self._incoming, b""
        if data:
            self._conn.bio_write(data)
        if not self._done:
            self._handshake()

    def _finished(self) -> None:
        leaf = self._conn.get_peer_certificate()
        if leaf is None:
            raise EapPeerError("the EAP-TLS server sent no certificate")
        chain = [c.to_cryptography() for c in self._conn.get_peer_cert_chain() or ()]
        if not chain or chain[0] != leaf.to_cryptography():
            chain.insert(0, leaf.to_cryptography())
        problem = self.server_check(chain)
        if problem:
            raise EapPeerError(f"EAP-TLS server refused: {problem}")
        self.msk = bytes(self._conn.export_keying_material(b"client EAP encryption", 64))
        self._done = True

    def _drain(self) -> None:
        from OpenSSL import SSL

        while True:
            try:
                chunk = self._conn.bio_read(65536)
            except SSL.WantReadError:
                return
            if not chunk:
                return
            self._outgoing += chunk

    def _send(self, ident: int) -> bytes:
        """The next fragment of our TLS data, or an empty acknowledgement (RFC 5216 §2.1.5)."""
        if not self._outgoing:
            return _response(ident, EAP_TLS, b"\x00")
        total = len(self._outgoing)
        chunk, self._outgoing = self._outgoing[:FRAGMENT], self._outgoing[FRAGMENT:]
        more = _M if self._outgoing else 0
        if self._first_fragment and more:
            header = bytes([_L | more]) + struct.pack("!I", total)
        else:
            header = bytes([more])
        self._first_fragment = not more
        return _response(ident, EAP_TLS, header + chunk)


def _reason(exc: Exception) -> str:
    args = exc.args[0] if exc.args else []
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return str(args[0][-1])
    return type(exc).__name__


def _response(ident: int, kind: int, data: bytes) -> bytes:
    return struct.pack("!BBHB", EAP_RESPONSE, ident, 5 + len(data), kind) + data
