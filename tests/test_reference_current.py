"""docs/reference.md is what scripts/gen_reference.py makes from the code today, and the `--json` fields it
documents by hand (scripts/reference/notes.toml) are the fields the commands really print.

Regenerate with `make reference` (or `python scripts/gen_reference.py`) after changing the configuration
model, a command, a profile or the audit event catalogue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from ikeguard.audit.events import EVENT_FIELDS
from ikeguard.control.cli import main
from tests.conftest import REPO

GENERATOR = REPO / "scripts" / "gen_reference.py"
NOTES = REPO / "scripts" / "reference" / "notes.toml"


def _generator() -> ModuleType:
    """scripts/gen_reference.py as a module (a development tool: not part of the installed package)."""
    if "gen_reference" in sys.modules:
        return sys.modules["gen_reference"]
    spec = importlib.util.spec_from_file_location("gen_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_reference_is_current() -> None:
    generated = _generator().render()
    current = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    if current != generated:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), generated.splitlines(True),
                                                 "docs/reference.md", "generated"))[:80])
        pytest.fail(f"docs/reference.md is not current; run `make reference`:\n{diff}")


def test_generator_refuses_what_the_notes_do_not_cover() -> None:
    """An event or --json output the notes miss, or a key they invent, fails generation (not unnoticed)."""
    gen = _generator()
    notes = tomllib.loads(NOTES.read_text(encoding="utf-8"))
    events = dict(notes["events"])
    events["events"] = {k: v for k, v in events["events"].items() if k != "ike.up"}
    with pytest.raises(gen.ReferenceError, match=r"ike\.up"):
        gen.render_events(events)
    with pytest.raises(gen.ReferenceError, match="sas"):
        gen.render_json({k: v for k, v in notes["json"].items() if k != "sas"}, [*notes["json"]])
    with pytest.raises(gen.ReferenceError, match="no_such_key"):
        gen.render_config({**notes["keys"], "gateway.no_such_key": {"meaning": "x"}})


def test_reference_covers_every_command_key_and_event() -> None:
    text = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    gen = _generator()
    for path, _cmd in gen.walk_commands(main):
        assert f"### `ikeguard{' ' + ' '.join(path) if path else ''}`" in text
    from ikeguard.audit.events import EventName
    for event in EventName:
        assert f"| `{event.value}` |" in text


# -- the documented --json fields are the real ones ----------------------------------------------------------
def _documented(command: str) -> set[str]:
    notes = tomllib.loads(NOTES.read_text(encoding="utf-8"))["json"][command]
    return {f[0] for f in notes.get("fields", [])}


def _level(documented: set[str], prefix: str) -> set[str]:
    """Documented names directly under ``prefix`` ("" = top level, "children[]." = inside children)."""
    out = set()
    for name in documented:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if "." not in rest:
                out.add(rest.removesuffix("[]"))
    return out


def _json(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def test_check_json_fields(tmp_path: Path) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()  # waivers are time-boxed
    (tmp_path / "gw.toml").write_text(f"""
[gateway]
profile = "pci-dss-4"

[connections.branch]
remote_addrs = ["192.0.2.10"]
[connections.branch.local]
auth = "psk"
id = "gw.example.net"
[connections.branch.remote]
auth = "psk"
id = "branch.example.net"
[connections.branch.children.net]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]

[secrets.ike.branch]
ids = ["branch.example.net"]
secret = "0x6b3c9f0e2a5d7c1b8e4f6a2d9c0b3e5f7a1c4d8e2b6f0a3c5e9d1b7f4a2c6e8d"

