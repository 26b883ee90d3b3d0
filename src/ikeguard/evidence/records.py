"""Record extracts of an evidence pack: connection records for a SIEM (ECS JSON lines and CSV), the history
of configuration changes (who, with which ticket) and the HSM access log. Each row keeps the trail's sequence
number, so an auditor can find it in the trail, in the SIEM (``event.sequence``) and in the pack's records."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from ikeguard.audit.chain import Record
from ikeguard.audit.sinks.ecs import to_ecs

# IKE/Child SA lifecycle, rekeys, DPD and authentication (docs/audit.md §1)
CONNECTION_EVENTS = frozenset({
    "ike.up", "ike.down", "ike.rekeyed", "ike.reauth", "ike.failed", "ike.rekey_failed",
    "ike.address_changed",
    "child.up", "child.down", "child.rekeyed", "child.failed", "auth.success", "auth.failure",
    "cert.validated", "cert.rejected", "revocation.failed", "proposal.rejected", "ts.rejected", "dpd.timeout",
})
# configuration and inventory changes (PCI DSS 10.2.1.5, 10.2.1.2)
CHANGE_EVENTS = frozenset({"config.loaded", "config.rejected", "waiver.applied", "peer.added",
                           "peer.disabled", "peer.enabled", "service.started", "service.stopped"})
HSM_EVENTS = frozenset({"hsm.login", "hsm.sign", "hsm.decrypt", "hsm.error"})
PKI_EVENTS = frozenset({"pki.issued", "pki.renewal_failed"})  # the issuance log (docs/pki.md)
_CSV_COLUMNS = ("seq", "time", "event", "outcome", "reason", "connection", "ike_uniqueid", "child",
                "local_addr", "remote_addr", "local_id", "remote_id", "user", "cert_subject", "cert_serial",
                "proposal", "spi_i", "spi_r")


def select(records: Iterable[Record], events: frozenset[str]) -> list[Record]:
    """The records whose event is in ``events``."""
    return [r for r in records if str(r.body.get("event")) in events]


def _row(record: Record, columns: Sequence[str]) -> list[str]:
    body = record.body
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    assert isinstance(details, dict)
    row: list[str] = []
    for c in columns:
        if c == "seq":
            row.append(str(record.seq))
        elif c == "time":
            row.append(record.time)
        else:
            value = body.get(c, details.get(c, ""))
            row.append("" if value is None else str(value))
    return row


def to_csv(records: Iterable[Record], columns: Sequence[str] = _CSV_COLUMNS) -> str:
    """CSV with one row per record (header first)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for record in records:
        w.writerow(_row(record, columns))
    return out.getvalue()


def to_ecs_lines(records: Iterable[Record]) -> str:
    """ECS JSON lines (the same documents the JSON sink sends, docs/audit.md §7)."""
    return "".join(json.dumps(to_ecs(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def connection_summary(records: Sequence[Record]) -> dict[str, Any]:
    """Counts per event and per (connection, peer): what the report and the auditor total up."""
    per_event: dict[str, int] = {}
    per_peer: dict[str, dict[str, int]] = {}
    for r in records:
        event = str(r.body.get("event"))
        per_event[event] = per_event.get(event, 0) + 1
        peer = f"{r.body.get('connection', '')}/{r.body.get('remote_id') or r.body.get('remote_addr') or ''}"
        counts = per_peer.setdefault(peer, {})
        counts[event] = counts.get(event, 0) + 1
    return {"records": len(records), "per_event": dict(sorted(per_event.items())),
            "per_peer": {k: dict(sorted(v.items())) for k, v in sorted(per_peer.items())},
            "ike_sas": per_event.get("ike.up", 0) + per_event.get("ike.rekeyed", 0),
            "child_sas": per_event.get("child.up", 0) + per_event.get("child.rekeyed", 0),
            "auth_failures": per_event.get("auth.failure", 0)}


def change_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Configuration history: what changed, who (``admin``) and the ticket, with the sequence number."""
    rows = []
    for r in select(records, CHANGE_EVENTS):
        details = r.body.get("details") if isinstance(r.body.get("details"), dict) else {}
        assert isinstance(details, dict)
        rows.append({"seq": r.seq, "time": r.time, "event": r.body.get("event"),
                     "outcome": r.body.get("outcome"), "admin": r.body.get("admin", ""),
                     "ticket": details.get("ticket", ""), "connection": r.body.get("connection", ""),
                     "peer": r.body.get("remote_id", ""), "reason": r.body.get("reason", ""),
                     "details": details})
    return rows
