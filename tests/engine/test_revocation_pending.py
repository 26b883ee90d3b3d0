"""Certificate validation that waits for a revocation fetch (docs/pki.md, "Revocation fetching").

The validator (the real ``PkiValidator`` with a ``DeferredFetcher``) never does network I/O: when it needs
the CRL behind a configured URI, the engine emits ``RevocationFetch``, the IKE_AUTH exchange waits (the
peer's retransmits are absorbed, not validated again) and it continues when the answer comes in as an
input. A fetch that is not answered by ``revocation_timeout`` counts as failed and the configured revocation
policy decides; an answer for an SA that is gone is ignored."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ikeguard.engine.events import RevocationFetch, SendDatagram
from ikeguard.engine.manager import IkeManager
from ikeguard.engine.settings import EngineSettings
from ikeguard.engine.states import IkeState
from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.fetch import DeferredFetcher
from ikeguard.pki.revocation import RevocationChecker
from ikeguard.pki.validation_policy import RevocationMode, ValidationPolicy
from tests.engine.harness import FAST, DeterministicRandom, Network, child, mirror
from tests.engine.pki import T0, TrustAnchorValidator, ca
from tests.engine.test_setup_certs import cert_conn

CRL_URI = "http://192.0.2.80/test-ca.crl"
SETTINGS: EngineSettings = replace(FAST, revocation_timeout=4.0)


def crl_der(*, revoked_serial: int | None = None) -> bytes:
    """A CRL of the engine tests' CA, current at T0."""
    ca_key, ca_cert = ca("Test CA")
    when = dt.datetime.fromtimestamp(T0, dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(when - dt.timedelta(hours=1))
        .next_update(when + dt.timedelta(days=1))
    )
    if revoked_serial is not None:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(revoked_serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def fetching_validator(mode: RevocationMode) -> PkiValidator:
    fetcher = DeferredFetcher()
    trust = ConnectionTrust(
        (ca("Test CA")[1],),
        RevocationChecker(crl_uris=[CRL_URI], fetcher=fetcher),
        ValidationPolicy(revocation=mode),
    )
    return PkiValidator({"tunnel": trust}, fetcher=fetcher)


def network(*, a_validator: object, b_validator: object) -> Network:
    c = child(proposals=("aes256gcm16-ecp384",))
    a = cert_conn("tunnel", "a.example.net", "b.example.net", "ecdsa-p256", children=(c,))
    b = cert_conn("tunnel", "b.example.net", "a.example.net", "ecdsa-p384", children=(mirror(c),))
    net = Network(
        IkeManager([a], SETTINGS, random=DeterministicRandom(1), validator=a_validator),  # type: ignore[arg-type]
        IkeManager([b], SETTINGS, random=DeterministicRandom(1001), validator=b_validator),  # type: ignore[arg-type]
    )
    net.now = T0
    return net


def responder_waiting(mode: RevocationMode) -> tuple[Network, RevocationFetch]:
    """a (initiator) sends IKE_AUTH; b's validation waits for the CRL."""
    net = network(a_validator=TrustAnchorValidator([ca("Test CA")[1]]), b_validator=fetching_validator(mode))
    net.initiate()
    net.run()
    fetches = [e for e in net.b.events if isinstance(e, RevocationFetch)]
    assert len(fetches) == 1 and fetches[0].request.uri == CRL_URI
    (b_sa,) = net.b.manager.ike_sas()
    assert b_sa.state is IkeState.HALF_OPEN and b_sa.pending is not None
    assert net.a.manager.ike_sas()[0].state is IkeState.AUTH_SENT  # no IKE_AUTH response yet
    return net, fetches[0]


def test_ike_auth_waits_for_the_crl_and_completes_when_it_arrives() -> None:
    net, fetch = responder_waiting(RevocationMode.STRICT)
    sent_before = sum(isinstance(e, SendDatagram) for e in net.b.events)
    net.advance(2.5)  # a retransmits its IKE_AUTH request (FAST: first after 2 s)
    assert any("while certificate validation waits for" in r for r in net.b.drops())
    assert sum(isinstance(e, RevocationFetch) for e in net.b.events) == 1  # absorbed, not validated again
    assert sum(isinstance(e, SendDatagram) for e in net.b.events) == sent_before  # nothing answered yet
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)
    net.run()
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert b_sa.pending is None and "revocation" not in b_sa.timers
    assert [e.event for e in net.b.audits() if e.event.startswith("cert.")] == ["cert.validated"]
    assert len(net.a.installs()) == len(net.b.installs()) == 2


