"""Negotiation failures become the RFC 7296 notify plus an audit event with a precise reason."""

from __future__ import annotations

from dataclasses import replace

from ikeguard.engine.events import SendDatagram
from ikeguard.engine.states import IkeState
from ikeguard.policy.ts import TrafficSelector, resolve
from ikeguard.wire.iana import ExchangeType, NotifyType
from ikeguard.wire.message import parse_message
from ikeguard.wire.payloads import NotifyPayload
from tests.engine.harness import FAST, child, mirror, pair, psk_conn


def notifies_sent(side_events: list[object]) -> list[int]:
    out = []
    for e in side_events:
        if isinstance(e, SendDatagram):
            msg = parse_message(e.data)
            if msg.header.exchange_type == ExchangeType.IKE_SA_INIT:
                out += [int(p.notify_type) for p in msg.payloads if isinstance(p, NotifyPayload)]
    return out


def test_no_proposal_chosen() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=("aes128-sha256-modp3072",))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert NotifyType.NO_PROPOSAL_CHOSEN in notifies_sent(net.b.events)
    assert net.b.audits("proposal.rejected")[0].reason == "no acceptable IKE proposal"
    assert "AES_CBC-128" in net.b.audits("proposal.rejected")[0].proposal
    failed = net.a.audits("proposal.rejected")
    assert failed and "NO_PROPOSAL_CHOSEN" in failed[0].reason
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []


def test_invalid_ke_retry_initiator_side() -> None:
    # a prefers ecp256 first, b accepts only ecp384: b answers INVALID_KE_PAYLOAD(20), a retries with 20
    c = child()
    a = psk_conn(
        "tunnel",
        "a.example.net",
        "b.example.net",
        (c,),
        ike_proposals=("aes256gcm16-prfsha384-ecp256-ecp384",),
    )
    b = psk_conn(
        "tunnel",
        "b.example.net",
        "a.example.net",
        (mirror(c),),
        ike_proposals=("aes256gcm16-prfsha384-ecp384",),
    )
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert notifies_sent(net.b.events).count(NotifyType.INVALID_KE_PAYLOAD) == 1
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    assert net.b.manager.ike_sas()[0].proposal_text.endswith("ecp384")
    assert len(net.b.manager.ike_sas()) == 1  # the refused first attempt left no state


def test_psk_mismatch_is_authentication_failed() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    a = replace(a, local=replace(a.local, psk=b"another secret entirely, wrong"))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert "pre-shared key mismatch" in net.b.audits("auth.failure")[0].reason
    assert "AUTHENTICATION_FAILED" in net.a.audits("auth.failure")[0].reason
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    assert net.b.installs() == [] and net.a.installs() == []


def test_unknown_identity_is_authentication_failed() -> None:
    c = child()
    a = psk_conn("tunnel", "mallory.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert "no connection accepts identity mallory.example.net" in net.b.audits("auth.failure")[0].reason


class Inventory:
    """%peer: merchant A owns 10.20.1.0/24, merchant B owns 10.20.2.0/24."""

    def __init__(self) -> None:
        self.bound = {
            "a.merchants.example.net": resolve(["10.20.1.0/24"], own_address=None),
            "b.merchants.example.net": resolve(["10.20.2.0/24"], own_address=None),
        }

    def selectors_for(self, connection: str, identity: str) -> tuple[TrafficSelector, ...] | None:
        return self.bound.get(identity)


def test_peer_claiming_another_peers_subnet_gets_ts_unacceptable() -> None:
    # merchant B asks for merchant A's subnet: the IKE SA comes up, the Child SA is refused
    claim = child(local_ts=("10.20.1.0/24",), remote_ts=("10.0.0.0/16",))
    mallory = psk_conn("tunnel", "b.merchants.example.net", "gw.example.net", (claim,))
    template = child(local_ts=("10.0.0.0/16",), remote_ts=("%peer",))
    gw = psk_conn("merchants", "gw.example.net", "b.merchants.example.net", (template,))
    net = pair([mallory], [gw], peer_selectors=Inventory())
    net.initiate()
    net.run()
    rejected = net.b.audits("ts.rejected")
    assert (
        rejected
        and "10.20.1.0/24" in rejected[0].reason
        and rejected[0].remote_id == "b.merchants.example.net"
    )
    assert net.b.installs() == [] and net.a.installs() == []
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED  # RFC 7296 §1.2: IKE SA stays
    assert "TS_UNACCEPTABLE" in net.a.audits("child.failed")[0].reason


def test_peer_gets_its_own_inventory_subnet_narrowed() -> None:
    ask = child(local_ts=("10.20.0.0/16",), remote_ts=("10.0.0.0/16",))
    merchant = psk_conn("tunnel", "a.merchants.example.net", "gw.example.net", (ask,))
    template = child(local_ts=("10.0.0.0/16",), remote_ts=("%peer",))
    gw = psk_conn("merchants", "gw.example.net", "a.merchants.example.net", (template,))
    net = pair([merchant], [gw], peer_selectors=Inventory())
    net.initiate()
    net.run()
    out = next(i for i in net.a.installs() if i.direction.value == "out")
    assert [str(t) for t in out.sa.local_ts] == ["10.20.1.0/24"]  # narrowed to what A is entitled to


def test_cookies_demanded_above_threshold() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b], b_settings=replace(FAST, cookie_threshold=1))
    # a first half-open SA (its IKE_AUTH is dropped) pushes b over the threshold
    net.filter = lambda d, s: [] if s == "a" and parse_message(d.data).header.exchange_type == 35 else [d]
    net.initiate()
    net.run()
    assert net.b.manager.half_open_count() == 1
    net.filter = None
    net.initiate()
    net.run()
    assert NotifyType.COOKIE in notifies_sent(net.b.events)
    assert net.b.audits("dos.cookies_on")
    established = [sa for sa in net.b.manager.ike_sas() if sa.state is IkeState.ESTABLISHED]
    assert len(established) == 1


