"""RFC 5685 redirect: gateway identity coding, REDIRECT_SUPPORTED, redirect of an established peer in an
INFORMATIONAL exchange, redirect of a new peer in IKE_SA_INIT (with the initiator's nonce, checked by the
initiator before it follows), REDIRECTED_FROM at the new gateway, and the audit records of each."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ikeguard.crypto.random import DeterministicRandom
from ikeguard.engine.errors import LocalProtocolError
from ikeguard.engine.events import AuditEvent, Endpoint, EngineEvent, SendDatagram
from ikeguard.engine.ike_sa import IkeSa
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.message import decode_message
from ikeguard.engine.states import IkeState
from ikeguard.engine.tasks.redirect import RedirectError, decode, encode
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.sa import SaPayload
from ikeguard.wire.ts import TsiPayload
from tests.engine.harness import FAST, child, mirror, pair, psk_conn, psk_pair

GW1 = Endpoint(ipaddress.ip_address("198.51.100.1"), 500)
GW2 = Endpoint(ipaddress.ip_address("198.51.100.2"), 500)
CLIENT = Endpoint(ipaddress.ip_address("192.0.2.1"), 500)


@pytest.mark.parametrize("gateway", ["192.0.2.7", "2001:db8::7", "gw2.example.net"])
def test_gateway_identity_round_trip_with_nonce(gateway: str) -> None:
    data = encode(gateway, b"\x01" * 32)
    assert data[0] == {"192.0.2.7": 1, "2001:db8::7": 2, "gw2.example.net": 3}[gateway]
    assert decode(data) == (gateway, b"\x01" * 32)
    assert decode(encode(gateway)) == (gateway, b"")


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x05\x01\x02\x03\x04", b"\x01\x03abc", b"\x02\x04abcd",
                                  b"\x03\x00", b"\x03\x04a b.", b"\x09\x04abcd"])
def test_malformed_gateway_identity_is_refused(data: bytes) -> None:
    with pytest.raises(RedirectError):
        decode(data)


def test_established_peer_is_redirected_in_informational() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    client, gw = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert gw.peer.redirect  # the initiator announced REDIRECT_SUPPORTED (RFC 5685 §3)
    sent: list[bytes] = []
    net.filter = lambda d, side: (sent.append(d.data) if side == "b" else None) or [d]
    net.a.manager.ctx.redirect_hook = None  # a client that answers but does not follow (two hosts only here)
    net.b.manager.redirect(gw.uniqueid, "198.51.100.9", net.now)
    net.run()
    assert client.crypto is not None
    request = decode_message(sent[0], client.crypto.inbound, None)
    assert request.exchange is ExchangeType.INFORMATIONAL and not request.response
    redirect = request.notify(NotifyType.REDIRECT)
    # no nonce data after IKE_SA_INIT (§5)
    assert redirect is not None and decode(redirect.data) == ("198.51.100.9", b"")
    record = net.b.audits("ike.redirected")[0]
    assert record.outcome.value == "success" and record.details["gateway"] == "198.51.100.9"
    assert record.details["exchange"] == "INFORMATIONAL" and record.connection == "tunnel"
    assert client.state is IkeState.ESTABLISHED
    net.advance(31)  # the client did not delete the SA: the gateway does
    assert gw.state is IkeState.CLOSED and client.state is IkeState.CLOSED
    assert net.b.audits("ike.down")[0].reason == "redirected peer did not delete the old IKE SA"


def test_redirect_refused_without_peer_support_or_bad_gateway() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    gw = net.b.manager.ike_sas()[0]
    with pytest.raises(LocalProtocolError, match="neither an IP address nor a host name"):
        net.b.manager.redirect(gw.uniqueid, "not a host!", net.now)
    gw.peer.redirect = False
    with pytest.raises(LocalProtocolError, match="does not support redirection"):
        net.b.manager.redirect(gw.uniqueid, "198.51.100.9", net.now)


class ThreeHosts:
    """A client and two gateways; datagrams are routed by destination address."""

    def __init__(self, redirect_to: str, rewrite_nonce: bool = False, auth_redirect: str = "") -> None:
        c = child()
        self.client = IkeManager([psk_conn("tunnel", "a.example.net", "b.example.net", (c,))], FAST,
                                 random=DeterministicRandom(1))
        gw_conn = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
        self.gw1 = IkeManager([replace(gw_conn, redirect_to=auth_redirect)],
                              replace(FAST, redirect_to=redirect_to), random=DeterministicRandom(2))
        self.gw2 = IkeManager([gw_conn], FAST, random=DeterministicRandom(3))
        self.hosts = {CLIENT.address: self.client, GW1.address: self.gw1, GW2.address: self.gw2}
        self.events: dict[IkeManager, list[EngineEvent]] = {m: [] for m in self.hosts.values()}
        self.rewrite_nonce = rewrite_nonce

    def audits(self, manager: IkeManager, name: str) -> list[AuditEvent]:
        return [e for e in self.events[manager] if isinstance(e, AuditEvent) and e.event == name]

    def run(self) -> None:
        for _ in range(200):
            moved = False
            for manager in self.hosts.values():
                for event in manager.events():
                    self.events[manager].append(event)
                    if isinstance(event, SendDatagram):
                        data = event.data
                        if self.rewrite_nonce and manager is self.gw1:
                            data = data[:-1] + bytes([data[-1] ^ 1])  # the REDIRECT notify is last
                        target = self.hosts[event.remote.address]
                        target.receive_datagram(data, event.remote, event.local, 0.0)
                        moved = True
            if not moved:
                return


def test_new_peer_is_redirected_in_ike_sa_init_and_arrives_redirected_from() -> None:
    lab = ThreeHosts(redirect_to=str(GW2.address))
    uid = lab.client.initiate("tunnel", local=CLIENT, remote=GW1, now=0.0)
    lab.run()
    sa = lab.client.get(uid)
    assert sa is not None and sa.state is IkeState.ESTABLISHED and sa.remote == GW2
    assert lab.gw1.ike_sas() == [] and len(lab.gw2.ike_sas()) == 1  # gateway 1 kept no state
    out = lab.audits(lab.gw1, "ike.redirected")[0]
    assert out.details["gateway"] == "198.51.100.2" and out.details["exchange"] == "IKE_SA_INIT"
    followed = lab.audits(lab.client, "ike.redirected")[0]
    assert followed.outcome.value == "success" and "redirected by 198.51.100.1" in followed.reason
    arrived = lab.audits(lab.gw2, "ike.redirected")[0]
    assert arrived.details == {**arrived.details, "direction": "in", "gateway": "198.51.100.1"}
    assert lab.gw2.ike_sas()[0].redirected_from == "198.51.100.1"
    assert lab.audits(lab.gw2, "ike.up")  # and no second redirect from there


def test_redirect_without_our_nonce_is_ignored() -> None:
    lab = ThreeHosts(redirect_to=str(GW2.address), rewrite_nonce=True)
    uid = lab.client.initiate("tunnel", local=CLIENT, remote=GW1, now=0.0)
    lab.run()
    sa = lab.client.get(uid)
    assert sa is not None and sa.remote == GW1 and sa.state is not IkeState.ESTABLISHED
    refused = lab.audits(lab.client, "ike.redirected")[0]
    assert refused.outcome.value == "failure" and "nonce data is not our Ni" in refused.reason
    assert lab.gw2.ike_sas() == []


def test_redirect_under_load_only_above_the_threshold() -> None:
    net = psk_pair(b_settings=replace(FAST, redirect_to="gw2.example.net", redirect_above=1))
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas()[0].state is IkeState.ESTABLISHED  # 0 established: not redirected
    assert net.b.audits("ike.redirected") == []


def test_redirect_to_a_name_ends_the_attempt_with_the_reason() -> None:
    lab = ThreeHosts(redirect_to="gw2.example.net")
    uid = lab.client.initiate("tunnel", local=CLIENT, remote=GW1, now=0.0)
    lab.run()
    assert lab.client.get(uid) is None
    failed = lab.audits(lab.client, "ike.redirected")[0]
    assert failed.outcome.value == "failure" and "not followed: a host name" in failed.reason
    assert "redirected by 198.51.100.1 to gw2.example.net" in lab.audits(lab.client, "ike.failed")[0].reason


def test_authenticated_peer_is_redirected_in_ike_auth_without_a_child_sa() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), redirect_to="2001:db8::2")
    net = pair([a], [b])
    net.a.manager.ctx.redirect_hook = None  # this client does not follow (two hosts only here)
    responses: list[bytes] = []
    net.filter = lambda d, side: (responses.append(d.data) if side == "b" else None) or [d]
    net.initiate()
    net.run()
    gw = net.b.manager.ike_sas()[0]
    assert gw.crypto is not None
    auth = decode_message(responses[1], gw.crypto.outbound, None)  # our own IKE_AUTH response
    redirect = auth.notify(NotifyType.REDIRECT)
    assert redirect is not None and decode(redirect.data) == ("2001:db8::2", b"")
    assert auth.get(SaPayload) is None and auth.get(TsiPayload) is None  # RFC 5685 §6
    assert gw.children == {} and net.b.installs() == []
    record = net.b.audits("ike.redirected")[0]
    assert record.details["exchange"] == "IKE_AUTH" and record.details["gateway"] == "2001:db8::2"
    net.advance(31)
    assert gw.state is IkeState.CLOSED


def _up(manager: IkeManager) -> list[IkeSa]:
    return [sa for sa in manager.ike_sas() if sa.state is IkeState.ESTABLISHED]


def test_ikeguard_as_client_follows_a_redirect_of_its_established_sa() -> None:
    lab = ThreeHosts(redirect_to="")
    uid = lab.client.initiate("tunnel", local=CLIENT, remote=GW1, now=0.0)
    lab.run()
    (at_gw1,) = _up(lab.gw1)
    lab.gw1.redirect(at_gw1.uniqueid, str(GW2.address), 0.0)
    lab.run()
    (sa,) = _up(lab.client)  # the new IKE SA with gw2 (its Child SA too); the old one deleted by us
    assert sa.uniqueid != uid and sa.remote == GW2 and sa.children and sa.redirected_from == "198.51.100.1"
    assert lab.client.get(uid) is None and _up(lab.gw1) == [] and len(_up(lab.gw2)) == 1
    followed = lab.audits(lab.client, "ike.redirected")[0]
    assert followed.details["exchange"] == "INFORMATIONAL" and followed.outcome.value == "success"
    assert lab.audits(lab.gw2, "ike.redirected")[0].details["gateway"] == "198.51.100.1"  # REDIRECTED_FROM


def test_ikeguard_as_client_follows_a_redirect_in_ike_auth() -> None:
    lab = ThreeHosts(redirect_to="", auth_redirect=str(GW2.address))
    uid = lab.client.initiate("tunnel", local=CLIENT, remote=GW1, now=0.0)
    lab.run()
    (sa,) = _up(lab.client)
    assert sa.uniqueid != uid and sa.remote == GW2 and sa.children
    assert lab.client.get(uid) is None and _up(lab.gw1) == []
    assert not [e for e in lab.audits(lab.client, "child.failed")]  # no Child SA was expected from gw1
    followed = lab.audits(lab.client, "ike.redirected")[0]
    assert followed.details["exchange"] == "IKE_AUTH" and followed.details["gateway"] == "198.51.100.2"
