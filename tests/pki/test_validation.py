"""Path validation: every RFC 5280 / RFC 4945 edge case, positive and negative, with real certificates."""

from __future__ import annotations

import ipaddress
import random
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ikeguard.pki import (
    NoRevocation,
    ReasonCode,
    RevocationMode,
    ValidationPolicy,
    validate_chain,
)
from ikeguard.pki.validation_policy import RFC4945_LEAF_EKUS, TLS_LEAF_EKUS, EkuMode
from tests.pki.certs import (
    IPSEC_IKE,
    NOW,
    SERVER_AUTH,
    dn,
    issue,
    make_key,
    standard_pki,
)

POLICY = ValidationPolicy()


def check(leaf, intermediates, anchors, policy=POLICY, now=NOW, identity=None):
    return validate_chain(
        leaf, intermediates, anchors, now=now, policy=policy, revocation=NoRevocation(), identity=identity
    )


@pytest.mark.parametrize(
    ("kind", "pss"),
    [("ec256", False), ("ec384", False), ("rsa3072", False), ("rsa2048", True), ("ed25519", False)],
)
def test_valid_chain_for_each_key_type(kind: str, pss: bool) -> None:
    pki = standard_pki(kind, pss=pss)
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.ok, result.failure
    assert result.path == (pki.leaf.cert, pki.intermediate.cert, pki.root.cert)
    assert result.failure is None


def test_intermediates_unordered_with_junk_from_cert_payloads() -> None:
    pki = standard_pki()
    other = standard_pki("ec384")
    junk = [other.leaf.cert, other.intermediate.cert, other.root.cert, pki.root.cert]
    payloads = [*junk, pki.intermediate.cert]
    random.Random(7).shuffle(payloads)
    result = check(pki.leaf.cert, payloads, [other.root.cert, pki.root.cert])
    assert result.ok, result.failure
    assert result.path[-1] == pki.root.cert


def test_two_anchors_with_same_name_ca_rollover() -> None:
    old_root = issue("CN=Rollover Root", key=make_key("ec256", 10), ca=True)
    new_root = issue("CN=Rollover Root", key=make_key("ec256", 11), ca=True)
    old_leaf = issue("CN=a", old_root, dns=["a.example.net"])
    new_leaf = issue("CN=b", new_root, dns=["b.example.net"])
    for leaf, root in ((old_leaf, old_root), (new_leaf, new_root)):
        result = check(leaf.cert, [], [old_root.cert, new_root.cert])
        assert result.ok, result.failure
        assert result.path[-1] == root.cert
    assert not check(new_leaf.cert, [], [old_root.cert]).ok


def test_missing_intermediate_is_unknown_issuer() -> None:
    pki = standard_pki()
    result = check(pki.leaf.cert, [], [pki.root.cert])
    assert result.failure is not None
    assert result.failure.reason is ReasonCode.UNKNOWN_ISSUER
    assert "Test Intermediate" in result.failure.message
    assert result.failure.audit_event == "cert.rejected"


def test_wrong_issuer_untrusted_root() -> None:
    pki, other = standard_pki(), standard_pki("ec384")
    result = check(pki.leaf.cert, [pki.intermediate.cert], [other.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.UNKNOWN_ISSUER


def test_bad_signature() -> None:
    pki = standard_pki()
    forged = issue("CN=forged", pki.intermediate, signing_key=make_key("ec256", 99), dns=["gw.example.net"])
    result = check(forged.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.BAD_SIGNATURE
    assert "CN=forged" in result.failure.message
    assert check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert]).ok


@pytest.mark.parametrize("which", ["leaf", "intermediate", "root"])
def test_expired_and_not_yet_valid(which: str) -> None:
    pki = standard_pki()
    cert = getattr(pki, which).cert
    late = cert.not_valid_after_utc + timedelta(seconds=1)
    early = cert.not_valid_before_utc - timedelta(seconds=1)
    expired = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], now=late)
    assert expired.failure is not None and expired.failure.reason is ReasonCode.EXPIRED
    premature = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], now=early)
    assert premature.failure is not None and premature.failure.reason is ReasonCode.NOT_YET_VALID
    assert check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], now=cert.not_valid_after_utc).ok


