"""RFC 4806 stapled OCSP responses (pki/ocsp_staple.py, ``PkiValidator.validate_stapled``): a stapled answer
decides like a fetched one, a bad or missing one falls back to the connection's own sources, strict stays
strict; and the service's staple fetch (service/ocsp_staple.py) against a real HTTP responder."""

from __future__ import annotations

from datetime import timedelta

from ikeguard.engine.settings import AuthKind, ConnectionSettings, LocalAuth, RemoteAuth
from ikeguard.pki import RevocationChecker, RevocationMode, UrllibFetcher, ValidationPolicy
from ikeguard.pki.engine_validator import ConnectionTrust, PkiValidator
from ikeguard.pki.fetch import DeferredFetcher, FetchNeeded
from ikeguard.pki.ocsp_staple import StapledRevocation
from ikeguard.pki.reasons import RevocationState
from ikeguard.service.ocsp_staple import fetch_staple, staple_targets
from tests.pki.certs import NOW, OCSP_SIGNING, issue, make_key, make_ocsp_response
from tests.pki.conftest import RevocationServer

UNREACHABLE = "http://127.0.0.1:9/ocsp"  # discard port: nothing answers


def _pki():
    root = issue("CN=Staple Root", key=make_key("ec256", 70), ca=True)
    leaf = issue("CN=till-4", root, dns=["till-4.example.net"], ocsp_uris=[UNREACHABLE])
    return root, leaf


def _validator(root, mode=RevocationMode.STRICT):
    fetcher = DeferredFetcher()
    trust = ConnectionTrust((root.cert,), RevocationChecker(fetcher=fetcher),
                            ValidationPolicy(revocation=mode))
    return PkiValidator({"tills": trust}, fetcher=fetcher)


def _unanswered(validator, leaf, staples):
    """validate_stapled as the engine drives it, every fetch the fallback asks for failing (unreachable)."""
    for _ in range(4):
        try:
            return validator.validate_stapled([leaf.cert], "till-4.example.net", "tills", NOW.timestamp(),
                                              staples)
        except FetchNeeded as need:
            assert need.request.uri == UNREACHABLE
            validator.answer_fetch(need.request, None)
    raise AssertionError("validation kept asking for fetches")


def test_stapled_good_and_revoked_decide_without_any_fetch() -> None:
    root, leaf = _pki()
    validator = _validator(root)
    good = make_ocsp_response(leaf.cert, root)
    verdict = validator.validate_stapled([leaf.cert], "till-4.example.net", "tills", NOW.timestamp(), [good])
    assert verdict.accepted and verdict.ocsp_stapled == "good", verdict
    revoked = make_ocsp_response(leaf.cert, root, revoked=True)
    verdict = validator.validate_stapled([leaf.cert], "till-4.example.net", "tills", NOW.timestamp(),
                                         [revoked])
    assert not verdict.accepted and verdict.reason.startswith("revoked"), verdict
    assert "stapled by the peer (RFC 4806)" in verdict.reason and verdict.ocsp_stapled == "revoked"


def test_delegated_responder_staple_and_forged_or_stale_ones_fall_back() -> None:
    root, leaf = _pki()
    delegate = issue("CN=Staple OCSP", root, key=make_key("ec256", 71), ekus=[OCSP_SIGNING])
    validator = _validator(root)
    ok = make_ocsp_response(leaf.cert, root, responder=delegate)
    verdict = validator.validate_stapled([leaf.cert], "till-4.example.net", "tills", NOW.timestamp(), [ok])
    assert verdict.accepted and verdict.ocsp_stapled == "good", verdict
    genuine = make_ocsp_response(leaf.cert, root)
    forged = genuine[:-1] + bytes([genuine[-1] ^ 0x01])  # the signature is the last field
    stale = make_ocsp_response(leaf.cert, root, this_update=NOW - timedelta(hours=3),
                               next_update=NOW - timedelta(hours=1))
    other = issue("CN=other", root, dns=["other.example.net"])
    not_ours = make_ocsp_response(other.cert, root)
    for staple, why in ((forged, "signature"), (stale, "expired"), (not_ours, "")):
        verdict = _unanswered(_validator(root), leaf, [staple])
        # strict, the certificate's own responder unreachable: the fallback cannot decide either
        assert not verdict.accepted and verdict.reason.startswith("revocation_unavailable"), verdict
        assert why in verdict.reason and why in verdict.ocsp_stapled, verdict
    verdict = _unanswered(_validator(root, RevocationMode.RELAXED), leaf, [forged])
    assert verdict.accepted and verdict.ocsp_stapled.startswith("unusable"), verdict


