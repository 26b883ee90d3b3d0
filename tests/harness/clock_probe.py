"""What each clock reader the suite relies on sees: run as ``python -m tests.harness.clock_probe DIR``, once
as is and once under ``scripts/clock-ahead.sh`` (tests/test_clock_ahead.py compares the two).

DIR holds a CA and a server and a client certificate that expire 30 days after they were made (by the parent,
on the real clock). The probe prints one JSON object: the wall clock as Python, ``date`` and a new file's
modification time see it; whether sleeping and timed waits still take their real duration (the monotonic
clocks stay real); and the verdict on those certificates of Python's ssl (OpenSSL), cryptography's verifier,
the ``openssl`` command, strongSwan's ``pki --verify`` (libstrongswan, as charon) and rsyslog's GnuTLS (a
client certificate it must refuse once expired).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import verification

from tests.audit.rsyslog import Pki, Rsyslog

NAMES = ("ca", "server", "client")


def _timings() -> dict[str, float]:
    out = {}
    start = time.monotonic()
    time.sleep(0.05)  # Python >= 3.11: clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)
    out["sleep"] = time.monotonic() - start
    start = time.monotonic()
    threading.Event().wait(0.05)  # sem_clockwait(CLOCK_MONOTONIC), passed to the kernel by glibc
    out["event_wait"] = time.monotonic() - start
    return out


def _python_ssl(d: Path) -> str:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / "server.pem", d / "server.key")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(d / "ca.pem")
    client_ctx.check_hostname = False
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                server_ctx.wrap_socket(conn, server_side=True).close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as raw:
                client_ctx.wrap_socket(raw).close()
            return "ok"
        except ssl.SSLCertVerificationError as exc:
            return f"refused: {exc.verify_message}"
        finally:
            thread.join(5)


def _cryptography(d: Path) -> str:
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )  # no .time(): the verifier reads the wall clock
    try:
        verifier.verify(leaf, [])
        return "ok"
    except verification.VerificationError as exc:
        return f"refused: {exc}"


def _command(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if "TPM" not in line and "tpm" not in line]
    return "ok" if result.returncode == 0 else f"refused ({result.returncode}): {' | '.join(lines)[-400:]}"


def _rsyslog(d: Path) -> str:
    """rsyslog (GnuTLS, authMode x509/certvalid) given the client certificate; the client checks nothing."""
    work = d / f"rsyslog-{os.getpid()}"
    work.mkdir()
    pki = Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")
    server = Rsyslog(work, pki)
    server.start()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(d / "client.pem", d / "client.key")
        message = b"<110>1 - probe ikeguard 1 probe - clock probe"
        with (contextlib.suppress(OSError),
              socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
              ctx.wrap_socket(raw) as tls):
            tls.sendall(str(len(message)).encode() + b" " + message)
            with contextlib.suppress(OSError, TimeoutError):
                tls.settimeout(1.0)
                tls.recv(1)  # wait for rsyslog to read (or drop) the connection
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if server.output.exists() and b"clock probe" in server.output.read_bytes():
                return "ok"
            time.sleep(0.05)
        return "refused"
    finally:
        server.stop()


def probe(d: Path) -> dict[str, Any]:
    """Everything the module docstring lists, as JSON-ready values."""
    mtime_file = d / f"mtime-{os.getpid()}"
    mtime_file.write_bytes(b"")
    return {
        "time": time.time(),
        "datetime": dt.datetime.now(dt.UTC).timestamp(),
        "date": int(subprocess.run(["date", "+%s"], capture_output=True, text=True, check=True).stdout),
        "mtime": mtime_file.stat().st_mtime,
        **_timings(),
        "python_ssl": _python_ssl(d),
        "cryptography": _cryptography(d),
        "openssl": _command(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(d / "server.pem")]),
        "strongswan_pki": _command(
            ["pki", "--verify", "--in", str(d / "server.pem"), "--cacert", str(d / "ca.pem")]
        ),
        "rsyslog": _rsyslog(d),
    }


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]))))
