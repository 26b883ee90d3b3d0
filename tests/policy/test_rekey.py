"""Rekey jitter: a burst of SAs spreads its rekeys over the rand_time window (no timing, pure function)."""

from __future__ import annotations

import random
from collections import Counter

from ikeguard.policy.model import Child, Connection
from ikeguard.policy.rekey import child_times, ike_times, jittered


def test_burst_of_10000_sas_spreads_over_the_jitter_window() -> None:
    rng = random.Random(20261127)
    child = Child.model_validate({"rekey_time": "1h", "life_time": "2h", "rand_time": "5m"})
    established = [rng.uniform(0.0, 60.0) for _ in range(10_000)]  # all within one minute
    rekeys = [child_times(t, child, rng).rekey_at for t in established]
    assert all(r is not None for r in rekeys)
    times = [r for r in rekeys if r is not None]
    start, end = min(times), max(times)
    assert start >= 3600 - 300 and end <= 3600 + 60  # inside [rekey - rand, rekey + burst]
    buckets = Counter(int((t - start) // 10) for t in times)
    window_buckets = int((end - start) // 10) + 1
    mean = len(times) / window_buckets
    assert window_buckets >= 30  # spread over ~6 minutes, not the 1-minute burst
    assert max(buckets.values()) <= 2 * mean


def test_without_jitter_the_burst_stays_a_burst() -> None:
    rng = random.Random(1)
    child = Child.model_validate({"rekey_time": "1h", "life_time": "2h", "rand_time": "0s"})
    times = [child_times(rng.uniform(0, 60), child, rng).rekey_at for _ in range(1000)]
    assert max(t for t in times if t) - min(t for t in times if t) <= 60


def test_hard_limits_are_not_jittered_and_zero_disables() -> None:
    rng = random.Random(2)
    child = Child.model_validate({"rekey_time": "1h", "life_time": "2h", "rand_time": "5m"})
    assert child_times(100.0, child, rng).expire_at == 100.0 + 7200
    conn = Connection.model_validate({"rekey_time": "12h", "reauth_time": "24h", "rand_time": "30m",
                                      "local": {"auth": "psk"}})
    t = ike_times(0.0, conn, rng)
    assert t.rekey_at is not None and 12 * 3600 - 1800 <= t.rekey_at <= 12 * 3600
    assert t.reauth_at is not None and 24 * 3600 - 1800 <= t.reauth_at <= 24 * 3600
    assert t.expire_at == 24 * 3600 + 24 * 360  # over_time defaults to 10 % of the longer limit
    assert jittered(0.0, 0, 300, rng) is None
