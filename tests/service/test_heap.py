"""service/heap.py: when the gateway freezes the heap for the garbage collector, and why that is safe for
SAs: a closed IKE SA and its Child SAs are freed by reference counting alone, frozen or not."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from ikeguard.service import heap
from ikeguard.service.heap import HeapFreezer
from tests.service.inprocess import free_port, make_plan, pair_configs, running
from tests.service.test_many_sas import _installed, _restore_copies, _until


def test_freezes_from_the_threshold_and_each_quarter_more_and_thaws_hourly() -> None:
    sas, now = [0], [0.0]
    freezer = HeapFreezer(lambda: sas[0], clock=lambda: now[0])
    try:
        freezer.check()
        assert freezer.freezes == 0
        sas[0] = heap.FREEZE_FROM
        freezer.check()
        assert freezer.freezes == 1 and gc.get_freeze_count() > 0
        sas[0] = int(heap.FREEZE_FROM * 1.2)
        freezer.check()
        assert freezer.freezes == 1  # not a quarter more yet
        sas[0] = int(heap.FREEZE_FROM * 1.25)
        freezer.check()
        assert freezer.freezes == 2
        now[0] = heap.THAW_AFTER
        freezer.check()
        assert freezer.frozen_sas == 0 and gc.get_freeze_count() == 0  # handed back
        freezer.check()
        assert freezer.freezes == 3  # frozen again at the next check
    finally:
        freezer.thaw()
    assert gc.get_freeze_count() == 0


def test_closed_sas_are_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    """Frozen objects are never visited by the collector: if a closed SA were kept by a reference cycle,
    freezing would leak it. Each SA is closed and forgotten as the manager does when a peer deletes it (the
    manager's bookkeeping called directly: the restored SAs' peer is silent), with the collector off."""
    port = free_port()
    responder_cfg, initiator_cfg = pair_configs()

    async def main() -> None:
        async with running(make_plan(tmp_path / "gw", responder_cfg, port)) as gw, \
                running(make_plan(tmp_path / "client", initiator_cfg, port)) as client:
            await client.gateway.initiate("ikg", timeout=5)
            await _until(lambda: _installed(gw))
            _restore_copies(gw, 50)
            engine = gw.gateway.engine
            sas = engine.ike_sas()[1:]
            refs = [weakref.ref(x) for sa in sas for x in (sa, *sa.children.values())]
            gc.collect()
            gc.disable()
            try:
                for sa in sas:
                    sa.close("closed by the test", failure=False)
                    engine._forget_if_closed(sa)
                del sas, sa
                gw.gateway.pump()  # the Child SAs leave the data plane, ike.down is recorded
                await asyncio.sleep(0)
                alive = sum(ref() is not None for ref in refs)
            finally:
                gc.enable()
            assert len(refs) == 100 and alive == 0
            assert engine.ike_sa_count() == 1

    asyncio.run(main())
