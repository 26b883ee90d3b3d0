"""Virtual IP pools with ``[gateway] workers`` > 1 (issue 22; RFC 7296 §3.15, §2.19): the supervisor owns
every lease, the workers ask it.

Why this design: a lease must be unique over all workers, and a user that reconnects must get its previous
address back although its new IKE SA may land on another worker (IKE_SA_INIT is spread by source address and
port). A deterministic partition of the addresses (address ``k`` belongs to worker ``k % N``) was rejected:
it can exhaust one worker's share while the others have free addresses (a small pool, an uneven spread of
sources), and a reconnecting user on another worker could not get its address back. Shared memory with a lock
would need a hash table in a flat array for pools of any size (IPv6). So one process holds the pools: the
supervisor's :class:`LeaseBroker` keeps the engine's :class:`~ikeguard.engine.pools.AddressPool` objects (the
same allocation rules as one process: the same user gets the same address, new users take never-used
addresses first, then the oldest offline lease), persists them in ``STATE_DIR/leases.json``
(:mod:`ikeguard.service.leases`, the only writer now) and answers the workers over an ``AF_UNIX`` socket
(``STATE_DIR/workers/leases.sock``, owner-only, the peers authenticated with a key derived from the
supervisor's seed).

A worker's pools are :class:`BrokeredPool` objects (``EngineContext.pool_factory``): ``acquire`` asks the
supervisor and waits for its answer (at most ``LEASE_TIMEOUT``; the answer is an in-memory lookup in a
supervisor thread, no disk I/O on either side: the IKE_AUTH handler stays synchronous as in one process);
no answer in time is a failed assignment (INTERNAL_ADDRESS_FAILURE), and a late grant is given back.
``release`` is a one-way message.

Every lease counts the IKE SAs that hold it (re-authentication and ``unique = replace`` make a second IKE SA
of the same user take the same address before the first is deleted): it goes offline when the last one is
released. A worker that dies (its connection closes) releases what it held: its leases go offline, kept for
their users, as strongSwan's ``attr-sql`` does at start-up after a crash (``crash_recovery``: online leases
released) and its in-memory pools do for a deleted IKE SA. The dead worker's SAs are gone, so their peers
re-establish (DPD, retransmissions), in whatever worker, and get the same address back; the address is given
to someone else only when the pool has no never-used address left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import threading
import time
from collections import Counter
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from ikeguard.engine.pools import Address, AddressPool, PoolSettings
from ikeguard.service.leases import LeaseStore

log = logging.getLogger("ikeguard.service")

LEASE_TIMEOUT = 1.0  # seconds a worker waits for the supervisor's answer


def broker_path(state_dir: Path) -> Path:
    """The supervisor's lease socket."""
    return Path(state_dir) / "workers" / "leases.sock"


