"""Issue 13 item 4, engine side: an initiator that refuses the responder's authentication tells it so in a
separate INFORMATIONAL exchange with AUTHENTICATION_FAILED, protected by the new IKE SA's keys, and the
responder (here another ikeguard engine) deletes its IKE SA and Child SAs on it (RFC 7296 §2.21.2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ikeguard.engine.events import DeleteChildSa, SendDatagram
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.wire.iana import ExchangeType
from ikeguard.wire.message import parse_message
from tests.engine.harness import Network, child, ike, mirror, pair, psk_conn
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf

RESPONDER_REASON = "peer refused our authentication (AUTHENTICATION_FAILED, RFC 7296 §2.21.2)"


def _wrong_identity() -> Network:
    """PSK: the responder authenticates as an identity the initiator's connection does not name."""
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "imposter.example.net", "a.example.net", (mirror(c),))
    return pair([a], [b])


def _untrusted_ca() -> Network:
    """Certificates: the responder's certificate comes from a CA the initiator does not trust."""
    c = child(proposals=("aes256gcm16-ecp384",))

    def conn(me: str, peer: str, ca_name: str, children: tuple) -> ConnectionSettings:  # type: ignore[type-arg]
        key, cert = leaf(me, "ecdsa-p384", ca_name)
        return ConnectionSettings("tunnel", ike("aes256gcm16-prfsha384-ecp384"),
                                  LocalAuth(AuthKind.PUBKEY, me, private_key=key, certs=(cert,)),
                                  RemoteAuth(AuthKind.PUBKEY, peer), children)

    a = conn("a.example.net", "b.example.net", "Test CA", (c,))
    b = conn("b.example.net", "a.example.net", "Rogue CA", (mirror(c),))
    # one validator for both engines: a trusts only "Test CA"; b accepts a (issued by it)
    net = pair([a], [b], validator=TrustAnchorValidator([ca("Test CA")[1]]))
    net.now = T0
    return net


def _headers(events: list[object]) -> list[tuple[int, bool, int, bytes, bytes]]:
    """(exchange, response?, message ID, SPIi, SPIr) of every datagram a side sent."""
    out = []
    for e in events:
        if isinstance(e, SendDatagram):
            h = parse_message(e.data).header
            out.append((int(h.exchange_type), h.is_response, h.message_id, h.spi_i, h.spi_r))
    return out


CASES: dict[str, tuple[Callable[[], Network], str]] = {
    "psk-wrong-identity": (_wrong_identity, "does not match b.example.net"),
    "cert-untrusted-ca": (_untrusted_ca, "certificate rejected"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_initiator_sends_authentication_failed_and_the_responder_deletes_its_sa(case: str) -> None:
    build, why = CASES[case]
    net = build()
    net.collect()
    net.initiate()
    net.run()

    # the initiator refused the responder, with the reason in its own audit trail only
    refused = net.a.audits("auth.failure")
    assert len(refused) == 1 and why in refused[0].reason, refused
    assert net.a.manager.ike_sas() == []

    # ... and told it: after the IKE_AUTH request (ID 1) one INFORMATIONAL request with the next message ID,
    # on the same IKE SA (the responder could decrypt it: it holds the new SA's keys)
    sent = _headers(net.a.events)
    assert [(x, r, m) for x, r, m, _, _ in sent] == [
        (ExchangeType.IKE_SA_INIT, False, 0), (ExchangeType.IKE_AUTH, False, 1),
        (ExchangeType.INFORMATIONAL, False, 2)]
    spis = {(i, r) for _, _, _, i, r in sent[1:]}
    assert len(spis) == 1 and all(s != b"\0" * 8 for s in next(iter(spis)))

    # the responder had completed IKE_AUTH (its side was up, Child SA installed) and has now removed it all
    assert net.b.audits("ike.up") and net.b.installs()
    assert net.b.manager.ike_sas() == []
    deleted = {(e.child_uniqueid, e.direction) for e in net.b.events if isinstance(e, DeleteChildSa)}
    assert len(deleted) == len(net.b.installs()) == 2
    b_failures = net.b.audits("auth.failure")
    assert [e.reason for e in b_failures] == [RESPONDER_REASON]
    down = net.b.audits("ike.down")
    assert len(down) == 1 and down[0].outcome == "failure" and down[0].reason == RESPONDER_REASON
    # the responder answered the INFORMATIONAL (an empty response, §1.4.1); the initiator, already closed,
    # ignores it, and nothing is retransmitted afterwards
    answers = [(ExchangeType(x).name, r, m) for x, r, m, _, _ in _headers(net.b.events)]
    assert ("INFORMATIONAL", True, 2) in answers
    before = len(_headers(net.a.events))
    net.advance(60)
    assert len(_headers(net.a.events)) == before


def test_a_lost_notification_is_not_retransmitted_and_leaves_the_responder_up() -> None:
    """The notification is best effort (as strongSwan's initiator sends it): if it is lost, the responder
    keeps its SA until its own liveness checks or our next INITIAL_CONTACT. This also shows that the test
    above sees the effect of the INFORMATIONAL itself."""
    net = _wrong_identity()
    net.filter = lambda d, side: [] if side == "a" and parse_message(d.data).header.exchange_type == \
        ExchangeType.INFORMATIONAL else [d]
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas() == []
    assert [sa.state.value for sa in net.b.manager.ike_sas()] == ["established"]
    informational = [h for h in _headers(net.a.events) if h[0] == ExchangeType.INFORMATIONAL]
    assert len(informational) == 1
    net.advance(30)
    assert len([h for h in _headers(net.a.events) if h[0] == ExchangeType.INFORMATIONAL]) == 1
