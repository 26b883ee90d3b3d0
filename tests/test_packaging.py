"""A user can install ikeguard without the repository: `python -m build` (what `make dist` runs) makes an
sdist and a wheel built from that sdist; `pip install` of the wheel into a fresh venv gives an `ikeguard` that
works from outside the repository (`--version`, `profiles`, `check` on the examples, `check --schema`, the
demo), with the profile data files inside the wheel.

The venv gets its dependencies from the package index pip is configured with, as a user's would. Commands
run with cwd in a temporary directory and without PYTHONPATH, and the test asserts that `ikeguard` is imported
from the new venv, not from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikeguard import __version__
from ikeguard.policy.profile import available_profiles
from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    """The built artefacts and the venv the wheel was installed into."""

    wheel: Path
    sdist: Path
    venv: Path
    workdir: Path  # outside the repository

    @property
    def ikeguard(self) -> Path:
        return self.venv / "bin" / "ikeguard"

    def run(self, *argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return subprocess.run([str(a) for a in argv], cwd=self.workdir, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    dist, workdir = base / "dist", base / "work"
    workdir.mkdir()
    # as `make dist`: sdist first, then the wheel built from the unpacked sdist (so the sdist is complete too)
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=workdir, timeout=600)
    wheels, sdists = sorted(dist.glob("ikeguard-*.whl")), sorted(dist.glob("ikeguard-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=workdir, timeout=120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          str(wheels[0])], cwd=workdir, timeout=600)
    return Installed(wheels[0], sdists[0], venv, workdir)


def test_wheel_carries_the_package_data(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for profile in ("_common", "_regulated", *available_profiles()):
        assert f"ikeguard/policy/profiles/{profile}.toml" in names
    assert "ikeguard/py.typed" in names
    assert not any(n.startswith(("tests/", "examples/", "scripts/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    assert "ikeguard = ikeguard.control.cli:main" in scripts


def test_installed_ikeguard_comes_from_the_venv(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    result = installed.run(python, "-c", "import ikeguard; print(ikeguard.__file__)")
    assert result.returncode == 0, result.stderr
    location = Path(result.stdout.strip()).resolve()
    assert location.is_relative_to(installed.venv.resolve()), location
    assert not location.is_relative_to(REPO)


def test_version(installed: Installed) -> None:
    result = installed.run(installed.ikeguard, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ikeguard, version {__version__}"


def test_profiles_from_the_package_data(installed: Installed) -> None:
    text = installed.run(installed.ikeguard, "profiles")
    assert text.returncode == 0, text.stderr
    listing = installed.run(installed.ikeguard, "profiles", "--json")
    assert listing.returncode == 0, listing.stderr
    profiles = json.loads(listing.stdout)
    assert [p["name"] for p in profiles] == available_profiles()
    assert all(p["rules"] > 0 for p in profiles)
    for p in profiles:
        assert p["name"] in text.stdout
    one = installed.run(installed.ikeguard, "profiles", "pci-dss-4", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["rules"], one.stderr


def test_check_on_every_example(installed: Installed) -> None:
    """Each example passes the profile its header names with the installed `ikeguard` (certificates from
    examples/make-pki.sh, strongSwan's pki tool), and a broken copy fails with exit 1."""
    if shutil.which("pki") is None:
        pytest.fail("strongSwan's pki tool is missing (make test installs strongswan-pki)")
    examples = installed.workdir / "examples"
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns("pki", "state*"))
    made = installed.run(examples / "make-pki.sh", timeout=180)
    assert made.returncode == 0, made.stderr
    configs = sorted(p for p in examples.glob("*.toml") if "[gateway]" in p.read_text())
    assert len(configs) >= 4
    for config in configs:
        profile = re.search(r"^# Passes: profile (\S+)", config.read_text(), re.MULTILINE)
        assert profile, config.name
        result = installed.run(installed.ikeguard, "check", "-c", config, "--json")
        report = json.loads(result.stdout)
        failing = [f for f in report.get("findings", []) if f["status"] in ("fail", "not_implemented")]
        assert result.returncode == 0 and report["passed"] and report["profile"] == profile.group(1), \
            (config.name, failing)
    broken = examples / "broken.toml"
    broken.write_text(configs[0].read_text().replace('profile = "', 'profile = "cnsa-1" #', 1)
                      .replace("aes256gcm16", "aes128gcm16"))
    result = installed.run(installed.ikeguard, "check", "-c", broken)
    assert result.returncode == 1, result.stdout + result.stderr


def test_check_schema_and_usage_errors(installed: Installed) -> None:
    schema = installed.run(installed.ikeguard, "check", "--schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "ikeguard configuration"
    missing = installed.run(installed.ikeguard, "check", "-c", installed.workdir / "no-such.toml")
    assert missing.returncode == 2 and missing.stderr.strip()


def test_demo_modules_are_installed(installed: Installed) -> None:
    """What `ikeguard demo` imports is in the wheel (the demo itself runs as root, below)."""
    probe = installed.run(installed.venv / "bin" / "python", "-c",
                          "import ikeguard.tools.demo.runner, ikeguard.tools.demo.display, "
                          "ikeguard.tools.certfactory, ikeguard.tools.netns, ikeguard.tools.gateway_process")
    assert probe.returncode == 0, probe.stderr
    helptext = installed.run(installed.ikeguard, "demo", "--help")
    assert helptext.returncode == 0 and "--json" in helptext.stdout


@pytest.mark.root
def test_demo_runs_from_the_installed_wheel(installed: Installed) -> None:
    result = installed.run(installed.ikeguard, "demo", "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["failed_step"] is None
    assert {"tunnels", "traffic", "segmentation", "audit"} <= {s["step"] for s in summary["steps"]}
