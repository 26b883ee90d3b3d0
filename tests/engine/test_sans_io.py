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


# Issue 15: state checks only through the tables (engine/states.py, engine/exchanges.py). Elsewhere in the
# engine a state may be compared with one member by identity (``sa.state is IkeState.CLOSED``); a set of
# states is a rule and is named in states.py; a state is never compared with its string value.
STATE_RULE_MODULES = {"states.py", "exchanges.py"}
STATE_ENUMS = {"IkeState", "ChildState"}


def _is_state_member(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in STATE_ENUMS
    )


def _is_state_value(node: ast.AST) -> bool:
    """``<x>.state.value`` (or ``state.value``)."""
    if not (isinstance(node, ast.Attribute) and node.attr == "value"):
        return False
    inner = node.value
    return (isinstance(inner, ast.Attribute) and inner.attr == "state") or (
        isinstance(inner, ast.Name) and inner.id == "state"
    )


def state_check_offences(source: str) -> list[str]:
    """Ad-hoc state sets, string comparisons and ==/!= against state members in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, right in zip(node.ops, node.comparators, strict=True):
            members = right.elts if isinstance(right, ast.Tuple | ast.List | ast.Set) else []
            if isinstance(op, ast.In | ast.NotIn) and any(_is_state_member(e) for e in members):
                found.append(f"line {node.lineno}: a set of states (name it in states.py)")
            if isinstance(op, ast.Eq | ast.NotEq) and any(_is_state_member(o) for o in operands):
                found.append(f"line {node.lineno}: == on a state (use `is`)")
        if any(_is_state_value(o) for o in operands):
            found.append(f"line {node.lineno}: a state compared by its string value")
    return found


def test_state_checks_only_through_the_state_tables() -> None:
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path.name in STATE_RULE_MODULES and path.parent == ENGINE:
            continue
        offenders += [f"{path.relative_to(ENGINE)}: {o}" for o in state_check_offences(path.read_text())]
    assert offenders == []


def test_the_state_check_rule_catches_what_it_forbids() -> None:
    bad = textwrap.dedent(
        """
        if sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING): pass
        if child.state not in [ChildState.DELETED]: pass
        if sa.state.value == "established": pass
        if state.value in ("created",): pass
        if sa.state == IkeState.CLOSED: pass
        """
    )
    assert len(state_check_offences(bad)) == 5
    fine = "if sa.state is IkeState.CLOSED or sa.state in UP: pass\ninfo = {'state': sa.state.value}\n"
    assert state_check_offences(fine) == []


def test_audit_event_and_timer_names_are_enum_members() -> None:
    """Issue 15: audit event names (audit/events.py ``EventName``) and deadline names (engine/timers.py
    ``Timer``) are written as enum members in the engine, never as string literals a typo could break."""
    from ikeguard.audit.events import EventName
    from ikeguard.engine.timers import Timer

    names = {e.value for e in EventName} | {t.value for t in Timer}
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path.name == "timers.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                if node.value == "retransmit" and path.name in ("retransmit.py", "ike_sa.py"):
                    continue  # MessageIdWindow.classify_request's verdict on a request, not the deadline
                offenders.append(f"{path.relative_to(ENGINE)}:{node.lineno}: {node.value!r}")
    assert offenders == []
