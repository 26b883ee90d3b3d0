"""Shared pytest set-up: root/interop markers and skip reasons, the vectors and examples, the skip line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["tests.harness.plugin"]
REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors"
EXAMPLES = REPO / "examples"


def _root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, TUN)"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "needs iproute2"
    return None


def _interop_problem() -> str | None:
    if shutil.which("charon-systemd") is None and not Path("/usr/sbin/charon-systemd").exists():
        return "needs strongSwan's charon-systemd (make test installs it)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip root/interop tests with the reason when the machine cannot run them; CI must run them all."""
    in_ci = os.environ.get("CI") == "true"
    problems = {"root": _root_problem(), "interop": _interop_problem()}
    for item in items:
        for marker, problem in problems.items():
            # In CI nothing is skipped: a missing prerequisite must fail the run, not hide a test.
            if problem and item.get_closest_marker(marker) and not in_ci:
                item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"third-party vectors not found at {VECTORS}")
    return VECTORS


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's example configs as committed: a copy without the generated pki/ and state directories."""
    if not EXAMPLES.is_dir():
        pytest.fail(f"example configs not found at {EXAMPLES}")
    target = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("pki", "state*"))
    return target



_SKIP_LINE = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Counts the tests that did not run, by reason, for the run's very last line (pytest_unconfigure)."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    detail = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    config.stash[_SKIP_LINE] = (f"ikeguard: {len(skipped)} tests did not run: {detail}" if skipped
                                else "ikeguard: every collected test ran (0 skipped)")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The last line of the run says how many tests did not run and why (a user without root sees it)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    line = config.stash.get(_SKIP_LINE, None)
    if reporter is not None and line is not None:
        reporter.write_line(line, yellow="did not run" in line)
