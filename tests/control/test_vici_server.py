"""The vici server at protocol level (a ``RecordingGateway`` behind it): malformed input ends only the
offending connection (recorded as a failed ``admin.command``), other clients are served meanwhile and after;
unknown commands and events get CMD_UNKNOWN / EVENT_UNKNOWN; the socket is owner-only."""

from __future__ import annotations

import asyncio
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import vici

from ikeguard.audit.events import EventName, Outcome
from ikeguard.control.vici_codec import MAX_DEPTH, MAX_SEGMENT, PacketType, encode_packet
from ikeguard.control.vici_server import ViciServer
from tests.control.recording import RecordingGateway

T = TypeVar("T")


def serve(gateway: RecordingGateway, path: Path, body: Callable[[], T]) -> T:
    async def main() -> T:
        server = ViciServer(gateway, path)
        await server.start()
        try:
            return await asyncio.to_thread(body)
        finally:
            await server.close()

    return asyncio.run(main())


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    return state / "charon.vici"


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    return s


def _closed(s: socket.socket) -> bool:
    """True when the server closed the connection (EOF, or a reset)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_version_and_unknowns(sock_path: Path) -> None:
    gw = RecordingGateway([])

    def body() -> None:
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        with _connect(sock_path) as s:
            session = vici.Session(s)
            assert session.version()["daemon"] == b"ikeguard"
            with pytest.raises(vici.exception.SessionException, match="type 2"):
                session.request("no-such-command")
            with pytest.raises(vici.exception.EventUnknownException):
                list(session.listen(["no-such-event"]))

    serve(gw, sock_path, body)
    commands = [(e.details["command"], e.outcome) for e in gw.audit.events
                if e.event is EventName.ADMIN_COMMAND]
    assert ("vici version", Outcome.SUCCESS) in commands
    assert ("vici no-such-command", Outcome.FAILURE) in commands


def _segment(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


HOSTILE = {
    "length over 512 KiB": struct.pack("!I", MAX_SEGMENT + 1),
    "zero length": struct.pack("!I", 0),
    "wrong length (longer than sent, then EOF)": struct.pack("!I", 100) + bytes([0, 7]) + b"version",
    "truncated header": b"\0\0",
    "deep nesting": _segment(bytes([0, 8]) + b"list-sas" + bytes([1, 1, 115]) * (MAX_DEPTH + 2)
                             + bytes([2]) * (MAX_DEPTH + 2)),
    "huge list": _segment(bytes([0, 8]) + b"list-sas" + bytes([4, 1, 108]) + bytes([5, 0, 0]) * 100_000
                          + bytes([6])),
    "unbalanced section": _segment(bytes([0, 8]) + b"list-sas" + bytes([1, 1, 115])),
    "server packet type": encode_packet(PacketType.CMD_RESPONSE, {"success": "yes"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_malformed_input_ends_only_that_connection(sock_path: Path, name: str) -> None:
    gw = RecordingGateway([])

    def body() -> None:
        with _connect(sock_path) as good:
            session = vici.Session(good)
            with _connect(sock_path) as bad:
                bad.sendall(HOSTILE[name])
                if name.startswith("wrong length") or name == "truncated header":
                    bad.shutdown(socket.SHUT_WR)
                assert _closed(bad)
            assert session.version()["daemon"] == b"ikeguard"  # the other client is still served
        with _connect(sock_path) as again:
            assert vici.Session(again).version()["version"]

    serve(gw, sock_path, body)
    failures = [e for e in gw.audit.events
                if e.event is EventName.ADMIN_COMMAND and e.outcome is Outcome.FAILURE]
    assert len(failures) == 1 and failures[0].reason.startswith("malformed vici input: ")


def test_terminate_and_rekey_map_charon_selectors(sock_path: Path) -> None:
    sa = {"uniqueid": 3, "name": "hq", "remote_id": "peer.example", "state": "established", "children": []}
    gw = RecordingGateway([sa])

    def body() -> None:
        with _connect(sock_path) as s:
            session = vici.Session(s)
            list(session.terminate({"ike-id": "3"}))
            assert session.rekey({"ike": "hq"})["success"] == b"yes"
            with pytest.raises(vici.exception.CommandException, match="no matching SA found"):
                list(session.terminate({"ike": "nothing"}))
            with pytest.raises(vici.exception.CommandException, match="reauth"):
                session.rekey({"ike": "hq", "reauth": "yes"})

    serve(gw, sock_path, body)
    calls = [c for c in gw.calls if c[0] in ("terminate", "rekey")]
    assert calls[0] == ("terminate", {"uniqueid": 3, "peer": None, "conn": None, "child": None,
                                      "reason": "terminated by admin root (vici)"})
    assert calls[1][0] == "rekey" and calls[1][1]["conn"] == "hq"
