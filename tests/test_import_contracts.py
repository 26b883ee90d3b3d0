"""`make lint` runs import-linter with the layer and acyclic contracts of pyproject.toml ([tool.importlinter],
docs/architecture.md): they hold today (known debt is listed import by import), and an import that looks up a
layer or closes a cycle breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        capture_output=True, text=True, timeout=120, cwd=src.parent,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )


def test_contracts_hold() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "ikeguard", src / "ikeguard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    states = src / "ikeguard" / "engine" / "states.py"
    states.write_text(states.read_text() + "\nimport ikeguard.service.stats  # looks up\n")
    result = lint_imports(src)
    assert result.returncode != 0
    assert "ikeguard.engine.states -> ikeguard.service.stats" in result.stdout


def test_a_new_cycle_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    base = src / "ikeguard" / "wire"
    (base / "zz_a.py").write_text("import ikeguard.wire.zz_b\n")
    (base / "zz_b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    import ikeguard.wire.zz_a\n")
    result = lint_imports(src)
    assert result.returncode != 0
    assert "No cycles are allowed in ikeguard.wire" in result.stdout
