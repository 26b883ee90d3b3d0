"""The harness plugin fails a run that leaves a namespace or process behind, and then removes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]

LEAKY_TEST = textwrap.dedent("""
    from ikeguard.tools.netns import NetnsLab

    def test_leaks():
        lab = NetnsLab()
        ns = lab.namespace("leak")
        ns.popen(["sleep", "60"])
        print("LEAKED", ns.name, flush=True)
""")
TIDY_TEST = textwrap.dedent("""
    def test_tidy(netns_topology):
        topo = netns_topology("nat")
        assert topo.router is not None
""")


def _run_pytest(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "tests.harness.plugin",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_case.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_leaked_namespace_fails_the_run_and_is_removed(tmp_path: Path) -> None:
    result = _run_pytest(tmp_path, LEAKY_TEST)
    leaked = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("LEAKED"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "left behind namespaces=" in result.stdout and leaked in result.stdout
    assert "1 passed" in result.stdout  # the test itself passed; the leak check failed the run
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert leaked not in listed


def test_tidy_run_passes(tmp_path: Path) -> None:
    result = _run_pytest(tmp_path, TIDY_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left behind" not in result.stdout
