"""MS-CHAPv2 peer computations against the RFC 2759 §9.2 and RFC 3079 §3.5.3 test vectors, and the EAP peer
(engine.eap_peer) answering an EAP-MSCHAPv2 server built from the same RFC functions."""

from __future__ import annotations

import struct

import pytest

from ikeguard.crypto import mschapv2
from ikeguard.engine.eap_peer import EapPeer, EapPeerError

AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")


def test_rfc2759_vectors() -> None:
    challenge = mschapv2.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"User")
    assert challenge.hex().upper() == "D02E4386BCE91226"
    assert mschapv2.nt_password_hash(b"clientPass").hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert mschapv2.nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, b"User", b"clientPass") == NT_RESPONSE
    proof = mschapv2.authenticator_response(b"clientPass", NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE,
                                            b"User")
    assert proof == b"S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_rfc3079_send_key_is_the_second_half_of_the_msk() -> None:
    # RFC 3079 §3.5.3 (128-bit keys): the server's send key; the MSK is receive | send, zero-padded to 64
    msk = mschapv2.msk(b"clientPass", NT_RESPONSE)
    assert len(msk) == 64 and msk[32:] == bytes(32)
    assert msk[16:32].hex().upper() == "8B7CDC149B993A1BA118CB153F56DCCB"


def _request(ident: int, data: bytes) -> bytes:
    return struct.pack("!BBHB", 1, ident, 5 + len(data), 26) + data


def test_eap_peer_mschapv2_conversation_and_server_proof() -> None:
    peer = EapPeer("mschapv2", "User", b"clientPass", random=PEER_CHALLENGE)
    assert "clientPass" not in repr(peer)
    identity = peer.respond(struct.pack("!BBHB", 1, 7, 5, 1))
    assert identity is not None and identity[5:] == b"User"
    challenge = struct.pack("!BBHB", 1, 9, 4 + 1 + 16 + 3, 16) + AUTH_CHALLENGE + b"srv"
    answer = peer.respond(_request(8, challenge))
    assert answer is not None and answer[4] == 26 and answer[5] == 2
    assert answer[10 + 24:10 + 48] == NT_RESPONSE  # value: peer challenge, 8 reserved, NT-Response, flags
    success = b"S=407A5589115FD0D6209F510FE9C04566932CDA56 M=OK"
    assert peer.respond(_request(10, struct.pack("!BBH", 3, 9, 4 + len(success)) + success)) is not None
    assert peer.respond(struct.pack("!BBH", 3, 10, 4)) is None and peer.succeeded
    assert peer.msk == mschapv2.msk(b"clientPass", NT_RESPONSE)


def test_eap_peer_refuses_a_server_that_does_not_know_the_password() -> None:
    peer = EapPeer("mschapv2", "User", b"clientPass", random=PEER_CHALLENGE)
    challenge = struct.pack("!BBHB", 1, 9, 4 + 1 + 16, 16) + AUTH_CHALLENGE
    peer.respond(_request(8, challenge))
    forged = b"S=" + b"0" * 40
    with pytest.raises(EapPeerError, match="does not verify") as info:
        peer.respond(_request(10, struct.pack("!BBH", 3, 9, 4 + len(forged)) + forged))
    assert "clientPass" not in str(info.value) and peer.msk == b""
    with pytest.raises(EapPeerError, match="before the MS-CHAPv2 server proved"):
        EapPeer("mschapv2", "User", b"x", random=PEER_CHALLENGE).respond(struct.pack("!BBH", 3, 1, 4))


def test_eap_peer_md5_and_nak() -> None:
    peer = EapPeer("md5", "bob", b"secret")
    nak = peer.respond(_request(3, struct.pack("!BBHB", 1, 1, 21, 16) + bytes(16)))  # MSCHAPv2 offered
    assert nak == struct.pack("!BBHBB", 2, 3, 6, 3, 4)  # Legacy Nak asking for MD5
    md5 = peer.respond(struct.pack("!BBHBB", 1, 4, 10, 4, 4) + b"abcd")
    assert md5 is not None and md5[4] == 4 and md5[5] == 16 and md5[22:] == b"bob"
