"""Raw public keys (RFC 7670, issue 18): a peer authenticated by a pinned key, no certificate.

Our key travels in a CERT payload of encoding 15 (DER SubjectPublicKeyInfo); the peer's key must be one the
connection pins (a key, or a ``sha256:`` fingerprint of its SubjectPublicKeyInfo), and its AUTH signature
must verify with it. A key that matches no pin is refused with AUTHENTICATION_FAILED and an audit reason
naming the key's fingerprint; no validator is asked."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.engine.message import OutMessage
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.ike_auth import _our_id_and_certs
from ikeguard.pki.raw_keys import PinnedKey, spki_der
from ikeguard.wire.iana import CertEncoding, ExchangeType
from ikeguard.wire.payloads import CertPayload
from tests.engine.harness import child, ike, mirror, pair
from tests.engine.pki import T0, TrustAnchorValidator


def _pin(key: PrivateKey, *, key_known: bool = True) -> PinnedKey:
    spki = spki_der(key.public_key())
    return PinnedKey("test", hashlib.sha256(spki).digest(), key.public_key() if key_known else None)


def _conn(me: str, peer: str, key: PrivateKey, pins: tuple[PinnedKey, ...], *, raw: bool = True,
          first: bool = True) -> ConnectionSettings:
    c = child(proposals=("aes256gcm16-ecp384",))
    return ConnectionSettings("tunnel", ike("aes256gcm16-prfsha384-ecp384"),
                              LocalAuth(AuthKind.PUBKEY, me, private_key=key, raw_public_key=raw),
                              RemoteAuth(AuthKind.PUBKEY, peer, pubkeys=pins),
                              (c if first else mirror(c),))


def _run(a_key: PrivateKey, b_key: PrivateKey, a_pins: tuple[PinnedKey, ...],
         b_pins: tuple[PinnedKey, ...], *, a_raw: bool = True):  # type: ignore[no-untyped-def]
    validator = TrustAnchorValidator([])
    net = pair([_conn("a.example.net", "b.example.net", a_key, a_pins, raw=a_raw)],
               [_conn("b.example.net", "a.example.net", b_key, b_pins, first=False)], validator=validator)
    net.now = T0
    net.initiate()
    net.run()
    return net, validator


@pytest.mark.parametrize("key_known", [True, False], ids=["key-file", "fingerprint"])
def test_both_ends_authenticate_with_pinned_raw_keys(key_known: bool) -> None:
    a_key, b_key = ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()
    net, validator = _run(a_key, b_key, (_pin(b_key, key_known=key_known),),
                          (_pin(a_key, key_known=key_known),))
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert validator.calls == 0  # no certificate, nothing for the validator
    fingerprint = "sha256:" + hashlib.sha256(spki_der(a_key.public_key())).hexdigest()
    assert b_sa.auth_details["raw_public_key"] == fingerprint
    assert len(net.a.installs()) == len(net.b.installs()) == 2


def test_our_raw_key_is_sent_as_cert_encoding_15() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    net, _ = _run(key, key, (_pin(key),), (_pin(key),))
    sa = net.a.manager.ike_sas()[0]
    msg = OutMessage(ExchangeType.IKE_AUTH, 1, response=False)
    _our_id_and_certs(sa, msg, initiator=True)
    certs = [p for p in msg.payloads if isinstance(p, CertPayload)]
    assert [(c.encoding, c.data) for c in certs] == [
        (CertEncoding.RAW_PUBLIC_KEY, spki_der(key.public_key()))]


@pytest.mark.parametrize("key_known", [True, False], ids=["key-file", "fingerprint"])
def test_a_key_that_matches_no_pin_is_refused_with_authentication_failed(key_known: bool) -> None:
    a_key, b_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    other = ec.generate_private_key(ec.SECP384R1())
    net, _ = _run(a_key, b_key, (_pin(b_key),), (_pin(other, key_known=key_known),))
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    failure = net.b.audits("auth.failure")
    fingerprint = "sha256:" + hashlib.sha256(spki_der(a_key.public_key())).hexdigest()
    assert failure and f"raw public key rejected: raw public key {fingerprint} matches no pinned key" \
        in failure[0].reason
    assert net.a.audits("auth.failure")  # the initiator was told (AUTHENTICATION_FAILED)


def test_without_a_sent_key_the_pinned_key_file_must_verify_the_signature() -> None:
    """strongSwan sends no CERT payload for a raw key: the pinned key files are tried."""
    a_key, b_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    other = ec.generate_private_key(ec.SECP384R1())
    net, _ = _run(a_key, b_key, (_pin(b_key),), (_pin(other), _pin(a_key)), a_raw=False)
    assert net.b.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    net, _ = _run(a_key, b_key, (_pin(b_key),), (_pin(other),), a_raw=False)
    assert net.b.manager.ike_sas() == []
    assert "AUTH signature verifies with no pinned key" in net.b.audits("auth.failure")[0].reason
    net, _ = _run(a_key, b_key, (_pin(b_key),), (_pin(a_key, key_known=False),), a_raw=False)
    assert "every pin is a fingerprint" in net.b.audits("auth.failure")[0].reason
