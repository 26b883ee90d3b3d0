"""A throwaway micromdm SCEP CA (Debian ``scep``: ``scepserver``) for SCEP tests (RFC 8894), run inside a
namespace the test made (it listens on every address of its namespace: ``-port`` takes no address), with
its own depot (CA key and certificates) in the test's directory; stopped by its PID. Missing under CI=true
it fails the test, else the test is skipped with the reason.

``scepserver`` issues for ``-crtvalid`` whole days (notBefore now, notAfter now + days; RSA
only, signed CertRep, AES content encryption), checks ``-challenge`` on every request and, with
``-allowrenew 0``, accepts a renewal at any time."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ikeguard.tools.netns import Namespace

PORT = 8080
CA_KEY_PASSWORD = "scep-test-ca"  # micromdm encrypts the depot's CA key even without one (with "")


@dataclass
class ScepServer:
    host: str
    port: int
    depot: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    namespace: Namespace

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/scep"

    def ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.depot / "ca.pem").read_bytes())

    def fingerprint(self) -> str:
        return self.ca().fingerprint(hashes.SHA256()).hex()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def crl(self, revoked: list[x509.Certificate]) -> x509.CertificateRevocationList:
        """A CRL of the SCEP CA revoking ``revoked``, signed with the depot's CA key as its operator would
        (``scepserver`` itself publishes none)."""
        key = serialization.load_pem_private_key((self.depot / "ca.key").read_bytes(),
                                                 password=CA_KEY_PASSWORD.encode())
        assert isinstance(key, rsa.RSAPrivateKey)
        now = dt.datetime.now(dt.UTC)
        ski = self.ca().extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value  # not SHA-1(key)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca().subject)
                   .last_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(hours=1))
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                  critical=False)  # strongSwan finds a local CRL by the issuer's key id
                   .add_extension(x509.CRLNumber(1), critical=False))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(now - dt.timedelta(minutes=1))
                .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False).build())
        return builder.sign(key, hashes.SHA256())

    def up(self) -> bool:
        done = self.namespace.run("curl", "-sf", "-m", "3", f"{self.url}?operation=GetCACaps", check=False,
                                  timeout=10)
        return done.returncode == 0 and "Renewal" in done.stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # by the PID we started
            self.process.wait(timeout=10)


@contextmanager
def scep_server(workdir: Path, namespace: Namespace, host: str, *, challenge: str,
                days: int = 1) -> Iterator[ScepServer]:
    """``scepserver`` in ``namespace``, reached at ``host`` (an address of that namespace)."""
    binary = shutil.which("scepserver")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("scepserver is not installed (apt install scep)")
        pytest.skip("scepserver is not installed (apt install scep)")
    workdir.mkdir(parents=True, exist_ok=True)
    depot = workdir / "depot"
    subprocess.run([binary, "ca", "-init", "-depot", str(depot), "-keySize", "2048", "-years", "1",
                    "-key-password", CA_KEY_PASSWORD,
                    "-organization", "ikeguard-test", "-organizational_unit", "SCEP test CA"],
                   check=True, capture_output=True, timeout=60)
    log = (workdir / "scepserver.log").open("wb")
    argv = [binary, "-depot", str(depot), "-port", str(PORT), "-capass", CA_KEY_PASSWORD,
            "-challenge", challenge,
            "-crtvalid", str(days), "-allowrenew", "0", "-debug"]
    proc = namespace.popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = ScepServer(host, PORT, depot, proc, workdir / "scepserver.log", namespace)
    try:
        deadline = time.monotonic() + 20
        while not server.up():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"scepserver did not start: {server.log()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()
