"""The engine-facing validator: verdicts with reason codes, SA lifetime cap, CERTREQ authorities."""

from __future__ import annotations

from datetime import timedelta

from ikeguard.engine.validator import CertificateAuthorities, CertificateValidator, certreq_data
from ikeguard.pki import ConnectionTrust, NoRevocation, PkiValidator, RevocationMode, ValidationPolicy
from ikeguard.pki.engine_validator import spki_sha1
from tests.pki.certs import NOW, Pki, standard_pki


def _validator(mode: RevocationMode = RevocationMode.RELAXED) -> tuple[Pki, PkiValidator]:
    pki = standard_pki(not_after=NOW + timedelta(hours=12))
    trust = ConnectionTrust((pki.root.cert,), NoRevocation(), ValidationPolicy(revocation=mode))
    return pki, PkiValidator({"merchants": trust})


def test_accepts_valid_chain_and_caps_lifetime() -> None:
    pki, validator = _validator()
    typed: tuple[CertificateValidator, CertificateAuthorities] = (validator, validator)  # mypy: protocols met
    del typed
    verdict = validator.validate(
        [pki.leaf.cert, pki.intermediate.cert], "gw.example.net", "merchants", NOW.timestamp()
    )
    assert verdict.accepted, verdict.reason
    assert verdict.not_after == pki.leaf.cert.not_valid_after_utc
    assert "relaxed" in verdict.reason  # the unknown revocation status is reported, not hidden


def test_refusals_carry_the_reason_code() -> None:
    pki, validator = _validator(RevocationMode.STRICT)
    chain = [pki.leaf.cert, pki.intermediate.cert]
    assert validator.validate(chain, "gw.example.net", "merchants", NOW.timestamp()).reason.startswith(
        "revocation_unavailable: "
    )
    relaxed_pki, relaxed = _validator()
    chain = [relaxed_pki.leaf.cert, relaxed_pki.intermediate.cert]
    verdict = relaxed.validate(chain, "other.example.net", "merchants", NOW.timestamp())
    assert not verdict.accepted and verdict.reason.startswith("name_mismatch: ")
    late = (NOW + timedelta(days=1)).timestamp()
    assert relaxed.validate(chain, "gw.example.net", "merchants", late).reason.startswith("expired: ")
    assert relaxed.validate(chain[:1], "gw.example.net", "merchants", NOW.timestamp()).reason.startswith(
        "unknown_issuer: "
    )
    assert not relaxed.validate(chain, "gw.example.net", "nope", NOW.timestamp()).accepted


def test_certreq_lists_anchor_key_hashes() -> None:
    pki, validator = _validator()
    assert certreq_data(validator, "merchants") == spki_sha1(pki.root.cert)
    assert certreq_data(validator, None) == spki_sha1(pki.root.cert)
    assert certreq_data(validator, "nope") == b""
