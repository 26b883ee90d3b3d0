"""Run `ikeguard run` as a separate process (optionally in a network namespace) and talk to it.

In the installed product because `ikeguard demo` starts its three gateways with it; the tests use it too.
The gateway's files (config, certificates, keys,
secret files) are written into a private work directory with mode 0600. Readiness follows systemd's notify
protocol (sd_notify(3)): we bind an AF_UNIX datagram socket, pass its path as ``NOTIFY_SOCKET`` and wait for a
datagram containing the line ``READY=1``. A filesystem socket (not an abstract one) is used on purpose:
abstract UNIX sockets belong to a network namespace, a path is reachable from any namespace. If the process
exits before it is ready, `GatewayStartError` carries the tail of its log. The process is stopped by the PID
we started (SIGTERM, then SIGKILL), never by name. Written by hand: the notify protocol is one datagram of
``KEY=VALUE`` lines, no library needed.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json as jsonlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

__all__ = [
    "CONFIG_NAME",
    "LOG_NAME",
    "GatewayProcess",
    "GatewayProcessError",
    "GatewayStartError",
    "live_gateway_pids",
    "stop_all_gateways",
]

CONFIG_NAME = "gateway.toml"
LOG_NAME = "gateway.log"
NOTIFY_NAME = "notify.sock"
LOG_TAIL_LINES = 40
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes including the terminating NUL

_registry_lock = threading.Lock()
_started: list[subprocess.Popen[bytes]] = []


def live_gateway_pids() -> list[int]:
    """PIDs of gateway processes started by any GatewayProcess in this process that are still running."""
    with _registry_lock:
        return [p.pid for p in _started if p.poll() is None]


def stop_all_gateways() -> None:
    """Stop (by PID) every gateway this process started that still runs: the atexit/session-end backstop."""
    with _registry_lock:
        procs = [p for p in _started if p.poll() is None]
    for proc in procs:
        with contextlib.suppress(Exception):
            _terminate(proc, 5.0)


atexit.register(stop_all_gateways)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM the process we started, SIGKILL it after `timeout` s; its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


SETTLE_QUIET_S = 0.25  # > the audit process's group-commit delay (audit.isolated COMMIT_LINGER + SEND_DELAY)
SETTLE_LIMIT_S = 3.0

class GatewayProcessError(RuntimeError):
    """A command against the running gateway failed or a wait timed out (message carries the log tail)."""


class GatewayStartError(GatewayProcessError):
    """The gateway exited (or never said READY=1) during start(); the message carries its log tail."""

    def __init__(self, message: str, *, returncode: int | None, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last {LOG_TAIL_LINES} lines of the gateway log ---\n{log_tail}")
        self.returncode = returncode
        self.log_tail = log_tail


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"file name must be a relative path inside the work directory: {name!r}")
    return path


def _write_private(path: Path, data: bytes | str) -> None:
    """Write a file readable by its owner only (0600), replacing any old content."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.chmod(path, 0o600)


