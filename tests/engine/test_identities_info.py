"""ID types on the wire (FQDN, RFC 822, IPv4, IPv6, key id, DN) through a full setup, and the ``sas`` view."""

from __future__ import annotations

import json

import pytest

from ikeguard.engine import ike_sa_info
from ikeguard.engine.identity import identity_payload, identity_text
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.wire.iana import IdType
from tests.engine.harness import child, ike, mirror, pair, psk_conn, psk_pair
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf


@pytest.mark.parametrize(
    ("ident", "id_type"),
    [
        ("a.example.net", IdType.FQDN),
        ("ops@example.net", IdType.RFC822_ADDR),
        ("192.0.2.1", IdType.IPV4_ADDR),
        ("2001:db8::1", IdType.IPV6_ADDR),
        ("@#0a1b2c3d", IdType.KEY_ID),
    ],
)
def test_psk_identities(ident: str, id_type: IdType) -> None:
    assert identity_payload(ident)[0] is id_type
    assert identity_text(*identity_payload(ident)) == ident
    c = child()
    a = psk_conn("tunnel", ident, "b.example.net", (c,))
    b = psk_conn("tunnel", "b.example.net", ident, (mirror(c),))
    net = pair([a], [b])
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas()[0].remote_id == ident


def test_dn_identity_with_certificate() -> None:
    c = child()
    key, cert = leaf("a.example.net", "ecdsa-p256")
    a = ConnectionSettings(
        "tunnel",
        ike("aes256gcm16-prfsha384-ecp384"),
        LocalAuth(AuthKind.PUBKEY, "CN=a.example.net", private_key=key, certs=(cert,)),
        RemoteAuth(AuthKind.PUBKEY, "b.example.net"),
        (c,),
    )
    bkey, bcert = leaf("b.example.net", "ecdsa-p384")
    b = ConnectionSettings(
        "tunnel",
        ike("aes256gcm16-prfsha384-ecp384"),
        LocalAuth(AuthKind.PUBKEY, "b.example.net", private_key=bkey, certs=(bcert,)),
        RemoteAuth(AuthKind.PUBKEY, "CN=a.example.net"),
        (mirror(c),),
    )
    net = pair([a], [b], validator=TrustAnchorValidator([ca()[1]]))
    net.now = T0
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas()[0].remote_id == "CN=a.example.net"


def test_sas_view_has_contract_fields() -> None:
    net = psk_pair()
    net.initiate()
    net.run()
    info = ike_sa_info(net.a.manager.ike_sas()[0])
    json.dumps(info)
    for key in (
        "name",
        "uniqueid",
        "state",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "local_id",
        "remote_id",
        "initiator",
        "proposal",
        "established_at",
        "rekey_at",
        "reauth_at",
        "children",
    ):
        assert key in info
    (kid,) = info["children"]
    assert len(kid["spi_in"]) == 8 and kid["spi_in"] == kid["spi_in"].lower()
    assert kid["local_ts"] == ["10.1.0.0/24"] and kid["proposal"] == "aes256gcm16"
    assert info["established_at"].endswith("Z") and info["state"] == "established"


@pytest.mark.parametrize(
    ("a_mode", "b_mode", "result"),
    [
        ("transport", "transport", "transport"),
        ("transport", "tunnel", "tunnel-refused"),
        ("tunnel", "transport", "refused"),
        ("tunnel", "tunnel", "tunnel"),
    ],
)
def test_transport_mode_negotiation(a_mode: str, b_mode: str, result: str) -> None:
    c = child(local_ts=("dynamic",), remote_ts=("dynamic",), mode=a_mode)
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    b = psk_conn(
        "tunnel",
        "b.example.net",
        "a.example.net",
        (child(local_ts=("dynamic",), remote_ts=("dynamic",), mode=b_mode),),
    )
    net = pair([a], [b])
    net.initiate()
    net.run()
    modes = {i.sa.mode for i in net.a.installs() + net.b.installs()}
    if result in ("transport", "tunnel"):
        assert modes == {result}
    else:
        assert net.a.installs() == []  # no Child SA: the initiator refuses tunnel or the responder refuses
        assert net.a.audits("child.failed")
        assert net.b.manager.ike_sas()[0].children == {}  # whatever b installed was deleted again
        installed = {(i.direction, i.sa.spi) for i in net.b.installs()}
        deleted = {(e.direction, e.spi) for e in net.b.events if type(e).__name__ == "DeleteChildSa"}
        assert installed == deleted