def test_block_threshold_drops_init_from_busy_address() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b], b_settings=replace(FAST, cookie_threshold=0, block_threshold=2))
    net.filter = lambda d, s: [] if s == "a" and parse_message(d.data).header.exchange_type == 35 else [d]
    for _ in range(3):
        net.initiate()
        net.run()
    assert net.b.manager.half_open_count() == 2
    assert any("half-open limit" in r for r in net.b.drops())


def test_half_open_sa_expires() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b], b_settings=replace(FAST, half_open_timeout=10.0))
    net.filter = lambda d, s: [] if s == "a" and parse_message(d.data).header.exchange_type == 35 else [d]
    net.initiate()
    net.run()
    net.advance(11)
    assert net.b.manager.half_open_count() == 0


def test_no_allowed_proposal_fails_the_sa_not_the_caller() -> None:
    from ikeguard.policy.profile import load_profile

    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=("3des-sha1-modp1024",))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b], settings=replace(FAST, profile=load_profile("pci-dss-4")))
    net.initiate()
    net.collect()
    assert net.a.manager.ike_sas() == []
    assert (
        "no configured IKE proposal is allowed by the profile" in net.a.audits("proposal.rejected")[0].reason
    )


def test_proposal_of_another_connection_is_refused_after_identity_is_known() -> None:
    # b has a legacy connection allowing aes128-sha256-modp2048 and a strict one for a.example.net;
    # a (the strict peer) negotiates the legacy suite in IKE_SA_INIT: IKE_AUTH must fail.
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), ike_proposals=("aes128-sha256-modp2048",))
    strict = psk_conn(
        "strict",
        "b.example.net",
        "a.example.net",
        (mirror(c),),
        ike_proposals=("aes256gcm16-prfsha384-ecp384",),
    )
    legacy = psk_conn(
        "legacy",
        "b.example.net",
        "legacy.example.net",
        (mirror(c),),
        ike_proposals=("aes128-sha256-modp2048",),
    )
    net = pair([a], [strict, legacy])
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == []
    assert "not allowed for connection strict" in net.b.audits("auth.failure")[0].reason


def test_authentic_request_with_unknown_critical_payload_gets_the_rfc_notify() -> None:
    from ikeguard.engine.message import decode_message
    from ikeguard.wire.header import HeaderFlags, IkeHeader
    from ikeguard.wire.payloads import UnknownPayload
    from ikeguard.wire.sk import encode_encrypted_message
    from tests.engine.harness import psk_pair

    net = psk_pair()
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    header = IkeHeader(a_sa.spi_i, a_sa.spi_r, 37, HeaderFlags.INITIATOR, b_sa.window.expected_peer_id)
    assert a_sa.crypto is not None
    data = encode_encrypted_message(header, [UnknownPayload(200, b"x", critical=True)], a_sa.crypto.outbound)
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(data, net.b.endpoint, net.a.endpoint, net.now)
    replies = [e for e in list(net.b.manager.ctx.outputs)[mark:] if isinstance(e, SendDatagram)]
    assert len(replies) == 1
    answer = decode_message(replies[0].data, a_sa.crypto.inbound, None)
    assert [int(n.notify_type) for n in answer.notifies()] == [NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD]
    assert b_sa.state is IkeState.ESTABLISHED  # an INFORMATIONAL error does not kill the SA
    # an authentic-looking request whose ICV does not verify is dropped silently, ID not consumed
    expected = b_sa.window.expected_peer_id
    header2 = IkeHeader(a_sa.spi_i, a_sa.spi_r, 37, HeaderFlags.INITIATOR, expected)
    good = encode_encrypted_message(header2, [UnknownPayload(200, b"x", critical=True)], a_sa.crypto.outbound)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    mark = len(net.b.manager.ctx.outputs)
    net.b.manager.receive_datagram(bad, net.b.endpoint, net.a.endpoint, net.now)
    assert b_sa.window.expected_peer_id == expected
    assert not [e for e in list(net.b.manager.ctx.outputs)[mark:] if isinstance(e, SendDatagram)]
