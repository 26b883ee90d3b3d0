"""Issue 22 item 3, rekey storms: 10,000 SAs set up within one minute with the same lifetimes, and when their
Child SAs rekey. Two in-memory engines (tests/engine/harness.py: the real engine, datagrams delivered in
memory) on a simulated clock: every SA is set up at a random moment of the first minute, then time runs for
two rekey periods and each completed Child SA rekey is counted in the second it happened (``child.rekeyed``
on the initiating gateway's side). Lifetimes are strongSwan's defaults (rekey_time 1 h, life_time 1.1 h, so
rand_time = 6 min of jitter before the rekey time); the busiest second is compared with the mean over each
generation's rekey period (first to last rekey). Figures in docs/performance.md.

``IKG_STORM_SAS`` changes the number of SAs."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import replace

from tests.engine.harness import child, mirror, pair, psk_conn

from ikeguard.engine.events import AuditEvent

SAS = int(os.environ.get("IKG_STORM_SAS", "10000"))
SETUP_WINDOW = 60.0
REKEY_TIME = 3600.0


def _rekeys_per_second(peer_rekey_time: float) -> tuple[list[Counter[int]], float]:
    """Side a is the gateway under test (REKEY_TIME), side b its peers (``peer_rekey_time``)."""
    c = child(rekey_time=REKEY_TIME, proposals=("aes256gcm16",))
    a = psk_conn("tunnel", "a.example.net", "b.example.net", (c,))
    peer_child = replace(mirror(c), rekey_time=peer_rekey_time)
    b = psk_conn("tunnel", "b.example.net", "a.example.net", (peer_child,))
    net = pair([a], [b])
    rng = random.Random(22)
    started = time.perf_counter()
    for at in sorted(rng.uniform(0, SETUP_WINDOW) for _ in range(SAS)):
        net.now = at
        net.initiate()
        net.run()
        net.a.events.clear()
        net.b.events.clear()
    assert len(net.a.manager.ike_sas()) == SAS, "not every SA came up"
    generations: list[Counter[int]] = [Counter(), Counter()]
    end = SETUP_WINDOW + 2 * REKEY_TIME
    while True:
        timers = [t for t in (net.a.manager.get_timer(), net.b.manager.get_timer()) if t is not None]
        if not timers or min(timers) > end:
            break
        net.now = max(net.now, min(timers))
        net.a.manager.handle_timer(net.now)
        net.b.manager.handle_timer(net.now)
        net.run(limit=100_000)
        for side in (net.a, net.b):
            for event in side.events:
                if isinstance(event, AuditEvent) and event.event == "child.rekeyed" and side is net.a:
                    generation = 0 if net.now < SETUP_WINDOW + REKEY_TIME else 1
                    generations[generation][int(net.now)] += 1
            side.events.clear()
    return generations, time.perf_counter() - started


def main() -> None:
    print(f"{SAS} SAs set up within {SETUP_WINDOW:.0f} s, gateway Child SA rekey_time {REKEY_TIME:.0f} s "
          f"(rand_time {0.1 * REKEY_TIME:.0f} s); hour mean = rekeys / rekey_time")
    for label, peer_rekey_time in (("peers with the same lifetimes (both sides start rekeys)", REKEY_TIME),
                                   ("peers with twice the lifetime (the gateway starts the rekeys)",
                                    2 * REKEY_TIME)):
        generations, elapsed = _rekeys_per_second(peer_rekey_time)
        print(f"- {label}; simulated in {elapsed:.0f} s")
        _report(generations)


def _report(generations: list[Counter[int]]) -> None:
    for number, seconds in enumerate(generations, 1):
        if not seconds:
            print(f"  generation {number}: no rekeys")
            continue
        first, last = min(seconds), max(seconds)
        span = last - first + 1
        total = sum(seconds.values())
        mean = total / span
        busiest_at, busiest = max(seconds.items(), key=lambda kv: kv[1])
        hour_mean = total / REKEY_TIME
        print(f"  generation {number}: {total} rekeys between t={first} s and t={last} s ({span} s): "
              f"mean {mean:.1f}/s, busiest second {busiest} at t={busiest_at} s = {busiest / mean:.2f}x that "
              f"mean, {busiest / hour_mean:.2f}x the hour mean")
        buckets = Counter((s - first) // 30 for s in seconds.elements())
        print("    per 30 s: " + " ".join(f"{buckets.get(i, 0)}" for i in range(span // 30 + 1)))


if __name__ == "__main__":
    main()
