"""Direct heartbeat between the two HA nodes (docs/ha.md "Split brain"): lets an active that lost etcd keep
serving while its standby confirms it will not take over, and makes a standby that hears the active refuse
to become active even when keepalived says MASTER.

Each node sends a beat every ``interval`` seconds over UDP to the other node's ``peer`` address (the HA/sync
segment). A beat is JSON sealed with the cluster key (seal.py, AES-256-GCM, associated data
``ikeguard-ha-heartbeat``): node, role, fencing token, a strictly increasing counter (replayed or reordered
beats are dropped), the counter of the last beat heard from the peer (``echo``) and, from a standby,
``promise``: it will not take over for ``hold`` seconds after it received that beat. A standby answers an
active's beat at once.

Why the promise is safe: the active remembers when it *sent* each counter; the standby counts ``hold`` from
when it *received* it, which is later. So the active's confirmation ``sent + hold - guard`` always ends before
the standby may try the lease, on monotonic clocks only (no wall-clock agreement). Replayed answers echo old
counters and confirm nothing past their original send time; replayed active beats can only make a standby
refuse (the safe direction). Written here because it is a two-message protocol over ``cryptography``'s AEAD
(seal.py); no library implements this promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ikeguard.service.ha.seal import ClusterKey, SealError

log = logging.getLogger(__name__)

AAD = "ikeguard-ha-heartbeat"


def parse_addr(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


class PeerLink(asyncio.DatagramProtocol):
    """One node's side of the heartbeat. ``role`` and ``token`` are read from callables at every beat."""

    def __init__(self, key: ClusterKey, node: str, listen: tuple[str, int], peer: tuple[str, int], *,
                 role: Callable[[], str], token: Callable[[], int | None], interval: float = 0.2,
                 hold: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.key, self.node, self.listen, self.peer = key, node, listen, peer
        self.role, self.token, self.interval, self.hold, self.clock = role, token, interval, hold, clock
        self.guard = hold * 0.2
        self._counter = time.time_ns()  # strictly increasing, also across restarts of this node
        self._sent: dict[int, float] = {}  # counter -> monotonic send time (the last few)
        self._peer_counter = 0
        self.peer_node = ""
        self.peer_role = ""
        self.peer_token: int | None = None
        self.heard_at: float | None = None  # when the last valid beat arrived
        self.active_heard_at: float | None = None  # when the peer last said it is active
        self.confirmed_until = 0.0  # the peer (standby) promised not to take over before this (our clock)
        self.rejected = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self.started_at = clock()  # a restarted standby lost its promises: it holds off ``hold`` after start

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)
        self._transport = transport
        self._task = loop.create_task(self._beat_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            self._transport.close()

    async def _beat_loop(self) -> None:
        while True:
            self.send()
            await asyncio.sleep(self.interval)

    def send(self) -> None:
        if self._transport is None:
            return
        self._counter += 1
        role = self.role()
        now = self.clock()
        self._sent[self._counter] = now
        while len(self._sent) > 64:
            self._sent.pop(next(iter(self._sent)))
        promise = role == "standby" and self.active_heard_at is not None
        msg = {"node": self.node, "role": role, "token": self.token(), "counter": self._counter,
               "echo": self._peer_counter, "promise": promise, "hold": self.hold}
        self._transport.sendto(self.key.seal(AAD, json.dumps(msg).encode()), self.peer)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = json.loads(self.key.open(AAD, data))
            counter = int(msg["counter"])
            role, node = str(msg["role"]), str(msg["node"])
        except (SealError, ValueError, KeyError, TypeError):
            self.rejected += 1
            return
        if node == self.node or counter <= self._peer_counter:
            self.rejected += 1  # our own beat looped back, or a replay
            return
        now = self.clock()
        self._peer_counter, self.peer_node, self.peer_role = counter, node, role
        token = msg.get("token")
        self.peer_token = token if isinstance(token, int) else None
        self.heard_at = now
        if role == "active":
            self.active_heard_at = now
            if self.role() == "standby":
                self.send()  # answer at once: the active's confirmation starts at its send time
        sent = self._sent.get(int(msg.get("echo") or 0))
        if role == "standby" and msg.get("promise") is True and sent is not None:
            hold = min(self.hold, float(msg.get("hold") or 0.0))
            self.confirmed_until = max(self.confirmed_until, sent + hold - self.guard)

    def covered(self) -> bool:
        """Active side: the standby's promise (not to take over) still holds."""
        return self.clock() < self.confirmed_until

    def hears_active(self) -> bool:
        """Standby side: we promised not to take over while the active is heard (``hold`` after its beat)."""
        at = self.active_heard_at
        return at is not None and self.clock() < at + self.hold

    def holding(self) -> str:
        """Standby side: why it must not take over now ("" when it may): it hears the active, or it started
        less than ``hold`` ago (a promise its previous process gave may still run)."""
        now = self.clock()
        if self.hears_active():
            heard = 0.0 if self.active_heard_at is None else now - self.active_heard_at
            return f"the active {self.peer_node} is alive (its heartbeat was heard {heard:.1f} s ago)"
        if now < self.started_at + self.hold:
            return f"started {now - self.started_at:.1f} s ago: listening for the active's heartbeat"
        return ""

    def status(self) -> dict[str, object]:
        now = self.clock()
        return {"peer": f"{self.peer[0]}:{self.peer[1]}", "peer_node": self.peer_node,
                "peer_role": self.peer_role,
                "heard": None if self.heard_at is None else round(now - self.heard_at, 3),
                "covered": round(max(0.0, self.confirmed_until - now), 3),
                "hears_active": self.hears_active(), "rejected": self.rejected}
