"""High availability (issue 20, docs/ha.md): the engine-side cost of replicating and taking over N IKE SAs
(export + seal with AES-256-GCM, then open + parse + restore into a fresh engine), and the setup rate with
one export + seal per setup (what replication adds to each new SA) against the plain setup rate. etcd's own
latency is not counted (it is measured end to end by tests/interop/test_ha_failover.py)."""

from __future__ import annotations

import os
import time

from bench.bench_engine import A, B, _conns, pump
from ikeguard.crypto.random import SystemRandom
from ikeguard.engine.ha_state import export_ike_sa, record_from_json, record_to_json
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.seal import ClusterKey

NOW = 1_800_000_000.0


def _setups(count: int, key: ClusterKey | None) -> tuple[float, IkeManager]:
    a_conn, b_conn, _ = _conns("psk")
    a = IkeManager([a_conn], random=SystemRandom())
    b = IkeManager([b_conn], random=SystemRandom())
    start = time.perf_counter()
    for _ in range(count):
        uid = a.initiate("bench", local=A, remote=B, now=NOW)
        pump(a, b, NOW)
        if key is not None:  # the active node replicates the new SA: export + seal (etcd write not counted)
            sa = a.get(uid)
            assert sa is not None
            record = export_ike_sa(sa, NOW)
            key.seal(record.key, record_to_json(record))
            record.wipe()
    return count / (time.perf_counter() - start), b


def main() -> None:
    """Print the takeover time of 200 SAs and the setup rate with and without replication."""
    key = ClusterKey(os.urandom(32))
    count = 200
    plain = replicated = 0.0
    for _round in range(3):  # interleaved, best of three: the machine's load moves both alike
        plain = max(plain, _setups(count, None)[0])
        rate, b = _setups(count, key)
        replicated = max(replicated, rate)
    print(f"setups/s without HA: {plain:,.0f}; with export + seal per setup: {replicated:,.0f} "
          f"({replicated / plain:.2f}x)")
    start = time.perf_counter()
    sealed = {}
    for record in b.export_state(NOW):
        sealed[record.key] = key.seal(record.key, record_to_json(record))
        record.wipe()
    exported = time.perf_counter() - start
    standby = IkeManager([_conns("psk")[1]], random=SystemRandom())
    start = time.perf_counter()
    for name, blob in sealed.items():
        standby.restore(record_from_json(key.open(name, blob)), NOW)
    restored = time.perf_counter() - start
    print(f"replicate {len(sealed)} IKE SAs (export + seal): {exported * 1000:.1f} ms; "
          f"take over {len(standby.ike_sas())} (open + parse + restore): {restored * 1000:.1f} ms")


if __name__ == "__main__":
    main()
