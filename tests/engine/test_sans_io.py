"""The engine never reads a clock or a socket: no engine module imports time/socket/asyncio, and a full
in-memory setup runs with those modules replaced by poison that raises on any use."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "ikeguard" / "engine"
FORBIDDEN = {"time", "socket", "asyncio", "selectors", "datetime.datetime.now"}


def test_no_engine_module_imports_clock_or_socket() -> None:
    offenders = []
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
                base = node.value
                base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if base_name in ("datetime", "date"):
                    names = ["datetime.datetime.now"]
            offenders += [f"{path.name}: {n}" for n in names if n in FORBIDDEN]
    assert offenders == []


def test_engine_runs_with_time_socket_asyncio_poisoned() -> None:
    code = textwrap.dedent(
        """
        import sys, types
        import datetime, threading, cryptography.x509, pydantic  # users of time that load first
        import ikeguard.policy.loader, ikeguard.wire, ikeguard.crypto.signatures, ikeguard.crypto.sk
        class Poison(types.ModuleType):
            def __getattr__(self, name):
                raise RuntimeError(f"engine used {self.__name__}.{name}")
        for name in ("time", "socket", "asyncio"):
            sys.modules[name] = Poison(name)
        from tests.engine.harness import psk_pair
        from ikeguard.engine.states import IkeState
        net = psk_pair()
        net.initiate()
        net.run()
        net.advance(30)
        assert net.a.manager.ike_sas()[0].state is IkeState.ESTABLISHED
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
