"""Fixtures for policy tests: a writable copy of the shared example configs, a fixed `now`."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


@pytest.fixture
def example_copy(tmp_path: Path, examples_dir: Path) -> Path:
    """A copy of the project's examples/ (without PKI) the test may edit."""
    target = tmp_path / "examples"
    shutil.copytree(examples_dir, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact snippet (fails loudly when the example changed)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))
