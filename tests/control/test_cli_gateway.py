"""The gateway verbs of the CLI against a control socket served for a RecordingGateway (protocol level):
socket discovery from -c FILE, --json vs tables, exit codes 0/1/2 with one-line reasons."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ikeguard.control.cli import main
from ikeguard.control.server import ControlServer
from tests.control.recording import RecordingGateway


def _sa(uid: int, name: str, peer: str) -> dict[str, Any]:
    return {
        "name": name, "uniqueid": uid, "state": "ESTABLISHED", "local_addr": "192.0.2.1", "local_port": 4500,
        "remote_addr": "192.0.2.2", "remote_port": 4500, "local_id": "gw.example", "remote_id": peer,
        "initiator": False, "proposal": "aes256gcm16-prfsha384-ecp384",
        "established_at": "2026-11-27T03:00:00Z", "rekey_at": "2026-11-27T15:00:00Z", "reauth_at": None,
        "children": [{
            "name": "net", "uniqueid": uid * 10, "state": "INSTALLED", "mode": "tunnel", "spi_in": "c1a2b3c4",
            "spi_out": "0a0b0c0d", "proposal": "aes256gcm16", "local_ts": ["198.51.100.0/25"],
            "remote_ts": ["198.51.100.128/25"], "bytes_in": 2048, "bytes_out": 4096, "packets_in": 2,
            "packets_out": 4, "rekey_at": "2026-11-27T04:00:00Z", "expires_at": "2026-11-27T05:00:00Z"}],
    }


SAS = [_sa(1, "merchants", "a.example"), _sa(2, "merchants", "b.example"), _sa(3, "hq", "hq.example")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RecordingGateway, Path]]:
    """A ControlServer on its own event loop thread (the CLI is blocking)."""
    gw = RecordingGateway(SAS)
    path = tmp_path / "state" / "control.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(gw, path)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    try:
        yield gw, path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_no_socket_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "control.sock"
    result = run("sas", "--socket", str(path))
    assert result.exit_code == 2
    assert result.output.strip() == f"ikeguard: gateway not running? no control socket at {path}"
    assert run("conns").exit_code == 2  # neither -c nor --socket


def test_socket_is_found_from_the_config_state_dir(served: tuple[RecordingGateway, Path],
                                                   tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nstate_dir = "state"\n')
    result = run("sas", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    assert [s["uniqueid"] for s in json.loads(result.output)] == [1, 2, 3]
    # a config the gateway would refuse still leads to its socket (e.g. reload after a bad edit)
    config.write_text('[gateway]\nstate_dir = "state"\nprofile = "no-such-profile"\n')
    assert run("conns", "-c", str(config), "--json").exit_code == 0
    config.write_text("[gateway\n")
    broken = run("conns", "-c", str(config))
    assert broken.exit_code == 2 and "not valid TOML" in broken.output


def test_sas_text_shows_ike_sas_with_their_children(served: tuple[RecordingGateway, Path]) -> None:
    _gw, path = served
    result = run("sas", "--socket", str(path), "--conn", "merchants")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "a.example" in text and "b.example" in text and "hq.example" not in text
    assert "└ net" in text and "c1a2b3c4" in text and "198.51.100.128/25" in text and "2.0 KiB" in text
    assert "IKE SAs: 2; Child SAs: 2" in text
    paged = run("sas", "--socket", str(path), "--limit", "1", "--offset", "1")
    assert "IKE SAs: 2-2 of 3" in paged.output
    assert run("sas", "--socket", str(path), "--peer", "nobody").output.strip() == "no IKE SAs match"


def test_terminate_and_rekey_selection_and_exit_codes(served: tuple[RecordingGateway, Path]) -> None:
    gw, path = served
    ok = run("terminate", "--socket", str(path), "--peer", "a.example")
    assert ok.exit_code == 0 and ok.output.strip() == "1 SA terminated"
    assert run("rekey", "--socket", str(path), "--conn", "merchants", "--json").output.strip().startswith("{")
    none = run("terminate", "--socket", str(path), "--uniqueid", "42")
    assert none.exit_code == 1 and none.output.strip() == "ikeguard: no SA matches the selection"
    bare = run("terminate", "--socket", str(path))
    assert bare.exit_code == 2 and "--uniqueid N, --peer ID or --conn NAME" in bare.output
    calls = [c for c in gw.calls if c[0] in ("terminate", "rekey")]
    assert calls[0][1]["peer"] == "a.example" and calls[1][1]["conn"] == "merchants"


def test_initiate_and_conns(served: tuple[RecordingGateway, Path]) -> None:
    _gw, path = served
    result = run("initiate", "--socket", str(path), "--conn", "hq", "--child", "net")
    assert result.exit_code == 0 and result.output.strip() == "hq: IKE SA 7 established"
    conns = run("conns", "--socket", str(path))
    assert conns.exit_code == 0 and "site" in conns.output and "peer.example" in conns.output
    assert json.loads(run("conns", "--socket", str(path), "--json").output)[0]["name"] == "site"


def test_gateway_failure_exits_1_without_traceback(served: tuple[RecordingGateway, Path]) -> None:
    gw, path = served
    gw.fail_with = RuntimeError("boom")
    result = run("sas", "--socket", str(path))
    assert result.exit_code == 1
    assert result.output.strip() == "ikeguard: internal error (RuntimeError); see the gateway log"


def test_peers_takes_the_socket_before_or_after_the_subcommand(served: tuple[RecordingGateway, Path]) -> None:
    gw, path = served
    gw.plan = None  # the RecordingGateway has no inventories: the gateway's refusal comes back as exit 1
    before = run("peers", "--socket", str(path), "list")
    after = run("peers", "list", "--socket", str(path))
    assert before.exit_code == after.exit_code == 1
    assert before.output == after.output and "internal error" in before.output
    assert run("peers", "list").exit_code == 2
