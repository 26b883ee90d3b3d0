"""What an operator sees: ``ikeguard run`` with ``gateway.dataplane = "xfrm"`` on a kernel without ESP
refuses to start, exit code 1, one line naming the missing modules and the setting to change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ikeguard.dataplane.xfrm import probe
from ikeguard.tools.netns import NetnsLab, Topology
from tests.service.gwconfig import GwConfig

pytestmark = pytest.mark.root


def test_gateway_refuses_xfrm_without_kernel_esp(tmp_path: Path) -> None:
    with NetnsLab("ikx") as lab:
        topo = Topology.two_hosts(lab)
        ns = topo.right.namespace
        if probe(ns.name).reason is None:
            pytest.skip("this kernel has ESP: the refusal cannot happen here (docs/xfrm.md)")
        config = GwConfig(
            local_addr="192.0.2.1",
            remote_addr="192.0.2.2",
            local_id="gw.example",
            remote_id="client.example",
            local_ts="198.51.100.0/25",
            remote_ts="198.51.100.128/25",
            psk="x" * 32,
            dataplane="xfrm",
        )
        (tmp_path / "gateway.toml").write_text(config.text())
        (tmp_path / "psk.txt").write_text("correct-horse-battery-staple-xfrm-test\n")
        (tmp_path / "psk.txt").chmod(0o600)
        proc = ns.run(
            sys.executable,
            "-m",
            "ikeguard",
            "run",
            "-c",
            str(tmp_path / "gateway.toml"),
            check=False,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "kernel has no ESP (esp4/esp6 not available)" in proc.stderr
        assert 'dataplane = "userspace"' in proc.stderr
        assert "Traceback" not in proc.stderr
        assert ns.run("ip", "xfrm", "state").stdout == "" and ns.run("ip", "xfrm", "policy").stdout == ""
