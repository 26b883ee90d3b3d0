"""A real strongSwan peer for interop tests: charon-systemd with kernel-libipsec inside a network namespace.

Writes a private strongswan.conf/swanctl.conf (see swanctl_conf.py) plus certificates and keys into a
per-instance SWANCTL_DIR, starts ``charon-systemd`` with STRONGSWAN_CONF, waits for its vici socket, loads the
config with ``swanctl --load-all`` and drives it over vici (strongSwan's own Python bindings): list SAs
(parsed into IkeSaInfo/ChildSaInfo), initiate, rekey, terminate. Stops charon by the PID it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import vici  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import IssuedCertificate
from ikeguard.tools.netns import Namespace, stop_process
from tests.harness.sa_info import ChildSaInfo, IkeSaInfo, proposal_keyword
from tests.harness.swanctl_conf import (
    DEFAULT_PLUGINS,
    ConnectionConfig,
    PskSecret,
    strongswan_conf,
    swanctl_conf,
)

__all__ = [
    "CHARON",
    "SWANCTL",
    "ChildSaInfo",
    "IkeSaInfo",
    "StrongSwanError",
    "StrongSwanPeer",
    "live_charons",
    "proposal_keyword",
]

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "swanctl"
_MAX_UNIX_PATH = 100

_started_lock = threading.Lock()
_started: list[subprocess.Popen[Any]] = []


def live_charons() -> list[int]:
    """PIDs of charon processes started by any StrongSwanPeer in this process that are still running."""
    with _started_lock:
        return [p.pid for p in _started if p.poll() is None]


class StrongSwanError(RuntimeError):
    """charon failed to start, a swanctl/vici command failed, or a wait timed out (carries the log tail)."""


def _decode(value: Any) -> Any:
    """vici values (bytes, lists, nested dicts) as plain str/list/dict."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class StrongSwanPeer:
    """One charon-systemd instance in a namespace, configured from Python and driven over vici.

    Files (all under `workdir`): strongswan.conf, swanctl/{swanctl.conf,x509,x509ca,x509crl,private},
    charon.log (filelog, flushed per line), charon.out (stdout/stderr). Use start()/stop() or a with-block.
    """

    def __init__(
        self,
        namespace: Namespace,
        workdir: str | os.PathLike[str],
        *,
        connections: Sequence[ConnectionConfig],
        psks: Sequence[PskSecret] = (),
        certs: Mapping[str, IssuedCertificate] | None = None,
        cacerts: Mapping[str, x509.Certificate] | None = None,
        crls: Mapping[str, x509.CertificateRevocationList] | None = None,
        plugins: Sequence[str] = DEFAULT_PLUGINS,
        log_level: int = 2,
        charon_options: Mapping[str, object] | None = None,
        name: str = "strongswan",
    ) -> None:
        """`certs` maps a file stem to a leaf (written to x509/<stem>.pem and private/<stem>.pem);
        `cacerts` maps a file stem to a CA certificate (x509ca/<stem>.pem); `crls` to x509crl/<stem>.crl.
        Connections refer to these files by ``<stem>.pem`` in AuthConfig.certs / cacerts.
        """
        self.namespace = namespace
        self.workdir = Path(workdir)
        self.name = name
        self.connections = list(connections)
        self.psks = list(psks)
        self.certs = dict(certs or {})
        self.cacerts = dict(cacerts or {})
        self.crls = dict(crls or {})
        self.plugins = list(plugins)
        self.log_level = log_level
        self.charon_options = dict(charon_options or {})
        self.swanctl_dir = self.workdir / "swanctl"
        self.conf_path = self.workdir / "strongswan.conf"
        self.log_path = self.workdir / "charon.log"
        self.out_path = self.workdir / "charon.out"
        self._socket_dir: Path | None = None
        self.socket_path = self._choose_socket_path()
        self.process: subprocess.Popen[Any] | None = None
        self.returncode: int | None = None

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"StrongSwanPeer({self.name!r}, ns={self.namespace.name!r}, pid={pid})"

    def __enter__(self) -> StrongSwanPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- files -------------------------------------------------------------------------------------
    def _choose_socket_path(self) -> Path:
        path = self.workdir / "run" / "charon.vici"
        if len(str(path)) <= _MAX_UNIX_PATH:
            return path
        self._socket_dir = Path(tempfile.mkdtemp(prefix="ikg-vici-", dir="/tmp"))
        return self._socket_dir / "charon.vici"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points charon and swanctl at this instance."""
        return {"STRONGSWAN_CONF": str(self.conf_path), "SWANCTL_DIR": str(self.swanctl_dir)}

    def write_config(self) -> None:
        """(Re)write strongswan.conf, swanctl.conf and the credential files."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        for sub in ("x509", "x509ca", "x509crl", "private"):
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            strongswan_conf(
                vici_uri=f"unix://{self.socket_path}",
                log_path=self.log_path,
                plugins=self.plugins,
                log_level=self.log_level,
                charon_options=self.charon_options,
            )
        )
        (self.swanctl_dir / "swanctl.conf").write_text(swanctl_conf(self.connections, self.psks))
        os.chmod(self.swanctl_dir / "swanctl.conf", 0o600)  # may hold PSKs
        for stem, issued in self.certs.items():
            (self.swanctl_dir / "x509" / f"{stem}.pem").write_bytes(issued.cert_pem())
            key_path = self.swanctl_dir / "private" / f"{stem}.pem"
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(issued.key_pem())
        for stem, cert in self.cacerts.items():
            (self.swanctl_dir / "x509ca" / f"{stem}.pem").write_bytes(_pem(cert))
        for stem, crl in self.crls.items():
            (self.swanctl_dir / "x509crl" / f"{stem}.crl").write_bytes(
                crl.public_bytes(serialization.Encoding.PEM)
            )

    # -- lifecycle ---------------------------------------------------------------------------------
    def charon_argv(self) -> list[str]:
        """The command that runs charon in the namespace (a subclass may run another build)."""
        return [CHARON]

    def swanctl_argv(self, args: Sequence[str]) -> list[str]:
        """The swanctl command line for `args` (a subclass may run another build's swanctl)."""
        return [SWANCTL, *args]

    def start(self, timeout: float = 10.0) -> StrongSwanPeer:
        """Write the config, start charon-systemd in the namespace, wait for vici, load everything."""
        if self.process is not None:
            raise StrongSwanError(f"{self.name}: already started")
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        out = open(self.out_path, "wb")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.process = self.namespace.popen(
                self.charon_argv(), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        finally:
            out.close()
        with _started_lock:
            _started.append(self.process)
        try:
            self._wait_for_vici(timeout)
            self.load_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_vici(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise StrongSwanError(
                    f"{self.name}: charon exited with {self.process.returncode}\n{self._tail()}"
                )
            if self.socket_path.exists():
                try:
                    with self._session():
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise StrongSwanError(
            f"{self.name}: vici socket {self.socket_path} not ready after {timeout}s\n{self._tail()}"
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop charon by the PID we started (SIGTERM, SIGKILL after `timeout`); idempotent."""
        if self.process is not None and self.returncode is None:
            self.returncode = stop_process(self.process, timeout)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        return self.returncode

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- swanctl / vici ----------------------------------------------------------------------------
    def swanctl(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run swanctl against this instance (inside its namespace)."""
        result = self.namespace.run(*self.swanctl_argv(args), env=self.env, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise StrongSwanError(
                f"{self.name}: swanctl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{self._tail()}"
            )
        return result

    def load_all(self) -> None:
        """``swanctl --load-all --noprompt`` (connections, secrets, certs, keys, CRLs)."""
        self.swanctl("--load-all", "--noprompt")

    def reload(self) -> None:
        """Rewrite the files from the current attributes and load them again."""
        self.write_config()
        self.load_all()

    @contextlib.contextmanager
    def _session(self, timeout: float = 30.0) -> Iterator[Any]:
        for attempt in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.socket_path))
                break
            except BlockingIOError:  # EAGAIN: charon's listen backlog is full (many parallel vici clients)
                sock.close()
                if attempt == 49:
                    raise
                time.sleep(0.05 * (attempt + 1))
            except BaseException:
                sock.close()
                raise
        try:
            yield vici.Session(sock)
        finally:
            sock.close()

    def _vici(self, what: str, call: Callable[[Any], Any]) -> Any:
        try:
            with self._session() as session:
                return call(session)
        except (vici.exception.CommandException, vici.exception.SessionException, OSError) as exc:
            raise StrongSwanError(f"{self.name}: {what} failed: {exc}\n{self._tail()}") from exc

    def list_sas(self, ike: str | None = None) -> list[IkeSaInfo]:
        """All IKE_SAs (optionally of one connection) with their CHILD_SAs, parsed."""
        filters = {"ike": ike} if ike else None
        events = self._vici("list-sas", lambda s: list(s.list_sas(filters)))
        return [IkeSaInfo.parse(name, raw) for event in events for name, raw in event.items()]

    def list_conns(self) -> dict[str, Any]:
        """Loaded connections as charon understood them (vici list-conns), bytes decoded to str."""
        events = self._vici("list-conns", lambda s: list(s.list_conns()))
        return {name: _decode(raw) for event in events for name, raw in event.items()}

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 10.0) -> list[str]:
        """Initiate a CHILD_SA (and its IKE_SA) and wait for the result; returns charon's control log."""
        args: dict[str, str] = {"timeout": str(int(timeout * 1000)), "init-limits": "no"}
        if child:
            args["child"] = child
        if ike:
            args["ike"] = ike
        logs = self._vici(f"initiate {child or ike}", lambda s: list(s.initiate(args)))
        return [entry.get("msg", b"").decode() for entry in logs]

    def rekey(self, child: str | None = None, ike: str | None = None, reauth: bool = False) -> int:
        """Start a rekey (asynchronous in charon); returns how many SAs matched."""
        args: dict[str, str] = {}
        if child:
            args["child"] = child
        if ike:
            args["ike"] = ike
        if reauth:
            args["reauth"] = "yes"
        reply = self._vici(f"rekey {child or ike}", lambda s: s.rekey(args))
        return int(reply.get("matches", b"0"))

    def terminate(
        self, child: str | None = None, ike: str | None = None, force: bool = False, timeout: float = 10.0
    ) -> list[str]:
        """Delete a CHILD_SA or IKE_SA and wait for the peer's answer (or not, with `force`)."""
        args: dict[str, str] = {"timeout": str(int(timeout * 1000))}
        if child:
            args["child"] = child
        if ike:
            args["ike"] = ike
        if force:
            args["force"] = "yes"
        logs = self._vici(f"terminate {child or ike}", lambda s: list(s.terminate(args)))
        return [entry.get("msg", b"").decode() for entry in logs]

    def wait_for(
        self, predicate: Callable[[list[IkeSaInfo]], bool], timeout: float = 10.0, what: str = "condition"
    ) -> list[IkeSaInfo]:
        """Poll list_sas() until `predicate(sas)` holds; returns those SAs or raises with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.list_sas()
            if predicate(sas):
                return sas
            if time.monotonic() >= deadline:
                raise StrongSwanError(
                    f"{self.name}: {what} not reached in {timeout}s; SAs: {sas}\n{self._tail()}"
                )
            time.sleep(0.1)

    def wait_established(self, ike: str, child: str | None = None, timeout: float = 10.0) -> IkeSaInfo:
        """Wait until the named IKE_SA is ESTABLISHED (and the CHILD_SA INSTALLED, when given)."""

        def ready(sas: list[IkeSaInfo]) -> bool:
            return any(
                sa.name == ike
                and sa.state == "ESTABLISHED"
                and (child is None or any(c.name == child and c.state == "INSTALLED" for c in sa.children))
                for sa in sas
            )

        sas = self.wait_for(ready, timeout, f"IKE_SA {ike} established")
        return next(sa for sa in sas if sa.name == ike and sa.state == "ESTABLISHED")

    # -- logs --------------------------------------------------------------------------------------
    def log(self) -> str:
        """charon's log so far (filelog, flushed per line)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until `needle` appears in the log; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if needle in text:
                return text
            if time.monotonic() >= deadline:
                raise StrongSwanError(f"{self.name}: {needle!r} not in log after {timeout}s\n{self._tail()}")
            time.sleep(0.1)

    def _tail(self, lines: int = 40) -> str:
        out = ""
        with contextlib.suppress(OSError):
            out = self.out_path.read_text(errors="replace")
        log_lines = self.log().splitlines()[-lines:]
        return (
            f"--- {self.name} charon.log (last {lines} lines) ---\n"
            + "\n".join(log_lines)
            + (f"\n--- charon stdout/stderr ---\n{out}" if out.strip() else "")
        )
