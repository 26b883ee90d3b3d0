"""Revocation: local CRL files, CRLs and OCSP over a real HTTP server on 127.0.0.1, modes, caches."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ikeguard.pki import (
    ReasonCode,
    RevocationChecker,
    RevocationMode,
    RevocationState,
    UrllibFetcher,
    ValidationPolicy,
    validate_chain,
)
from tests.pki.certs import NOW, OCSP_SIGNING, Issued, issue, make_crl, make_key, make_ocsp_response
from tests.pki.conftest import RevocationServer

FAST = UrllibFetcher(timeout=2.0)


def _pki(crl_uris=(), ocsp_uris=()):
    root = issue("CN=Rev Root", key=make_key("ec256", 60), ca=True)
    inter = issue(
        "CN=Rev Inter", root, key=make_key("ec256", 61), ca=True, crl_uris=crl_uris, ocsp_uris=ocsp_uris
    )
    leaf = issue("CN=merchant", inter, dns=["merchant.example.net"], crl_uris=crl_uris, ocsp_uris=ocsp_uris)
    return root, inter, leaf


def _validate(leaf: Issued, inter: Issued, root: Issued, checker, mode=RevocationMode.STRICT, now=NOW):
    return validate_chain(
        leaf.cert,
        [inter.cert],
        [root.cert],
        now=now,
        policy=ValidationPolicy(revocation=mode),
        revocation=checker,
    )


def _write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    path.write_bytes(crl.public_bytes(Encoding.PEM))


def test_local_crl_file_revoked_and_good(tmp_path: Path) -> None:
    root, inter, leaf = _pki()
    inter_crl, root_crl = tmp_path / "inter.crl", tmp_path / "root.crl"
    _write_crl(inter_crl, make_crl(inter, [leaf.cert.serial_number]))
    _write_crl(root_crl, make_crl(root))
    checker = RevocationChecker(crl_files=[inter_crl, root_crl])
    result = _validate(leaf, inter, root, checker)
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED
    assert "inter.crl" in result.failure.message
    assert result.failure.audit_event == "cert.rejected"
    other = issue("CN=other", inter, dns=["other.example.net"])
    assert _validate(other, inter, root, checker).ok


def test_changed_crl_file_is_reread(tmp_path: Path) -> None:
    _root, inter, leaf = _pki()
    path = tmp_path / "inter.crl"
    _write_crl(path, make_crl(inter))
    checker = RevocationChecker(crl_files=[path, tmp_path / "missing.crl"])
    good = checker.status(leaf.cert, inter.cert, now=NOW)
    assert good.state is RevocationState.GOOD
    _write_crl(path, make_crl(inter, [leaf.cert.serial_number]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert checker.status(leaf.cert, inter.cert, now=NOW).state is RevocationState.REVOKED


def test_stale_or_forged_crl_file_is_not_evidence(tmp_path: Path) -> None:
    root, inter, leaf = _pki()
    stale, forged = tmp_path / "stale.crl", tmp_path / "forged.crl"
    _write_crl(
        stale, make_crl(inter, this_update=NOW - timedelta(days=3), next_update=NOW - timedelta(days=1))
    )
    _write_crl(forged, make_crl(inter, signing_key=make_key("ec256", 98)))
    for path, why in ((stale, "expired"), (forged, "signature")):
        checker = RevocationChecker(crl_files=[path])
        status = checker.status(leaf.cert, inter.cert, now=NOW)
        assert status.state is RevocationState.UNKNOWN and why in status.detail
        assert not status.uri_failed
        strict = _validate(leaf, inter, root, checker)
        assert strict.failure is not None and strict.failure.reason is ReasonCode.REVOCATION_UNAVAILABLE
        assert _validate(leaf, inter, root, checker, RevocationMode.IFURI).ok  # no URI: ifuri passes
        assert _validate(leaf, inter, root, checker, RevocationMode.RELAXED).ok


def test_crl_distribution_point_over_http_and_cache(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki(crl_uris=[revocation_server.url("/ca.crl")])
    del root
    revocation_server.get_routes["/ca.crl"] = make_crl(
        inter, [leaf.cert.serial_number], next_update=NOW + timedelta(hours=2)
    ).public_bytes(Encoding.DER)
    checker = RevocationChecker(fetcher=FAST)
    assert checker.status(leaf.cert, inter.cert, now=NOW).state is RevocationState.REVOKED
    assert revocation_server.hits["/ca.crl"] == 1
    # cached until nextUpdate: no new fetch, even when the server's CRL changed
    revocation_server.get_routes["/ca.crl"] = make_crl(
        inter, next_update=NOW + timedelta(days=1)
    ).public_bytes(Encoding.DER)
    assert (
        checker.status(leaf.cert, inter.cert, now=NOW + timedelta(hours=1)).state is RevocationState.REVOKED
    )
    assert revocation_server.hits["/ca.crl"] == 1
    # after nextUpdate it is fetched again
    later = NOW + timedelta(hours=3)
    assert checker.status(leaf.cert, inter.cert, now=later).state is RevocationState.GOOD
    assert revocation_server.hits["/ca.crl"] == 2


def test_ocsp_good_revoked_and_cache(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki(ocsp_uris=[revocation_server.url("/ocsp")])
    revoked_serials: set[int] = set()
    issuers = {leaf.cert.serial_number: inter, inter.cert.serial_number: root}

    def responder(body: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(body)
        cert = leaf.cert if request.serial_number == leaf.cert.serial_number else inter.cert
        return make_ocsp_response(
            cert, issuers[request.serial_number], revoked=request.serial_number in revoked_serials
        )

    revocation_server.post_routes["/ocsp"] = responder
    checker = RevocationChecker(fetcher=FAST)
    result = _validate(leaf, inter, root, checker)
    assert result.ok, result.failure
    assert revocation_server.hits["/ocsp"] == 2  # leaf and intermediate
    assert _validate(leaf, inter, root, checker, now=NOW + timedelta(minutes=30)).ok
    assert revocation_server.hits["/ocsp"] == 2  # cached until nextUpdate (1 h)
    revoked_serials.add(leaf.cert.serial_number)
    fresh = RevocationChecker(fetcher=FAST)
    result = _validate(leaf, inter, root, fresh)
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED
    assert "OCSP" in result.failure.message


def test_ocsp_delegated_responder_and_forged_response(revocation_server: RevocationServer) -> None:
    _root, inter, leaf = _pki(ocsp_uris=[revocation_server.url("/ocsp")])
    delegate = issue("CN=OCSP Responder", inter, key=make_key("ec256", 62), ekus=[OCSP_SIGNING])
    not_delegated = issue("CN=Not a responder", inter, key=make_key("ec256", 63))
    responder_of = {"/ocsp": delegate}
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(
        leaf.cert, inter, responder=responder_of["/ocsp"]
    )
    checker = RevocationChecker(fetcher=FAST)
    assert checker.status(leaf.cert, inter.cert, now=NOW).state is RevocationState.GOOD
    responder_of["/ocsp"] = not_delegated
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "OCSPSigning" in status.detail and status.uri_failed
    genuine = make_ocsp_response(leaf.cert, inter)
    forged = genuine[:-1] + bytes([genuine[-1] ^ 0x01])  # the signature is the last field
    revocation_server.post_routes["/ocsp"] = lambda body: forged
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "signature" in status.detail


def test_ocsp_falls_back_to_crl_uri(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki(
        crl_uris=[revocation_server.url("/ca.crl")], ocsp_uris=[revocation_server.url("/gone")]
    )
    del root
    revocation_server.get_routes["/ca.crl"] = make_crl(inter, [leaf.cert.serial_number]).public_bytes(
        Encoding.DER
    )
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.REVOKED and "/ca.crl" in status.source
    assert revocation_server.hits["/gone"] == 1


def test_modes_when_uri_unreachable(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki(crl_uris=[revocation_server.url("/missing.crl")])
    checker = RevocationChecker(fetcher=FAST, failure_backoff=timedelta(seconds=30))
    for mode in (RevocationMode.STRICT, RevocationMode.IFURI):
        result = _validate(leaf, inter, root, checker, mode)
        assert result.failure is not None and result.failure.reason is ReasonCode.REVOCATION_UNAVAILABLE
        assert result.failure.audit_event == "revocation.failed"
        assert "/missing.crl" in result.failure.message
    relaxed = _validate(leaf, inter, root, checker, RevocationMode.RELAXED)
    assert relaxed.ok and any("unknown" in note for note in relaxed.notes)
    # the failed URI is retried only after the backoff
    assert revocation_server.hits["/missing.crl"] == 1
    _validate(leaf, inter, root, checker, now=NOW + timedelta(seconds=31))
    assert revocation_server.hits["/missing.crl"] == 2


def test_configured_authority_uris_are_used(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki()
    revocation_server.get_routes["/auth.crl"] = make_crl(inter, [leaf.cert.serial_number]).public_bytes(
        Encoding.PEM
    )
    revocation_server.get_routes["/root.crl"] = make_crl(root).public_bytes(Encoding.DER)
    checker = RevocationChecker(
        fetcher=FAST, crl_uris=[revocation_server.url("/auth.crl"), revocation_server.url("/root.crl")]
    )
    result = _validate(leaf, inter, root, checker)
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED


def test_crl_from_other_ca_does_not_decide(tmp_path: Path) -> None:
    root, inter, leaf = _pki()
    stranger = issue("CN=Rev Inter", key=make_key("ec256", 64), ca=True)  # same name, other key
    path = tmp_path / "x.crl"
    _write_crl(path, make_crl(stranger, [leaf.cert.serial_number]))
    status = RevocationChecker(crl_files=[path]).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN
    assert _validate(leaf, inter, root, RevocationChecker(crl_files=[path]), RevocationMode.RELAXED).ok


def test_fetcher_refuses_non_http_schemes() -> None:
    import pytest

    from ikeguard.pki import FetchError

    with pytest.raises(FetchError, match="only http"):
        FAST.fetch("file:///etc/passwd")
    with pytest.raises(FetchError, match="ldap"):
        FAST.fetch("ldap://ldap.example.net/cn=CA")


def test_ed25519_issuer_crl_and_ocsp(revocation_server: RevocationServer, tmp_path: Path) -> None:
    root = issue("CN=Ed Root", key=make_key("ed25519", 1), ca=True)
    inter = issue("CN=Ed Inter", root, key=make_key("ed25519", 2), ca=True)
    leaf = issue("CN=ed", inter, key=make_key("ed25519", 3), ocsp_uris=[revocation_server.url("/ocsp")])
    root_crl = tmp_path / "root.crl"
    _write_crl(root_crl, make_crl(root))
    revoked = {"leaf": False}
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(
        leaf.cert, inter, revoked=revoked["leaf"]
    )
    assert _validate(leaf, inter, root, RevocationChecker(crl_files=[root_crl], fetcher=FAST)).ok
    revoked["leaf"] = True
    result = _validate(leaf, inter, root, RevocationChecker(crl_files=[root_crl], fetcher=FAST))
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED
    revoked["leaf"] = False
    _write_crl(root_crl, make_crl(root, [inter.cert.serial_number]))
    result = _validate(leaf, inter, root, RevocationChecker(crl_files=[root_crl], fetcher=FAST))
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED
    assert "Ed Inter" in result.failure.message


def test_crl_not_yet_valid_and_issuer_without_crl_sign(tmp_path: Path) -> None:
    root, inter, leaf = _pki()
    future = tmp_path / "future.crl"
    _write_crl(
        future, make_crl(inter, this_update=NOW + timedelta(hours=1), next_update=NOW + timedelta(days=2))
    )
    status = RevocationChecker(crl_files=[future]).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "not valid before" in status.detail
    sign_only = x509.KeyUsage(False, False, False, False, False, True, False, False, False)
    no_crl_sign = issue("CN=Rev Inter", root, key=make_key("ec256", 61), ca=True, key_usage=sign_only)
    path = tmp_path / "inter.crl"
    _write_crl(path, make_crl(inter, [leaf.cert.serial_number]))
    status = RevocationChecker(crl_files=[path]).status(leaf.cert, no_crl_sign.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "cRLSign" in status.detail


def test_stale_ocsp_answer_is_not_evidence(revocation_server: RevocationServer) -> None:
    root, inter, leaf = _pki(ocsp_uris=[revocation_server.url("/ocsp")])
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(
        leaf.cert, inter, this_update=NOW - timedelta(days=2), next_update=NOW - timedelta(days=1)
    )
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "expired" in status.detail and status.uri_failed
    result = _validate(leaf, inter, root, RevocationChecker(fetcher=FAST), RevocationMode.IFURI)
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOCATION_UNAVAILABLE


def test_answers_stamped_a_little_ahead_of_our_clock_are_used(revocation_server: RevocationServer,
                                                              tmp_path: Path) -> None:
    """An OCSP answer made during our request is stamped after the time we validate at, and an issuer's
    clock may run ahead: thisUpdate up to 5 minutes ahead is accepted (OpenSSL's default), an hour is not
    (test_crl_not_yet_valid_...), and nextUpdate is never stretched (test_stale_ocsp_answer_...). The
    `pki ocsp-serve` interop test failed once in CI on exactly this: a response stamped 1 s after `now`."""
    _root, inter, leaf = _pki(ocsp_uris=[revocation_server.url("/ocsp")])
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(
        leaf.cert, inter, this_update=NOW + timedelta(seconds=1), next_update=NOW + timedelta(days=1))
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.GOOD, status.detail
    revocation_server.post_routes["/ocsp"] = lambda body: make_ocsp_response(
        leaf.cert, inter, this_update=NOW + timedelta(minutes=6), next_update=NOW + timedelta(days=1))
    status = RevocationChecker(fetcher=FAST).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.UNKNOWN and "future" in status.detail
    ahead = tmp_path / "ahead.crl"
    _write_crl(ahead, make_crl(inter, this_update=NOW + timedelta(seconds=30),
                               next_update=NOW + timedelta(days=2)))
    status = RevocationChecker(crl_files=[ahead]).status(leaf.cert, inter.cert, now=NOW)
    assert status.state is RevocationState.GOOD, status.detail
