"""IKE fragmentation (RFC 7383) with loss/reordering and limits, MOBIKE address change (RFC 4555), and
reauthentication (reauth_time, and before the peer certificate's notAfter)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace

from ikeguard.engine.events import Endpoint, SendDatagram, UpdateSaAddresses
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.engine.states import IkeState
from ikeguard.wire.message import parse_message
from ikeguard.wire.payloads import SkfPayload
from tests.engine.harness import FAST, child, ike, mirror, pair, psk_conn
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf


def cert_net(
    fragment_size: int = 1280,
    b_max_fragments: int = 64,
    not_after: dt.datetime | None = None,
    **conn_kw: object,
):  # type: ignore[no-untyped-def]
    c = child()
    conns = []
    for me, peer, ch in (
        ("a.example.net", "b.example.net", c),
        ("b.example.net", "a.example.net", mirror(c)),
    ):
        key, cert = leaf(me, "ecdsa-p384", not_after=not_after) if not_after else leaf(me, "ecdsa-p384")
        conns.append(
            ConnectionSettings(
                "tunnel",
                ike("aes256gcm16-prfsha384-ecp384"),
                LocalAuth(AuthKind.PUBKEY, me, private_key=key, certs=(cert, ca()[1])),
                RemoteAuth(AuthKind.PUBKEY, peer),
                (ch,),
                remote_addrs=("198.51.100.1",),
                **conn_kw,  # type: ignore[arg-type]
            )
        )
    settings = replace(FAST, fragment_size=fragment_size)
    net = pair(
        [conns[0]],
        [conns[1]],
        settings=settings,
        b_settings=replace(settings, max_fragments=b_max_fragments),
        validator=TrustAnchorValidator([ca()[1]]),
    )
    net.now = T0
    return net


def fragments(events: list[object]) -> list[SendDatagram]:
    return [
        e
        for e in events
        if isinstance(e, SendDatagram) and isinstance(parse_message(e.data).payloads[-1], SkfPayload)
    ]


def test_ike_auth_is_fragmented_and_reassembled() -> None:
    net = cert_net(fragment_size=400)
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
    sent = fragments(net.a.events)
    assert len(sent) >= 3 and all(len(d.data) <= 400 for d in sent)
    assert len(fragments(net.b.events)) >= 2


def test_reordered_and_lost_fragments() -> None:
    net = cert_net(fragment_size=400)
    state = {"dropped": False}

    def chaos(d: SendDatagram, side: str) -> list[SendDatagram]:
        msg = parse_message(d.data)
        last = msg.payloads[-1]
        if isinstance(last, SkfPayload) and side == "a" and last.number == 2 and not state["dropped"]:
            state["dropped"] = True
            return []
        return [d]

    net.filter = chaos
    net.initiate()
    net.collect()
    net.in_flight.reverse()
    net.run()
    assert net.a.manager.ike_sas()[0].state is IkeState.AUTH_SENT  # fragment 2 lost
    net.filter = None
    net.advance(2.1)  # whole message retransmitted
    assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED


def test_too_many_fragments_are_refused() -> None:
    net = cert_net(fragment_size=300, b_max_fragments=2)
    net.initiate()
    net.run()
    assert net.b.manager.half_open_count() == 1  # IKE_AUTH never reassembled
    assert any("fragments announced" in r for r in net.b.drops())


def test_mobike_address_change() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    sa = net.a.manager.ike_sas()[0]
    assert sa.peer.mobike
    new_local = Endpoint(ipaddress.ip_address("192.0.2.77"), 4500)
    net.a.manager.update_local_endpoint(sa.uniqueid, new_local, net.now)
    net.run()
    a_up = [e for e in net.a.events if isinstance(e, UpdateSaAddresses)]
    b_up = [e for e in net.b.events if isinstance(e, UpdateSaAddresses)]
    assert a_up and a_up[-1].local == new_local
    assert b_up and b_up[-1].remote == new_local
    assert not [e for e in net.a.audits("ike.address_changed") if e.outcome == "failure"]  # COOKIE2 echoed
    assert b_up[-1].child_spis == tuple(
        (c.spi_in, c.spi_out) for c in net.b.manager.ike_sas()[0].children.values()
    )
    # the SA keeps working from the new address
    net.a.manager.terminate_ike(sa.uniqueid, net.now)
    net.run()
    assert net.b.manager.ike_sas() == []


def test_address_change_without_mobike_closes_with_reason() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), mobike=False)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    sa = net.a.manager.ike_sas()[0]
    net.a.manager.update_local_endpoint(
        sa.uniqueid, Endpoint(ipaddress.ip_address("192.0.2.77"), 500), net.now
    )
    net.collect()
    assert "MOBIKE is not in use" in net.a.audits("ike.down")[-1].reason


def test_reauthentication_is_make_before_break() -> None:
    c = child()
    a = psk_conn(
        "tunnel",
        "a.example.net",
        "b.example.net",
        (c,),
        reauth_time=600.0,
        rekey_time=0.0,
        remote_addrs=("198.51.100.1",),
    )
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), rekey_time=0.0)
    net = pair([a], [b])
    net.initiate()
    net.run()
    old = net.a.manager.ike_sas()[0]
    net.advance(601)
    (new,) = net.a.manager.ike_sas()
    assert new is not old and new.state is IkeState.ESTABLISHED and old.state is IkeState.CLOSED
    assert len(new.children) == 1 and len(net.b.manager.ike_sas()) == 1
    assert net.a.audits("ike.reauth")
    kinds = [type(e).__name__ for e in net.a.events[len(net.a.events) - 40 :]]
    # the new Child SA is installed before the old one is deleted
    assert kinds.index("InstallChildSa") < kinds.index("DeleteChildSa")


def test_no_sa_outlives_peer_certificate() -> None:
    not_after = dt.datetime.fromtimestamp(T0 + 1000, dt.UTC)
    net = cert_net(not_after=not_after, rekey_time=0.0)
    net.initiate()
    net.run()
    first = net.a.manager.ike_sas()[0]
    assert first.timers["reauth"] <= T0 + 1000 - 300
    net.advance(800)  # reauth before notAfter; the new SA cannot reauth again (cert still ends at T0+1000)
    assert first.state is IkeState.CLOSED and net.a.audits("ike.reauth")
    net.advance(300)  # past notAfter: nothing may remain
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    assert any(
        "peer certificate expires" in e.reason for e in net.a.audits("ike.down") + net.b.audits("ike.down")
    )


def test_mobike_move_out_of_nat_reevaluates_encapsulation() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b], nat_a=True)
    net.initiate()
    net.run()
    sa = net.a.manager.ike_sas()[0]
    assert sa.encap and sa.nat_local
    net.a.manager.update_local_endpoint(
        sa.uniqueid, Endpoint(ipaddress.ip_address("192.0.2.77"), 4500), net.now
    )
    net.run()
    a_up = [e for e in net.a.events if isinstance(e, UpdateSaAddresses)][-1]
    b_up = [e for e in net.b.events if isinstance(e, UpdateSaAddresses)][-1]
    assert not a_up.encap and not b_up.encap  # no NAT on the new path
    assert not sa.nat_local and "keepalive" not in sa.timers
    assert str(b_up.remote.address) == "192.0.2.77"


def test_roaming_peer_responder_cannot_reauthenticate_so_it_closes_with_reason() -> None:
    c = child()
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,), rekey_time=0.0)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),), reauth_time=600.0, rekey_time=0.0)
    net = pair([a], [b])
    net.initiate()
    net.run()
    net.advance(601)
    assert net.b.manager.ike_sas() == [] and net.a.manager.ike_sas() == []
    assert "reauthentication required" in net.b.audits("ike.down")[0].reason
