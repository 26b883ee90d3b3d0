"""A throwaway etcd (Debian ``etcd-server``) on loopback for HA tests: its own data directory, free ports,
stopped by its PID. Missing under CI=true it fails the test, else the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


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
def etcd(workdir: Path) -> Iterator[Etcd]:
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("etcd is not installed (etcd-server)")
        pytest.skip("etcd is not installed (etcd-server)")
    client, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{client}"
    log = (workdir / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--name", "ha-test", "--data-dir", str(workdir / "etcd-data"), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"ha-test=http://127.0.0.1:{peer}"],
        stdout=log, stderr=subprocess.STDOUT)
    server = Etcd(url, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                    if b"true" in answer.read():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"etcd did not start: {(workdir / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()
