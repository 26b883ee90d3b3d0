"""One sender per SA: whatever the parallelism, an outbound SA never reuses a sequence number (= nonce)."""

from __future__ import annotations

import multiprocessing
import struct
import threading
from dataclasses import replace
from typing import Any

from ikeguard.dataplane.base import SaDirection
from ikeguard.dataplane.sa import InboundSa, OutboundSa
from ikeguard.dataplane.sequence import SequenceExhausted, SharedSequenceCounter
from tests.dataplane.packets import udp4
from tests.dataplane.test_table import sa_pair


def test_concurrent_threads_on_one_outbound_sa_never_reuse_a_sequence_number() -> None:
    a_out, b_in, _, _ = sa_pair("aes128gcm16")
    sa = OutboundSa(a_out, lambda e: None)
    per_thread = 1500
    packets: list[list[bytes]] = [[] for _ in range(4)]

    def sender(i: int) -> None:
        inner = udp4("198.51.100.7", "203.0.113.9", 1000 + i, 2, b"x" * 64)
        packets[i].extend(sa.protect(inner) for _ in range(per_thread))

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [struct.unpack_from("!I", p, 4)[0] for chunk in packets for p in chunk]
    ivs = {p[8:16] for chunk in packets for p in chunk}
    assert sorted(seqs) == list(range(1, 4 * per_thread + 1))
    assert len(ivs) == 4 * per_thread  # every AEAD nonce distinct
    receiver = InboundSa(replace(b_in, replay_window=8192), lambda e: None)
    for chunk in packets:  # interleaving differs per thread, every packet still decrypts exactly once
        for p in chunk:
            assert receiver.unprotect(p, struct.unpack_from("!I", p, 4)[0]) is not None
    assert receiver.counters.packets == 4 * per_thread and receiver.config.direction is SaDirection.INBOUND


def _worker(counter: SharedSequenceCounter, out: multiprocessing.Queue, block: int,  # type: ignore[type-arg]
            start: Any) -> None:
    got: list[int] = []
    start.wait(30)  # all contend from the same moment: a fast first one cannot drain the counter alone
    try:
        while True:
            got.extend(counter.take_block(block))
    except SequenceExhausted:
        out.put(got)


def test_worker_processes_sharing_one_counter_never_reuse_a_sequence_number() -> None:
    ctx = multiprocessing.get_context("fork")
    counter = SharedSequenceCounter(limit=100_000, context=ctx)
    queue: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_worker, args=(counter, queue, block, start)) for block in (1, 7, 64)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    seqs = [s for r in results for s in r]
    assert sorted(seqs) == list(range(1, 100_001))  # each number exactly once, none past the limit
    assert all(results)  # every worker got some
