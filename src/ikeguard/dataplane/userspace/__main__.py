"""Standalone userspace data plane with static SAs: ``python -m ikeguard.dataplane.userspace CONFIG.json``.

Config: ``{"tun", "tun_addresses", "listen", "port", "path_mtu", "tun_mtu", "policies": [{"child",
"local_ts", "remote_ts"}], "sas": [...], "keepalive": {"peer", "interval"}}`` (SAs as in :mod:`.config`).
After set-up it prints ``{"ready": true}``; then it reads one JSON command per line on stdin (``add_sa``,
``delete_sa``, ``remove_policy``, ``counters``, ``events``, ``set_path_mtu``) and answers one JSON line
each. SIGTERM stops it. ``"socket_fds": [fd, ...]``: inherited
sockets (one per worker) instead of binding ``listen``/``port`` (``ikeguard run`` with workers,
service/workerplane.py). ``"workers": N`` (N > 1) runs N worker processes (:mod:`.workers`); an SA then
may name its ``"worker"``, and ``counters`` says which worker holds each SA.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any

from ikeguard.dataplane.base import DataPlaneError, DataPlaneEvent
from ikeguard.dataplane.userspace.commands import handle, start_keepalives
from ikeguard.dataplane.userspace.config import endpoint, sa_from_json, selectors
from ikeguard.dataplane.userspace.plane import UserspaceDataPlane


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(config: dict[str, Any]) -> None:
    """Set up the data plane from ``config`` and serve until SIGTERM/SIGINT or stdin closes."""
    listen = endpoint(f"{config['listen']}:{config.get('port', 4500)}")
    family = socket.AF_INET6 if listen.address.version == 6 else socket.AF_INET
    if config.get("socket_fds"):  # handed over by ikeguard run (a member of its SO_REUSEPORT group on 4500)
        sock = socket.socket(fileno=int(config["socket_fds"][0]))
    else:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((str(listen.address), listen.port))
    plane = UserspaceDataPlane(config.get("tun", "ikg0"), sock, path_mtu=int(config.get("path_mtu", 1500)),
                               tun_addresses=tuple(config.get("tun_addresses", ())),
                               tun_mtu=int(config["tun_mtu"]) if "tun_mtu" in config else None,
                               # commands drive it: whoever sends delete_sa decides when an SA goes
                               rekeyed_inbound_linger=float(config.get("rekeyed_inbound_linger", 0.0)),
                               tun_offload=bool(config.get("tun_offload", False)))
    events: list[DataPlaneEvent] = []
    plane.subscribe(events.append)
    for pol in config.get("policies", ()):
        plane.add_policy(int(pol["child"]), selectors(pol["local_ts"]), selectors(pol["remote_ts"]))
    for sa in config.get("sas", ()):
        plane.add_sa(sa_from_json(sa))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    plane.start(loop)

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
            stop.set()
            return
        try:
            cmd = json.loads(line)
        except json.JSONDecodeError as exc:
            _reply({"ok": False, "error": f"bad JSON: {exc}"})
            return
        _reply(handle(plane, cmd, events))

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    task = start_keepalives(plane, config.get("keepalive"))
    _reply({"ready": True, "tun": plane.tun_name, "tun_mtu": plane.tun_mtu()})
    await stop.wait()
    if task is not None:
        task.cancel()
    plane.close()
    sock.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ikeguard.dataplane.userspace CONFIG.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        config = json.load(f)
    if int(config.get("workers", 1)) > 1:
        from ikeguard.dataplane.userspace.workers import run_supervisor

        return run_supervisor(config)
    try:
        asyncio.run(run(config))
    except (DataPlaneError, OSError) as exc:
        print(f"ikeguard data plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