def test_expired_leaf_message_names_subject_and_serial() -> None:
    pki = standard_pki(not_after=NOW - timedelta(days=1))
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.EXPIRED
    assert f"{pki.leaf.cert.serial_number:x}" in result.failure.message
    assert result.failure.subject == pki.leaf.cert.subject.rfc4514_string()


def test_clock_skew_tolerance() -> None:
    pki = standard_pki(not_before=NOW + timedelta(seconds=30))
    assert check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert]).failure.reason is (
        ReasonCode.NOT_YET_VALID
    )
    skewed = ValidationPolicy(clock_skew=timedelta(minutes=1))
    assert check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], policy=skewed).ok


def test_leaf_key_usage_without_digital_signature() -> None:
    only_encipher = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    pki = standard_pki(key_usage=only_encipher)
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.KEY_USAGE
    non_repudiation = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
    assert check(
        standard_pki(key_usage=non_repudiation).leaf.cert, [pki.intermediate.cert], [pki.root.cert]
    ).ok
    assert check(standard_pki(key_usage=None).leaf.cert, [pki.intermediate.cert], [pki.root.cert]).ok


def test_ca_without_key_cert_sign() -> None:
    root = issue("CN=KU Root", key=make_key("ec256", 20), ca=True)
    no_sign = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    inter = issue("CN=KU Inter", root, key=make_key("ec256", 21), ca=True, key_usage=no_sign)
    leaf = issue("CN=leaf", inter)
    result = check(leaf.cert, [inter.cert], [root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.KEY_USAGE
    assert "keyCertSign" in result.failure.message


def test_end_entity_cannot_issue() -> None:
    pki = standard_pki()
    sub = issue("CN=sub", pki.leaf, dns=["sub.example.net"])
    result = check(sub.cert, [pki.leaf.cert, pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.NOT_A_CA
    no_bc = issue("CN=NoBC", pki.root, key=make_key("ec256", 22), basic_constraints=False)
    leaf = issue("CN=leaf2", no_bc)
    result = check(leaf.cert, [no_bc.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.NOT_A_CA


def test_path_length_constraint() -> None:
    root = issue("CN=PL Root", key=make_key("ec256", 30), ca=True)
    inter = issue("CN=PL Inter", root, key=make_key("ec256", 31), ca=True, path_length=0)
    sub = issue("CN=PL Sub", inter, key=make_key("ec256", 32), ca=True)
    leaf = issue("CN=leaf", sub)
    result = check(leaf.cert, [sub.cert, inter.cert], [root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.PATH_LENGTH
    assert "PL Sub" in result.failure.message
    # pathLen 0 still allows end-entity certificates directly below
    assert check(issue("CN=direct", inter).cert, [inter.cert], [root.cert]).ok
    # pathLen 1 allows the sub-CA
    inter1 = issue("CN=PL Inter", root, key=make_key("ec256", 31), ca=True, path_length=1)
    assert check(leaf.cert, [sub.cert, inter1.cert], [root.cert]).ok
    # the anchor's own pathLenConstraint applies too
    root0 = issue("CN=PL Root", key=make_key("ec256", 30), ca=True, path_length=0)
    assert check(leaf.cert, [sub.cert, inter1.cert], [root0.cert]).failure.reason is ReasonCode.PATH_LENGTH


def test_unknown_critical_extension() -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    pki = standard_pki(extra=[(unknown, True)])
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.UNKNOWN_CRITICAL_EXTENSION
    assert "1.3.6.1.4.1.55555.1" in result.failure.message
    assert check(
        standard_pki(extra=[(unknown, False)]).leaf.cert, [pki.intermediate.cert], [pki.root.cert]
    ).ok


CLIENT_AUTH = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
CODE_SIGNING = x509.oid.ExtendedKeyUsageOID.CODE_SIGNING
ANY_EKU = x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
IKE_INTERMEDIATE = x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")
STRICT = ValidationPolicy(eku=EkuMode.STRICT)


@pytest.mark.parametrize(
    ("ekus", "critical", "relaxed_ok", "strict_ok"),
    [
        (None, False, True, True),  # no EKU: RFC 4945 §5.1.3.12 "continue"
        ([IPSEC_IKE], False, True, True),
        ([IPSEC_IKE], True, True, True),
        ([ANY_EKU], False, True, True),
        ([IKE_INTERMEDIATE], False, True, True),
        ([SERVER_AUTH, CODE_SIGNING, IPSEC_IKE], True, True, True),
        ([SERVER_AUTH, CLIENT_AUTH], False, True, False),  # pki --flag serverAuth --flag clientAuth
        ([SERVER_AUTH], False, True, False),  # Windows gateway template
        ([CLIENT_AUTH], False, True, False),
        ([SERVER_AUTH, CLIENT_AUTH], True, False, False),  # critical: restricted to TLS
        ([CODE_SIGNING], False, False, False),  # advisory, but no purpose that fits IKE
        ([CODE_SIGNING], True, False, False),
    ],
)
def test_eku_rules_rfc4945(ekus, critical, relaxed_ok, strict_ok) -> None:
    pki = standard_pki(ekus=ekus, eku_critical=critical)
    chain = ([pki.intermediate.cert], [pki.root.cert])
    for policy, expected in ((POLICY, relaxed_ok), (STRICT, strict_ok)):
        result = check(pki.leaf.cert, *chain, policy=policy)
        assert result.ok is expected, (policy.eku, result.failure)
        if not expected:
            assert result.failure is not None and result.failure.reason is ReasonCode.EKU
            assert "RFC 4945 §5.1.3.12" in result.failure.message


def test_eku_refusal_names_the_purposes_and_the_reason() -> None:
    pki = standard_pki(ekus=[SERVER_AUTH, CLIENT_AUTH], eku_critical=True)
    failure = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert]).failure
    assert failure is not None
    assert ("critical extendedKeyUsage [clientAuth, serverAuth] has neither ipsecIKE nor "
            "anyExtendedKeyUsage") in failure.message
    strict = standard_pki(ekus=[SERVER_AUTH, CLIENT_AUTH])
    failure = check(strict.leaf.cert, [pki.intermediate.cert], [pki.root.cert], policy=STRICT).failure
    assert failure is not None and 'remote.eku = "strict"' in failure.message
    assert "non-critical extendedKeyUsage [clientAuth, serverAuth]" in failure.message


def test_eku_sets_kept_for_callers() -> None:
    assert IPSEC_IKE.dotted_string in RFC4945_LEAF_EKUS and SERVER_AUTH.dotted_string in TLS_LEAF_EKUS


def test_cert_policy_by_eku_or_certificate_policy() -> None:
    oid = "1.3.6.1.4.1.55555.7.1"
    root = issue("CN=CP Root", key=make_key("ec256", 40), ca=True)
    inter = issue("CN=CP Inter", root, key=make_key("ec256", 41), ca=True, policies=["2.5.29.32.0"])
    with_policy = issue("CN=a", inter, policies=[oid])
    without = issue("CN=b", inter, policies=["1.3.6.1.4.1.55555.7.2"])
    policy = ValidationPolicy(required_oids=(oid,))
    assert check(with_policy.cert, [inter.cert], [root.cert], policy=policy).ok
    result = check(without.cert, [inter.cert], [root.cert], policy=policy)
    assert result.failure is not None and result.failure.reason is ReasonCode.POLICY
    # an intermediate without certificatePolicies makes no policy valid below it (RFC 5280 §6.1.3 (e))
    bare = issue("CN=CP Inter", root, key=make_key("ec256", 41), ca=True)
    assert (
        check(with_policy.cert, [bare.cert], [root.cert], policy=policy).failure.reason is ReasonCode.POLICY
    )
    # ipsecIKE required as cert_policy: satisfied by the EKU
    ike = ValidationPolicy(required_oids=(IPSEC_IKE.dotted_string,))
    assert check(issue("CN=c", inter, ekus=[IPSEC_IKE]).cert, [inter.cert], [root.cert], policy=ike).ok
    assert check(issue("CN=d", inter).cert, [inter.cert], [root.cert], policy=ike).failure.reason is (
        ReasonCode.POLICY
    )


def test_signature_algorithm_forbidden_by_profile() -> None:
    pki = standard_pki()
    weak_leaf = issue("CN=sha224", pki.intermediate, digest=hashes.SHA224())
    result = check(weak_leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN
    assert "sha224" in result.failure.message
    legacy = ValidationPolicy(signature_hashes=frozenset({"sha224", "sha256"}))
    assert check(weak_leaf.cert, [pki.intermediate.cert], [pki.root.cert], policy=legacy).ok
    no_ed = ValidationPolicy(key_types=frozenset({"rsa", "ecdsa"}))
    ed = standard_pki("ed25519")
    result = check(ed.leaf.cert, [ed.intermediate.cert], [ed.root.cert], policy=no_ed)
    assert result.failure is not None and result.failure.reason is ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN


def test_rsa_pss_only_profile() -> None:
    pss_only = ValidationPolicy(rsa_pss_only=True)
    pss = standard_pki("rsa2048", pss=True)
    pkcs1 = standard_pki("rsa2048")
    assert check(pss.leaf.cert, [pss.intermediate.cert], [pss.root.cert], policy=pss_only).ok
    result = check(pkcs1.leaf.cert, [pkcs1.intermediate.cert], [pkcs1.root.cert], policy=pss_only)
    assert result.failure is not None and result.failure.reason is ReasonCode.SIGNATURE_ALGORITHM_FORBIDDEN


def test_key_too_small() -> None:
    pki = standard_pki()
    small_rsa = issue("CN=small", pki.intermediate, key=make_key("rsa1024"))
    result = check(small_rsa.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.KEY_TOO_SMALL
    assert "1024" in result.failure.message
    small_ec = issue("CN=small-ec", pki.intermediate, key=make_key("ec224"))
    assert check(small_ec.cert, [pki.intermediate.cert], [pki.root.cert]).failure.reason is (
        ReasonCode.KEY_TOO_SMALL
    )
    strict = ValidationPolicy(min_rsa_bits=3072, min_ec_bits=384)
    assert check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], policy=strict).failure.reason is (
        ReasonCode.KEY_TOO_SMALL
    )
    big = standard_pki("ec384")
    assert check(big.leaf.cert, [big.intermediate.cert], [big.root.cert], policy=strict).ok


def test_name_mismatch() -> None:
    pki = standard_pki(dns=["gw.example.net"])
    chain = ([pki.intermediate.cert], [pki.root.cert])
    assert check(pki.leaf.cert, *chain, identity="gw.example.net").ok
    assert check(pki.leaf.cert, *chain, identity="O=ikeguard, CN=gw.example.net").ok
    result = check(pki.leaf.cert, *chain, identity="other.example.net")
    assert result.failure is not None and result.failure.reason is ReasonCode.NAME_MISMATCH
    assert "other.example.net" in result.failure.message


def test_name_constraints() -> None:
    root = issue("CN=NC Root", key=make_key("ec256", 50), ca=True)
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("merchants.example.net")],
        excluded_subtrees=[x509.DNSName("bad.merchants.example.net")],
    )
    inter = issue("CN=NC Inter", root, key=make_key("ec256", 51), ca=True, extra=[(nc, True)])
    good = issue("CN=m1", inter, dns=["m1.merchants.example.net"])
    outside = issue("CN=m2", inter, dns=["m2.elsewhere.example.net"])
    excluded = issue("CN=m3", inter, dns=["x.bad.merchants.example.net"])
    assert check(good.cert, [inter.cert], [root.cert]).ok
    for cert in (outside.cert, excluded.cert):
        result = check(cert, [inter.cert], [root.cert])
        assert result.failure is not None and result.failure.reason is ReasonCode.NAME_CONSTRAINTS


def test_trusted_end_entity_certificate_pinned_as_anchor() -> None:
    selfsigned = issue("CN=pinned", dns=["pinned.example.net"])
    result = check(selfsigned.cert, [], [selfsigned.cert])
    assert result.ok and result.path == (selfsigned.cert,)
    assert not check(selfsigned.cert, [], []).ok


def test_revocation_mode_strict_with_no_source_fails() -> None:
    pki = standard_pki()
    strict = ValidationPolicy(revocation=RevocationMode.STRICT)
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], policy=strict)
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOCATION_UNAVAILABLE
    assert result.failure.audit_event == "revocation.failed"
    relaxed = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert relaxed.ok and relaxed.notes and "relaxed" in relaxed.notes[0]


def test_name_constraints_ip_and_directory_name() -> None:
    root = issue("CN=NC2 Root", key=make_key("ec256", 52), ca=True)
    nc = x509.NameConstraints(
        permitted_subtrees=[
            x509.IPAddress(ipaddress.ip_network("198.51.100.0/24")),
            x509.DirectoryName(dn("O=Merchants")),
        ],
        excluded_subtrees=None,
    )
    inter = issue("CN=NC2 Inter, O=Merchants", root, key=make_key("ec256", 53), ca=True, extra=[(nc, True)])
    assert check(issue("CN=a, O=Merchants", inter, ips=["198.51.100.9"]).cert, [inter.cert], [root.cert]).ok
    wrong_ip = issue("CN=b, O=Merchants", inter, ips=["203.0.113.9"]).cert
    wrong_dn = issue("CN=c, O=Other", inter).cert
    for cert in (wrong_ip, wrong_dn):
        result = check(cert, [inter.cert], [root.cert])
        assert result.failure is not None and result.failure.reason is ReasonCode.NAME_CONSTRAINTS


def test_unknown_critical_extension_in_intermediate() -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x05\x00")
    root = issue("CN=UC Root", key=make_key("ec256", 54), ca=True)
    inter = issue("CN=UC Inter", root, key=make_key("ec256", 55), ca=True, extra=[(unknown, True)])
    result = check(issue("CN=leaf", inter).cert, [inter.cert], [root.cert])
    assert result.failure is not None and result.failure.reason is ReasonCode.UNKNOWN_CRITICAL_EXTENSION
    assert "UC Inter" in result.failure.message


def test_flood_of_look_alike_intermediates_stays_cheap() -> None:
    pki = standard_pki()
    fakes = [
        issue(
            "CN=Test Intermediate, O=ikeguard",
            pki.root,
            key=make_key("ec256", 200 + i),
            signing_key=make_key("ec256", 300),
        ).cert
        for i in range(40)
    ]
    result = check(pki.leaf.cert, [*fakes, pki.intermediate.cert], [pki.root.cert])
    assert not result.ok  # the genuine intermediate is beyond the 32 accepted CERT payloads
    assert check(pki.leaf.cert, [*fakes[:20], pki.intermediate.cert], [pki.root.cert]).ok


def test_expires_at_is_earliest_in_path() -> None:
    pki = standard_pki(not_after=NOW + timedelta(hours=20))
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert])
    assert result.ok and result.expires_at == pki.leaf.cert.not_valid_after_utc
    assert check(pki.leaf.cert, [], [pki.root.cert]).expires_at is None