def test_revoked_by_the_fetched_crl_is_refused() -> None:
    net, fetch = responder_waiting(RevocationMode.RELAXED)
    serial = net.a.manager.ike_sas()[0].conn.local.certs[0].serial_number  # type: ignore[union-attr]
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(revoked_serial=serial), net.now)
    net.run()
    assert net.a.manager.ike_sas() == [] and net.b.manager.ike_sas() == []
    rejected = net.b.audits("cert.rejected")
    assert rejected and rejected[0].reason.startswith("revoked")


def test_fetch_timeout_under_strict_fails_with_revocation_failed() -> None:
    net, _ = responder_waiting(RevocationMode.STRICT)
    net.advance(SETTINGS.revocation_timeout + 0.5)
    assert net.b.manager.ike_sas() == [] and net.a.manager.ike_sas() == []
    failed = net.b.audits("revocation.failed")
    assert failed and failed[0].reason.startswith("revocation_unavailable")
    assert CRL_URI in failed[0].reason and "no answer" in failed[0].reason
    assert net.b.audits("auth.failure") and net.b.audits("cert.rejected") == []
    assert net.a.audits("auth.failure")  # a got AUTHENTICATION_FAILED


def test_fetch_timeout_under_relaxed_accepts_and_the_late_answer_is_ignored() -> None:
    net, fetch = responder_waiting(RevocationMode.RELAXED)
    net.advance(SETTINGS.revocation_timeout + 0.5)
    a_sa, b_sa = net.a.manager.ike_sas()[0], net.b.manager.ike_sas()[0]
    assert a_sa.state is b_sa.state is IkeState.ESTABLISHED
    assert net.b.audits("revocation.failed") == []
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)  # too late
    net.run()
    assert b_sa.state is IkeState.ESTABLISHED and len(net.b.audits("cert.validated")) == 1


def test_second_validation_within_the_back_off_does_not_wait_again() -> None:
    """After a failed fetch the URI is in its back-off: the next peer is decided at once (relaxed)."""
    net, _ = responder_waiting(RevocationMode.RELAXED)
    net.advance(SETTINGS.revocation_timeout + 0.5)
    net.initiate()
    net.run()
    assert sum(isinstance(e, RevocationFetch) for e in net.b.events) == 1
    assert [sa.state for sa in net.b.manager.ike_sas()] == [IkeState.ESTABLISHED] * 2


def test_half_open_sa_closed_while_waiting_ignores_the_answer() -> None:
    net, fetch = responder_waiting(RevocationMode.STRICT)
    (b_sa,) = net.b.manager.ike_sas()
    net.b.manager.terminate_ike(b_sa.uniqueid, net.now, "terminated by admin")
    assert b_sa.state is IkeState.CLOSED and b_sa.pending is None
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)
    net.run()
    assert net.b.manager.ike_sas() == [] and net.b.audits("cert.validated") == []


def test_peer_deletes_while_we_validate_its_response() -> None:
    """We initiate; the responder's IKE_AUTH response waits for our CRL fetch; meanwhile the responder (for
    which the SA is up) deletes it: we answer the Delete, close, and ignore the fetch when it comes."""
    net = network(a_validator=fetching_validator(RevocationMode.STRICT),
                  b_validator=TrustAnchorValidator([ca("Test CA")[1]]))
    net.initiate()
    net.run()
    (fetch,) = [e for e in net.a.events if isinstance(e, RevocationFetch)]
    (a_sa,) = net.a.manager.ike_sas()
    (b_sa,) = net.b.manager.ike_sas()
    assert b_sa.state is IkeState.ESTABLISHED and a_sa.pending is not None
    assert "retransmit" not in a_sa.timers  # the response is in hand: nothing to retransmit
    net.b.manager.terminate_ike(b_sa.uniqueid, net.now, "terminated by admin")
    net.run()
    assert net.b.manager.ike_sas() == []  # b's Delete was answered
    assert net.a.manager.ike_sas() == [] and a_sa.state is IkeState.CLOSED
    net.a.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)
    net.run()
    assert net.a.audits("cert.validated") == [] and net.a.audits("ike.up") == []


