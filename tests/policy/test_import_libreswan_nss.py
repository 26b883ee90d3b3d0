"""Issue 23 item 3: ``ikeguard import --nssdb`` reads libreswan's NSS database with NSS's own tools
(certutil/pk12util of libnss3-tools), as an operator filled it (``certutil -N``, ``ipsec import gw.p12``,
``certutil -A -t CT,,`` for the CA): the corpus case tests/policy/import_corpus/10-lsw-rsasig-nss (its
``leftcert=gw-nss`` nickname was listed and the connection not imported) now imports with the exported
certificate, key (0600) and CA; a peer certificate without trust and a key behind a database password are
listed with the reason; with the password file the key is exported too."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ikeguard.control.cli import main
from ikeguard.policy.loader import load_config
from tests.harness.pki_tool import PkiTool

CASE = Path(__file__).parent / "import_corpus" / "10-lsw-rsasig-nss"
P12_PASSWORD = b"transport-password-4711"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in ("certutil", "pk12util", "pki"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is missing (libnss3-tools, strongswan-pki: system-packages.txt)")
            pytest.skip(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("nss-pki")
    tool = PkiTool(work / "pki")
    ca = tool.self_signed_ca("ca", "C=US, O=Example, CN=Example Root CA")
    gw = tool.issue("gw", ca, "C=US, O=Example, CN=gw.example.com", sans=["gw.example.com"])
    peer = tool.issue("peer", ca, "C=US, O=Example, CN=dc2.example.com", sans=["dc2.example.com"])
    key = serialization.load_pem_private_key(gw.key_path.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(gw.cert_path.read_bytes())
    p12 = work / "gw.p12"  # what `openssl pkcs12 -export -name gw-nss` gives the operator for `ipsec import`
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"gw-nss", key, cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(P12_PASSWORD)))
    return {"p12": p12, "ca": ca.cert_path, "peer": peer.cert_path}


def _nssdb(directory: Path, pki: dict[str, Path], password: str | None = None) -> Path:
    directory.mkdir(parents=True)
    db = f"sql:{directory}"
    pw_args: list[str] = []
    if password is None:
        subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], check=True, capture_output=True)
    else:
        pwfile = directory.parent / f"{directory.name}.pw"
        pwfile.write_text(password + "\n")
        pw_args = ["-f", str(pwfile)]
        subprocess.run(["certutil", "-N", "-d", db, *pw_args], check=True, capture_output=True)
    transfer = directory.parent / f"{directory.name}.p12pw"
    transfer.write_bytes(P12_PASSWORD)
    subprocess.run(["pk12util", "-i", str(pki["p12"]), "-d", db, "-w", str(transfer),
                    *(["-k", pw_args[1]] if pw_args else [])], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", db, "-n", "Example Root CA", "-t", "CT,,", "-a", "-i",
                    str(pki["ca"]), *pw_args], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", db, "-n", "dc2", "-t", ",,", "-a", "-i", str(pki["peer"]),
                    *pw_args], check=True, capture_output=True)
    return directory


def _import(tmp_path: Path, nssdb: Path, *extra: str) -> tuple[dict[str, Any], Path]:
    etc = tmp_path / "etc"
    shutil.copytree(CASE, etc, ignore=shutil.ignore_patterns("expected.json"))
    out = tmp_path / "gw" / "gateway.toml"
    result = CliRunner().invoke(main, ["import", str(etc / "ipsec.conf"), "-o", str(out), "--json",
                                       "--profile", "baseline", "--dataplane", "none", "--nssdb", str(nssdb),
                                       *extra])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output), out


def test_nss_database_certificates_keys_and_cas_are_exported(tmp_path: Path, pki: dict[str, Path]) -> None:
    report, out = _import(tmp_path, _nssdb(tmp_path / "nss", pki))
    assert report["connections"] == ["dc"] and report["skipped"] == [], report
    assert report["loaded"] and report["passed"], report["findings"]
    cfg = tomllib.loads(out.read_text())
    load_config(out)
    local, remote = cfg["connections"]["dc"]["local"], cfg["connections"]["dc"]["remote"]
    exported = out.parent / "nss"
    assert (out.parent / local["certs"][0]).resolve() == (exported / "certs" / "gw-nss.pem").resolve()
    key_file = (out.parent / local["key"]).resolve()
    assert key_file == (exported / "private" / "gw-nss.pem").resolve()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    cert = x509.load_pem_x509_certificate((exported / "certs" / "gw-nss.pem").read_bytes())
    assert key.public_key() == cert.public_key()  # the key that belongs to the certificate
    # rightca=%same: the issuer of our certificate, from the CA entry with CT trust
    assert [(out.parent / c).resolve() for c in remote["cacerts"]] == [
        (exported / "cacerts" / "Example Root CA.pem").resolve()]
    unmapped = {u["key"]: u for u in report["unmapped"]}
    assert "conn dc.leftcert" not in unmapped
    assert "connections.dc.local.id" not in unmapped
    assert local["id"] == "C=US, O=Example, CN=gw.example.com"  # leftid=%fromcert: the certificate's DN
    assert "peers are trusted through their CA" in unmapped["nssdb dc2"]["reason"]
    assert P12_PASSWORD.decode() not in json.dumps(report)


def test_a_key_behind_the_database_password_needs_the_password_file(tmp_path: Path,
                                                                    pki: dict[str, Path]) -> None:
    nssdb = _nssdb(tmp_path / "locked", pki, password="nss-db-password-0815")
    report, out = _import(tmp_path / "without", nssdb)
    unmapped = {u["key"]: u for u in report["unmapped"]}
    assert "nssdb gw-nss (private key)" in unmapped, report["unmapped"]
    assert "pk12util" in unmapped["nssdb gw-nss (private key)"]["reason"]
    assert not (out.parent / "nss" / "private" / "gw-nss.pem").exists()

    password_file = tmp_path / "nsspassword"
    password_file.write_text("nss-db-password-0815\n")
    password_file.chmod(0o600)
    report, out = _import(tmp_path / "with", nssdb, "--nssdb-password-file", str(password_file))
    assert report["connections"] == ["dc"] and report["loaded"], report
    assert (out.parent / "nss" / "private" / "gw-nss.pem").is_file()
    assert "nss-db-password-0815" not in json.dumps(report)
