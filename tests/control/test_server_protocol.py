"""Control-socket protocol: owner-only socket, JSON lines, paging, clean errors, admin.command records,
event stream. Driven through the real client against a ``RecordingGateway`` (protocol level only)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikeguard.audit.events import EventName, Outcome
from ikeguard.control.client import ControlClient, ControlError, ControlUnavailable
from ikeguard.control.server import Caller, ControlServer, ControlSocketError
from tests.control.recording import RecordingGateway

T = TypeVar("T")


def _sa(uid: int, name: str, peer: str) -> dict[str, Any]:
    return {"uniqueid": uid, "name": name, "remote_id": peer, "state": "ESTABLISHED", "children": []}


SAS = [_sa(1, "merchants", "a.example"), _sa(2, "merchants", "b.example"), _sa(3, "hq", "hq.example")]


def run_with_server(gateway: RecordingGateway, path: Path,
                    body: Callable[[ControlClient], T]) -> T:
    """Start the server on an event loop, run ``body`` (blocking client code) in a thread, stop."""

    async def main() -> T:
        server = ControlServer(gateway, path)
        await server.start()
        try:
            with ControlClient(path, timeout=10) as client:
                return await asyncio.to_thread(body, client)
        finally:
            await server.close()

    return asyncio.run(main())


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state / "control.sock"


def test_socket_is_owner_only_and_removed_on_close(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)

    def body(client: ControlClient) -> int:
        client.request("conns")
        return stat.S_IMODE(sock_path.stat().st_mode)

    assert run_with_server(gw, sock_path, body) == 0o600
    assert not sock_path.exists()


def test_sas_filters_and_paging(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)

    def body(client: ControlClient) -> tuple[Any, ...]:
        everything = client.request("sas")
        merchants = client.response("sas", conn="merchants", offset=1, limit=5)
        by_peer = client.request("sas", peer="hq.example")
        by_id = client.request("sas", uniqueid=2)
        return everything, merchants, by_peer, by_id

    everything, merchants, by_peer, by_id = run_with_server(gw, sock_path, body)
    assert [s["uniqueid"] for s in everything] == [1, 2, 3]
    assert merchants["ok"] and merchants["total"] == 2 and [s["uniqueid"] for s in merchants["result"]] == [2]
    assert [s["uniqueid"] for s in by_peer] == [3]
    assert [s["uniqueid"] for s in by_id] == [2]
    assert ("sas", {"conn": "merchants", "peer": None, "uniqueid": None}) in gw.calls


def test_an_answer_longer_than_any_request_is_read_whole(sock_path: Path) -> None:
    """`sas --json` at a processor's scale: 12,000 SAs of ~600 bytes is more than the 4 MiB a request may be;
    the CLI reads it whole (it refused anything over 4 MiB before)."""
    big = [{**_sa(i, "merchants", f"m{i}.example"), "children": [{"proposal": "x" * 500}]}
           for i in range(1, 12_001)]
    answer = run_with_server(RecordingGateway(big), sock_path, lambda client: client.response("sas"))
    assert answer["ok"] and answer["total"] == 12_000 and len(answer["result"]) == 12_000
    assert len(json.dumps(answer)) > 4 * 1024 * 1024


def test_every_command_is_audited_with_user_and_outcome(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)

    def body(client: ControlClient) -> None:
        client.request("sas", conn="hq")
        client.request("terminate", peer="a.example", conn="merchants")
        with pytest.raises(ControlError, match="no SA matches"):
            client.request("rekey", uniqueid=99)

    run_with_server(gw, sock_path, body)
    records = [e for e in gw.audit.events if e.event is EventName.ADMIN_COMMAND]
    assert [r.details["command"] for r in records] == [
        "sas conn=hq", "terminate peer=a.example conn=merchants", "rekey uniqueid=99"]
    assert [r.outcome for r in records] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE]
    assert {r.details["uid"] for r in records} == {os.geteuid()}
    assert all(r.admin for r in records)
    assert records[1].connection == "merchants"
    assert records[2].reason == "no SA matches the selection"
    terminate = next(kw for name, kw in gw.calls if name == "terminate")
    assert terminate["peer"] == "a.example" and terminate["conn"] == "merchants"
    assert terminate["reason"].startswith("terminated by admin ")


def test_bad_requests_get_one_line_errors_and_the_connection_survives(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)

    def body(client: ControlClient) -> list[str]:
        errors = []
        for cmd, args in [("frobnicate", {}), ("sas", {"uniqueid": "seven"}), ("sas", {"colour": "red"}),
                          ("terminate", {}), ("initiate", {}), ("peers", {"action": "explode", "id": "x"})]:
            with pytest.raises(ControlError) as info:
                client.request(cmd, **args)
            errors.append(str(info.value))
        # raw garbage on the same connection, then a valid request still works
        assert client._sock is not None
        client._sock.sendall(b"{not json\n")
        garbage = client._read_line(5)
        assert garbage is not None and garbage["ok"] is False
        assert client.request("conns")[0]["name"] == "site"
        return errors

    errors = run_with_server(gw, sock_path, body)
    assert errors[0].startswith("unknown command 'frobnicate' (expected one of: sas, conns")
    assert errors[1] == "argument 'uniqueid' of sas must be an integer"
    assert errors[2].startswith("unknown argument 'colour' for sas")
    assert errors[3] == "select the SAs: give uniqueid, peer or conn"
    assert errors[4] == "initiate needs conn"
    assert errors[5].startswith("unknown peers action 'explode'")
    assert all("\n" not in e for e in errors)


def test_internal_errors_never_send_a_traceback(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)
    gw.fail_with = RuntimeError("secret internals\nTraceback (most recent call last)")

    def body(client: ControlClient) -> str:
        with pytest.raises(ControlError) as info:
            client.request("conns")
        return str(info.value)

    message = run_with_server(gw, sock_path, body)
    assert message == "internal error (RuntimeError); see the gateway log"
    assert gw.audit.events[-1].outcome is Outcome.FAILURE


def test_initiate_passes_conn_child_and_timeout(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)
    result = run_with_server(gw, sock_path,
                             lambda c: c.request("initiate", conn="hq", child="net", timeout=3))
    assert result == {"ike_uniqueids": [7], "reused": False}
    assert ("initiate", {"conn": "hq", "child": "net", "timeout": 3.0}) in gw.calls


def test_event_stream_delivers_events_and_unsubscribes(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)
    received: list[dict[str, Any]] = []

    async def main() -> None:
        server = ControlServer(gw, sock_path)
        await server.start()
        done = threading.Event()

        def reader() -> None:
            with ControlClient(sock_path, timeout=10) as client:
                for event in client.events():
                    received.append(event)
                    if len(received) == 2:
                        break
            done.set()

        thread = asyncio.create_task(asyncio.to_thread(reader))
        for _ in range(200):
            if gw.subscribers:
                break
            await asyncio.sleep(0.01)
        gw.emit({"event": "ike.up", "connection": "hq"})
        gw.emit({"event": "child.up", "connection": "hq"})
        await thread
        assert done.is_set()
        for _ in range(200):  # the client closed: the server unsubscribes
            if not gw.subscribers:
                break
            await asyncio.sleep(0.01)
        await server.close()

    asyncio.run(main())
    assert [e["event"] for e in received] == ["ike.up", "child.up"]
    assert not gw.subscribers
    assert any(e.details["command"] == "events" for e in gw.audit.events)


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ControlSocketError, match="world-writable"):
        asyncio.run(ControlServer(RecordingGateway(), shared / "control.sock").start())


def test_stale_socket_is_replaced_but_a_live_one_is_not(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # file remains, nobody listens
    assert run_with_server(RecordingGateway(), sock_path, lambda c: c.request("conns"))

    async def two() -> None:
        first = ControlServer(RecordingGateway(), sock_path)
        await first.start()
        try:
            with pytest.raises(ControlSocketError, match="another gateway"):
                await ControlServer(RecordingGateway(), sock_path).start()
        finally:
            await first.close()

    asyncio.run(two())


def test_client_reports_a_missing_socket(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "control.sock"
    with pytest.raises(ControlUnavailable, match=f"gateway not running\\? no control socket at {path}"):
        ControlClient(path).request("sas")


def test_protocol_line_is_one_json_object(sock_path: Path) -> None:
    gw = RecordingGateway(SAS)

    def body(client: ControlClient) -> bytes:
        client.connect()
        assert client._sock is not None
        client._sock.sendall(json.dumps({"id": 41, "cmd": "sas", "args": {"limit": 1}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += client._sock.recv(65536)
        return data

    line = run_with_server(gw, sock_path, body)
    assert line.count(b"\n") == 1
    message = json.loads(line)
    assert message["id"] == 41 and message["ok"] is True
    assert message["total"] == 3 and len(message["result"]) == 1



_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_requests = st.fixed_dictionaries(
    {"id": _json, "cmd": st.sampled_from(["sas", "conns", "initiate", "terminate", "rekey", "peers", "reload",
                                          "events", "bogus"]) | _json},
    optional={"args": st.dictionaries(st.sampled_from(["conn", "peer", "uniqueid", "offset", "limit", "child",
                                                       "timeout", "action", "id", "ts", "ticket", "wait",
                                                       "x"]), _json, max_size=5) | _json})


@settings(max_examples=150, deadline=None)
@given(request=_requests)
def test_any_request_gets_a_one_line_answer_and_an_audit_record(request: dict[str, Any]) -> None:
    gw = RecordingGateway(SAS)
    gw.plan = None  # peers/reload reach for the plan: they must fail cleanly, not crash the server
    server = ControlServer(gw, Path("/nonexistent/control.sock"))
    caller = Caller(pid=1, uid=os.geteuid(), gid=0)
    response = asyncio.run(server.handle(request, caller))
    assert response["id"] == request["id"] and isinstance(response["ok"], bool)
    if not response["ok"]:
        assert isinstance(response["error"], str) and response["error"] and "\n" not in response["error"]
        assert "Traceback" not in response["error"]
    json.dumps(response)  # always serialisable
    assert [e.event for e in gw.audit.events] == [EventName.ADMIN_COMMAND]
    assert gw.audit.events[0].outcome is (Outcome.SUCCESS if response["ok"] else Outcome.FAILURE)


def test_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(ControlSocketError, match="belongs to uid 65534"):
        asyncio.run(ControlServer(RecordingGateway(), foreign / "control.sock").start())
