"""The JSON control commands of the standalone userspace data plane (one process, or one worker of
:mod:`.workers`): ``add_sa``, ``delete_sa`` (answers the SA's final counters), ``add_policy``,
``remove_policy``, ``update_sa_addresses``, ``set_path_mtu``, ``counters`` (every SA), ``sa_counters`` (one
SA), ``events`` (the upcalls since the last ``events``, as JSON values). ``ikeguard run`` with ``workers``
drives the machine's one plane with these (service/workerplane.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from ikeguard.dataplane.base import DataPlaneError, DataPlaneEvent, SaDirection
from ikeguard.dataplane.userspace.config import endpoint, sa_from_json, selectors
from ikeguard.dataplane.userspace.plane import UserspaceDataPlane


def _counters(plane: UserspaceDataPlane) -> dict[str, Any]:
    sas = [{"spi": f"{spi:08x}", "direction": d.value, **c.as_dict()}
           for spi, d, c in plane.table.all_counters()]
    return {"ok": True, "sas": sas, "drops": dict(plane.table.drops), "stats": dict(plane.stats)}


def _spi(value: Any) -> int:
    return int(value, 0) if isinstance(value, str) else int(value)


def _event_json(event: DataPlaneEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(event).__name__}
    for key, value in vars(event).items():
        out[key] = value.value if isinstance(value, SaDirection) else value
    return out


def handle(plane: UserspaceDataPlane, cmd: dict[str, Any], events: list[DataPlaneEvent]) -> dict[str, Any]:
    """Apply one control command."""
    op = cmd.get("op")
    try:
        if op == "add_sa":
            plane.add_sa(sa_from_json(cmd["sa"]))
        elif op == "delete_sa":
            child = cmd.get("child")  # "child": the Child SA (outbound SPIs may repeat)
            final = plane.delete_sa(_spi(cmd["spi"]), SaDirection(cmd["direction"]),
                                    None if child is None else int(child))
            return {"ok": True, "counters": None if final is None else final.as_dict()}
        elif op == "sa_counters":
            child = cmd.get("child")
            live = plane.counters(_spi(cmd["spi"]), SaDirection(cmd["direction"]),
                                  None if child is None else int(child))
            return {"ok": True, "counters": None if live is None else live.as_dict()}
        elif op == "add_policy":
            plane.add_policy(int(cmd["child"]), selectors(cmd["local_ts"]), selectors(cmd["remote_ts"]))
        elif op == "update_sa_addresses":
            children = cmd.get("children")
            plane.update_sa_addresses(tuple(_spi(s) for s in cmd["spis"]), endpoint(cmd["local"]),
                                      endpoint(cmd["remote"]), bool(cmd.get("encap", True)),
                                      None if children is None else [int(c) for c in children])
        elif op == "remove_policy":
            plane.remove_policy(int(cmd["child"]))
        elif op == "set_path_mtu":
            plane.set_path_mtu(int(cmd["mtu"]))
        elif op == "counters":
            return _counters(plane)
        elif op == "events":
            out = [_event_json(e) for e in events]
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
