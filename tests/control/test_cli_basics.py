"""The CLI answers like the contract says: version, help, demo prerequisites."""

from __future__ import annotations

import os

from click.testing import CliRunner

from ikeguard import __version__
from ikeguard.control.cli import main


def test_version_is_printed() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_without_root_exits_2_or_runs_as_root() -> None:
    result = CliRunner().invoke(main, ["demo"])
    if os.geteuid() == 0:
        assert result.exit_code == 0, result.output
        assert "merchant" in result.output
    else:
        assert result.exit_code == 2
        assert "root" in result.output
