"""A real libreswan peer (pluto) for interop tests, run from Debian's package unpacked into a private folder.

Debian's libreswan conflicts with strongSwan, so it is never installed: scripts/fetch-libreswan.sh downloads
the .deb and extracts it into a cache (see docs/interop.md, "libreswan"). pluto execs the
hard-coded /usr/libexec/ipsec/addconn, so it runs under ``unshare -m`` with the unpacked usr/libexec
bind-mounted over /usr/libexec, visible to that process only. Credentials go into a private NSS database
(certutil / pk12util from libnss3-tools). Status comes from ``whack --showstates`` / ``--trafficstatus`` and
from pluto's log (stderr). Stops pluto by the PID it started.

On this kernel (XFRM without ESP) pluto completes IKE_SA_INIT and IKE_AUTH and then fails to install the ESP
SA ("Function not implemented"): it is an IKE-level peer (negotiation, authentication, certificates) only.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets as pysecrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ikeguard.tools.certfactory import IssuedCertificate
from ikeguard.tools.netns import Namespace, stop_process

__all__ = [
    "FETCH_SCRIPT",
    "LibreswanConn",
    "LibreswanError",
    "LibreswanPeer",
    "PlutoState",
    "libreswan_root",
    "live_plutos",
    "parse_showstates",
    "parse_trafficstatus",
]

REPO = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO / "scripts" / "fetch-libreswan.sh"
_MAX_UNIX_PATH = 100

_started_lock = threading.Lock()
_started: list[subprocess.Popen[Any]] = []
_root_cache: list[Path] = []


def live_plutos() -> list[int]:
    """PIDs of pluto processes started by any LibreswanPeer in this process that are still running."""
    with _started_lock:
        return [p.pid for p in _started if p.poll() is None]


class LibreswanError(RuntimeError):
    """pluto could not be fetched/started, a whack command failed, or a wait timed out (with the log tail)."""


def libreswan_root() -> Path:
    """The unpacked libreswan tree (runs scripts/fetch-libreswan.sh once; it caches across runs)."""
    if _root_cache:
        return _root_cache[0]
    result = subprocess.run([str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise LibreswanError(f"fetch-libreswan.sh exited {result.returncode}: {result.stderr.strip()}")
    root = Path(lines[-1])
    if not (root / "usr/libexec/ipsec/pluto").exists():
        raise LibreswanError(f"no pluto under {root}")
    _root_cache.append(root)
    return root


def _quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._:/@%,;+=\-]+", value):
        return value
    return '"' + value.replace('"', '\\"') + '"'


@dataclass(frozen=True)
class LibreswanConn:
    """One ``conn`` section of ipsec.conf (libreswan 4.x keywords); left = this peer, right = the other side.

    `leftcert` is the NSS nickname of our certificate (LibreswanPeer imports it under its file stem).
    ``authby=ecdsa`` uses RFC 7427 digital signatures; ``ikev2=insist`` (4.10 rejects keyexchange=ikev2).
    """

    name: str = "ikg"
    left: str = "%defaultroute"
    leftid: str | None = None
    leftcert: str | None = None
    leftsubnet: str | None = None
    right: str = "%any"
    rightid: str | None = None
    rightca: str | None = None
    rightsubnet: str | None = None
    authby: str = "ecdsa"
    ike: str = "aes_gcm256-sha2_384;dh20"
    esp: str = "aes_gcm256"
    auto: str = "ignore"  # LibreswanPeer adds each conn itself (addconn) once pluto listens
    extra: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        opts: dict[str, str | None] = {
            "ikev2": "insist",
            "left": self.left,
            "leftid": self.leftid,
            "leftcert": self.leftcert,
            "leftsendcert": "always" if self.leftcert else None,
            "leftsubnet": self.leftsubnet,
            "right": self.right,
            "rightid": self.rightid,
            # %same: the peer's CA is our certificate's issuer; it makes pluto send CERTREQ (charon sends
            # its certificate only when asked)
            "rightca": self.rightca or ("%same" if self.leftcert else None),
            "rightsubnet": self.rightsubnet,
            "authby": self.authby,
            "ike": self.ike,
            "esp": self.esp,
            "auto": self.auto,
            **self.extra,
        }
        body = "\n".join(f"    {k}={_quote(v)}" for k, v in opts.items() if v is not None)
        return f"conn {self.name}\n{body}\n"


@dataclass(frozen=True)
class PlutoState:
    """One line of ``whack --showstates``: state serial, connection, state name and the rest of the line."""

    serial: int
    conn: str
    state: str
    detail: str

    @property
    def is_ike(self) -> bool:
        return "IKE_SA" in self.state or "PARENT" in self.state or self.state.startswith("STATE_PARENT")

    @property
    def established(self) -> bool:
        return "ESTABLISHED" in self.state


_STATE_LINE = re.compile(
    r'#(?P<serial>\d+): "(?P<conn>[^"]+)".*? (?P<state>STATE_\w+) ?(?P<detail>.*)$'
)


def parse_showstates(text: str) -> list[PlutoState]:
    """Parse ``whack --showstates`` (lines like ``#1: "ikg":500 STATE_V2_ESTABLISHED_IKE_SA (...)``)."""
    out: list[PlutoState] = []
    for line in text.splitlines():
        m = _STATE_LINE.search(line)
        if m:
            out.append(PlutoState(int(m["serial"]), m["conn"], m["state"], m["detail"].strip()))
    return out


_TRAFFIC_LINE = re.compile(r'#(?P<serial>\d+): "(?P<conn>[^"]+)"[^,]*, (?P<fields>.*)$')


def parse_trafficstatus(text: str) -> list[dict[str, str]]:
    """Parse ``whack --trafficstatus`` (one line per installed Child SA: ``type=ESP, inBytes=..``)."""
    out: list[dict[str, str]] = []
    for line in text.splitlines():
        m = _TRAFFIC_LINE.search(line)
        if not m:
            continue
        entry = {"serial": m["serial"], "conn": m["conn"]}
        for key, value in re.findall(r"(\w+)=('[^']*'|[^,]*)", m["fields"]):
            entry[key] = value.strip("'")
        out.append(entry)
    return out


class LibreswanPeer:
    """One pluto instance in a namespace, configured from Python and driven with whack.

    Files (under `workdir`): ipsec.conf, ipsec.secrets, nss/ (NSS database), run/ (pluto.ctl, pid),
    pluto.log (stderr log). `certs` maps an NSS nickname to our leaf (with key); `cacerts` maps a nickname
    to a trust anchor; `psks` are ``(local id, remote id, secret)`` triples for ``authby=secret``.
    """

    def __init__(
        self,
        namespace: Namespace,
        workdir: str | os.PathLike[str],
        *,
        connections: Sequence[LibreswanConn],
        certs: Mapping[str, IssuedCertificate] | None = None,
        cacerts: Mapping[str, x509.Certificate] | None = None,
        psks: Sequence[tuple[str, str, str]] = (),
        debug: bool = False,
        name: str = "libreswan",
    ) -> None:
        self.namespace = namespace
        self.workdir = Path(workdir).resolve()
        self.connections = list(connections)
        self.certs = dict(certs or {})
        self.cacerts = dict(cacerts or {})
        self.psks = list(psks)
        self.debug = debug
        self.name = name
        self.conf_path = self.workdir / "ipsec.conf"
        self.secrets_path = self.workdir / "ipsec.secrets"
        self.nss_dir = self.workdir / "nss"
        self.log_path = self.workdir / "pluto.log"
        self._run_tmp: Path | None = None
        self.run_dir = self.workdir / "run"
        if len(str(self.run_dir / "pluto.ctl")) > _MAX_UNIX_PATH:
            self._run_tmp = Path(tempfile.mkdtemp(prefix="ikg-pluto-", dir="/tmp"))
            self.run_dir = self._run_tmp
        self.process: subprocess.Popen[Any] | None = None
        self.returncode: int | None = None
        self._root: Path | None = None

    def __repr__(self) -> str:
        return f"LibreswanPeer({self.name!r}, ns={self.namespace.name!r}, pid={self.pid})"

    def __enter__(self) -> LibreswanPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = libreswan_root()
        return self._root

    def _tool(self, name: str) -> str:
        return str(self.root / "usr/libexec/ipsec" / name)

    @property
    def ctl_socket(self) -> Path:
        return self.run_dir / "pluto.ctl"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- files -------------------------------------------------------------------------------------
    def config_text(self) -> str:
        """The text of ipsec.conf (``config setup`` + one ``conn`` per connection)."""
        setup = [
            "config setup",
            f"    ipsecdir={self.workdir}",
            f"    nssdir={self.nss_dir}",
            f"    secretsfile={self.secrets_path}",
            f"    dumpdir={self.run_dir}",
            "    uniqueids=no",
        ]
        if self.debug:
            setup.append("    plutodebug=all")
        return "\n".join(setup) + "\n\n" + "\n".join(c.text() for c in self.connections)

    def write_config(self) -> None:
        """Write ipsec.conf, ipsec.secrets (0600) and build the NSS database with our credentials."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config_text())
        # ipsec.secrets(5): the PSK is always a quoted string (a bare word must be 0x/0s-prefixed)
        lines = [f'{_quote(a)} {_quote(b)} : PSK "{s.replace(chr(34), "")}"' for a, b, s in self.psks]
        fd = os.open(self.secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        self._build_nss()

    def _run(self, argv: Sequence[str], *, input: str | None = None) -> str:
        result = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=60,
                                check=False)
        if result.returncode != 0:
            raise LibreswanError(f"{' '.join(argv)} exited {result.returncode}: "
                                 f"{result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def _build_nss(self) -> None:
        if self.nss_dir.exists():
            shutil.rmtree(self.nss_dir)
        self.nss_dir.mkdir(mode=0o700)
        db = f"sql:{self.nss_dir}"
        self._run(["certutil", "-N", "-d", db, "--empty-password"])
        for nick, cert in self.cacerts.items():
            path = self.workdir / f"{nick}.ca.pem"
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            self._run(["certutil", "-A", "-d", db, "-n", nick, "-t", "CT,,", "-a", "-i", str(path)])
        for nick, issued in self.certs.items():
            password = pysecrets.token_hex(16)
            p12 = pkcs12.serialize_key_and_certificates(
                nick.encode(), issued.key, issued.cert, None,
                serialization.BestAvailableEncryption(password.encode()),
            )
            path = self.workdir / f"{nick}.p12"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(p12)
            pw_file = self.workdir / f"{nick}.p12.pw"
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            try:
                self._run(["pk12util", "-i", str(path), "-d", db, "-w", str(pw_file)])
            finally:
                path.unlink()
                pw_file.unlink()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> LibreswanPeer:
        """Write the config, start pluto in the namespace, wait for its control socket, add the conns."""
        if self.process is not None:
            raise LibreswanError(f"{self.name}: already started")
        root = self.root
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_socket.unlink()
        pluto = [
            self._tool("pluto"), "--nofork", "--stderrlog", "--config", str(self.conf_path),
            "--rundir", str(self.run_dir), "--nssdir", str(self.nss_dir), "--secretsfile",
            str(self.secrets_path), "--ipsecdir", str(self.workdir), "--nhelpers", "1",
        ]
        # pluto execs /usr/libexec/ipsec/addconn: show it the unpacked tree, in a private mount namespace.
        script = (
            f"mount --bind {_sh(str(root / 'usr/libexec'))} /usr/libexec && exec "
            + " ".join(_sh(a) for a in pluto)
        )
        out = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.process = self.namespace.popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdout=out, stderr=subprocess.STDOUT,
            )
        finally:
            out.close()
        with _started_lock:
            _started.append(self.process)
        try:
            self._wait_ctl(timeout)
            for conn in self.connections:
                self.addconn(conn.name)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ctl(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise LibreswanError(f"{self.name}: pluto exited with {code}\n{self._tail()}")
            if self.ctl_socket.exists():
                with contextlib.suppress(LibreswanError):
                    self.whack("--status")
                    return
            time.sleep(0.1)
        raise LibreswanError(f"{self.name}: pluto control socket not ready after {timeout}s\n{self._tail()}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop pluto by the PID we started (SIGTERM, SIGKILL after `timeout`); idempotent."""
        if self.process is not None and self.returncode is None:
            self.returncode = stop_process(self.process, timeout)
        if self._run_tmp is not None:
            shutil.rmtree(self._run_tmp, ignore_errors=True)
            self._run_tmp = None
        return self.returncode

    # -- whack -------------------------------------------------------------------------------------
    def whack(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run ``whack --ctlsocket <ours> args`` (from the host: a UNIX socket path crosses namespaces)."""
        argv = [self._tool("whack"), "--ctlsocket", str(self.ctl_socket), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise LibreswanError(f"{self.name}: whack {' '.join(args)} exited {result.returncode}: "
                                 f"{(result.stdout + result.stderr).strip()}")
        return result.stdout + result.stderr

    def addconn(self, conn: str) -> None:
        """Load one conn from ipsec.conf into pluto (``ipsec auto --add``)."""
        argv = [self._tool("addconn"), "--ctlsocket", str(self.ctl_socket), "--config", str(self.conf_path),
                conn]
        self._run(argv)

    def initiate(self, conn: str = "ikg") -> str:
        """Start the IKE SA (asynchronously: progress shows in states() and the log)."""
        return self.whack("--initiate", "--name", conn, "--asynchronous")

    def terminate(self, conn: str = "ikg") -> str:
        return self.whack("--terminate", "--name", conn, check=False)

    def states(self) -> list[PlutoState]:
        """``whack --showstates``, parsed."""
        return parse_showstates(self.whack("--showstates"))

    def traffic(self) -> list[dict[str, str]]:
        """``whack --trafficstatus``, parsed (installed Child SAs only: none on a kernel without ESP)."""
        return parse_trafficstatus(self.whack("--trafficstatus"))

    # -- logs --------------------------------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str | re.Pattern[str], timeout: float = 15.0) -> str:
        """Wait until `needle` (text or regex) appears in pluto's log; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            found = needle.search(text) if isinstance(needle, re.Pattern) else needle in text
            if found:
                return text
            if time.monotonic() >= deadline:
                raise LibreswanError(f"{self.name}: {needle!r} not in pluto's log after {timeout}s\n"
                                     f"{self._tail()}")
            time.sleep(0.1)

    def wait_for(self, predicate: Callable[[list[PlutoState]], bool], timeout: float = 15.0,
                 what: str = "condition") -> list[PlutoState]:
        """Poll states() until `predicate` holds."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if predicate(states):
                return states
            if time.monotonic() >= deadline:
                raise LibreswanError(f"{self.name}: {what} not reached in {timeout}s; {states}\n"
                                     f"{self._tail()}")
            time.sleep(0.1)

    def _tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} pluto.log (last {lines} lines) ---\n{tail}"


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
