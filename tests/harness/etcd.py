"""A throwaway etcd (Debian ``etcd-server``) on loopback for HA tests: its own data directory, free ports,
stopped by its PID. Missing under CI=true it fails the test, else the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikeguard.tools.netns import Namespace


@dataclass(frozen=True)
class EtcdTls:
    """PEM files for etcd's client TLS: the server's certificate and key, the CA that client certificates
    must chain to (``--client-cert-auth``), and a client certificate the health check uses."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _healthy(url: str, namespace: Namespace | None, tls: EtcdTls | None = None) -> bool:
    if namespace is not None:
        done = namespace.run("etcdctl", "--endpoints", url, "endpoint", "health", check=False, timeout=10)
        return done.returncode == 0
    context = None
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca))
        context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    try:
        with urllib.request.urlopen(url + "/health", timeout=1, context=context) as answer:
            return b"true" in answer.read()
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Etcd:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # by the PID we started
            self.process.wait(timeout=10)


@contextmanager
def etcd(workdir: Path, namespace: Namespace | None = None, host: str = "127.0.0.1", *,
         tls: EtcdTls | None = None) -> Iterator[Etcd]:
    """etcd on ``host`` (loopback, or an address of ``namespace``, where it then runs); with ``tls`` its
    client URL is https and it requires client certificates from ``tls.ca`` (mutual TLS)."""
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("etcd is not installed (etcd-server)")
        pytest.skip("etcd is not installed (etcd-server)")
    client, peer = (_free_port(), _free_port()) if namespace is None else (2379, 2380)
    url = f"{'https' if tls else 'http'}://{host}:{client}"
    log = (workdir / "etcd.log").open("wb")
    argv = [binary, "--name", "ha-test", "--data-dir", str(workdir / "etcd-data"),
            "--listen-client-urls", url,
            "--advertise-client-urls", url, "--listen-peer-urls", f"http://{host}:{peer}",
            "--initial-advertise-peer-urls", f"http://{host}:{peer}",
            "--initial-cluster", f"ha-test=http://{host}:{peer}"]
    if tls is not None:
        argv += ["--cert-file", str(tls.cert), "--key-file", str(tls.key), "--client-cert-auth",
                 "--trusted-ca-file", str(tls.ca)]
    proc = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT) if namespace is None
            else namespace.popen(argv, stdout=log, stderr=subprocess.STDOUT))
    server = Etcd(url, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if _healthy(url, namespace, tls):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"etcd did not start: {(workdir / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()
