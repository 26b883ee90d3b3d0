"""Issue 18 Done-when 2 (CA part): ``ikeguard pki init/issue/revoke/crl`` with the CA key in SoftHSM2.

The CA key is generated in the token (non-extractable); ``pki init`` makes the root through the token,
``pki issue`` a 1-hour device certificate for a strongSwan client's public key (``pki --pub``) and the
gateway's certificate; strongSwan accepts the gateway's certificate (it validates it against the root) and
ikeguard accepts the device's (revocation strict, the CA's published CRL file as the authority's ``crls``).
After ``pki revoke`` + ``pki crl`` ikeguard refuses the device at its next IKE_AUTH (``cert.rejected``,
revoked). The CA's own audit trail holds pki.issued / pki.revoked / pki.crl and the HSM access log of the
CA key (hsm.login, hsm.sign counts, hsm.error for a wrong PIN), and verifies."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from ikeguard.pki.http_fetch import UrllibFetcher
from ikeguard.pki.revocation import RevocationChecker
from ikeguard.pki.validation import ValidationResult, validate_chain
from ikeguard.pki.validation_policy import RevocationMode, ValidationPolicy
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CONN, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import StrongSwanError, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig
from tests.harness.tokens import Pkcs11Token, softhsm_token

pytestmark = [pytest.mark.root, pytest.mark.interop, pytest.mark.date_sensitive]

PeerFactory = Callable[..., StrongSwanPeer]
GatewayFactory = Callable[..., GatewayProcess]


def _pki(token: Pkcs11Token, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **token.env}
    done = subprocess.run([sys.executable, "-m", "ikeguard", "pki", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"ikeguard pki {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def test_token_ca_issues_a_one_hour_device_certificate_and_its_crl_refuses_the_revoked_device(
    tmp_path: Path, netns_topology: Callable[..., Topology], strongswan_peer: PeerFactory,
    ikeguard_gateway: GatewayFactory,
) -> None:
    token = softhsm_token(tmp_path / "hsm")
    info = token.generate("ca", "ec:secp384r1")
    assert not info.extractable and info.sensitive
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "token.pin").write_text(token.pin + "\n")
    _pki(token, "init", "--dir", str(ca_dir), "--key", token.uri("ca"), "--dn",
         "C=US, O=ss-lab, CN=ss-lab VPN CA")
    tool = PkiTool(tmp_path / "keys")
    tool.key("client")
    tool.key("gw")
    client_pem, gw_pem, crl = tmp_path / "client.pem", tmp_path / "gw.pem", ca_dir / "crl.pem"
    _pki(token, "issue", "--dir", str(ca_dir), "--dn", f"C=US, O=ss-lab, CN={CLIENT_FQDN}", "--san",
         CLIENT_FQDN, "--pub", str(tool.public("client")), "--lifetime", "1h", "--out", str(client_pem))
    _pki(token, "issue", "--dir", str(ca_dir), "--dn", f"C=US, O=ss-lab, CN={GW_FQDN}", "--san", GW_FQDN,
         "--server", "--pub", str(tool.public("gw")), "--out", str(gw_pem))
    _pki(token, "crl", "--dir", str(ca_dir), "--out", str(crl))
    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    device = x509.load_pem_x509_certificate(client_pem.read_bytes())
    life = device.not_valid_after_utc - device.not_valid_before_utc
    assert 3600 <= life.total_seconds() <= 3600 + 301  # 1 h (+ 5 min backdating for clock skew)
    device.verify_directly_issued_by(root)  # signed in the token

    topo = netns_topology("direct")
    peer = strongswan_side(strongswan_peer, topo.left, topo.right, spec=SideSpec(),
                           local=AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"]),
                           remote=AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"]), name="strongswan",
                           cacerts={"ca": root}, start=False)
    (peer.swanctl_dir / "x509").mkdir(parents=True, exist_ok=True)
    (peer.swanctl_dir / "private").mkdir(parents=True, exist_ok=True)
    (peer.swanctl_dir / "x509" / "client.pem").write_bytes(client_pem.read_bytes())
    (peer.swanctl_dir / "private" / "client.pem").write_bytes((tool.directory / "client.key").read_bytes())
    (peer.swanctl_dir / "private" / "client.pem").chmod(0o600)
    peer.start()
    gw = ikeguard_side(ikeguard_gateway, topo.right, topo.left, spec=SideSpec(), remote_addr="%any",
                       local=IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key"),
                       remote=IkgRemote("pubkey", CLIENT_FQDN, cacerts=["vpn-ca"], revocation="strict"),
                       authorities=[IkgAuthority("vpn-ca", cacert="pki/ca.pem", crls=[str(crl)])],
                       files={"pki/gw.pem": gw_pem.read_bytes(),
                              "pki/ca.pem": (ca_dir / "ca.pem").read_bytes(),
                              "pki/gw.key": (tool.directory / "gw.key").read_bytes()}, name="gw")
    peer.initiate(child="net", ike=CONN, timeout=15)
    assert [sa["state"] for sa in gw.sas()] == ["established"]
    assert f"authentication of '{GW_FQDN}' with ECDSA_WITH_SHA384_DER successful" in peer.log()

    serial = format(device.serial_number, "x")
    _pki(token, "revoke", "--dir", str(ca_dir), serial, "--reason", "key_compromise")
    _pki(token, "crl", "--dir", str(ca_dir), "--out", str(crl))
    peer.terminate(ike=CONN)
    gw.wait_sas(lambda sas: not sas, timeout=10)
    with pytest.raises(StrongSwanError):
        peer.initiate(child="net", ike=CONN, timeout=8)
    rejected = gw.wait_audit(lambda e: e["event"] == "cert.rejected", what="cert.rejected")
    assert rejected["reason"].startswith("revoked"), rejected
    assert rejected["cert_serial"] == serial

    listed = {r["serial"]: r for r in json.loads(_pki(token, "list", "--dir", str(ca_dir), "--json").stdout)}
    assert listed[serial]["status"] == "revoked" and listed[serial]["reason"] == "key_compromise"
    assert listed[serial]["key_type"] == "ecdsa-p384" and len(listed) == 2
    verify = subprocess.run([sys.executable, "-m", "ikeguard", "audit", "verify", "--state-dir",
                             str(ca_dir / "audit")], capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    export = subprocess.run([sys.executable, "-m", "ikeguard", "audit", "tail", "--state-dir",
                             str(ca_dir / "audit"), "-n", "100", "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
    lines = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    events = [e["body"]["event"] for e in lines]
    assert events.count("pki.issued") == 3 and events.count("pki.crl") == 2 and "pki.revoked" in events, \
        export.stdout[-2000:] + export.stderr
    # the HSM access log of the CA key: one login and its signatures per command that used it (init, 2x
    # issue, 2x crl; revoke and list do not), the key named by its URI without the PIN source
    hsm = [e["body"] for e in lines if e["body"]["event"].startswith("hsm.")]
    assert [h["event"] for h in hsm].count("hsm.login") == 5, hsm
    assert sum(h["details"]["count"] for h in hsm if h["event"] == "hsm.sign") == 5, hsm
    assert all("pin" not in h["details"]["key"] and "object=ca" in h["details"]["key"] for h in hsm), hsm
    assert token.pin not in export.stdout

    # a wrong PIN: one line, nothing signed, and the refused login in the CA's HSM access log
    pin_file = ca_dir / "token.pin"
    pin_file.write_text("000000\n")
    refused = _pki(token, "crl", "--dir", str(ca_dir), "--out", str(crl), check=False)
    pin_file.write_text(token.pin + "\n")
    assert refused.returncode == 1 and "wrong PIN" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    tail = subprocess.run([sys.executable, "-m", "ikeguard", "audit", "tail", "--state-dir",
                           str(ca_dir / "audit"), "-n", "5", "--json"], capture_output=True, text=True,
                          timeout=60, check=False)
    last = [json.loads(line)["body"] for line in tail.stdout.splitlines() if line.strip()]
    assert any(b["event"] == "hsm.error" and "wrong PIN" in b["reason"] for b in last), tail.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl_status(ca_pem: Path, cert_pem: Path, url: str) -> str:
    done = subprocess.run(["openssl", "ocsp", "-issuer", str(ca_pem), "-cert", str(cert_pem), "-url", url,
                           "-CAfile", str(ca_pem), "-no_nonce"], capture_output=True, text=True, timeout=30,
                          check=False)
    assert "Response verify OK" in done.stderr + done.stdout, done.stdout + done.stderr
    return done.stdout.split(f"{cert_pem}: ", 1)[1].split()[0]


def _ikeguard_verdict(ca_pem: Path, cert_pem: Path, url: str) -> ValidationResult:
    return validate_chain(x509.load_pem_x509_certificate(cert_pem.read_bytes()), [],
                          [x509.load_pem_x509_certificate(ca_pem.read_bytes())], now=dt.datetime.now(dt.UTC),
                          policy=ValidationPolicy(revocation=RevocationMode.STRICT),
                          revocation=RevocationChecker(ocsp_uris=[url], fetcher=UrllibFetcher()))


def test_ocsp_responder_answers_good_then_revoked_for_openssl_and_ikeguard(tmp_path: Path) -> None:
    """``pki ocsp-serve``: a delegated responder certificate issued through the token CA key signs the
    answers; OpenSSL's client and ikeguard's ``ocsp_uris`` validation read good, then revoked."""
    token = softhsm_token(tmp_path / "hsm")
    token.generate("ca", "ec:secp384r1")
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "token.pin").write_text(token.pin + "\n")
    _pki(token, "init", "--dir", str(ca_dir), "--key", token.uri("ca"), "--dn", "C=US, O=ss-lab, CN=OCSP CA")
    tool = PkiTool(tmp_path / "keys")
    tool.key("device")
    device = tmp_path / "device.pem"
    url = f"http://127.0.0.1:{_free_port()}/"
    _pki(token, "issue", "--dir", str(ca_dir), "--dn", "C=US, O=ss-lab, CN=till-17", "--san",
         "till-17.example.net", "--pub", str(tool.public("device")), "--lifetime", "1h", "--ocsp-uri", url,
         "--out", str(device))
    server = subprocess.Popen([sys.executable, "-m", "ikeguard", "pki", "ocsp-serve", "--dir", str(ca_dir),
                               "--listen", url.split("/")[2]], env={**os.environ, **token.env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        assert "OCSP responder for" in line, line
        ca_pem = ca_dir / "ca.pem"
        assert _openssl_status(ca_pem, device, url) == "good"
        assert _ikeguard_verdict(ca_pem, device, url).ok
        serial = format(x509.load_pem_x509_certificate(device.read_bytes()).serial_number, "x")
        _pki(token, "revoke", "--dir", str(ca_dir), serial, "--reason", "key_compromise")
        assert _openssl_status(ca_pem, device, url) == "revoked"
        refused = _ikeguard_verdict(ca_pem, device, url)
        assert not refused.ok and refused.failure is not None and refused.failure.reason == "revoked"
    finally:
        server.terminate()  # the PID we started
        server.wait(timeout=10)
    responder = x509.load_pem_x509_certificate((ca_dir / "ocsp-responder.pem").read_bytes())
    assert x509.ExtendedKeyUsageOID.OCSP_SIGNING in responder.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value


def test_subordinate_ca_signed_by_an_enterprise_root_and_its_crl_over_http(tmp_path: Path) -> None:
    """``pki init --csr``: the request is signed in the token; strongSwan's ``pki --issue --type pkcs10 --ca``
    plays the enterprise root; ``pki install`` takes the answer. A device certificate of the subordinate
    validates to the enterprise root; ``pki crl-serve`` serves the CRL that ikeguard's ``crl_uris`` check
    fetches: good before, revoked after ``pki revoke`` + ``pki crl``."""
    token = softhsm_token(tmp_path / "hsm")
    token.generate("sub", "ec:secp384r1")
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "token.pin").write_text(token.pin + "\n")
    request = tmp_path / "sub.csr"
    _pki(token, "init", "--dir", str(ca_dir), "--key", token.uri("sub"), "--dn",
         "C=US, O=ss-lab, CN=ss-lab VPN sub CA", "--csr", str(request))
    tool = PkiTool(tmp_path / "enterprise")
    root = tool.self_signed_ca("root", "C=US, O=ss-lab, CN=ss-lab Enterprise Root")
    signed = subprocess.run([tool.tool, "--issue", "--type", "pkcs10", "--in", str(request), "--ca",
                             "--cacert", str(root.cert_path), "--cakey", str(root.key_path),
                             "--lifetime", "30", "--outform", "pem"], capture_output=True, timeout=60,
                            check=False)
    assert signed.returncode == 0, signed.stderr.decode() + signed.stdout.decode()
    signed = signed.stdout
    (tmp_path / "sub.pem").write_bytes(signed)
    _pki(token, "install", "--dir", str(ca_dir), str(tmp_path / "sub.pem"))
    tool.key("device")
    url = f"http://127.0.0.1:{_free_port()}/ca.crl"
    device = tmp_path / "device.pem"
    _pki(token, "issue", "--dir", str(ca_dir), "--dn", "C=US, O=ss-lab, CN=till-9", "--san",
         "till-9.example.net", "--pub", str(tool.public("device")), "--crl-uri", url, "--out", str(device))
    _pki(token, "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "published.crl"))
    server = subprocess.Popen([sys.executable, "-m", "ikeguard", "pki", "crl-serve", "--dir", str(ca_dir),
                               "--listen", url.split("/")[2]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    sub = x509.load_pem_x509_certificate(signed)
    leaf = x509.load_pem_x509_certificate(device.read_bytes())

    def verdict() -> ValidationResult:
        # relaxed: the enterprise root publishes no CRL for the subordinate here (a note, not a failure)
        return validate_chain(leaf, [sub], [root.cert], now=dt.datetime.now(dt.UTC),
                              policy=ValidationPolicy(revocation=RevocationMode.RELAXED),
                              revocation=RevocationChecker(crl_uris=[url], fetcher=UrllibFetcher()))

    try:
        assert server.stdout is not None
        assert "CRL of" in server.stdout.readline().decode()
        good = verdict()
        assert good.ok, good.failure
        assert [c.subject.rfc4514_string().split(",")[0] for c in good.path] == [
            "CN=till-9", "CN=ss-lab VPN sub CA", "CN=ss-lab Enterprise Root"]  # leaf first
        assert not [n for n in good.notes if "till-9" in n], good.notes  # the leaf's CRL was fetched
        _pki(token, "revoke", "--dir", str(ca_dir), format(leaf.serial_number, "x"))
        _pki(token, "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "published.crl"))
        refused = verdict()
        assert not refused.ok and refused.failure is not None and refused.failure.reason == "revoked"
    finally:
        server.terminate()  # the PID we started
        server.wait(timeout=10)
