"""Certificates and CRLs made by third parties (strongSwan's `pki`, the OpenSSL CLI) validate as intended."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ikeguard.pki import (
    NoRevocation,
    ReasonCode,
    RevocationChecker,
    RevocationMode,
    ValidationPolicy,
    load_certificates,
    validate_chain,
)


@pytest.fixture(scope="module")
def pki_tool() -> str:
    tool = shutil.which("pki")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strongSwan's pki tool is missing (make test installs strongswan-pki)")
        pytest.skip("needs strongSwan's pki tool")
    return tool


def _run(tool: str, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([tool, *args], input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout


def _chain(
    tool: str, tmp: Path, key_type: str, *, size: str | None = None, pss: bool = False, flag: str = ""
):
    gen = ["--gen", "--type", key_type, "--outform", "pem"] + (["--size", size] if size else [])
    padding = ["--rsa-padding", "pss"] if pss else []
    ca_key = _run(tool, *gen)
    (tmp / "ca.key").write_bytes(ca_key)
    ca = _run(
        tool,
        "--self",
        "--ca",
        "--lifetime",
        "30",
        "--in",
        str(tmp / "ca.key"),
        "--type",
        "priv",
        "--dn",
        "C=CH, O=strongSwan, CN=Interop Root",
        "--outform",
        "pem",
        *padding,
    )
    (tmp / "ca.pem").write_bytes(ca)
    leaf_key = _run(tool, *gen)
    public = _run(tool, "--pub", "--type", "priv", stdin=leaf_key)
    flags = ["--flag", flag] if flag else []
    leaf = _run(
        tool,
        "--issue",
        "--cacert",
        str(tmp / "ca.pem"),
        "--cakey",
        str(tmp / "ca.key"),
        "--type",
        "pub",
        "--dn",
        "C=CH, O=strongSwan, CN=gw.example.net",
        "--san",
        "gw.example.net",
        "--lifetime",
        "10",
        "--outform",
        "pem",
        *flags,
        *padding,
        stdin=public,
    )
    (tmp / "gw.pem").write_bytes(leaf)
    return load_certificates(ca)[0], load_certificates(leaf)[0]


@pytest.mark.parametrize(
    ("key_type", "size", "pss", "flag"),
    [("ed25519", None, False, "ikeIntermediate"), ("rsa", "2048", True, ""), ("ecdsa", "384", False, "")],
)
def test_strongswan_issued_chain_validates(
    pki_tool: str, tmp_path: Path, key_type: str, size: str | None, pss: bool, flag: str
) -> None:
    ca, leaf = _chain(pki_tool, tmp_path, key_type, size=size, pss=pss, flag=flag)
    now = datetime.now(UTC)
    policy = ValidationPolicy(rsa_pss_only=pss)
    result = validate_chain(
        leaf, [], [ca], now=now, policy=policy, revocation=NoRevocation(), identity="gw.example.net"
    )
    assert result.ok, result.failure
    dn_result = validate_chain(
        leaf,
        [],
        [ca],
        now=now,
        policy=policy,
        revocation=NoRevocation(),
        identity="C=CH, O=strongSwan, CN=gw.example.net",
    )
    assert dn_result.ok, dn_result.failure


def test_strongswan_signed_crl_revokes(pki_tool: str, tmp_path: Path) -> None:
    ca, leaf = _chain(pki_tool, tmp_path, "ed25519")
    crl = _run(
        pki_tool,
        "--signcrl",
        "--cacert",
        str(tmp_path / "ca.pem"),
        "--cakey",
        str(tmp_path / "ca.key"),
        "--reason",
        "key-compromise",
        "--cert",
        str(tmp_path / "gw.pem"),
        "--outform",
        "pem",
    )
    (tmp_path / "ca.crl").write_bytes(crl)
    policy = ValidationPolicy(revocation=RevocationMode.STRICT)
    result = validate_chain(
        leaf,
        [],
        [ca],
        now=datetime.now(UTC),
        policy=policy,
        revocation=RevocationChecker(crl_files=[tmp_path / "ca.crl"]),
    )
    assert result.failure is not None and result.failure.reason is ReasonCode.REVOKED
    empty = _run(
        pki_tool,
        "--signcrl",
        "--cacert",
        str(tmp_path / "ca.pem"),
        "--cakey",
        str(tmp_path / "ca.key"),
        "--outform",
        "pem",
    )
    (tmp_path / "empty.crl").write_bytes(empty)
    result = validate_chain(
        leaf,
        [],
        [ca],
        now=datetime.now(UTC),
        policy=policy,
        revocation=RevocationChecker(crl_files=[tmp_path / "empty.crl"]),
    )
    assert result.ok, result.failure


def test_openssl_rsassa_pss_keys_chain(tmp_path: Path) -> None:
    """RSA-PSS *keys* (id-RSASSA-PSS SubjectPublicKeyInfo), not just PSS signatures, made by OpenSSL."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is part of the base system")

    def run(*args):
        return subprocess.run([openssl, *args], capture_output=True, check=True, timeout=60, cwd=tmp_path)

    run("genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ca.key")
    run(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=PSS Key Root",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ca.pem",
    )
    run(
        "req",
        "-new",
        "-newkey",
        "rsa-pss",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-nodes",
        "-keyout",
        "gw.key",
        "-subj",
        "/CN=gw",
        "-addext",
        "subjectAltName=DNS:pss.example.net",
        "-out",
        "gw.csr",
    )
    run(
        "x509",
        "-req",
        "-in",
        "gw.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-days",
        "10",
        "-copy_extensions",
        "copy",
        "-out",
        "gw.pem",
    )
    ca = load_certificates((tmp_path / "ca.pem").read_bytes())[0]
    leaf = load_certificates((tmp_path / "gw.pem").read_bytes())[0]
    policy = ValidationPolicy(rsa_pss_only=True)
    now = datetime.now(UTC)
    result = validate_chain(
        leaf, [], [ca], now=now, policy=policy, revocation=NoRevocation(), identity="pss.example.net"
    )
    assert result.ok, result.failure
    wrong = validate_chain(leaf, [], [ca], now=now, policy=policy, revocation=NoRevocation(), identity="gw")
    assert wrong.failure is not None and wrong.failure.reason is ReasonCode.NAME_MISMATCH