# ---------------------------------------------------------------------------------------------- supervisor
class LeaseBroker:
    """Every pool's leases, for all workers; holders are connection numbers (one per worker process)."""

    def __init__(self, store: LeaseStore | None) -> None:
        self.store = store
        self.pools: dict[str, AddressPool] = {}
        self._saved = store.load() if store is not None else {}
        self._holds: dict[tuple[str, Address], Counter[int]] = {}
        self._lock = threading.Lock()

    def _pool(self, settings: PoolSettings) -> AddressPool:
        pool = self.pools.get(settings.name)
        if pool is None or pool.settings.network != settings.network:  # new, or its network changed (reload)
            pool = self.pools[settings.name] = AddressPool(settings)
            pool.restore(self._saved.pop(settings.name, {}))
            self._holds = {k: v for k, v in self._holds.items() if k[0] != settings.name}
        elif pool.settings != settings:
            pool.settings = settings
        return pool

    def acquire(self, holder: int, settings: PoolSettings, user: str,
                wanted: Address | None) -> Address | None:
        """An address of ``settings``'s pool for ``user`` held by ``holder`` (None: exhausted)."""
        with self._lock:
            pool = self._pool(settings)
            address = pool.acquire(user, wanted)
            if address is not None:
                online = pool.online()
                for key in [k for k in self._holds if k[0] == pool.name and k[1] not in online]:
                    del self._holds[key]  # the user moved to another address (a RADIUS Framed-IP-Address)
                self._holds.setdefault((pool.name, address), Counter())[holder] += 1
            self._save()
            return address

    def release(self, holder: int, name: str, address: Address) -> None:
        """One IKE SA of ``holder`` let ``address`` go; offline when no IKE SA holds it any more (the pool
        counts the holders; here only who holds, for :meth:`drop`)."""
        with self._lock:
            holds = self._holds.get((name, address))
            if holds is None or holds[holder] <= 0:
                return
            holds[holder] -= 1
            if holds.total() <= 0:
                del self._holds[(name, address)]
            pool = self.pools.get(name)
            if pool is not None:
                pool.release(address)
            self._save()

    def drop(self, holder: int) -> int:
        """``holder``'s worker is gone: what it held goes offline (kept for its users). Returns how many."""
        count = 0
        with self._lock:
            for key in list(self._holds):
                holds = self._holds[key]
                held = holds.pop(holder, 0)
                if holds.total() <= 0:
                    del self._holds[key]
                pool = self.pools.get(key[0])
                if pool is not None and held > 0:
                    went = [pool.release(key[1]) for _ in range(held)]
                    count += any(went)
            self._save()
        return count

    def status(self, name: str) -> list[tuple[str, str, bool]]:
        """``name``'s leases as (address, user, online), online first (every worker's)."""
        with self._lock:
            pool = self.pools.get(name)
            if pool is not None:
                return pool.status()
            return [(a, u, False) for u, a in self._saved.get(name, {}).items()]

    def leases(self) -> dict[str, dict[str, str]]:
        """What ``leases.json`` holds: every pool's user -> address (pools not used since start as read)."""
        out = {name: dict(users) for name, users in self._saved.items()}
        out.update({name: pool.leases() for name, pool in self.pools.items()})
        return out

    def _save(self) -> None:
        if self.store is not None:
            self.store.save_soon(self.leases())

    def save_now(self) -> None:
        """At shutdown: the last write (a worker's late release changes no saved lease: they are kept offline
        and online alike, user -> address)."""
        with self._lock:
            store, self.store = self.store, None
            if store is not None:
                store.save_now(self.leases())


