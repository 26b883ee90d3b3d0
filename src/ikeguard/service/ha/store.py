"""etcd as the HA state store (docs/ha.md), through ``etcd3gw``: a maintained client (OpenStack) of etcd's
v3 JSON gRPC gateway over HTTP(S) with mutual TLS. Chosen over ``etcd3`` (last release 2020, its generated
protobuf modules do not load with protobuf >= 4) and ``aetcd`` (grpcio, a heavy native dependency for a few
puts a second). Its calls block: the service runs them in a thread (``asyncio.to_thread``), never on the loop.

Layout under the prefix: ``sa/<SPIi>-<SPIr>`` sealed records (service/ha/seal.py), ``sync`` the active
node's name and the engine time of its last complete replication (plain JSON, no secrets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception
from requests.exceptions import RequestException

SA_DIR = "sa/"
SYNC_KEY = "sync"


class StoreError(RuntimeError):
    """etcd could not be reached or refused a request."""


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
                                             protocol=parts.scheme or "http", ca_cert=ca, cert_cert=cert,
                                             cert_key=key, timeout=timeout))

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