[[waivers]]
rule = "psk.inline"
scope = "secrets.ike.branch"
reason = "lab"
owner = "ops"
ticket = "CHG-1"
expires = {expires}
""")
    report = _json("check", "-c", str(tmp_path / "gw.toml"), "--json")
    documented = _documented("check")
    assert set(report) == _level(documented, "")
    seen = {key for f in report["findings"] for key in f}
    assert "compensating_control" in seen  # the example exercises every optional field
    assert seen == _level(documented, "findings[].")
    statuses = {f["status"] for f in report["findings"]}
    assert "compensating_control" in statuses
    assert {k for r in report["requirements"] for k in r} == _level(documented, "requirements[].")


def test_profiles_json_fields() -> None:
    documented = _documented("profiles")
    listing = _json("profiles", "--json")
    assert {k for p in listing for k in p} == _level(documented, "")
    one = _json("profiles", "pci-dss-4", "--json")
    assert set(one) == _level(documented, "")
    assert {k for r in one["rules"] for k in r} == _level(documented, "rules[].")


def test_audit_verify_and_tail_json_fields(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert CliRunner().invoke(main, ["audit", "--state-dir", str(state), "init"]).exit_code == 0
    verify = _json("audit", "--state-dir", str(state), "verify", "--json")
    assert set(verify) == _documented("audit verify")
    result = CliRunner().invoke(main, ["audit", "--state-dir", str(state), "tail", "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines and all(set(line) == _documented("audit tail") for line in lines)
    documented_fields = set(tomllib.loads(NOTES.read_text())["events"]["fields"])
    assert all(set(line["body"]) <= documented_fields for line in lines)


def test_demo_json_fields() -> None:
    from ikeguard.tools.demo.result import DemoResult, StepRecord

    data = DemoResult(steps=[StepRecord("k", "t", True, 1.0, "d")]).to_json()
    assert set(data) == _level(_documented("demo"), "")


def test_peers_and_reload_json_fields() -> None:
    from ikeguard.service.peers import peer_dict
    from ikeguard.service.reload import ReloadResult

    inventory = SimpleNamespace(connection="merchants")
    peer = SimpleNamespace(id="a.example", remote_ts=["10.0.0.0/24"], enabled=True, ticket=None,
                           disabled_reason=None)
    assert set(peer_dict(inventory, peer, 0)) == _documented("peers list")  # type: ignore[arg-type]
    assert _documented("peers disable") == {"terminated"}
    assert set(ReloadResult().as_dict()) == _documented("reload")


def test_gateway_verbs_json_fields(tmp_path: Path) -> None:
    """sas, conns, initiate, rekey, terminate and events of a real gateway (the in-process loopback pair, no
    root), answered by the real control server."""
    from ikeguard.control.server import Caller, ControlServer
    from tests.service.inprocess import free_port, make_plan, pair_configs, running

    port = free_port()
    responder_cfg, initiator_cfg = pair_configs()
    caller = Caller(pid=1, uid=0, gid=0)
    answers: dict[str, Any] = {}

    async def body() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port)), \
                running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            server = ControlServer(client.gateway, tmp_path / "unused.sock")

            async def ask(cmd: str, **args: Any) -> Any:
                response = await server.handle({"id": 1, "cmd": cmd, "args": args}, caller)
                assert response["ok"], response
                return response["result"]

            answers["initiate"] = await ask("initiate", conn="ikg", timeout=10)
            for _ in range(200):
                sas = await ask("sas")
                if sas and sas[0]["children"] and sas[0]["children"][0]["state"] == "installed":
                    break
                await asyncio.sleep(0.02)
            answers["sas"], answers["conns"] = sas, await ask("conns")
            answers["rekey"] = await ask("rekey", conn="ikg")
            await asyncio.sleep(0.3)
            answers["terminate"] = await ask("terminate", conn="ikg")
            answers["events"] = list(client.seen)

    asyncio.run(body())
    sas = _documented("sas")
    assert answers["sas"] and {k for sa in answers["sas"] for k in sa} == _level(sas, "")
    assert {k for c in answers["sas"][0]["children"] for k in c} == _level(sas, "children[].")
    conns = _documented("conns")
    assert {k for c in answers["conns"] for k in c} == _level(conns, "")
    for verb in ("initiate", "terminate"):
        assert set(answers[verb]) == _documented(verb), verb
    rekey = _documented("rekey")
    assert set(answers["rekey"]) == _level(rekey, "") and answers["rekey"]["sas"]
    assert {k for e in answers["rekey"]["sas"] for k in e} <= _level(rekey, "sas[].")
    assert answers["events"]
    assert {k for e in answers["events"] for k in e} <= {"time", *EVENT_FIELDS}
