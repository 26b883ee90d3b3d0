"""Load a gateway config whose template connection has 5,000 inventory peers (target: under 1 s).

Run: `.venv/bin/python -m bench bench_config` (or `make bench`). Prints load time, evaluation time
(pci-dss-4 rules over the whole config) and the time of one inventory add with an overlap check.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from ikeguard.policy.loader import load_config
from ikeguard.policy.report import evaluate

PEERS = 5_000
GATEWAY = """
[gateway]
profile = "pci-dss-4"
listen = ["192.0.2.1"]

[authorities.vpn]
cacert = "pki/ca.pem"
crls = ["pki/vpn.crl"]

[connections.merchants]
local_addrs = ["192.0.2.1"]
proposals = ["aes256gcm16-prfsha384-ecp384"]
rekey_time = "12h"
reauth_time = "24h"
rand_time = "30m"
dpd_delay = "30s"
local = { auth = "pubkey", id = "gw.processor.example", certs = ["pki/gw.pem"], key = "pki/gw.key" }

[connections.merchants.remote]
auth = "pubkey"
id = "*.merchants.processor.example"
cacerts = ["vpn"]
revocation = "strict"
peers = "merchants.toml"

[connections.merchants.children.card-data]
local_ts = ["10.10.0.0/24"]
remote_ts = ["%peer"]
esp_proposals = ["aes256gcm16-ecp384"]
rekey_time = "1h"
life_time = "2h"
rand_time = "5m"
"""


def write_config(directory: Path, peers: int = PEERS) -> Path:
    """A gateway config plus a peer inventory of ``peers`` merchants, each with its own /24 (or /64)."""
    lines = []
    for i in range(peers):
        subnet = f"10.{64 + i // 256}.{i % 256}.0/24"
        lines.append(f'[[peer]]\nid = "m{i:05d}.merchants.processor.example"\nremote_ts = ["{subnet}", '
                     f'"2001:db8:{i:x}::/64"]\nenabled = true\nticket = "CHG-{i}"\n')
    (directory / "merchants.toml").write_text("\n".join(lines))
    path = directory / "gateway.toml"
    path.write_text(GATEWAY)
    return path


def main() -> None:
    """Print the numbers (first run = cold parser caches, then best of 3)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp))
        load_times, eval_times = [], []
        for _ in range(3):
            start = time.perf_counter()
            config = load_config(path)
            load_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            evaluate(config, now=dt.datetime.now(dt.UTC))
            eval_times.append(time.perf_counter() - start)
        inventory = config.inventories["merchants"]
        start = time.perf_counter()
        inventory.add("new.merchants.processor.example", ["10.200.0.0/24"])
        add_time = time.perf_counter() - start
    cold = load_times[0]
    print(f"load_config with {PEERS} inventory peers: {cold * 1000:.0f} ms cold, "
          f"{min(load_times) * 1000:.0f} ms warm (target < 1000 ms) {'OK' if cold < 1.0 else 'SLOW'}")
    print(f"evaluate pci-dss-4 over it:               {min(eval_times) * 1000:.0f} ms")
    print(f"inventory.add with overlap check:         {add_time * 1000:.1f} ms")


if __name__ == "__main__":
    main()
