"""FRR (Debian ``frr``) in a test namespace: zebra and bgpd in the foreground as Debian's ``frr`` user
(root is not in the ``frrvty`` group FRR insists on) with their own config, pid, zserv and vty socket paths
under a directory of their own (``frr_dirs``: pytest's tmp_path is not reachable for that user), stopped
by their PIDs through the namespace lab. Missing under CI=true it fails the test, else it is skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ikeguard.tools.netns import Namespace

FRR_DIR = Path("/usr/lib/frr")


@contextmanager
def frr_dirs() -> Iterator[Path]:
    """A directory the ``frr`` user can reach, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ikg-frr-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Frr:
    """One router: its daemons and ``vtysh`` on its vty sockets."""

    def __init__(self, ns: Namespace, workdir: Path, config: str) -> None:
        if not (FRR_DIR / "bgpd").exists():
            if os.environ.get("CI") == "true":
                pytest.fail("FRR is not installed (frr)")
            pytest.skip("FRR is not installed (frr)")
        self.ns = ns
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "frr.conf").write_text(config.replace("{dir}", str(workdir)))
        shutil.chown(workdir, "frr", "frr")
        shutil.chown(workdir / "frr.conf", "frr", "frr")
        self.log = (workdir / "frr.out").open("wb")
        common = ["-f", str(workdir / "frr.conf"), "-z", str(workdir / "zserv.api"), "--vty_socket",
                  str(workdir), "-u", "frr", "-g", "frr", "-P", "0"]
        self.procs: list[subprocess.Popen[bytes]] = []
        for daemon in ("zebra", "bgpd"):
            self.procs.append(ns.popen([str(FRR_DIR / daemon), *common, "-i", str(workdir / f"{daemon}.pid")],
                                       stdout=self.log, stderr=self.log))
            if daemon == "zebra":
                self._wait_for(workdir / "zserv.api")

    def _wait_for(self, path: Path, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise AssertionError(f"FRR did not start: {(self.dir / 'frr.out').read_text()[-2000:]}")
            time.sleep(0.05)

    def vtysh(self, command: str) -> str:
        done = self.ns.run("vtysh", "--vty_socket", str(self.dir), "-c", command, check=False, timeout=10)
        return done.stdout

    def route_nexthops(self, prefix: str) -> set[str]:
        """Next hops of the BGP paths this router holds for ``prefix`` (empty when it has none)."""
        text = self.vtysh(f"show ip bgp {prefix} json")
        try:
            data: Any = json.loads(text or "{}")
        except ValueError:
            return set()
        return {hop["ip"] for path in data.get("paths", []) for hop in path.get("nexthops", [])}
