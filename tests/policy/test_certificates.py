"""Certificates and CRLs named by the config: with a PKI the examples fail pci-dss-4 only on the rules the
product cannot enforce yet; weak or broken certificates are rejected with the right rule and source.

Certificates come from tests/pki/certs.py (the PKI helper's test issuer, built on `cryptography`) until
`ikeguard.tools.certfactory` lands.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ikeguard.control.cli import main
from ikeguard.policy.enforce import enforce
from ikeguard.policy.errors import ConfigError
from ikeguard.policy.loader import load_config
from ikeguard.policy.profile import load_profile
from ikeguard.policy.report import Report, evaluate
from tests.pki.certs import Issued, PrivateKey, issue, make_crl, make_key

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
GW = "processor-gateway.toml"


def _write_cert(path: Path, *certs: x509.Certificate) -> None:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def _write_key(path: Path, key: PrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _leaf(ca: Issued, name: str, now: dt.datetime = NOW, **kwargs: object) -> Issued:
    args: dict[str, object] = {"key": make_key("ec384", len(name)), "dns": [name],
                               "not_before": now - dt.timedelta(days=2),
                               "not_after": now + dt.timedelta(days=90), "digest": hashes.SHA384()}
    args.update(kwargs)
    return issue(f"CN={name}, O=Processor", ca, **args)  # type: ignore[arg-type]


def issue_example_pki(directory: Path, *, gw: Issued | None = None,
                      crl: x509.CertificateRevocationList | None = None, ca: Issued | None = None,
                      now: dt.datetime = NOW) -> Issued:
    """Write everything the example configs name under pki/ (what `ikeguard demo` will create)."""
    pki = directory / "pki"
    pki.mkdir(exist_ok=True)
    ca = ca or issue("CN=Processor VPN CA, O=Processor", key=make_key("ec384", 101), ca=True,
                     not_before=now - dt.timedelta(days=30), not_after=now + dt.timedelta(days=3650),
                     digest=hashes.SHA384())
    _write_cert(pki / "ca.pem", ca.cert)
    for name, leaf in (("gw", gw or _leaf(ca, "gw.processor.example", now)),
                       ("merchant-a", _leaf(ca, "merchant-a.merchants.processor.example", now))):
        _write_cert(pki / f"{name}.pem", leaf.cert)
        _write_key(pki / f"{name}.key", leaf.key)
    if crl is None:  # (an empty CRL is falsy: it has no revoked entries)
        crl = make_crl(ca, this_update=now - dt.timedelta(days=2), next_update=now + dt.timedelta(days=7))
    (pki / "vpn.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    # Dated from `now` like the rest: `check` and build_plan judge these keys' age by notBefore on their
    # clock.
    start, end = now - dt.timedelta(days=30), now + dt.timedelta(days=365)
    siem_ca = issue("CN=SIEM CA", key=make_key("ec256", 102), ca=True, not_before=start, not_after=end)
    _write_cert(pki / "siem-ca.pem", siem_ca.cert)
    for name in ("gw-siem", "merchant-a-siem"):
        client = issue(f"CN={name}", siem_ca, key=make_key("ec256", 103), not_before=start, not_after=end)
        _write_cert(pki / f"{name}.pem", client.cert)
        _write_key(pki / f"{name}.key", client.key)
    return ca


def report_for(directory: Path, name: str = GW, profile: str = "pci-dss-4") -> Report:
    return evaluate(load_config(directory / name), load_profile(profile), now=NOW)


@pytest.mark.parametrize("name", [GW, "merchant-a.toml"])
def test_examples_with_pki_pass_the_profile(example_copy: Path, name: str) -> None:
    issue_example_pki(example_copy)
    report = report_for(example_copy, name)
    assert report.by_status("fail") == [] and report.by_status("not_implemented") == []
    for rule in ("cert.key", "cert.signature-hash", "cert.validity", "cert.usage", "cert.chain",
                 "crl.current", "files.present"):
        assert report.rule_status(rule) == "pass", rule
    for rule in ("revocation.runtime", "audit.siem-delivery"):  # only the running gateway can answer these
        assert report.rule_status(rule) == "not_verified", rule
    assert report.passed


def test_check_passes_the_example_with_its_pki(example_copy: Path) -> None:
    issue_example_pki(example_copy, now=dt.datetime.now(dt.UTC))  # `check` reads the wall clock
    result = CliRunner().invoke(main, ["check", "-c", str(example_copy / GW), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["passed"] is True
    assert {f["rule"] for f in data["findings"]} <= {"revocation.runtime", "audit.siem-delivery"}
    assert {f["status"] for f in data["findings"]} <= {"not_verified"}
    assert data["rules"]["cert.key"] == "pass" and data["rules"]["crl.current"] == "pass"
    verdicts = {(r["document"], r["id"]): r["verdict"] for r in data["requirements"]}
    assert verdicts[("PCI DSS 4.0.1", "4.2.1")] == "not_verified"  # revocation.runtime needs the gateway
    assert verdicts[("NIST SP 800-53", "SC-17")] == "pass"


def _gw_variant(example_copy: Path, **kwargs: object) -> Report:
    ca = issue("CN=Processor VPN CA, O=Processor", key=make_key("ec384", 101), ca=True,
               not_before=NOW - dt.timedelta(days=30), not_after=NOW + dt.timedelta(days=3650),
               digest=hashes.SHA384())
    issue_example_pki(example_copy, ca=ca, gw=_leaf(ca, "gw.processor.example", **kwargs))
    return report_for(example_copy)


@pytest.mark.parametrize(("kwargs", "rule", "source", "text"), [
    ({"key": make_key("rsa2048", 7), "digest": hashes.SHA256()}, "cert.key", "NIST SP 800-77r1 Table 1",
     "RSA key of 2048 bits"),
    ({"not_after": NOW - dt.timedelta(hours=1), "not_before": NOW - dt.timedelta(days=2)}, "cert.validity",
     "PCI DSS 4.0.1 4.2.1", "expired"),
    ({"ekus": [ExtendedKeyUsageOID.CODE_SIGNING]}, "cert.usage", "RFC 4945 §5.1.3.12", "unrelated to IKE"),
])
def test_weak_or_broken_gateway_certificate(example_copy: Path, kwargs: dict[str, object], rule: str,
                                            source: str, text: str) -> None:
    report = _gw_variant(example_copy, **kwargs)
    (failure,) = [r for r in report.by_status("fail") if r.rule.id == rule]
    assert failure.scope == "connections.merchants.local.certs[0]"
    assert text in failure.message and source in failure.rule.sources
    with pytest.raises(ConfigError) as info:
        enforce(load_config(example_copy / GW), now=NOW)
    assert rule in {f.rule for f in info.value.findings}


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
SHA1_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def sha1_signed(ca: Issued, name: str) -> Issued:
    """An RSA-3072 leaf signed with sha1WithRSAEncryption. `cryptography` refuses to create one, so the
    TBSCertificate of a SHA-256 certificate gets the SHA-1 algorithm OID (same length) and is re-signed."""
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    template = _leaf(ca, name, key=make_key("rsa3072", 11), digest=hashes.SHA256())
    tbs = template.cert.tbs_certificate_bytes
    assert tbs.count(SHA256_RSA) == 1
    tbs = tbs.replace(SHA256_RSA, SHA1_RSA)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    signature = ca.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der(0x30, SHA1_RSA + b"\x05\x00")
    der = _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))
    return Issued(x509.load_der_x509_certificate(der), template.key)


def test_sha1_signed_certificate_is_rejected(example_copy: Path) -> None:
    ca = issue("CN=Processor VPN CA, O=Processor", key=make_key("rsa3072", 12), ca=True,
               not_before=NOW - dt.timedelta(days=30), not_after=NOW + dt.timedelta(days=3650))
    issue_example_pki(example_copy, ca=ca, gw=sha1_signed(ca, "gw.processor.example"))
    report = report_for(example_copy)
    (failure,) = [r for r in report.by_status("fail") if r.rule.id == "cert.signature-hash"]
    assert failure.scope == "connections.merchants.local.certs[0]"
    assert "signature hash sha1 not allowed" in failure.message
    assert "RFC 8247 §3.2" in failure.rule.sources
    with pytest.raises(ConfigError) as info:
        enforce(load_config(example_copy / GW), now=NOW)
    assert "cert.signature-hash" in {f.rule for f in info.value.findings}


def test_rsa3072_and_ipsec_ike_eku_pass(example_copy: Path) -> None:
    report = _gw_variant(example_copy, key=make_key("rsa3072", 8), digest=hashes.SHA256(),
                         ekus=[x509.ObjectIdentifier("1.3.6.1.5.5.7.3.17")])
    assert report.by_status("fail") == []


def test_tls_only_eku_warns_that_rfc4945_peers_refuse_it(example_copy: Path) -> None:
    report = _gw_variant(example_copy, ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert report.by_status("fail") == []
    (warning,) = [r for r in report.by_status("warn") if r.rule.id == "cert.usage"]
    assert "RFC 4945" in warning.message and "ipsecIKE" in warning.message


def test_critical_tls_eku_fails_with_the_rfc_reason(example_copy: Path) -> None:
    """Peers must reject a critical EKU without ipsecIKE (RFC 4945 §5.1.3.12): so does `check`, by the same
    rule (policy/eku.py) as the validator."""
    tls = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    report = _gw_variant(example_copy, ekus=tls, eku_critical=True)
    (failure,) = [r for r in report.by_status("fail") if r.rule.id == "cert.usage"]
    assert failure.scope == "connections.merchants.local.certs[0]"
    assert "critical extendedKeyUsage [clientAuth, serverAuth] has neither ipsecIKE" in failure.message
    assert "RFC 4945 §5.1.3.12" in failure.message


def test_remote_eku_is_reported_and_a_strict_rule_requires_it(example_copy: Path) -> None:
    issue_example_pki(example_copy)
    report = report_for(example_copy)
    (setting,) = [r for r in report.results if r.scope == "connections.merchants.remote.eku"]
    assert setting.status == "pass" and setting.value == "relaxed"
    profile = load_profile("pci-dss-4")
    strict = dataclasses.replace(profile, rules=tuple(
        dataclasses.replace(r, params={**r.params, "eku": "strict"}) if r.id == "cert.usage" else r
        for r in profile.rules))
    report = evaluate(load_config(example_copy / GW), strict, now=NOW)
    (failure,) = [r for r in report.by_status("fail") if r.scope == "connections.merchants.remote.eku"]
    assert 'requires remote.eku = "strict"' in failure.message
    assert failure.target == ("connection", "merchants")
    text = (example_copy / GW).read_text().replace("[connections.merchants.remote]\n",
                                                   '[connections.merchants.remote]\neku = "strict"\n')
    (example_copy / GW).write_text(text)
    report = evaluate(load_config(example_copy / GW), strict, now=NOW)
    assert not [r for r in report.by_status("fail") if r.rule.id == "cert.usage"]


def test_expiring_soon_is_a_warning(example_copy: Path) -> None:
    report = _gw_variant(example_copy, not_after=NOW + dt.timedelta(days=3))
    (warning,) = [r for r in report.results if r.rule.id == "cert.validity" and r.status == "warn"]
    assert "expires in 3 d" in warning.message and not report.by_status("fail")


def test_certificate_from_another_ca_does_not_chain(example_copy: Path) -> None:
    other = issue("CN=Other CA", key=make_key("ec384", 201), ca=True, digest=hashes.SHA384())
    issue_example_pki(example_copy, gw=_leaf(other, "gw.processor.example"))
    (failure,) = report_for(example_copy).by_status("fail")
    assert failure.rule.id == "cert.chain" and "Other CA" in failure.message


def test_p256_certificate_under_cnsa1(example_copy: Path) -> None:
    report = _gw_variant(example_copy, key=make_key("ec256", 9))
    assert report.rule_status("cert.key") == "pass"  # pci-dss-4 accepts P-256
    cnsa = evaluate(load_config(example_copy / GW), load_profile("cnsa-1"), now=NOW)
    assert any(r.rule.id == "cert.key" and "secp256r1" in r.message for r in cnsa.by_status("fail"))


def test_stale_wrongly_signed_or_revoking_crl(example_copy: Path) -> None:
    ca = issue("CN=Processor VPN CA, O=Processor", key=make_key("ec384", 101), ca=True,
               not_before=NOW - dt.timedelta(days=30), not_after=NOW + dt.timedelta(days=3650))
    stale = make_crl(ca, this_update=NOW - dt.timedelta(days=2), next_update=NOW - dt.timedelta(days=1))
    issue_example_pki(example_copy, ca=ca, crl=stale)
    (failure,) = report_for(example_copy).by_status("fail")
    assert failure.rule.id == "crl.current" and "stale" in failure.message

    forged = make_crl(ca, this_update=NOW, next_update=NOW + dt.timedelta(hours=6),
                      signing_key=make_key("ec384", 55))
    issue_example_pki(example_copy, ca=ca, crl=forged)
    (failure,) = report_for(example_copy).by_status("fail")
    assert "not signed by authority" in failure.message

    gw = _leaf(ca, "gw.processor.example")
    revoking = make_crl(ca, [gw.cert.serial_number], this_update=NOW, next_update=NOW + dt.timedelta(hours=6))
    issue_example_pki(example_copy, ca=ca, gw=gw, crl=revoking)
    (failure,) = report_for(example_copy).by_status("fail")
    assert failure.rule.id == "crl.current" and failure.scope == "connections.merchants.local.certs[0]"
    assert "revoked by pki/vpn.crl" in failure.message


def test_file_that_is_not_a_certificate(example_copy: Path) -> None:
    issue_example_pki(example_copy)
    (example_copy / "pki" / "gw.pem").write_text("not a certificate\n")
    failures = report_for(example_copy).by_status("fail")
    expected = [("cert.key", "no PEM or DER certificate in this file")]
    assert [(r.rule.id, r.message) for r in failures] == expected
