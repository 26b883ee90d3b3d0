"""How many IKE worker processes ``workers = "auto"`` (the default) runs for a configuration (issue 22,
service/workers.py ``effective_workers``): one per core, with ``unique = keep`` too (enforced across
workers), but one process, with the reason for the log, while ``[ha]`` is configured (not shared yet)."""

from __future__ import annotations

import os
from pathlib import Path

from ikeguard.service.workers import effective_workers
from tests.service.gwconfig import GwConfig
from tests.service.inprocess import free_port, make_plan

HA = """
[ha]
enabled = true
node = "gw1"
etcd_endpoints = ["http://192.0.2.250:2379"]
key_file = "ha.key"
"""


def _config(**kwargs: str) -> GwConfig:
    return GwConfig("127.0.0.1", "127.0.0.2", "gw.example", "peer.example", "10.0.0.0/24", "10.0.1.0/24",
                    psk="0x" + "ab" * 32, **kwargs)


def test_auto_runs_one_worker_per_core_also_with_unique_keep(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    plan = make_plan(tmp_path, _config(extra_connection='unique = "keep"'), free_port())
    assert plan.connections["ikg"].unique == "keep"
    assert effective_workers(plan) == (cores, None)


def test_auto_settles_for_one_process_with_ha_and_says_why(tmp_path: Path) -> None:
    key = tmp_path / "ha.key"
    key.write_text("11" * 32)
    key.chmod(0o600)
    plan = make_plan(tmp_path, _config(extra_gateway=HA), free_port())
    workers, reason = effective_workers(plan)
    assert workers == 1
    if len(os.sched_getaffinity(0)) > 1:
        assert reason is not None and "[ha]" in reason
