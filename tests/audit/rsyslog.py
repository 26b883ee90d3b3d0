"""A real rsyslogd receiving RFC 5425 syslog over mutually authenticated TLS (gtls), for the sink tests.

Started with its own config in a temporary directory, listening on 127.0.0.1 on a free port, writing each
message verbatim (``%rawmsg%``: structured data kept) to a file; stopped by the PID we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from ikeguard.audit.sinks.syslog import parse_message
from ikeguard.audit.sinks.transport import TlsTarget
from ikeguard.tools.certfactory import CertificateAuthority, KeyKind

RSYSLOGD = "/usr/sbin/rsyslogd"


@dataclass(frozen=True)
class Pki:
    """CA, server and client certificate files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate for the gateway."""
    ca = CertificateAuthority.create_root("CN=audit test CA,O=ikeguard test", KeyKind.ECDSA_P256)
    server = ca.issue_leaf(
        "CN=siem.example",
        sans=["ip:127.0.0.1", "dns:siem.example"],
        key_kind="ecdsa-p256",
        eku=["serverAuth"],
    )
    client = ca.issue_leaf(
        "CN=gw.example", sans=["dns:gw.example"], key_kind="ecdsa-p256", eku=["clientAuth"]
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.cert.public_bytes(Encoding.PEM))
    s = server.write_pem(directory, "server")
    c = client.write_pem(directory, "client")
    return Pki(directory / "ca.crt", s.cert, s.key, c.cert, c.key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rsyslog:
    """One rsyslogd process (start/stop/restart keep the port and output file)."""

    def __init__(self, workdir: Path, pki: Pki, port: int | None = None) -> None:
        self.workdir = workdir
        self.pki = pki
        self.port = port or free_port()
        self.output = workdir / "received.log"
        self.conf = workdir / "rsyslog.conf"
        self.pidfile = workdir / "rsyslogd.pid"
        (workdir / "spool").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""
global(workDirectory="{workdir / "spool"}"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{pki.ca}"
       defaultNetstreamDriverCertFile="{pki.server_cert}"
       defaultNetstreamDriverKeyFile="{pki.server_key}"
       maxMessageSize="64k")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{self.port}")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{self.output}" template="raw" flushOnTXEnd="on")
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def target(self) -> TlsTarget:
        return TlsTarget(
            "127.0.0.1", self.port, self.pki.ca, self.pki.client_cert, self.pki.client_key, timeout=3.0
        )

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        with open(self.workdir / "rsyslogd.err", "ab") as err:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.workdir / 'rsyslogd.err').read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def messages(self) -> list[dict[str, object]]:
        if not self.output.exists():
            return []
        return [parse_message(line) for line in self.output.read_text().splitlines() if line.strip()]

    def seqs(self) -> list[int]:
        out = []
        for m in self.messages():
            sd = m["sd"]
            assert isinstance(sd, dict)
            out.append(int(sd["ikeguardChain@32473"]["seq"]))
        return out

    def wait_for_seq(self, seq: int, timeout: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout
        needle = f'[ikeguardChain@32473 seq="{seq}" '
        while time.monotonic() < deadline:
            if self.output.exists() and needle in self.output.read_text():
                return self.seqs()
            time.sleep(0.05)
        raise AssertionError(f"seq {seq} not received; have {sorted(set(self.seqs()))[-5:]}")
