"""MS-CHAPv2 as the EAP peer computes it (RFC 2759 §8) and its MPPE master keys (RFC 3079 §3), for
EAP-MSCHAPv2 when ikeguard is the EAP client of an IKEv2 responder (draft-kamath-pppext-eap-mschapv2).

MD4 (the NT password hash) and single DES (the NT-Response) come from pycryptodomex: ``cryptography`` offers
neither MD4 nor single-key DES any more (only TripleDES in ``decrepit``, 8-byte keys deprecated), and
``hashlib``'s MD4 is gone with OpenSSL 3's default provider. The glue below (challenge hash, DES key
expansion, authenticator response, key derivation) is the RFCs' pseudo-code: no maintained Python library
exposes MS-CHAPv2's peer side on its own (FreeRADIUS and strongSwan do it in C)."""

from __future__ import annotations

import hashlib
import hmac

_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
_KEY_MAGIC1 = b"This is the MPPE Master Key"
_KEY_MAGIC2 = b"On the client side, this is the send key; on the server side, it is the receive key."
_KEY_MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


def _md4(data: bytes) -> bytes:
    # imported on first use: pycryptodomex loads its C parts through cffi (and the clock) at import time,
    # which the engine's sans-IO test forbids for anything imported with the engine
    from Cryptodome.Hash import MD4

    return bytes(MD4.new(data).digest())


def nt_password_hash(password: bytes) -> bytes:
    """NtPasswordHash (RFC 2759 §8.3): MD4 of the UTF-16LE password (``password`` is its UTF-8 octets)."""
    return _md4(password.decode("utf-8").encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: bytes) -> bytes:
    """ChallengeHash (RFC 2759 §8.2): the user name without a ``DOMAIN\\`` prefix."""
    name = username.rsplit(b"\\", 1)[-1]
    return hashlib.sha1(peer_challenge + authenticator_challenge + name).digest()[:8]


def _des_key(seven: bytes) -> bytes:
    """A 56-bit key spread over 8 octets (RFC 2759 §8.6 DesEncrypt; parity bits left 0, DES ignores them)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des(key7: bytes, block: bytes) -> bytes:
    from Cryptodome.Cipher import DES

    return bytes(DES.new(_des_key(key7), DES.MODE_ECB).encrypt(block))


def nt_response(authenticator_challenge: bytes, peer_challenge: bytes, username: bytes,
                password: bytes) -> bytes:
    """GenerateNTResponse (RFC 2759 §8.1): 24 octets."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    z = nt_password_hash(password) + bytes(5)
    return _des(z[0:7], challenge) + _des(z[7:14], challenge) + _des(z[14:21], challenge)


def authenticator_response(password: bytes, response: bytes, peer_challenge: bytes,
                           authenticator_challenge: bytes, username: bytes) -> bytes:
    """GenerateAuthenticatorResponse (RFC 2759 §8.7): ``S=`` and 40 upper-case hex digits."""
    hash_hash = _md4(nt_password_hash(password))
    digest = hashlib.sha1(hash_hash + response + _AUTH_MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return b"S=" + hashlib.sha1(digest + challenge + _AUTH_MAGIC2).hexdigest().upper().encode()


def check_authenticator_response(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of the server's ``S=`` value (RFC 2759 §8.8 CheckAuthenticatorResponse)."""
    return hmac.compare_digest(expected, received[: len(expected)].upper())


def msk(password: bytes, response: bytes) -> bytes:
    """The EAP-MSCHAPv2 MSK: MasterReceiveKey | MasterSendKey of the server (RFC 3079 §3.4, 128-bit keys),
    i.e. what RADIUS carries as MS-MPPE-Recv-Key | MS-MPPE-Send-Key, padded to 64 octets with zeros (as
    strongSwan's eap-mschapv2 does; HMAC pads keys with zeros, so the padding does not change the AUTH)."""
    hash_hash = _md4(nt_password_hash(password))
    master = hashlib.sha1(hash_hash + response + _KEY_MAGIC1).digest()[:16]
    receive = hashlib.sha1(master + _SHS_PAD1 + _KEY_MAGIC2 + _SHS_PAD2).digest()[:16]
    send = hashlib.sha1(master + _SHS_PAD1 + _KEY_MAGIC3 + _SHS_PAD2).digest()[:16]
    return receive + send + bytes(32)
