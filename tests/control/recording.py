"""``RecordingGateway``: a small in-test object implementing the Gateway methods the control socket calls.

Only for protocol-level tests (framing, argument checking, audit records, paging, errors); everything a user
would run is tested against the real gateway in test_gateway_cli.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ikeguard.audit.events import AuditEvent


class RecordingAudit:
    """Keeps every recorded audit event in a list."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


class RecordingGateway:
    """Answers from fixed data and records every command it is given."""

    def __init__(self, sas: list[dict[str, Any]] | None = None) -> None:
        self.plan: Any = None
        self.audit = RecordingAudit()
        self.stats: Any = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._sas = sas or []
        self.subscribers: list[Callable[[dict[str, Any]], None]] = []
        self.fail_with: Exception | None = None

    def _call(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def sas(self, *, conn: str | None = None, peer: str | None = None,
            uniqueid: int | None = None) -> list[dict[str, Any]]:
        self._call("sas", conn=conn, peer=peer, uniqueid=uniqueid)
        return [s for s in self._sas if (conn is None or s["name"] == conn)
                and (peer is None or s["remote_id"] == peer)
                and (uniqueid is None or s["uniqueid"] == uniqueid)]

    def sa_page(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        chosen = self.sas(conn=conn, peer=peer, uniqueid=uniqueid)
        return chosen[offset:None if limit is None else offset + limit], len(chosen)

    def sa_uniqueids(self, *, conn: str | None = None, peer: str | None = None,
                     uniqueid: int | None = None) -> list[int]:
        return [int(s["uniqueid"]) for s in self.sas(conn=conn, peer=peer, uniqueid=uniqueid)]

    def sa_chunks(self, *, conn: str | None = None, peer: str | None = None, uniqueid: int | None = None,
                  offset: int = 0, limit: int | None = None,
                  size: int = 256) -> tuple[Iterator[list[dict[str, Any]]], int]:
        page, total = self.sa_page(conn=conn, peer=peer, uniqueid=uniqueid, offset=offset, limit=limit)
        return (page[i:i + size] for i in range(0, len(page), size)), total

    def conns(self) -> list[dict[str, Any]]:
        self._call("conns")
        return [{"name": "site", "remote_id": "peer.example", "status": "up", "ike_sas_up": 1}]

    async def initiate(self, conn: str, child: str | None = None, timeout: float = 15.0) -> list[int]:
        self._call("initiate", conn=conn, child=child, timeout=timeout)
        return [7]

    def terminate(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
                  child: str | None = None, reason: str = "terminated by admin") -> int:
        self._call("terminate", uniqueid=uniqueid, peer=peer, conn=conn, child=child, reason=reason)
        return len(self.sas(conn=conn, peer=peer, uniqueid=uniqueid))

    def rekey(self, *, uniqueid: int | None = None, peer: str | None = None, conn: str | None = None,
              child: str | None = None) -> int:
        self._call("rekey", uniqueid=uniqueid, peer=peer, conn=conn, child=child)
        return len(self.sas(conn=conn, peer=peer, uniqueid=uniqueid))

    async def rekey_sas(self, *, uniqueid: int | None = None, peer: str | None = None,
                        conn: str | None = None, child: str | None = None, ike: bool = False,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
        self._call("rekey", uniqueid=uniqueid, peer=peer, conn=conn, child=child)
        return [{"type": "child" if child else "ike", "connection": s["name"], "status": "rekeyed",
                 "old_uniqueid": s["uniqueid"]} for s in self.sas(conn=conn, peer=peer, uniqueid=uniqueid)]

    def apply_plan(self, plan: Any) -> None:
        self._call("apply_plan")
        self.plan = plan

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def emit(self, event: dict[str, Any]) -> None:
        for callback in list(self.subscribers):
            callback(event)