def test_malformed_extension_is_a_typed_failure() -> None:
    garbage_san = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a"
    )
    pki = standard_pki(dns=[], extra=[(garbage_san, False)])
    result = check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], identity="gw.example.net")
    assert result.failure is not None and result.failure.reason is ReasonCode.MALFORMED
    assert result.failure.audit_event == "cert.rejected"


def test_naive_now_is_refused() -> None:
    pki = standard_pki()
    with pytest.raises(ValueError, match="timezone-aware"):
        check(pki.leaf.cert, [pki.intermediate.cert], [pki.root.cert], now=NOW.replace(tzinfo=None))


def test_require_explicit_policy_from_a_critical_policy_constraint() -> None:
    oid = "1.3.6.1.4.1.55555.7.9"
    root = issue("CN=EP Root", key=make_key("ec256", 56), ca=True)
    require = x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None)
    inter = issue(
        "CN=EP Inter", root, key=make_key("ec256", 57), ca=True, policies=[oid], extra=[(require, True)]
    )
    assert check(issue("CN=with", inter, policies=[oid]).cert, [inter.cert], [root.cert]).ok
    for leaf in (issue("CN=none", inter), issue("CN=other", inter, policies=["1.3.6.1.4.1.55555.7.10"])):
        result = check(leaf.cert, [inter.cert], [root.cert])
        assert result.failure is not None and result.failure.reason is ReasonCode.POLICY
    # without the constraint, a leaf without policies is fine when no cert_policy is configured
    plain = issue("CN=EP Inter", root, key=make_key("ec256", 57), ca=True, policies=[oid])
    assert check(issue("CN=none", inter).cert, [plain.cert], [root.cert]).ok
