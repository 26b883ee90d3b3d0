"""The HA node: replicate the engine's SA state to etcd while active, take it over when made active
(issue 20, docs/ha.md).

- Active: every ``sync_interval`` the engine's established SAs are exported (engine/ha_state.py), sealed
  with the pair's key (seal.py) on the event loop (microseconds per SA) and written to etcd in a thread
  (store.py). A failed write keeps the node serving: ``sync_error`` says why (the ``ha.sync_failed`` record)
  and the next interval tries again.
- Standby → active (keepalived's notify says MASTER): the records are read, refused as a whole (the node
  stays standby) when etcd cannot be read or the last complete replication is older than
  ``max_state_age`` (the peer's message IDs and ESP numbers may have moved further than the margins cover,
  docs/ha.md), else each SA is opened and restored into the engine. A new pair (nothing ever replicated)
  becomes active with nothing to restore.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ikeguard.engine.ha_state import EspSequence, RecordError, record_from_json, record_to_json
from ikeguard.engine.manager import IkeManager
from ikeguard.service.ha.fence import Fence
from ikeguard.service.ha.seal import ClusterKey, SealError
from ikeguard.service.ha.store import EtcdStore, NotLeader, StoreError, SyncMark


@dataclass
class TakeoverResult:
    """What a takeover did: SAs restored, SAs refused (name -> reason), or why nothing was restored."""

    restored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: str = ""
    state_age: float | None = None
    seconds: float = 0.0


class HaNode:
    """One node of the pair: its role, the last successful replication and the last error."""

    def __init__(self, node: str, store: EtcdStore, key: ClusterKey, *, max_state_age: float = 30.0,
                 seq_margin: int = 1 << 20, clock: Callable[[], float] = time.time,
                 fence: Fence | None = None) -> None:
        self.node = node
        self.store = store
        self.key = key
        self.max_state_age = max_state_age
        self.seq_margin = seq_margin
        self.clock = clock
        self.role = "standby"
        self.last_sync: float | None = None
        self.sync_error = ""
        self.synced_sas = 0
        self.fence = fence  # with a fence, every write compares its token (a stale writer is refused)
        self._written: dict[str, bytes] | None = None  # name -> digest of what etcd holds (None: unknown)

    def snapshot(self, engine: IkeManager, now: float,
                 esp: dict[int, EspSequence] | None = None) -> dict[str, tuple[bytes, bytes]]:
        """Per established SA: a digest of its state (without the export time) and its sealed record (on the
        loop: the engine is not thread-safe)."""
        out: dict[str, tuple[bytes, bytes]] = {}
        for record in engine.export_state(now, esp):
            try:
                digest = hashlib.sha256(record_to_json(replace(record, exported_at=0.0))).digest()
                out[record.key] = (digest, self.key.seal(record.key, record_to_json(record)))
            finally:
                record.wipe()
        return out

    async def sync(self, engine: IkeManager, esp: dict[int, EspSequence] | None = None) -> bool:
        """One replication of what changed since the last one (everything after a failure or at first);
        False (and ``sync_error`` set) when etcd could not be written."""
        now = self.clock()
        state = self.snapshot(engine, now, esp)
        written = self._written
        try:
            if written is None:  # first time or after a failure: learn what etcd holds
                written = dict.fromkeys(await asyncio.to_thread(self.store.names), b"")
            changed = {n: blob for n, (digest, blob) in state.items() if written.get(n) != digest}
            removed = set(written) - set(state)
            token = None
            if self.fence is not None:
                held = self.fence.held
                if held is None:
                    raise NotLeader("this node does not hold the leader lease")
                token = held.token
            await asyncio.to_thread(self.store.update, changed, removed, SyncMark(self.node, now), token)
        except NotLeader as exc:
            if self.fence is not None:
                self.fence.drop()
            self.sync_error, self._written = str(exc), None
            return False
        except StoreError as exc:
            self.sync_error, self._written = str(exc), None
            return False
        self._written = {n: digest for n, (digest, _blob) in state.items()}
        self.last_sync, self.sync_error, self.synced_sas = now, "", len(state)
        return True

    async def take_over(self, engine: IkeManager) -> TakeoverResult:
        """Become active: restore every replicated SA unless the state is too old (then none)."""
        started = time.monotonic()
        result = TakeoverResult()
        try:
            mark, blobs = await asyncio.to_thread(self.store.read)
        except StoreError as exc:
            result.refused = f"cannot read the replicated state: {exc}"
            return result
        now = self.clock()
        result.state_age = None if mark is None else now - mark.at
        if mark is None or result.state_age is None:
            self.role = "active"  # a new pair: nothing was ever replicated, nothing can be stale
            return result
        if result.state_age > self.max_state_age:
            result.refused = (f"replicated state is {result.state_age:.1f} s old "
                              f"(limit {self.max_state_age:g} s, last written by {mark.node})")
        if result.refused:
            return result
        for name, blob in sorted(blobs.items()):
            try:
                record = record_from_json(self.key.open(name, blob))
                engine.restore(record, now, seq_margin=self.seq_margin)
                result.restored.append(name)
            except (SealError, RecordError) as exc:
                result.failed[name] = str(exc)
        self.role = "active"
        result.seconds = time.monotonic() - started
        return result
