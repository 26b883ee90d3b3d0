"""etcd as the HA state store (docs/ha.md), through ``etcd3gw``: a maintained client (OpenStack) of etcd's
v3 JSON gRPC gateway over HTTP(S) with mutual TLS. Chosen over ``etcd3`` (last release 2020, its generated
protobuf modules do not load with protobuf >= 4) and ``aetcd`` (grpcio, a heavy native dependency for a few
puts a second). Its calls block: the service runs them in a thread (``asyncio.to_thread``), never on the loop.

Layout under the prefix: ``sa/<SPIi>-<SPIr>`` sealed records (service/ha/seal.py), ``sync`` the active
node's name and the engine time of its last complete replication (plain JSON, no secrets), ``leader`` the
active node's name on its lease (service/ha/fence.py): its create revision is the fencing token every write
compares, so a node that lost leadership cannot write (etcd refuses the transaction).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception
from requests.exceptions import RequestException

SA_DIR = "sa/"
SYNC_KEY = "sync"
LEADER_KEY = "leader"
TXN_OPS = 100  # etcd's default --max-txn-ops is 128


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _session(ca: str | None, cert: str | None, key: str | None) -> requests.Session:
    """The HTTP session of one endpoint: the pair's CA (``etcd_ca``) and client certificate for mutual TLS.
    ``trust_env`` off: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA (the
    server's certificate then fails verification) and would send etcd traffic through an environment proxy;
    the endpoints and their trust are the configuration's alone."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca if ca else True
    if cert and key:
        session.cert = (cert, key)
    return session


class StoreError(RuntimeError):
    """etcd could not be reached or refused a request."""


class NotLeader(StoreError):
    """A write refused by etcd: the leader key is not the one this node created (its fencing token)."""


@dataclass(frozen=True)
class Election:
    """The answer to :meth:`EtcdStore.elect`: our token (the leader key's create revision) or the holder."""

    token: int | None
    holder: str = ""


@dataclass(frozen=True)
class SyncMark:
    """Who replicated last, and when (engine time, epoch seconds)."""

    node: str
    at: float


class EtcdStore:
    """Sealed SA records and the sync mark in etcd; tries the endpoints in order."""

    def __init__(self, endpoints: list[str], prefix: str, *, timeout: float = 2.0, ca: str | None = None,
                 cert: str | None = None, key: str | None = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._clients: list[Etcd3Client] = []
        for url in endpoints:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            self._clients.append(Etcd3Client(host=parts.hostname or "localhost", port=parts.port or 2379,
                                             protocol=parts.scheme or "http", timeout=timeout,
                                             session=_session(ca, cert, key)))

    def _each(self, what: str, call):  # type: ignore[no-untyped-def]
        errors = []
        for client in self._clients:
            try:
                return call(client)
            except (Etcd3Exception, RequestException, OSError) as exc:
                errors.append(f"{client.base_url}: {type(exc).__name__}")
        raise StoreError(f"etcd {what} failed ({'; '.join(errors)})")

    def write(self, records: dict[str, bytes], mark: SyncMark) -> None:
        """Store ``records`` (name -> sealed blob), drop records of SAs that are gone, then the mark."""
        def run(client: Etcd3Client) -> None:
            present = {bytes(k).decode() for _v, meta in client.get_prefix(self.prefix + SA_DIR)
                       for k in [meta["key"]]}
            for name, blob in records.items():
                client.put(self.prefix + SA_DIR + name, blob)
            for full in present - {self.prefix + SA_DIR + n for n in records}:
                client.delete(full)
            client.put(self.prefix + SYNC_KEY, json.dumps({"node": mark.node, "at": mark.at}))
        self._each("write", run)

    def names(self) -> set[str]:
        """Names of the records in etcd."""
        def run(client: Etcd3Client) -> set[str]:
            return {bytes(meta["key"]).decode()[len(self.prefix + SA_DIR):]
                    for _value, meta in client.get_prefix(self.prefix + SA_DIR)}
        result: set[str] = self._each("list", run)
        return result

    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (ID, TTL granted; etcd may raise a short TTL to its minimum)."""
        def run(client: Etcd3Client) -> tuple[int, int]:
            answer = client.post(client.get_url("/lease/grant"), json={"TTL": ttl, "ID": 0})
            return int(answer["ID"]), int(answer["TTL"])
        result: tuple[int, int] = self._each("lease grant", run)
        return result

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``: the TTL it has again (etcd LeaseKeepAlive), <= 0 when it had expired."""
        def run(client: Etcd3Client) -> int:
            answer = client.post(client.get_url("/lease/keepalive"), json={"ID": lease})
            return int(answer.get("result", {}).get("TTL", -1))
        result: int = self._each("lease keepalive", run)
        return result

    def revoke(self, lease: int) -> None:
        """Give the lease (and the leader key on it) up at once."""
        self._each("lease revoke", lambda client: client.post(client.get_url("/kv/lease/revoke"),
                                                               json={"ID": lease}))

    def elect(self, node: str, lease: int) -> Election:
        """Create the leader key on ``lease`` if no node holds it (compare create_revision == 0); the token
        is the transaction's revision, the key's create revision."""
        key = _b64(self.prefix + LEADER_KEY)
        txn = {"compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
               "success": [{"request_put": {"key": key, "value": _b64(node), "lease": lease}}],
               "failure": [{"request_range": {"key": key}}]}

        def run(client: Etcd3Client) -> Election:
            answer: Any = client.transaction(txn)
            if answer.get("succeeded"):
                return Election(int(answer["header"]["revision"]))
            kvs = answer["responses"][0]["response_range"].get("kvs") or [{}]
            return Election(None, base64.b64decode(kvs[0].get("value", "")).decode(errors="replace"))
        result: Election = self._each("election", run)
        return result

    def update(self, changed: dict[str, bytes], removed: set[str], mark: SyncMark,
               token: int | None = None) -> None:
        """Write the changed records, delete the removed ones and write the mark, in transactions of at most
        ``TXN_OPS`` operations (one disk sync each instead of one per key); the mark goes in the last one, so
        it is written only when every record before it was. With a fencing ``token`` every transaction
        first compares the leader key's create revision with it: :class:`NotLeader` when another node (or
        nobody) leads, and nothing is written."""
        ops: list[dict[str, Any]] = [
            *({"request_put": {"key": _b64(self.prefix + SA_DIR + n), "value": _b64(v)}}
              for n, v in changed.items()),
            *({"request_delete_range": {"key": _b64(self.prefix + SA_DIR + n)}} for n in removed),
            {"request_put": {"key": _b64(self.prefix + SYNC_KEY),
                             "value": _b64(json.dumps({"node": mark.node, "at": mark.at}))}},
        ]

        compare = [] if token is None else [{"key": _b64(self.prefix + LEADER_KEY), "target": "CREATE",
                                             "result": "EQUAL", "create_revision": token}]

        def run(client: Etcd3Client) -> None:
            for start in range(0, len(ops), TXN_OPS):
                answer: Any = client.transaction({"compare": compare, "success": ops[start:start + TXN_OPS],
                                                  "failure": []})
                if compare and not answer.get("succeeded"):
                    raise NotLeader(f"etcd refused the write: this node's fencing token {token} is no longer "
                                    "the leader key's revision")
        self._each("write", run)

    def read(self) -> tuple[SyncMark | None, dict[str, bytes]]:
        """The sync mark and every sealed record by SA name."""
        def run(client: Etcd3Client) -> tuple[SyncMark | None, dict[str, bytes]]:
            mark = None
            raw = client.get(self.prefix + SYNC_KEY)
            if raw:
                obj = json.loads(raw[0])
                mark = SyncMark(str(obj["node"]), float(obj["at"]))
            records = {bytes(meta["key"]).decode()[len(self.prefix + SA_DIR):]: bytes(value)
                       for value, meta in client.get_prefix(self.prefix + SA_DIR)}
            return mark, records
        result: tuple[SyncMark | None, dict[str, bytes]] = self._each("read", run)
        return result
