"""Client side of the control socket: one JSON object per line, request/response, or an event stream.

The wire format (shared with :mod:`ikeguard.control.server`): a request is ``{"id": n, "cmd": "sas",
"args": {...}}``; the answer is ``{"id": n, "ok": true, "result": ...}`` or ``{"id": n, "ok": false,
"error": "one line"}``. ``{"cmd": "events"}`` turns the connection into a stream of audit events, one
per line.
Blocking sockets on purpose: the CLI is synchronous and talks to one gateway at a time.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_LINE = 4 * 1024 * 1024  # bytes: the longest request a gateway reads (its clients are local admins)
MAX_ANSWER = 1024 * 1024 * 1024  # bytes: the longest answer the CLI reads; `sas --json` for 100,000 SAs
# (~1 KiB each) fits, a gateway gone wrong does not exhaust memory
DEFAULT_TIMEOUT = 60.0  # seconds: `initiate` waits up to 15 s on the gateway, `reload` may terminate many SAs


class ControlError(Exception):
    """The gateway refused or failed a command; ``str(exc)`` is the one-line reason for the operator."""


class ControlUnavailable(ControlError):
    """No gateway answers on the socket (not running, wrong path, or no permission)."""


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line (compact JSON, newline-terminated)."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class ControlClient:
    """A connection to a running gateway's control socket."""

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ids = itertools.count(1)

    # -- connection -------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection (done lazily by :meth:`request`)."""
        if self._sock is not None:
            return
        if not self.path.exists():
            raise ControlUnavailable(f"gateway not running? no control socket at {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except PermissionError:
            sock.close()
            raise ControlUnavailable(f"permission denied on {self.path} (the socket is owner-only)") from None
        except OSError as exc:
            sock.close()
            raise ControlUnavailable(
                f"gateway not running? cannot connect to {self.path}: {exc.strerror or exc}"
            ) from None
        self._sock = sock

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer = b""

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing ----------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(encode(message))
        except OSError as exc:
            self.close()
            raise ControlUnavailable(f"lost the control connection: {exc.strerror or exc}") from None

    def _read_line(self, timeout: float | None) -> dict[str, Any] | None:
        """The next protocol line as a dict; None at end of stream."""
        assert self._sock is not None
        self._sock.settimeout(timeout)
        if b"\n" not in self._buffer:
            chunks = [self._buffer]  # joined once: appending to bytes would copy a large answer per chunk
            size = len(self._buffer)
            while True:
                try:
                    chunk = self._sock.recv(1 << 20)
                except TimeoutError:
                    raise ControlError(f"no answer from the gateway within {timeout:.0f} s") from None
                except OSError as exc:
                    self.close()
                    raise ControlUnavailable(f"lost the control connection: {exc.strerror or exc}") from None
                if not chunk:
                    return None
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    self.close()
                    raise ControlError("answer from the gateway is too long")
                if b"\n" in chunk:
                    break
            self._buffer = b"".join(chunks)
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            raise ControlError("the gateway sent something that is not JSON") from None
        if not isinstance(message, dict):
            raise ControlError("the gateway sent something that is not a JSON object")
        return message

    # -- API --------------------------------------------------------------------------------------
    def response(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return the whole answer (``ok``, ``result`` or ``error``, extras)."""
        self.connect()
        request_id = next(self._ids)
        self._send({"id": request_id, "cmd": cmd, "args": {k: v for k, v in args.items() if v is not None}})
        message = self._read_line(self.timeout)
        if message is None:
            self.close()
            raise ControlUnavailable("the gateway closed the control connection without answering")
        return message

    def request(self, cmd: str, **args: Any) -> Any:
        """Send one command; its ``result``, or :class:`ControlError` with the gateway's reason."""
        message = self.response(cmd, **args)
        if not message.get("ok"):
            raise ControlError(str(message.get("error") or "the gateway refused the command"))
        return message.get("result")

    def events(self, **args: Any) -> Iterator[dict[str, Any]]:
        """Turn this connection into the gateway's event stream; yields each audit event as a dict."""
        self.request("events", **args)
        while True:
            message = self._read_line(None)
            if message is None:
                return
            if message.get("ok") is False:
                raise ControlError(str(message.get("error")))
            yield message
