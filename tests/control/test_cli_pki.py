"""``ikeguard pki`` with a file CA key (the token case is tests/interop/test_pki_ca.py): a device key made by
``issue --key-out`` (ECDSA P-384, mode 0600), the default 24-hour lifetime and IKE EKU, revoke + crl + list,
and the CA's audit trail."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ikeguard.control.cli import main
from ikeguard.pki.ca import IPSEC_IKE


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, ["pki", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_file_ca_issues_a_24_hour_p384_device_certificate_and_revokes_it(tmp_path: Path) -> None:
    key = tmp_path / "ca.key"
    key.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ca = tmp_path / "ca"
    _run("init", "--dir", str(ca), "--key", str(key), "--dn", "C=US, O=Example, CN=Example VPN CA")
    _run("issue", "--dir", str(ca), "--dn", "C=US, O=Example, CN=till-3", "--san", "till-3.example.net",
         "--key-out", str(tmp_path / "till-3.key"), "--out", str(tmp_path / "till-3.pem"))
    assert (tmp_path / "till-3.key").stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "till-3.pem").read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 24 * 3600 <= life.total_seconds() <= 24 * 3600 + 301
    assert IPSEC_IKE in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == ["till-3.example.net"]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes()))
    serial = format(cert.serial_number, "x")
    _run("revoke", "--dir", str(ca), serial)
    again = CliRunner().invoke(main, ["pki", "revoke", "--dir", str(ca), serial])
    assert again.exit_code == 1 and "already revoked" in again.output
    _run("crl", "--dir", str(ca), "--out", str(tmp_path / "ca.crl"))
    crl = x509.load_pem_x509_crl((tmp_path / "ca.crl").read_bytes())
    assert [r.serial_number for r in crl] == [cert.serial_number]
    listed = json.loads(_run("list", "--dir", str(ca), "--json"))
    assert [(r["serial"], r["status"], r["key_type"]) for r in listed] == [(serial, "revoked", "ecdsa-p384")]
    tail = CliRunner().invoke(main, ["audit", "tail", "--state-dir", str(ca / "audit"), "-n", "50", "--json"])
    events = [json.loads(line)["body"]["event"] for line in tail.output.splitlines() if line.startswith("{")]
    assert events.count("pki.issued") == 2 and events.count("pki.revoked") == 1 and "pki.crl" in events
