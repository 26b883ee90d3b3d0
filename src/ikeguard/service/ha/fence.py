"""Fencing for the HA pair (issue 20, docs/ha.md "Split brain"): two nodes that both believe they are active
(keepalived split, a partition between them while both reach etcd) must never both send on one SA, because
the same ESP sequence numbers would go out twice under one AES-GCM key (nonce reuse, RFC 4106 §3.1) and IKE
message IDs would fork.

Leadership is etcd's ``<prefix>leader`` key, created only when absent (transaction comparing its create
revision with 0) and attached to a lease of ``ttl`` seconds; its create revision is the fencing token every
replication compares (store.py :class:`NotLeader`), so a stale writer is refused by etcd itself.

Local validity of the lease: the monotonic time taken *before* the grant or keepalive request was sent, plus
the TTL etcd answered, minus ``guard``. etcd counts the TTL from when it processed the request, which is after
that send, so this node's deadline always comes before etcd can expire the key and let another node create
it. The node may send (IKE and ESP) only before its deadline (:meth:`Fence.valid`); the service drops
its SAs at the deadline. ``guard`` covers the time to remove them and clock rate differences.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ikeguard.service.ha.store import EtcdStore, StoreError


@dataclass(frozen=True)
class Leadership:
    """The lease this node holds, its fencing token and the local (monotonic) end of its validity."""

    lease: int
    token: int
    ttl: int
    valid_until: float


class Fence:
    """This node's leadership; the etcd calls block (the service runs them in a thread)."""

    def __init__(self, store: EtcdStore, node: str, *, ttl: int = 3, guard: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.node = node
        self.ttl = ttl
        self.guard = ttl * 0.2 if guard is None else guard
        self.clock = clock
        self.held: Leadership | None = None
        self.holder = ""  # who holds the key when we could not take it
        self.error = ""  # why the last etcd call failed

    def valid(self) -> bool:
        """True while this node holds the lease for certain: it may send."""
        held = self.held
        return held is not None and self.clock() < held.valid_until

    def remaining(self) -> float:
        """Seconds of certain leadership left (0 when not held)."""
        held = self.held
        return 0.0 if held is None else max(0.0, held.valid_until - self.clock())

    def acquire(self) -> bool:
        """Try once to become the leader: grant a lease, create the leader key on it. False when another
        node holds it (``holder``) or etcd cannot be reached (``error``)."""
        started = self.clock()
        try:
            lease, ttl = self.store.grant(self.ttl)
            election = self.store.elect(self.node, lease)
        except StoreError as exc:
            self.error = str(exc)
            return False
        self.error = ""
        if election.token is None:
            self.holder = election.holder
            with contextlib.suppress(StoreError):
                self.store.revoke(lease)  # not needed: do not leave it to expire
            return False
        self.holder = self.node
        self.held = Leadership(lease, election.token, ttl, started + ttl - self.guard)
        return True

    def renew(self) -> bool:
        """Keep the lease alive; False when it has expired in etcd (leadership lost for good) or etcd could
        not be reached (``error``; the deadline is unchanged and may still pass)."""
        held = self.held
        if held is None:
            return False
        started = self.clock()
        try:
            ttl = self.store.keepalive(held.lease)
        except StoreError as exc:
            self.error = str(exc)
            return False
        self.error = ""
        if ttl <= 0:
            self.held = None
            self.error = "the lease expired in etcd"
            return False
        if self.held is held:
            until = max(held.valid_until, started + ttl - self.guard)
            self.held = Leadership(held.lease, held.token, ttl, until)
        return True

    def release(self) -> None:
        """Give leadership up (stepping down): revoke the lease so the other node may take it at once."""
        held, self.held = self.held, None
        if held is not None:
            try:
                self.store.revoke(held.lease)
            except StoreError as exc:
                self.error = str(exc)  # it expires by itself within its TTL

    def drop(self) -> None:
        """Forget the lease locally (lost or refused by etcd); nothing is sent to etcd."""
        self.held = None

    def status(self) -> dict[str, object]:
        """For ``ha status``."""
        held = self.held
        return {"held": self.valid(), "token": None if held is None else held.token, "ttl": self.ttl,
                "remaining": round(self.remaining(), 3), "holder": self.holder, "error": self.error}