def test_staple_ahead_of_our_clock_within_tolerance_and_fallback_source_order() -> None:
    root, leaf = _pki()
    ahead = make_ocsp_response(leaf.cert, root, this_update=NOW + timedelta(seconds=30))
    fallback = RevocationChecker()
    stapled = StapledRevocation([ahead, b"\x30\x00"], fallback)
    status = stapled.status(leaf.cert, root.cert, now=NOW)
    assert status.state is RevocationState.GOOD and "stapled" in status.source
    assert stapled.summary() == "good"
    empty = StapledRevocation([b"junk"], fallback)
    status = empty.status(leaf.cert, root.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "malformed" in status.detail, status


def test_service_fetches_our_staple_from_the_certificates_responder(
    revocation_server: RevocationServer,
) -> None:
    root = issue("CN=Staple Root", key=make_key("ec256", 70), ca=True)
    url = revocation_server.url("/ocsp")
    ours = issue("CN=gw", root, dns=["gw.example.net"], ocsp_uris=[url])
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(ours.cert, root)
    conn = ConnectionSettings(name="tills", ike_proposals=(), children=(), ocsp="reply",
                              local=LocalAuth(AuthKind.PUBKEY, "gw.example.net", certs=(ours.cert,)),
                              remote=RemoteAuth(AuthKind.PUBKEY))
    trust = ConnectionTrust((root.cert,), RevocationChecker(), ValidationPolicy())
    (target,) = staple_targets([conn, ConnectionSettings(name="off", ike_proposals=(), children=(),
                                                         local=conn.local, remote=conn.remote)],
                               {"tills": trust})
    assert target.issuer == root.cert and target.uris == (url,)
    staple, where = fetch_staple(target, UrllibFetcher(timeout=2.0), NOW)
    assert staple is not None and staple.status == "good" and where == url
    assert staple.next_update == (NOW + timedelta(hours=1)).timestamp()
    revocation_server.post_routes["/ocsp"] = lambda body: b"not an OCSP response"
    staple, why = fetch_staple(target, UrllibFetcher(timeout=2.0), NOW)
    assert staple is None and "malformed" in why
    revocation_server.post_routes["/ocsp"] = lambda body: b"\x30" * (64 * 1024)
    staple, why = fetch_staple(target, UrllibFetcher(timeout=2.0), NOW)
    assert staple is None and "more than 16384 to staple" in why


def test_stapler_keeps_the_staple_and_retries_after_a_failure(revocation_server: RevocationServer) -> None:
    """``OcspStapler`` on an event loop: fetched in its worker thread into the engine's dict; a responder
    that fails leaves no staple and is asked again after the back-off; a removed connection drops it."""
    import asyncio
    import datetime as dt

    from ikeguard.service.ocsp_staple import OcspStapler

    now = dt.datetime.now(dt.UTC)
    root = issue("CN=Staple Root", key=make_key("ec256", 70), ca=True)
    url = revocation_server.url("/ocsp")
    ours = issue("CN=gw-live", root, dns=["gw.example.net"], ocsp_uris=[url])
    answers = [b"junk"]
    revocation_server.post_routes["/ocsp"] = lambda body: answers[-1]
    conn = ConnectionSettings(name="tills", ike_proposals=(), children=(), ocsp="both",
                              local=LocalAuth(AuthKind.PUBKEY, "gw.example.net", certs=(ours.cert,)),
                              remote=RemoteAuth(AuthKind.PUBKEY))
    trusts = {"tills": ConnectionTrust((root.cert,), RevocationChecker(), ValidationPolicy())}

    async def scenario() -> None:
        staples: dict = {}
        stapler = OcspStapler(staples, fetcher=UrllibFetcher(timeout=2.0), min_refresh=0.4)
        stapler.configure([conn], trusts)
        stapler.start()
        try:
            await asyncio.sleep(0.5)
            assert staples == {}  # junk is not stapled
            answers.append(make_ocsp_response(ours.cert, root, this_update=now - timedelta(minutes=1),
                                              next_update=now + timedelta(minutes=10)))
            for _ in range(50):
                if staples:
                    break
                await asyncio.sleep(0.1)
            assert staples["tills"].status == "good" and staples["tills"].der == answers[-1]
            stapler.configure([], trusts)
            assert staples == {}
        finally:
            await stapler.close()

    asyncio.run(scenario())
