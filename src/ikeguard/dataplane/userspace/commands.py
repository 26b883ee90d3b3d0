"""The JSON control commands of the standalone userspace data plane (one process, or one worker of
:mod:`.workers`): ``add_sa``, ``delete_sa``, ``remove_policy``, ``set_path_mtu``, ``counters``, ``events``."""

from __future__ import annotations

import asyncio
from typing import Any

from ikeguard.dataplane.base import DataPlaneError, DataPlaneEvent, SaDirection
from ikeguard.dataplane.userspace.config import endpoint, sa_from_json
from ikeguard.dataplane.userspace.plane import UserspaceDataPlane


def _counters(plane: UserspaceDataPlane) -> dict[str, Any]:
    sas = [{"spi": f"{spi:08x}", "direction": d.value, **c.as_dict()}
           for spi, d, c in plane.table.all_counters()]
    return {"ok": True, "sas": sas, "drops": dict(plane.table.drops), "stats": dict(plane.stats)}


def handle(plane: UserspaceDataPlane, cmd: dict[str, Any], events: list[DataPlaneEvent]) -> dict[str, Any]:
    """Apply one control command."""
    op = cmd.get("op")
    try:
        if op == "add_sa":
            plane.add_sa(sa_from_json(cmd["sa"]))
        elif op == "delete_sa":
            spi, child = cmd["spi"], cmd.get("child")  # "child": the Child SA (outbound SPIs may repeat)
            plane.delete_sa(int(spi, 0) if isinstance(spi, str) else int(spi), SaDirection(cmd["direction"]),
                            None if child is None else int(child))
        elif op == "remove_policy":
            plane.remove_policy(int(cmd["child"]))
        elif op == "set_path_mtu":
            plane.set_path_mtu(int(cmd["mtu"]))
        elif op == "counters":
            return _counters(plane)
        elif op == "events":
            out = [{"type": type(e).__name__, **{k: str(v) for k, v in vars(e).items()}} for e in events]
            events.clear()
            return {"ok": True, "events": out}
        else:
            return {"ok": False, "error": f"unknown op {op!r}"}
    except (DataPlaneError, KeyError, ValueError, OSError) as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}




def start_keepalives(plane: UserspaceDataPlane,
                     keepalive: dict[str, Any] | None) -> asyncio.Task[None] | None:
    """NAT-T keepalives (RFC 3948 §2.3) to ``keepalive["peer"]`` every ``interval`` seconds (default 20),
    or None when the config asks for none; the caller cancels the task at stop."""
    if not keepalive:
        return None
    peer = endpoint(keepalive["peer"])
    interval = float(keepalive.get("interval", 20))

    async def keepalives() -> None:
        while True:
            plane.send_keepalive((str(peer.address), peer.port))
            await asyncio.sleep(interval)

    return asyncio.create_task(keepalives())