class GatewayProcess:
    """One `ikeguard run -c workdir/gateway.toml` process, started, queried and stopped by its PID.

    `netns` is the name of a network namespace (``ip netns exec NS ...``) or None for the current one.
    `files` maps paths relative to `workdir` to their content (all written 0600). `argv` replaces the
    command (tests of this class; the default is ``<python> -m ikeguard run -c <config>``).
    """

    def __init__(
        self,
        netns: str | None,
        workdir: str | os.PathLike[str],
        config: str,
        files: Mapping[str, bytes | str] | None = None,
        name: str = "gw",
        *,
        profile: str | None = None,
        python: str | None = None,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.netns = netns
        self.workdir = Path(workdir).resolve()
        self.config = config
        self.files = dict(files or {})
        for rel in self.files:
            _safe_relative(rel)
        self.name = name
        self.profile = profile
        self.python = python or sys.executable
        self.argv_override = list(argv) if argv is not None else None
        self.extra_env = dict(env or {})
        self.config_path = self.workdir / CONFIG_NAME
        self.log_path = self.workdir / LOG_NAME
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.notifications: list[str] = []  # every notify line received ("READY=1", "STATUS=...", ...)
        self._notify: socket.socket | None = None
        self._notify_dir: Path | None = None
        self.notify_path: Path | None = None

    def __repr__(self) -> str:
        return f"GatewayProcess({self.name!r}, netns={self.netns!r}, pid={self.pid})"

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- paths -------------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """The gateway's state directory (``gateway.state_dir`` relative to the config, default ``state``)."""
        try:
            data = tomllib.loads(self.config)
        except tomllib.TOMLDecodeError:
            data = {}
        gateway = data.get("gateway", {})
        value = gateway.get("state_dir", "state") if isinstance(gateway, dict) else "state"
        return (self.workdir / str(value)).resolve()

    @property
    def control_socket(self) -> Path:
        """The control socket the running gateway serves (``<state_dir>/control.sock``)."""
        return self.state_dir / "control.sock"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The argv that starts the gateway (inside the namespace when one is given)."""
        argv = self.argv_override
        if argv is None:
            argv = [self.python, "-m", "ikeguard", "run", "-c", str(self.config_path)]
            if self.profile is not None:  # the caller chose it explicitly: an override, audited
                argv += ["--profile", self.profile, "--override-profile"]
        if self.netns is not None:
            return ["ip", "netns", "exec", self.netns, *argv]
        return list(argv)

    # -- files -------------------------------------------------------------------------------------
    def write_files(self) -> None:
        """(Re)write the config and every file in `files` (mode 0600, directories 0700)."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.config_path, self.config)
        for rel, data in self.files.items():
            _write_private(self.workdir / _safe_relative(rel), data)

    def write_file(self, name: str, data: bytes | str) -> Path:
        """Write (or replace) one file in the work directory (0600); returns its path."""
        path = self.workdir / _safe_relative(name)
        self.files[name] = data
        _write_private(path, data)
        return path

    def update_config(self, config: str) -> None:
        """Replace the config file's text (takes effect on reload(), i.e. SIGHUP, or the next start)."""
        self.config = config
        _write_private(self.config_path, config)

    # -- lifecycle ---------------------------------------------------------------------------------
    def _bind_notify(self) -> socket.socket:
        path = self.workdir / NOTIFY_NAME
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            self._notify_dir = Path(tempfile.mkdtemp(prefix="ikg-notify-", dir="/tmp"))
            path = self._notify_dir / NOTIFY_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.notify_path = path
        return sock

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        """Write the files, start the gateway, wait for READY=1 (else GatewayStartError with the log tail)."""
        if self.process is not None:
            raise GatewayProcessError(f"{self.name}: already started")
        self.write_files()
        self._notify = self._bind_notify()
        env = {
            **os.environ,
            **self.extra_env,
            "NOTIFY_SOCKET": str(self.notify_path),
            "PYTHONUNBUFFERED": "1",
        }
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # a terminal Ctrl-C reaches only us; we stop it in order
            )
        except BaseException:
            self._close_notify()
            raise
        finally:
            log.close()
        with _registry_lock:
            _started.append(self.process)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        return self

    def _drain_notify(self, wait: float) -> None:
        sock = self._notify
        if sock is None:
            return
        readable, _, _ = select.select([sock], [], [], wait)
        while readable:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            self.notifications.extend(line for line in data.decode(errors="replace").splitlines() if line)
            readable, _, _ = select.select([sock], [], [], 0)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while "READY=1" not in self.notifications:
            if self.process.poll() is not None:
                self._drain_notify(0)
                if "READY=1" in self.notifications:
                    break
                raise GatewayStartError(
                    f"{self.name}: gateway exited with code {self.process.returncode} before it was ready",
                    returncode=self.process.returncode,
                    log_tail=self.log_tail(),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayStartError(
                    f"{self.name}: gateway did not send READY=1 within {timeout}s",
                    returncode=None,
                    log_tail=self.log_tail(),
                )
            self._drain_notify(min(remaining, 0.1))

    def notify_messages(self) -> list[str]:
        """Every notify line received so far (READY=1, STATUS=..., RELOADING=1, STOPPING=1 ...)."""
        self._drain_notify(0)
        return list(self.notifications)

    def send_signal(self, sig: int) -> None:
        """Send a signal to the gateway by its PID (e.g. SIGHUP = reload)."""
        if not self.running:
            raise GatewayProcessError(f"{self.name}: not running")
        assert self.process is not None
        self.process.send_signal(sig)

    def reload(self) -> None:
        """Ask the gateway to re-read its config (SIGHUP)."""
        self.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `timeout` s; idempotent; returns the exit code."""
        if self.process is not None and self.returncode is None:
            self.returncode = _terminate(self.process, timeout)
        self._drain_notify(0)
        self._close_notify()
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL by PID (a crash, no DELETE sent); returns the exit code."""
        if self.process is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.returncode = self.process.wait(timeout=10)
        self._close_notify()
        return self.returncode

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
            if self.notify_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.notify_path.unlink()
        if self._notify_dir is not None:
            shutil.rmtree(self._notify_dir, ignore_errors=True)
            self._notify_dir = None

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit on its own; returns its exit code."""
        if self.process is None:
            raise GatewayProcessError(f"{self.name}: never started")
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            message = f"{self.name}: still running after {timeout}s\n{self.log_tail()}"
            raise GatewayProcessError(message) from exc
        self.returncode = code
        return code

    # -- logs --------------------------------------------------------------------------------------
    def log(self) -> str:
        """Everything the gateway wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log."""
        return "\n".join(self.log().splitlines()[-lines:])

    # -- control -----------------------------------------------------------------------------------
    def cli(self, *args: str, json: bool = True, check: bool = True, timeout: float = 30.0) -> Any:
        """Run ``ikeguard <args> --socket <control.sock> [--json]``; parsed JSON (or stdout text).

        With `check`, a non-zero exit raises GatewayProcessError (message: exit code, stderr, log tail).
        """
        argv = [self.python, "-m", "ikeguard", *args, "--socket", str(self.control_socket)]
        if json:
            argv.append("--json")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise GatewayProcessError(
                f"{self.name}: `ikeguard {' '.join(args)}` exited {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.log_tail()}"
            )
        if not json:
            return result.stdout
        try:
            return jsonlib.loads(result.stdout)
        except ValueError as exc:
            raise GatewayProcessError(
                f"{self.name}: `ikeguard {' '.join(args)} --json` printed no JSON: {result.stdout[:500]!r}"
            ) from exc

    def request(self, cmd: str, **args: Any) -> Any:
        """One control-socket request through ikeguard.control.client.ControlClient (no subprocess)."""
        client_module = importlib.import_module("ikeguard.control.client")
        client = client_module.ControlClient(self.control_socket)
        try:
            return client.request(cmd, **args)
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()

    def sas(
        self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None
    ) -> list[dict[str, Any]]:
        """The gateway's IKE SAs as `ikeguard sas --json` prints them (docs/reference.md)."""
        filters = {k: v for k, v in (("conn", conn), ("peer", peer), ("uniqueid", uniqueid)) if v is not None}
        try:
            result = self.request("sas", **filters)
        except ImportError:
            argv = ["sas"]
            for key, value in filters.items():
                argv += [f"--{key}", str(value)]
            result = self.cli(*argv)
        if not isinstance(result, list):
            raise GatewayProcessError(f"{self.name}: sas returned {type(result).__name__}, not a list")
        return result

    def wait_sas(
        self,
        predicate: Callable[[list[dict[str, Any]]], object],
        timeout: float = 10.0,
        what: str = "condition on the SAs",
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Poll sas() until `predicate(sas)` is true; returns those SAs or raises with SAs and log tail."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.sas(**filters)
            if predicate(sas):
                return sas
            if not self.running:
                raise GatewayProcessError(f"{self.name}: gateway exited while waiting for {what}\n"
                                          f"{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise GatewayProcessError(
                    f"{self.name}: {what} not reached in {timeout}s; SAs: {sas}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def audit_events(self, *, from_seq: int = 0, settle: bool = True) -> list[dict[str, Any]]:
        """The audit trail read from the store: each record's body plus ``seq`` and ``time``.

        The trail is written by the gateway's audit process in group commits (up to ~0.1 s after an event):
        with ``settle`` the read is repeated until the store stops growing, so events the gateway emitted
        before this call are included."""
        records = self._read_trail(from_seq)
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while settle and time.monotonic() < deadline:
            time.sleep(SETTLE_QUIET_S)
            again = self._read_trail(from_seq)
            if len(again) == len(records):
                break
            records = again
        return records

    def _read_trail(self, from_seq: int) -> list[dict[str, Any]]:
        from ikeguard.audit.store import AuditStore

        store = AuditStore(self.state_dir, create=False)
        try:
            records = list(store.iter_records(from_seq))
        finally:
            store.close()
        return [{**dict(rec.body), "seq": rec.seq, "time": rec.time} for rec in records]

    def wait_audit(
        self, predicate: Callable[[dict[str, Any]], object], timeout: float = 10.0, what: str = "audit event"
    ) -> dict[str, Any]:
        """Poll the audit trail until one event satisfies `predicate`; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                for event in self.audit_events(settle=False):
                    if predicate(event):
                        return event
            if time.monotonic() >= deadline:
                raise GatewayProcessError(f"{self.name}: no {what} in the audit trail after {timeout}s\n"
                                          f"{self.log_tail()}")
            time.sleep(0.1)

