"""New checks (issue 17): the SIEM TLS link's certificates (NIST SP 800-52r2), a private key that is not
its certificate's, key and PSK age against the profile's cryptoperiod. Weak material is made with
strongSwan's pki, as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.policy.test_report_assessor import check_json, pki_examples, processor

__all__ = ["pki_examples", "processor"]


def pki(*args: str, cwd: Path, out: str) -> None:
    data = subprocess.run(["pki", *args], cwd=cwd, capture_output=True, check=True, timeout=60).stdout
    (cwd / out).write_bytes(data)


def test_siem_client_certificate_rsa1024_sha1_fails(processor: Path) -> None:
    d = processor.parent / "pki"
    pki("--gen", "--type", "rsa", "--size", "1024", "--outform", "pem", cwd=d, out="gw-siem.key")
    (d / "gw-siem.key").chmod(0o600)
    pub = subprocess.run(
        ["pki", "--pub", "--in", "gw-siem.key"], cwd=d, capture_output=True, check=True
    ).stdout
    cert = subprocess.run(
        [
            "pki",
            "--issue",
            "--cacert",
            "siem-ca.pem",
            "--cakey",
            "siem-ca.key",
            "--dn",
            "C=US, O=Example Processor, CN=gw audit client",
            "--flag",
            "clientAuth",
            "--digest",
            "sha1",
            "--lifetime",
            "90",
            "--outform",
            "pem",
        ],
        cwd=d,
        input=pub,
        capture_output=True,
        check=True,
    ).stdout
    (d / "gw-siem.pem").write_bytes(cert)
    code, report = check_json(processor)
    assert code == 1
    assert report["rules"]["audit.siem-tls"] == "fail"  # was passed: nothing judged the SIEM link
    messages = [f["message"] for f in report["findings"] if f["rule"] == "audit.siem-tls"]
    assert any("RSA-1024" in m for m in messages), messages
    (finding,) = [f for f in report["findings"] if f["rule"] == "audit.siem-tls"]
    assert finding["checked"] == "files" and "NIST SP 800-52r2 §4.2" in finding["sources"]


def test_siem_tls_settings_are_reported(processor: Path) -> None:
    _, report = check_json(processor)
    assert report["rules"]["audit.siem-tls"] == "pass"
    requirement = [
        r for r in report["requirements"] if r["document"] == "NIST SP 800-52r2" and r["id"] == "§4.1"
    ]
    assert requirement and requirement[0]["verdict"] == "pass"


def test_private_key_not_matching_its_certificate_fails(processor: Path) -> None:
    d = processor.parent / "pki"
    shutil.copy(d / "merchant-a.key", d / "gw.key")  # a valid key, 0600, but not gw.pem's
    (d / "gw.key").chmod(0o600)
    code, report = check_json(processor)
    assert code == 1
    assert report["rules"]["key.matches-cert"] == "fail"
    (finding,) = [f for f in report["findings"] if f["rule"] == "key.matches-cert"]
    assert finding["scope"] == "connections.merchants.local.key" and "does not belong" in finding["message"]
    assert "BEGIN" not in finding["message"] and "BEGIN" not in (finding["value"] or "")


def test_key_age_by_certificate_and_psk_age_by_file_time(tmp_path: Path, processor: Path) -> None:
    _, report = check_json(processor)
    assert report["rules"]["key.age"] == "pass"
    secret = tmp_path / "peer.psk"
    secret.write_text("0x" + "5a" * 32 + "\n")
    secret.chmod(0o600)
    old = time.time() - 800 * 86400  # older than the profile's 730 days for PSKs
    os.utime(secret, (old, old))
    config = tmp_path / "gw.toml"
    config.write_text(f"""
[gateway]
profile = "pci-dss-4"
[connections.c]
remote_addrs = ["192.0.2.10"]
local = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk", id = "peer.example" }}
[connections.c.children.n]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
[secrets.ike.c]
ids = ["peer.example"]
secret_file = "{secret}"
""")
    _, report = check_json(config)
    assert report["rules"]["key.age"] == "fail"
    (finding,) = [f for f in report["findings"] if f["rule"] == "key.age"]
    assert finding["value"].startswith("800 days old") and "modification time" in finding["value"]
    assert "730-day" in finding["message"]
    _, report = check_json(processor)
    assert report["rules"]["key.age"] == "pass"


def test_token_key_age_by_its_certificate(tmp_path: Path) -> None:
    """Issue 18: a local.key in a PKCS#11 token (RFC 7512 URI) is dated by its certificate's notBefore (it
    was skipped: a 4-year-old token key passed key.age unseen). The module path does not exist, so check's
    key.matches-cert fails to open it without loading any PKCS#11 module into the test process."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")])
    now = dt.datetime.now(dt.UTC)

    def cert(days_old: int) -> bytes:
        built = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                 .serial_number(x509.random_serial_number())
                 .not_valid_before(now - dt.timedelta(days=days_old))
                 .not_valid_after(now + dt.timedelta(days=30))
                 .add_extension(x509.SubjectAlternativeName([x509.DNSName("gw.example")]), critical=False)
                 .sign(key, hashes.SHA384()))
        return built.public_bytes(serialization.Encoding.PEM)

    config = tmp_path / "gw.toml"
    config.write_text("""
[gateway]
profile = "pci-dss-4"
[connections.c]
remote_addrs = ["192.0.2.10"]
remote = { auth = "pubkey", id = "peer.example" }
[connections.c.local]
auth = "pubkey"
id = "gw.example"
certs = ["gw.pem"]
key = "pkcs11:token=gw;object=ike?module-path=/nonexistent/libp11.so&pin-source=env:NO_PIN"
[connections.c.children.n]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
""")
    (tmp_path / "gw.pem").write_bytes(cert(1200))  # older than the profile's 1095 days for private keys
    _, report = check_json(config)
    assert report["rules"]["key.age"] == "fail"
    (finding,) = [f for f in report["findings"] if f["rule"] == "key.age"]
    assert finding["value"] == "pkcs11:token=gw;object=ike: 1200 days old (by certificate gw.pem notBefore)"
    assert "1095-day" in finding["message"]
    (tmp_path / "gw.pem").write_bytes(cert(10))
    _, report = check_json(config)
    assert report["rules"]["key.age"] == "pass"
