"""Authorities from configuration: anchor bundles, load errors, per-authority CRL URIs not leaking."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ikeguard.pki import (
    AuthoritySpec,
    ReasonCode,
    RevocationMode,
    UrllibFetcher,
    ValidationPolicy,
    build_trust,
    validate_chain,
)
from ikeguard.pki.loading import PkiLoadError
from tests.pki.certs import NOW, issue, make_crl, make_key
from tests.pki.conftest import RevocationServer


def test_two_authorities_crl_uri_applies_only_to_its_own(
    tmp_path: Path, revocation_server: RevocationServer
) -> None:
    root_a = issue("CN=Authority A", key=make_key("ec256", 80), ca=True)
    old_b = issue("CN=Authority B", key=make_key("ec384", 81), ca=True)
    new_b = issue("CN=Authority B", key=make_key("ec384", 82), ca=True)
    (tmp_path / "a.pem").write_bytes(root_a.cert.public_bytes(Encoding.PEM))
    (tmp_path / "b.pem").write_bytes(
        old_b.cert.public_bytes(Encoding.PEM) + new_b.cert.public_bytes(Encoding.PEM)
    )
    leaf_a = issue("CN=a", root_a, dns=["a.example.net"])
    leaf_b = issue("CN=b", new_b, dns=["b.example.net"])
    revocation_server.get_routes["/a.crl"] = make_crl(root_a, [leaf_a.cert.serial_number]).public_bytes(
        Encoding.DER
    )
    trust = build_trust(
        [
            AuthoritySpec("a", tmp_path / "a.pem", crl_uris=(revocation_server.url("/a.crl"),)),
            AuthoritySpec("b", tmp_path / "b.pem"),
        ],
        fetcher=UrllibFetcher(timeout=2.0),
    )
    assert len(trust.anchors) == 3
    policy = ValidationPolicy(revocation=RevocationMode.IFURI)

    def run(leaf):
        return validate_chain(
            leaf.cert, [], trust.anchors, now=NOW, policy=policy, revocation=trust.revocation, identity=None
        )

    result_a = run(leaf_a)
    assert result_a.failure is not None and result_a.failure.reason is ReasonCode.REVOKED
    result_b = run(leaf_b)  # A's CRL is fetched but does not apply to B's certificates: not a failure
    assert result_b.ok, result_b.failure
    assert result_b.path[-1] == new_b.cert


def test_unloadable_authority_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(PkiLoadError, match="authority corp"):
        build_trust([AuthoritySpec("corp", tmp_path / "broken.pem")], fetcher=None)
    with pytest.raises(PkiLoadError, match=r"missing\.pem"):
        build_trust([AuthoritySpec("corp", tmp_path / "missing.pem")], fetcher=None)
