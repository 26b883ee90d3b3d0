"""Issue 15: the folder tells fast from slow. A test that runs a real peer or daemon (marked ``interop``)
lives in tests/interop/, and every test there is marked, so `pytest tests/interop` is the slow half and
`pytest -m "not interop"` never starts a peer."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _marks(node: ast.expr) -> set[str]:
    """Marker names in ``pytest.mark.X`` expressions found in ``node`` (lists, calls, attributes)."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"}


def _interop_tests(path: Path) -> tuple[list[str], list[str]]:
    """(tests marked interop, tests not marked) of one test module."""
    tree = ast.parse(path.read_text())
    module_marks: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            module_marks |= _marks(node.value)
    marked, unmarked = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            marks = module_marks | {m for d in node.decorator_list for m in _marks(d)}
            (marked if "interop" in marks else unmarked).append(f"{path.relative_to(TESTS)}::{node.name}")
    return marked, unmarked


def test_interop_tests_live_in_tests_interop_and_nowhere_else() -> None:
    outside, unmarked_inside = [], []
    for path in sorted(TESTS.rglob("test_*.py")):
        marked, unmarked = _interop_tests(path)
        if path.parent.name == "interop":
            unmarked_inside += unmarked
        else:
            outside += marked
    assert outside == [], "interop-marked tests outside tests/interop/"
    assert unmarked_inside == [], "tests in tests/interop/ without the interop marker"
