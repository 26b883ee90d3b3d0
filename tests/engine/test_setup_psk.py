"""IKE_SA_INIT + IKE_AUTH with a pre-shared key between two in-memory engines; first Child SA installed."""

from __future__ import annotations

from ikeguard.engine.events import Direction, IkeSaStateChanged, InstallChildSa, SendDatagram
from ikeguard.engine.states import IkeState
from tests.engine.harness import psk_pair


def test_psk_setup_establishes_both_sides_and_installs_matching_child_sas() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    a_sas, b_sas = net.a.manager.ike_sas(), net.b.manager.ike_sas()
    assert [sa.state for sa in a_sas] == [IkeState.ESTABLISHED]
    assert [sa.state for sa in b_sas] == [IkeState.ESTABLISHED]
    a_sa, b_sa = a_sas[0], b_sas[0]
    assert a_sa.remote_id == "b.example.net" and b_sa.remote_id == "a.example.net"
    assert a_sa.spi_i == b_sa.spi_i and a_sa.spi_r == b_sa.spi_r
    a_in, a_out = [i for i in net.a.installs()]
    assert (a_in.direction, a_out.direction) == (Direction.INBOUND, Direction.OUTBOUND)
    b_in, b_out = [i for i in net.b.installs()]
    # each side's inbound SA is the other's outbound one: same SPI, same keys
    assert a_in.sa.spi == b_out.sa.spi and a_out.sa.spi == b_in.sa.spi
    assert a_in.sa.encr_key == b_out.sa.encr_key and a_out.sa.encr_key == b_in.sa.encr_key
    assert a_in.sa.encr_key != a_out.sa.encr_key
    assert [str(t) for t in a_out.sa.local_ts] == ["10.1.0.0/24"]
    assert [str(t) for t in b_out.sa.local_ts] == ["10.2.0.0/24"]
    assert a_in.proposal == "aes256gcm16"
    assert [e.event for e in net.b.audits() if e.event in ("auth.success", "ike.up", "child.up")] == [
        "auth.success",
        "ike.up",
        "child.up",
    ]


def test_responder_installs_before_answering_and_initiator_after() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    order = [type(e).__name__ for e in net.b.events if isinstance(e, (InstallChildSa, SendDatagram))]
    # second datagram is the IKE_AUTH response: both installs precede it
    assert order == ["SendDatagram", "InstallChildSa", "InstallChildSa", "SendDatagram"]
    changes = [(e.old, e.new) for e in net.a.events if isinstance(e, IkeSaStateChanged)]
    assert changes == [
        (IkeState.CREATED, IkeState.INIT_SENT),
        (IkeState.INIT_SENT, IkeState.AUTH_SENT),
        (IkeState.AUTH_SENT, IkeState.ESTABLISHED),
    ]


def test_secrets_never_in_repr() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    for side in (net.a, net.b):
        sa = side.manager.ike_sas()[0]
        state = {name: getattr(sa, name) for name in type(sa).__slots__}  # every attribute (IkeSa is slotted)
        text = repr(side.events) + repr(state)
        assert "correct horse" not in text
        for install in side.installs():
            assert install.sa.encr_key.hex() not in text


def test_ipv6_endpoints_and_selectors() -> None:
    import ipaddress

    from ikeguard.engine.events import Endpoint
    from tests.engine.harness import child, mirror, pair, psk_conn

    c = child(local_ts=("2001:db8:1::/64",), remote_ts=("2001:db8:2::/64",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (mirror(c),))
    net = pair([a], [b])
    net.a.endpoint = Endpoint(ipaddress.ip_address("2001:db8::1"), 500)
    net.b.endpoint = Endpoint(ipaddress.ip_address("2001:db8::2"), 500)
    net.initiate()
    net.run()
    sa = net.b.manager.ike_sas()[0]
    assert sa.state is IkeState.ESTABLISHED and not sa.nat_local and not sa.nat_remote
    out = next(i for i in net.a.installs() if i.direction is Direction.OUTBOUND)
    assert [str(t) for t in out.sa.remote_ts] == ["2001:db8:2::/64"]
    assert str(out.sa.destination) == "[2001:db8::2]:500"
