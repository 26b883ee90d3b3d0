"""EAP-TLS peer framing (RFC 5216 §2.1.5, engine/eap_tls.py): our TLS data longer than one fragment goes out
as a first fragment with L|M and the total length, further fragments with M after each acknowledgement,
and a last one without flags; EAP-Success before the handshake is refused."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.engine.eap_peer import EapPeerError
from ikeguard.engine.eap_tls import FRAGMENT, EapTlsPeer


def _peer() -> EapTlsPeer:
    return EapTlsPeer("user@bank.example", (), ec.generate_private_key(ec.SECP256R1()), lambda _chain: None)


def test_long_tls_data_is_fragmented_with_length_and_more_flags() -> None:
    peer = _peer()
    data = bytes(range(256)) * 10  # 2,560 octets: three fragments
    peer._outgoing = data
    first = peer._send(7)
    assert first[:6] == struct.pack("!BBHBB", 2, 7, len(first), 13, 0x80 | 0x40)
    assert struct.unpack("!I", first[6:10])[0] == len(data) and first[10:] == data[:FRAGMENT]
    ack = struct.pack("!BBHBB", 1, 8, 6, 13, 0)  # the server's empty EAP-TLS request: send the next one
    second = peer.respond(ack)
    assert second is not None and second[5] == 0x40 and second[6:] == data[FRAGMENT:2 * FRAGMENT]
    third = peer.respond(struct.pack("!BBHBB", 1, 9, 6, 13, 0))
    assert third is not None and third[5] == 0 and third[6:] == data[2 * FRAGMENT:]
    assert "PRIVATE" not in repr(peer)


def test_success_before_the_handshake_is_refused() -> None:
    with pytest.raises(EapPeerError, match="before the EAP-TLS handshake completed"):
        _peer().respond(struct.pack("!BBH", 3, 1, 4))
