"""Reload diff: unchanged tunnels stay, a renewed certificate file is not a change, inventory deltas."""

from __future__ import annotations

from pathlib import Path

from ikeguard.policy.diff import diff_configs
from ikeguard.policy.loader import load_config
from tests.policy.conftest import edit

GW = "processor-gateway.toml"


def test_same_config_and_renewed_cert_file_are_no_change(example_copy: Path) -> None:
    old = load_config(example_copy / GW)
    (example_copy / "pki").mkdir()
    (example_copy / "pki" / "gw.pem").write_text("renewed certificate (content is not compared)\n")
    diff = diff_configs(old, load_config(example_copy / GW))
    assert diff.unchanged == ["merchants"] and not diff.changed and not diff.gateway_changed
    assert diff.peers_added == {"merchants": []} and diff.peers_changed == {"merchants": []}


def test_changed_connection_and_inventory_deltas(example_copy: Path) -> None:
    old = load_config(example_copy / GW)
    edit(example_copy / GW, 'dpd_delay = "30s"', 'dpd_delay = "20s"')
    edit(example_copy / "merchants.toml", 'remote_ts = ["10.20.2.0/24"]', 'remote_ts = ["10.20.3.0/24"]')
    with (example_copy / "merchants.toml").open("a") as fh:
        fh.write('\n[[peer]]\nid = "merchant-c.merchants.processor.example"\nremote_ts = ["10.20.9.0/24"]\n')
    diff = diff_configs(old, load_config(example_copy / GW))
    assert diff.changed == ["merchants"]
    assert diff.peers_added["merchants"] == ["merchant-c.merchants.processor.example"]
    assert diff.peers_changed["merchants"] == ["merchant-b.merchants.processor.example"]
    assert diff.peers_removed["merchants"] == []
