"""A throwaway pebble (Let's Encrypt's ACME test CA, Debian ``pebble``) for ACME tests, on loopback or an
address of a namespace the test made; stopped by its PID. Missing under CI=true it fails the test, else the
test is skipped with the reason.

Its HTTPS listener gets a certificate the harness issues (``tls_ca`` is what a client must trust); the CA
it issues from is random per start and read from its management API (``root_pem``). ``validity`` shortens
the certificates it issues (pebble's ``certificateValidityPeriod``, seconds) for renewal tests; its http-01
validation connects to ``http_port`` of the identifier's address."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ikeguard.tools.netns import Namespace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pebble:
    host: str
    port: int
    management_port: int
    http_port: int
    tls_ca: Path  # trust this for pebble's HTTPS
    process: subprocess.Popen[bytes]
    log_path: Path
    namespace: Namespace | None

    @property
    def directory(self) -> str:
        return f"https://{self._host()}:{self.port}/dir"

    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _get(self, path: str) -> bytes:
        url = f"https://{self._host()}:{self.management_port}{path}"
        if self.namespace is not None:
            script = ("import ssl, sys, urllib.request\n"
                      f"c = ssl.create_default_context(cafile={str(self.tls_ca)!r})\n"
                      f"a = urllib.request.urlopen({url!r}, timeout=5, context=c)\n"
                      "sys.stdout.write(a.read().decode())\n")
            done = self.namespace.run(sys.executable, "-c", script, check=False, timeout=20)
            if done.returncode != 0:
                raise OSError(f"{url}: {done.stderr[-300:]}")
            return done.stdout.encode()
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            return bytes(answer.read())

    def root_pem(self) -> bytes:
        """The root the issued chains end at (pebble makes a new one each start)."""
        return self._get("/roots/0")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # by the PID we started
            self.process.wait(timeout=10)


def _listener_cert(workdir: Path, host: str) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble listener test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(host)),
                                                         x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = workdir / "listener-ca.pem", workdir / "listener.pem", workdir / "listener.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _up(server: Pebble) -> bool:
    try:
        server.root_pem()
    except OSError:
        return False
    return True


@contextmanager
def pebble(workdir: Path, *, namespace: Namespace | None = None, host: str = "127.0.0.1",
           http_port: int | None = None, validity: int | None = None) -> Iterator[Pebble]:
    """pebble on ``host`` (loopback, or an address of ``namespace``, where it then runs)."""
    binary = shutil.which("pebble")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pebble is not installed (apt install pebble)")
        pytest.skip("pebble is not installed (apt install pebble)")
    workdir.mkdir(parents=True, exist_ok=True)
    tls_ca, cert, key = _listener_cert(workdir, host)
    port, management = (_free_port(), _free_port()) if namespace is None else (14000, 15000)
    http = http_port if http_port is not None else _free_port()
    config: dict[str, object] = {
        "listenAddress": f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
        "managementListenAddress": f"{host}:{management}" if ":" not in host else f"[{host}]:{management}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": http, "tlsPort": _free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }
    if validity is not None:
        config["certificateValidityPeriod"] = validity
    (workdir / "pebble-config.json").write_text(json.dumps({"pebble": config}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
           "PEBBLE_AUTHZREUSE": "0"}
    log = (workdir / "pebble.log").open("wb")
    argv = [binary, "-config", str(workdir / "pebble-config.json")]
    proc = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env) if namespace is None
            else namespace.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
    server = Pebble(host, port, management, http, tls_ca, proc, workdir / "pebble.log", namespace)
    try:
        deadline = time.monotonic() + 20
        while not _up(server):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pebble did not start: {server.log()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()
