"""OCSP in IKE (RFC 4806, engine/ocsp_stapling.py) between two engines with the real ``PkiValidator``: the
asking side's CERTREQ 14, the stapled CERT 14, no revocation fetch when the staple decides, the fallback to
the configured sources when none comes, a stapled "revoked" refusing the peer."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ikeguard.engine.context import OcspStaple
from ikeguard.engine.events import RevocationFetch
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.states import IkeState
from ikeguard.pki.validation_policy import RevocationMode
from tests.engine.harness import DeterministicRandom, Network, child, mirror
from tests.engine.pki import T0, ca
from tests.engine.test_revocation_pending import CRL_URI, SETTINGS, crl_der, fetching_validator
from tests.engine.test_setup_certs import cert_conn


def staple(cert: x509.Certificate, *, revoked: bool = False) -> OcspStaple:
    """An OCSP response of the engine tests' CA for ``cert``, current at T0."""
    ca_key, ca_cert = ca("Test CA")
    when = dt.datetime.fromtimestamp(T0, dt.UTC)
    status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
    der = (ocsp.OCSPResponseBuilder()
           .add_response(cert=cert, issuer=ca_cert, algorithm=hashes.SHA1(), cert_status=status,
                         this_update=when - dt.timedelta(minutes=5), next_update=when + dt.timedelta(hours=1),
                         revocation_time=when - dt.timedelta(days=1) if revoked else None,
                         revocation_reason=x509.ReasonFlags.key_compromise if revoked else None)
           .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
           .sign(ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER))
    return OcspStaple(der, T0 + 3600, "revoked" if revoked else "good")


def network(a_ocsp: str, b_ocsp: str, *, a_revoked: bool = False) -> Network:
    c = child(proposals=("aes256gcm16-ecp384",))
    a = replace(cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p256", children=(c,)),
                ocsp=a_ocsp)
    b = replace(cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p384", children=(mirror(c),)),
                ocsp=b_ocsp)
    net = Network(
        IkeManager([a], SETTINGS, random=DeterministicRandom(1),
                   validator=fetching_validator(RevocationMode.STRICT)),
        IkeManager([b], SETTINGS, random=DeterministicRandom(1001),
                   validator=fetching_validator(RevocationMode.STRICT)),
    )
    net.a.manager.ctx.ocsp_staples["tunnel"] = staple(a.local.certs[0], revoked=a_revoked)
    net.b.manager.ctx.ocsp_staples["tunnel"] = staple(b.local.certs[0])
    net.now = T0
    return net


def test_both_staple_and_strict_revocation_needs_no_fetch() -> None:
    net = network("both", "both")
    net.initiate()
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert not [e for e in (*net.a.events, *net.b.events) if isinstance(e, RevocationFetch)]
    for sa in (a_sa, b_sa):
        assert sa.auth_details["ocsp_received"] == "good" and sa.auth_details["ocsp_sent"] == "good"
    (validated,) = net.b.audits("cert.validated")
    assert validated.details["ocsp_received"] == "good"


def test_a_peer_that_does_not_reply_leaves_the_configured_sources_to_decide() -> None:
    net = network("never", "request")  # b (responder) asks in IKE_SA_INIT, a does not staple
    net.initiate()
    net.run()
    fetches = [e for e in net.b.events if isinstance(e, RevocationFetch)]
    assert [f.request.uri for f in fetches] == [CRL_URI]  # strict: the CRL must be fetched now
    assert net.b.manager.ike_sas()[0].state is IkeState.HALF_OPEN
    assert "ocsp_sent" not in net.a.manager.ike_sas()[0].auth_details


def test_a_stapled_revoked_answer_refuses_the_initiator() -> None:
    net = network("reply", "request", a_revoked=True)
    net.initiate()
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    (rejected,) = net.b.audits("cert.rejected")
    assert rejected.reason.startswith("revoked") and "stapled by the peer (RFC 4806)" in rejected.reason
    assert rejected.details["ocsp_received"] == "revoked"
    assert net.b.audits("auth.failure")[0].details["ocsp_received"] == "revoked"
    assert net.a.audits("auth.failure")  # AUTHENTICATION_FAILED
    assert not [e for e in net.b.events if isinstance(e, RevocationFetch)]


def test_an_expired_staple_is_not_sent() -> None:
    net = network("request", "reply")  # a asks in IKE_AUTH; b's only staple has expired
    expired = net.b.manager.ctx.ocsp_staples["tunnel"]
    net.b.manager.ctx.ocsp_staples["tunnel"] = replace(expired, next_update=T0 - 1)
    net.initiate()
    net.run()
    (fetch,) = [e for e in net.b.events if isinstance(e, RevocationFetch)]  # b did not ask: its own sources
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)
    net.run()
    assert net.b.manager.ike_sas()[0].auth_details["ocsp_sent"] == "none cached"
    assert [e.request.uri for e in net.a.events if isinstance(e, RevocationFetch)] == [CRL_URI]
