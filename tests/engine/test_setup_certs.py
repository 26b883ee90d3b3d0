"""IKE_AUTH with RFC 7427 signatures (ECDSA P-256/P-384, Ed25519, RSA-PSS) and CERT/CERTREQ; the
certificate decision is the validator's; a forged or untrusted certificate gets AUTHENTICATION_FAILED."""

from __future__ import annotations

import pytest

from ikeguard.engine import CertVerdict
from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.engine.states import IkeState
from tests.engine.harness import child, ike, mirror, pair
from tests.engine.pki import T0, TrustAnchorValidator, ca, leaf


def cert_conn(
    name: str, me: str, peer: str | None, kind: str, ca_name: str = "Test CA", children: tuple = ()
) -> ConnectionSettings:  # type: ignore[type-arg]
    key, cert = leaf(me, kind, ca_name)
    return ConnectionSettings(
        name,
        ike("aes256gcm16-prfsha384-ecp384"),
        LocalAuth(AuthKind.PUBKEY, me, private_key=key, certs=(cert,)),
        RemoteAuth(AuthKind.PUBKEY, peer),
        children,
    )


def cert_pair(
    a_kind: str,
    b_kind: str,
    *,
    b_remote: str | None = "a.example.net",
    a_ca: str = "Test CA",
    anchors: tuple[str, ...] = ("Test CA",),
):  # type: ignore[no-untyped-def]
    c = child(proposals=("aes256gcm16-ecp384",))
    a = cert_conn("tunnel", "a.example.net", "b.example.net", a_kind, a_ca, (c,))
    b = cert_conn("tunnel", "b.example.net", b_remote, b_kind, children=(mirror(c),))
    validator = TrustAnchorValidator([ca(n)[1] for n in anchors])
    net = pair([a], [b], validator=validator)
    net.now = T0
    return net, validator


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa"])
def test_signature_setup(kind: str) -> None:
    net, validator = cert_pair(kind, "ecdsa-p384")
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert validator.calls == 2
    assert b_sa.remote_cert_subject == "CN=a.example.net"
    assert [e.event for e in net.b.audits() if e.event.startswith("cert.")] == ["cert.validated"]
    assert len(net.a.installs()) == len(net.b.installs()) == 2
    assert b_sa.remote_cert_not_after is not None  # caps the SA lifetime
    assert b_sa.timers["ike_expire"] <= b_sa.remote_cert_not_after


def test_untrusted_issuer_is_rejected_with_authentication_failed() -> None:
    net, _ = cert_pair("ecdsa-p256", "ecdsa-p384", a_ca="Rogue CA")
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    rejected = net.b.audits("cert.rejected")
    assert rejected and "not a trust anchor" in rejected[0].reason
    failure = net.a.audits("auth.failure")
    assert failure and "AUTHENTICATION_FAILED" in failure[0].reason
    assert "CN=Rogue CA" in net.b.audits("auth.failure")[0].cert_issuer


class RevocationUnavailableValidator(TrustAnchorValidator):
    """A validator whose revocation source could not be reached (as ikeguard.pki reports it)."""

    def validate(self, chain, identity, connection, now):  # type: ignore[no-untyped-def]
        self.calls += 1
        return CertVerdict(False, "revocation_unavailable: CRL at http://192.0.2.9/ca.crl unreachable")


def test_unreachable_revocation_is_refused_as_revocation_failed() -> None:
    c = child(proposals=("aes256gcm16-ecp384",))
    a = cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p256", children=(c,))
    b = cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p384", children=(mirror(c),))
    net = pair([a], [b], validator=RevocationUnavailableValidator([]))
    net.now = T0
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    failed = net.b.audits("revocation.failed")
    assert failed and "unreachable" in failed[0].reason
    assert net.b.audits("cert.rejected") == []


def test_identity_not_in_certificate_is_rejected() -> None:
    # a claims to be b's expected peer but its certificate names someone else
    c = child()
    key, cert = leaf("other.example.net", "ecdsa-p256")
    a = ConnectionSettings(
        "tunnel",
        ike("aes256gcm16-prfsha384-ecp384"),
        LocalAuth(AuthKind.PUBKEY, "a.example.net", private_key=key, certs=(cert,)),
        RemoteAuth(AuthKind.PUBKEY, "b.example.net"),
        (c,),
    )
    b = cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p384", children=(mirror(c),))
    net = pair([a], [b], validator=TrustAnchorValidator([ca()[1]]))
    net.now = T0
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas() == []
    assert "not in subjectAltName" in net.b.audits("cert.rejected")[0].reason


def test_responder_selects_connection_by_identity_precedence() -> None:
    c = child()
    a = cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p256", children=(c,))
    key, cert = leaf("b.example.net", "ecdsa-p384")
    local = LocalAuth(AuthKind.PUBKEY, "b.example.net", private_key=key, certs=(cert,))
    ikep = ike("aes256gcm16-prfsha384-ecp384")
    other = child("other", local_ts=("10.9.0.0/24",), remote_ts=("10.1.0.0/24",))
    conns = [
        ConnectionSettings("any", ikep, local, RemoteAuth(AuthKind.PUBKEY, None), (other,)),
        ConnectionSettings("pattern", ikep, local, RemoteAuth(AuthKind.PUBKEY, "*.example.net"), (other,)),
        ConnectionSettings("exact", ikep, local, RemoteAuth(AuthKind.PUBKEY, "a.example.net"), (mirror(c),)),
    ]
    net = pair([a], conns, validator=TrustAnchorValidator([ca()[1]]))
    net.now = T0
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas()[0].name == "exact"


def test_rsa_pkcs1v15_peer_is_accepted() -> None:
    from dataclasses import replace

    net, _ = cert_pair("rsa", "ecdsa-p384")
    conn = net.a.manager.ctx.connections["tunnel"]
    net.a.manager.ctx.connections["tunnel"] = replace(conn, local=replace(conn.local, rsa_pss=False))
    net.initiate()
    net.run()
    assert net.b.manager.ike_sas()[0].state is IkeState.ESTABLISHED


def test_responder_certreq_in_ike_sa_init_names_trust_anchors() -> None:
    from ikeguard.wire.payloads import CertReqPayload

    net, validator = cert_pair("ecdsa-p256", "ecdsa-p384")
    net.initiate()
    net.run()
    (anchor_hash,) = validator.certreq_authorities(None)
    init_response = next(e for e in net.b.events if type(e).__name__ == "SendDatagram")
    from ikeguard.wire.message import parse_message

    certreqs = [p for p in parse_message(init_response.data).payloads if isinstance(p, CertReqPayload)]
    assert [c.authorities for c in certreqs] == [(anchor_hash,)]