class BrokerServer:
    """The supervisor's lease socket: one thread accepts, one thread per worker connection answers."""

    def __init__(self, path: Path, authkey: bytes, broker: LeaseBroker) -> None:
        self.path = Path(path)
        self.broker = broker
        self._authkey = authkey
        self._listener: Listener | None = None
        self._holders = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (owner-only) and accept in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o077)
        try:
            self._listener = Listener(str(self.path), family="AF_UNIX", authkey=self._authkey)
        finally:
            os.umask(old)
        threading.Thread(target=self._accept, name="lease-broker", daemon=True).start()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                conn = listener.accept()
            except OSError:
                return  # closed
            except Exception as exc:  # a peer without the key (multiprocessing.AuthenticationError)
                log.warning("lease socket: connection refused: %s", type(exc).__name__)
                continue
            with self._lock:
                self._holders += 1
                holder = self._holders
            threading.Thread(target=self._serve, args=(conn, holder), name=f"lease-broker-{holder}",
                             daemon=True).start()

    def _serve(self, conn: Connection, holder: int) -> None:
        index: Any = "?"
        try:
            while True:
                message = conn.recv()
                kind = message[0]
                if kind == "hello":
                    index = message[1]
                elif kind == "acquire":
                    _, seq, settings, user, wanted = message
                    address = self.broker.acquire(holder, settings, user, wanted)
                    conn.send(("acquired", seq, settings.name, address))
                elif kind == "release":
                    self.broker.release(holder, message[1], message[2])
                elif kind == "status":
                    conn.send(("status", message[1], self.broker.status(message[2])))
        except (EOFError, OSError):
            pass
        except Exception:
            log.exception("lease socket: worker %s sent what cannot be read; its connection is closed", index)
        finally:
            conn.close()
            count = self.broker.drop(holder)
            if count:
                log.warning("worker %s gone: its %d virtual IP lease(s) are offline, kept for their users",
                            index, count)

    def close(self) -> None:
        """Stop accepting (the worker threads end with their connections)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


# ---------------------------------------------------------------------------------------------- worker
class BrokerClient:
    """A worker's connection to the supervisor's lease socket (used from the event loop's thread)."""

    def __init__(self, conn: Connection, timeout: float = LEASE_TIMEOUT) -> None:
        self._conn = conn
        self._timeout = timeout
        self._seq = 0
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, path: Path, authkey: bytes, index: int) -> BrokerClient:
        """Connect and say which worker this is."""
        conn = Client(str(path), family="AF_UNIX", authkey=authkey)
        conn.send(("hello", index))
        return cls(conn)

    def ask(self, kind: str, *body: Any) -> Any:
        """Send a request, wait for its answer's body (None: no answer in time, or the supervisor is gone)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            try:
                self._conn.send((kind, seq, *body))
                deadline = time.monotonic() + self._timeout
                while (left := deadline - time.monotonic()) > 0 and self._conn.poll(left):
                    answer = self._conn.recv()
                    if answer[1] == seq:
                        return answer[2:]
                    if answer[0] == "acquired" and answer[3] is not None:  # a late grant nobody waits for
                        self._conn.send(("release", answer[2], answer[3]))
            except (EOFError, OSError) as exc:
                log.error("virtual IP leases: the supervisor cannot be asked: %s", exc)
                return None
            log.error("virtual IP leases: no answer from the supervisor within %.1f s", self._timeout)
            return None

    def tell(self, kind: str, *body: Any) -> None:
        """A one-way message."""
        with self._lock, contextlib.suppress(OSError):
            self._conn.send((kind, *body))

    def close(self) -> None:
        """Close the connection (the supervisor releases what this worker held)."""
        with contextlib.suppress(OSError):
            self._conn.close()


class BrokeredPool(AddressPool):
    """A pool whose leases the supervisor holds (``EngineContext.pool_factory`` in a worker)."""

    def __init__(self, settings: PoolSettings, client: BrokerClient) -> None:
        super().__init__(settings)
        self._client = client

    def acquire(self, user: str, wanted: Address | None = None) -> Address | None:
        answer = self._client.ask("acquire", self.settings, user, wanted)
        if answer is None or answer[1] is None:
            return None
        address: Address = ipaddress.ip_address(answer[1])
        return address

    def release(self, address: Address) -> bool:
        self._client.tell("release", self.name, address)
        return False  # one-way: whether it went offline is the supervisor's to know

    def online(self) -> dict[Address, str]:
        return {ipaddress.ip_address(a): u for a, u, up in self.status() if up}

    def status(self) -> list[tuple[str, str, bool]]:
        answer = self._client.ask("status", self.name)
        return list(answer[0]) if answer is not None else []

    def leases(self) -> dict[str, str]:
        return {}  # the supervisor persists them

    def restore(self, leases: dict[str, str]) -> None:
        return None  # the supervisor restores them


def use_broker(gateway: Any, client: BrokerClient) -> None:
    """Make ``gateway`` (a worker's, not started yet) take its virtual IPs from the supervisor."""
    gateway.leases = None  # the supervisor writes leases.json
    ctx = gateway.engine.ctx

    def factory(settings: PoolSettings) -> AddressPool:
        return BrokeredPool(settings, client)

    ctx.pool_factory = factory
    ctx.pools = {}
    for conn in ctx.connections.values():
        for settings in conn.pools:
            if settings.name not in ctx.pools:
                ctx.pools[settings.name] = factory(settings)