def test_validation_with_crl_uris_runs_with_socket_poisoned() -> None:
    """The whole wait-and-continue path (PkiValidator, RevocationChecker, DeferredFetcher) with ``socket``,
    ``time`` and ``asyncio`` replaced by poison: no network I/O is reachable from the engine (issue 15)."""
    code = textwrap.dedent(
        """
        import sys, types
        import datetime, threading, subprocess, pytest, cryptography.x509, pydantic  # load before the poison
        import ikeguard.policy.loader, ikeguard.wire, ikeguard.crypto.signatures, ikeguard.crypto.sk
        class Poison(types.ModuleType):
            def __getattr__(self, name):
                raise RuntimeError(f"engine used {self.__name__}.{name}")
        for name in ("time", "socket", "asyncio", "urllib.request", "http.client"):
            sys.modules[name] = Poison(name)
        from tests.engine import test_revocation_pending as t
        t.test_ike_auth_waits_for_the_crl_and_completes_when_it_arrives()
        t.test_fetch_timeout_under_strict_fails_with_revocation_failed()
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_initiator_waits_for_the_crl_before_accepting_the_responder() -> None:
    """Our IKE_AUTH response validation waits too: no retransmission meanwhile, and the SA comes up (with
    its Child SA installed) only once the CRL says the responder's certificate is good."""
    net = network(a_validator=fetching_validator(RevocationMode.STRICT),
                  b_validator=TrustAnchorValidator([ca("Test CA")[1]]))
    net.initiate()
    net.run()
    (fetch,) = [e for e in net.a.events if isinstance(e, RevocationFetch)]
    (a_sa,) = net.a.manager.ike_sas()
    assert a_sa.state is IkeState.AUTH_SENT and net.a.installs() == []
    sent = sum(isinstance(e, SendDatagram) for e in net.a.events)
    net.advance(3.0)  # past the first retransmission time: nothing is resent, the answer is in hand
    assert sum(isinstance(e, SendDatagram) for e in net.a.events) == sent
    net.a.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, crl_der(), net.now)
    net.run()
    assert a_sa.state is IkeState.ESTABLISHED and a_sa.pending is None
    assert net.a.audits("cert.validated") and len(net.a.installs()) == 2


def test_ocsp_request_is_fetched_and_its_answer_decides() -> None:
    """An OCSP URI: the engine asks for a POST of the request (RFC 6960 Appendix A.1) and the signed answer
    (good) lets the exchange continue."""
    fetcher = DeferredFetcher()
    uri = "http://192.0.2.81/ocsp"
    trust = ConnectionTrust((ca("Test CA")[1],), RevocationChecker(ocsp_uris=[uri], fetcher=fetcher),
                            ValidationPolicy(revocation=RevocationMode.STRICT))
    net = network(a_validator=TrustAnchorValidator([ca("Test CA")[1]]),
                  b_validator=PkiValidator({"tunnel": trust}, fetcher=fetcher))
    net.initiate()
    net.run()
    (fetch,) = [e for e in net.b.events if isinstance(e, RevocationFetch)]
    assert fetch.request.uri == uri and fetch.request.data
    assert fetch.request.content_type == "application/ocsp-request"
    ca_key, ca_cert = ca("Test CA")
    leaf_cert = net.a.manager.ike_sas()[0].conn.local.certs[0]  # type: ignore[union-attr]
    when = dt.datetime.fromtimestamp(T0, dt.UTC)
    answer = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert=leaf_cert, issuer=ca_cert, algorithm=hashes.SHA1(),
                      cert_status=ocsp.OCSPCertStatus.GOOD, this_update=when - dt.timedelta(hours=1),
                      next_update=when + dt.timedelta(days=1), revocation_time=None, revocation_reason=None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
        .sign(ca_key, hashes.SHA384())
        .public_bytes(serialization.Encoding.DER)
    )
    net.b.manager.revocation_fetched(fetch.ike_uniqueid, fetch.token, answer, net.now)
    net.run()
    assert [sa.state for sa in net.b.manager.ike_sas()] == [IkeState.ESTABLISHED]
    assert net.b.audits("cert.validated")


def test_a_blocking_fetcher_cannot_reach_the_engine() -> None:
    """PkiValidator refuses revocation sources that would fetch synchronously (UrllibFetcher)."""
    from ikeguard.pki.http_fetch import UrllibFetcher  # here: the poisoned run imports this module

    blocking = RevocationChecker(crl_uris=[CRL_URI], fetcher=UrllibFetcher())
    trust = ConnectionTrust((ca("Test CA")[1],), blocking, ValidationPolicy())
    with pytest.raises(ValueError, match="must not fetch"):
        PkiValidator({"tunnel": trust})
