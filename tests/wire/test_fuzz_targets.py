"""The atheris fuzz targets under fuzz/ (issue 13, "Done when" 0): each runs briefly under libFuzzer here
(``make fuzz`` runs them as long as asked), and every input kept in fuzz/regressions/<target>/ and in the seed
corpus fuzz/corpus/<target>/ is replayed uninstrumented: no exception but the project's own errors, and each
datagram within the CPU bound of fuzz/common.py.

A finding of the brief run is written to fuzz/regressions/<target>/ (libFuzzer's ``crash-<sha1>``): the test
fails, and from then on the replay keeps the input as a regression.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
TARGETS = ("wire", "responder")
BRIEF_SECONDS = int(os.environ.get("FUZZ_BRIEF_SECONDS", "20"))


def _target(name: str) -> Callable[[bytes], None]:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    module = importlib.import_module(f"fuzz_{name}")
    return module.one_input  # type: ignore[no-any-return]


def _inputs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix != ".md"
    )


def _fuzz(
    name: str, seconds: int, corpus: Path, artifacts: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(FUZZ / f"fuzz_{name}.py"), f"-max_total_time={seconds}", "-rss_limit_mb=4096",
         f"-artifact_prefix={artifacts}/", str(corpus), str(FUZZ / "corpus" / name)],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120, env={**os.environ, **env},
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_target_runs_briefly_without_a_finding(name: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is in the test extras (pyproject.toml): install them")
    regressions = FUZZ / "regressions" / name
    before = set(_inputs(regressions))
    result = _fuzz(name, BRIEF_SECONDS, tmp_path / "corpus", regressions)
    found = sorted(set(_inputs(regressions)) - before)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0 and not found, f"fuzz_{name} finding {found} (kept as regression):\n{tail}"
    assert "Done " in result.stderr, tail  # libFuzzer's closing line: the target really ran


@pytest.mark.slow
def test_a_finding_fails_the_run_and_is_kept(tmp_path: Path) -> None:
    """The brief run can fail: with a CPU bound of zero, every input is a finding."""
    pytest.importorskip("atheris", reason="atheris is in the test extras (pyproject.toml): install them")
    result = _fuzz("wire", 5, tmp_path / "corpus", tmp_path / "found", FUZZ_CPU_BOUND="0")
    assert result.returncode != 0
    assert "CpuBoundExceeded" in result.stdout + result.stderr
    assert _inputs(tmp_path / "found"), result.stderr[-2000:]


@pytest.mark.parametrize("name", TARGETS)
def test_regressions_and_seed_corpus_replay_within_bounds(name: str) -> None:
    one_input = _target(name)
    inputs = _inputs(FUZZ / "regressions" / name) + _inputs(FUZZ / "corpus" / name)
    assert len(inputs) > 20, "the seed corpus is missing: python fuzz/make_corpus.py"
    for path in inputs:
        one_input(path.read_bytes())  # raises for a finding (exception or CPU bound, fuzz/common.py)


def test_the_reported_datagram_is_kept_as_a_regression_input() -> None:
    from tests.wire.hostile import the_reported_datagram

    data = the_reported_datagram()
    for name in TARGETS:
        kept = [p.read_bytes() for p in _inputs(FUZZ / "regressions" / name)]
        assert bytes([0]) + data in kept, name
