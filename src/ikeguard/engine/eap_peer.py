"""The EAP peer (client) side when ikeguard initiates with EAP (RFC 7296 §2.16, RFC 3748): EAP-Identity,
EAP-MD5-Challenge (RFC 3748 §5.4) and EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2, RFC 2759).

Sans-IO like the rest of the engine: ``EapPeer.respond`` takes one EAP packet of the responder and returns
ours. Methods other than the configured one are refused with a Legacy Nak naming it (RFC 3748 §5.3.1). The
password is the ``[secrets.eap.*]`` secret of our EAP identity; it never appears in a repr, an exception or
a log line. No library implements the EAP peer state machine for Python (wpa_supplicant and strongSwan do it
in C); the MS-CHAPv2 computations are in ``crypto.mschapv2``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from ikeguard.crypto import mschapv2

EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
EAP_IDENTITY, EAP_NOTIFICATION, EAP_NAK, EAP_MD5, EAP_MSCHAPV2 = 1, 2, 3, 4, 26
METHOD_TYPES = {"md5": EAP_MD5, "mschapv2": EAP_MSCHAPV2}
_MS_CHALLENGE, _MS_RESPONSE, _MS_SUCCESS, _MS_FAILURE = 1, 2, 3, 4


class EapPeerError(Exception):
    """The EAP conversation failed on our side; the text names no secret."""


@dataclass
class EapPeer:
    """One EAP conversation of ours: ``identity`` answers EAP-Identity and names us in the method."""

    method: str  # "md5" | "mschapv2"
    identity: str
    secret: bytes = field(repr=False)
    random: bytes = field(repr=False, default=b"")  # 16 octets: the MS-CHAPv2 peer challenge
    succeeded: bool = False
    msk: bytes = field(default=b"", repr=False)
    _expected_auth: bytes = field(default=b"", repr=False)
    _ms_success_seen: bool = False

    def respond(self, packet: bytes) -> bytes | None:
        """Our EAP-Response to one EAP packet; None after EAP-Success. EapPeerError on EAP-Failure, a
        malformed packet, or a server that fails MS-CHAPv2's mutual authentication."""
        if len(packet) < 4:
            raise EapPeerError("EAP packet shorter than its header")
        code, ident, length = struct.unpack("!BBH", packet[:4])
        if length < 4 or length > len(packet):
            raise EapPeerError("EAP length field does not match the payload")
        packet = packet[:length]
        if code == EAP_SUCCESS:
            if self.method == "mschapv2" and not self._ms_success_seen:
                raise EapPeerError("EAP-Success before the MS-CHAPv2 server proved it knows the password")
            self.succeeded = True
            return None
        if code == EAP_FAILURE:
            raise EapPeerError(f"the EAP server refused EAP identity {self.identity!r} (EAP-Failure)")
        if code != EAP_REQUEST or length < 5:
            raise EapPeerError(f"unexpected EAP code {code}")
        kind, data = packet[4], packet[5:]
        if kind == EAP_IDENTITY:
            return _response(ident, EAP_IDENTITY, self.identity.encode())
        if kind == EAP_NOTIFICATION:
            return _response(ident, EAP_NOTIFICATION, b"")
        wanted = METHOD_TYPES[self.method]
        if kind != wanted:
            return _response(ident, EAP_NAK, bytes([wanted]))
        if kind == EAP_MD5:
            return self._md5(ident, data)
        return self._mschapv2(ident, data)

    def _md5(self, ident: int, data: bytes) -> bytes:
        """RFC 3748 §5.4 / RFC 1994: MD5(identifier | secret | challenge); MD5 has no MSK."""
        if not data or len(data) < 1 + data[0]:
            raise EapPeerError("malformed EAP-MD5 challenge")
        challenge = data[1:1 + data[0]]
        digest = hashlib.md5(bytes([ident]) + self.secret + challenge, usedforsecurity=False).digest()
        return _response(ident, EAP_MD5, bytes([len(digest)]) + digest + self.identity.encode())

    def _mschapv2(self, ident: int, data: bytes) -> bytes:
        if not data:
            raise EapPeerError("empty EAP-MSCHAPv2 request")
        op = data[0]
        if op == _MS_CHALLENGE:
            if len(data) < 5 + 16 or data[4] != 16:
                raise EapPeerError("malformed EAP-MSCHAPv2 challenge")
            ms_id, auth_challenge = data[1], data[5:21]
            if len(self.random) != 16:
                raise EapPeerError("no peer challenge")
            name = self.identity.encode()
            nt = mschapv2.nt_response(auth_challenge, self.random, name, self.secret)
            self._expected_auth = mschapv2.authenticator_response(self.secret, nt, self.random,
                                                                  auth_challenge, name)
            self.msk = mschapv2.msk(self.secret, nt)
            value = self.random + bytes(8) + nt + b"\x00"
            body = bytes([len(value)]) + value + name
            return _response(ident, EAP_MSCHAPV2,
                             struct.pack("!BBH", _MS_RESPONSE, ms_id, 4 + len(body)) + body)
        if op == _MS_SUCCESS:
            message = data[4:]
            if not self._expected_auth or not mschapv2.check_authenticator_response(
                    self._expected_auth, message):
                self.msk = b""
                raise EapPeerError("the EAP-MSCHAPv2 server's authenticator response does not verify "
                                   "(it does not know our password)")
            self._ms_success_seen = True
            return _response(ident, EAP_MSCHAPV2, bytes([_MS_SUCCESS]))
        if op == _MS_FAILURE:
            self.msk = b""
            text = data[4:].decode("ascii", "replace").split(" ", 1)[0]
            raise EapPeerError(f"the EAP-MSCHAPv2 server refused EAP identity {self.identity!r} ({text})")
        raise EapPeerError(f"unexpected EAP-MSCHAPv2 op code {op}")


def _response(ident: int, kind: int, data: bytes) -> bytes:
    return struct.pack("!BBHB", EAP_RESPONSE, ident, 5 + len(data), kind) + data
