"""IKE identity vs certificate: SAN or subject DN only, no CN fallback, patterns, key ids (Hypothesis)."""

from __future__ import annotations

from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikeguard.pki import certificate_identities, identity_in_certificate
from ikeguard.policy.identity import parse_identity
from tests.pki.certs import issue, make_key

LABEL = st.from_regex(r"[a-z][a-z0-9]{0,9}", fullmatch=True)
FQDN = st.lists(LABEL, min_size=2, max_size=4).map(".".join)


def test_fqdn_in_san_matches_case_insensitively() -> None:
    cert = issue("CN=ignored", dns=["GW.Example.NET"]).cert
    assert identity_in_certificate("gw.example.net", cert)
    assert identity_in_certificate("@gw.example.net", cert)
    assert not identity_in_certificate("gw2.example.net", cert)


def test_no_common_name_fallback() -> None:
    cert = issue("CN=gw.example.net, O=Example").cert  # no SAN at all
    assert not identity_in_certificate("gw.example.net", cert)
    assert identity_in_certificate("CN=gw.example.net, O=Example", cert)
    assert identity_in_certificate("O=Example, CN=gw.example.net", cert)  # either RDN order
    assert identity_in_certificate("cn=GW.example.net, o=example", cert)
    assert not identity_in_certificate("CN=gw.example.net, O=Other", cert)
    assert not identity_in_certificate("CN=gw.example.net", cert)  # the whole DN, not a part of it


def test_email_ip_and_directory_name_sans() -> None:
    cert = issue(
        "CN=x", emails=["alice@Example.net"], ips=["192.0.2.7", "2001:db8::7"], dirnames=["CN=alt, O=Alt"]
    ).cert
    assert identity_in_certificate("alice@example.net", cert)
    assert not identity_in_certificate("bob@example.net", cert)
    assert identity_in_certificate("192.0.2.7", cert)
    assert identity_in_certificate("2001:db8:0::7", cert)
    assert not identity_in_certificate("192.0.2.8", cert)
    assert identity_in_certificate("CN=alt, O=Alt", cert)
    assert identity_in_certificate(parse_identity("%any"), cert)  # a configured %any: any certificate
    assert not identity_in_certificate("%any", cert)  # a peer's "%any" is a name this certificate lacks
    assert set(certificate_identities(cert)) >= {"alice@Example.net", "192.0.2.7", "2001:db8::7"}


def test_wildcard_san_is_not_honoured_but_patterns_are() -> None:
    wildcard = issue("CN=w", dns=["*.merchants.example.net"]).cert
    assert not identity_in_certificate("a.merchants.example.net", wildcard)
    cert = issue("CN=m, O=Merchants", dns=["a.merchants.example.net"]).cert
    assert identity_in_certificate(parse_identity("*.merchants.example.net"), cert)  # configured patterns
    assert not identity_in_certificate(parse_identity("*.example.net"), cert)
    assert identity_in_certificate(parse_identity("CN=*, O=Merchants"), cert)
    # the same text claimed by a peer is a literal name: no certificate proves it by matching it as a pattern
    assert not identity_in_certificate("*.merchants.example.net", cert)
    assert not identity_in_certificate("CN=*, O=Merchants", cert)
    assert not identity_in_certificate("*.merchants.example.net", wildcard)  # nor by a wildcard SAN


def test_key_id_matches_subject_key_identifier() -> None:
    key = make_key("ec256", 70)
    cert = issue("CN=k", key=key).cert
    digest = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert identity_in_certificate("@#" + digest.hex(), cert)
    assert not identity_in_certificate("@#" + bytes(20).hex(), cert)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(FQDN, min_size=1, max_size=3, unique=True), probe=FQDN)
def test_fqdn_identity_matches_exactly_the_sans(names: list[str], probe: str) -> None:
    cert = issue("CN=" + probe, dns=names).cert  # the CN never counts
    for name in names:
        assert identity_in_certificate(name, cert)
        assert identity_in_certificate(name.upper(), cert)
    assert identity_in_certificate(probe, cert) == (probe in names)


@settings(max_examples=40, deadline=None)
@given(cn=LABEL, org=LABEL, other=LABEL)
def test_dn_identity_equals_subject(cn: str, org: str, other: str) -> None:
    cert = issue(f"CN={cn}, O={org}").cert
    assert identity_in_certificate(f"CN={cn}, O={org}", cert)
    assert identity_in_certificate(f"O={org}, CN={cn}", cert)
    assert identity_in_certificate(f"CN={cn}, O={other}", cert) == (org == other)
    assert not identity_in_certificate(cn, cert)  # no CN fallback for FQDN ids
