"""The CLI answers like the contract says: version, help, demo prerequisites."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from ikeguard import __version__
from ikeguard.control.cli import main


def test_version_is_printed() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_without_root_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root the demo says what it needs and exits 2 (the full run is tests/tools/test_demo.py)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 2
    assert "root" in result.output
