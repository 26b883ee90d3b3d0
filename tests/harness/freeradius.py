"""A real FreeRADIUS 3.2 server for the remote-access tests (Debian package ``freeradius``).

The configuration lives in ``tests/radius/`` (radiusd.conf, modules.conf, sites.conf, users): this module
copies it into a work directory, fills in the listen address and ports, writes ``clients.conf`` (one
client per gateway address, its shared secret, ``require_message_authenticator = yes``) and the EAP server
certificate, and starts ``freeradius -f`` (in a namespace, or on the host's loopback) as root. The server
is stopped by the PID we started. Its log (``radius.log``) and the accounting detail file are kept in the
work directory for the test to read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ikeguard.tools.certfactory import IssuedCertificate
from ikeguard.tools.netns import Namespace, stop_process

FREERADIUS = "/usr/sbin/freeradius"
CONFIG = Path(__file__).resolve().parent.parent / "radius"


class FreeRadiusError(RuntimeError):
    """The server did not start (carries the log tail)."""


def _write_private(path: Path, data: bytes | str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


class FreeRadius:
    """One FreeRADIUS instance; ``start()`` / ``stop()`` or a with-block."""

    def __init__(self, workdir: Path, *, namespace: Namespace | None, address: str,
                 clients: Mapping[str, str], server_cert: IssuedCertificate, ca_pem: bytes,
                 auth_port: int = 1812, acct_port: int = 1813, default_eap: str = "ttls",
                 users: str | None = None, radsec_port: int = 0,
                 radsec_clients: tuple[str, ...] = ()) -> None:
        """``radsec_port``: also listen for RADIUS over TLS (RFC 6614) there, with ``server_cert``, and
        require a client certificate from ``ca_pem`` for the addresses in ``radsec_clients``."""
        self.workdir = Path(workdir)
        self.namespace = namespace
        self.address = address
        self.clients = dict(clients)
        self.server_cert = server_cert
        self.ca_pem = ca_pem
        self.auth_port = auth_port
        self.acct_port = acct_port
        self.default_eap = default_eap
        self.users = users
        self.radsec_port = radsec_port
        self.radsec_clients = radsec_clients
        self.confdir = self.workdir / "raddb"
        self.rundir = self.workdir / "run"
        self.log_path = self.rundir / "radius.log"
        self.detail_path = self.rundir / "radacct" / "detail"
        self.process: subprocess.Popen[Any] | None = None

    def __enter__(self) -> FreeRadius:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_config(self) -> None:
        """Copy tests/radius/ and fill it in."""
        self.confdir.mkdir(parents=True, exist_ok=True)
        (self.rundir / "radacct").mkdir(parents=True, exist_ok=True)
        values = {"@RUNDIR@": str(self.rundir), "@CONFDIR@": str(self.confdir), "@ADDRESS@": self.address,
                  "@AUTH_PORT@": str(self.auth_port), "@ACCT_PORT@": str(self.acct_port),
                  "@DEFAULT_EAP@": self.default_eap}
        for name in ("radiusd.conf", "modules.conf", "sites.conf", "users", "acct_users"):
            text = (CONFIG / name).read_text()
            for key, value in values.items():
                text = text.replace(key, value)
            if name == "sites.conf" and self.radsec_port:
                text += self._radsec()
            (self.confdir / name).write_text(text)
        if self.users is not None:
            (self.confdir / "users").write_text(self.users)
        clients = "".join(
            f"client c{i} {{\n\tipaddr = {addr}\n\tsecret = \"{secret}\"\n"
            "\trequire_message_authenticator = yes\n}\n"
            for i, (addr, secret) in enumerate(self.clients.items()))
        _write_private(self.confdir / "clients.conf", clients)
        (self.confdir / "server.pem").write_bytes(self.server_cert.cert_pem())
        _write_private(self.confdir / "server.key", self.server_cert.key_pem())
        (self.confdir / "ca.pem").write_bytes(self.ca_pem)

    def _radsec(self) -> str:
        """A RadSec listener as sites-available/tls has it: TLS >= 1.2, client certificate required."""
        clients = "".join(f"\tclient r{i} {{\n\t\tipaddr = {addr}\n\t\tproto = tls\n"
                          "\t\tsecret = radsec\n\t}\n" for i, addr in enumerate(self.radsec_clients))
        return f"""
listen {{
	ipaddr = {self.address}
	port = {self.radsec_port}
	type = auth+acct
	proto = tcp
	virtual_server = default
	clients = radsec
	limit {{
		max_connections = 64
		lifetime = 0
		idle_timeout = 30
	}}
	tls {{
		private_key_file = ${{certdir}}/server.key
		certificate_file = ${{certdir}}/server.pem
		ca_file = ${{cadir}}/ca.pem
		cipher_list = "DEFAULT"
		tls_min_version = "1.2"
		tls_max_version = "1.2"
		ecdh_curve = "prime256v1:secp384r1"
		require_client_cert = yes
		cache {{
			enable = no
		}}
		verify {{
		}}
	}}
}}
clients radsec {{
{clients}}}
"""

    def start(self, timeout: float = 15.0) -> FreeRadius:
        """Start ``freeradius -f`` and wait until it is ready to process requests."""
        if shutil.which(FREERADIUS) is None and not Path(FREERADIUS).exists():
            raise FreeRadiusError(f"{FREERADIUS} missing: apt-get install freeradius")
        self.write_config()
        self.log_path.unlink(missing_ok=True)  # a restart waits for its own "Ready" line
        argv = [FREERADIUS, "-f", "-x", "-d", str(self.confdir), "-n", "radiusd"]
        out = open(self.rundir / "freeradius.out", "wb")  # noqa: SIM115 - handed to the child
        try:
            if self.namespace is not None:
                self.process = self.namespace.popen(argv, stdout=out, stderr=subprocess.STDOUT)
            else:
                self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FreeRadiusError(f"freeradius exited with {self.process.returncode}\n{self.tail()}")
            if "Ready to process requests" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise FreeRadiusError(f"freeradius not ready after {timeout}s\n{self.tail()}")

    def log(self) -> str:
        """The server's log so far."""
        text = ""
        for path in (self.log_path, self.rundir / "freeradius.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def tail(self, lines: int = 60) -> str:
        """The last lines of the log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def accounting(self) -> str:
        """The accounting detail file (empty before the first record)."""
        return self.detail_path.read_text(errors="replace") if self.detail_path.exists() else ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the server by the PID we started; idempotent."""
        if self.process is None:
            return None
        return stop_process(self.process, timeout)
