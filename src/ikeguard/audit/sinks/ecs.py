"""JSON lines with Elastic Common Schema names for audit records (pure); IKE/IPsec details in ``ipsec.*``.

ECS has no IPsec fieldset, so ``ipsec.*`` is our custom namespace (ECS allows custom top-level fields); the
chain head goes to ``ikeguard.audit.*``. ``event.sequence`` is the de-duplication key.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping

from ikeguard.audit.chain import Record
from ikeguard.audit.events import EventName, Outcome, severity

_IPSEC_KEYS = ("connection", "ike_uniqueid", "local_id", "remote_id", "proposal")


def to_ecs(record: Record) -> dict[str, object]:
    """ECS document for one record."""
    b = dict(record.body)
    event = EventName(str(b["event"]))
    outcome = Outcome(str(b.get("outcome", "unknown")))
    doc: dict[str, object] = {
        "@timestamp": record.time,
        "event": {"action": event.value, "outcome": outcome.value, "sequence": record.seq, "kind": "event",
                  "module": "ikeguard", "dataset": "ikeguard.audit", "severity": severity(event, outcome)},
        "ikeguard": {"audit": {"seq": record.seq, "prev": record.prev.hex(), "hash": record.hash.hex()}},
    }
    if b.get("reason"):
        doc["event"]["reason"] = b["reason"]  # type: ignore[index]
    if b.get("remote_addr"):
        doc["source"] = _endpoint(str(b["remote_addr"]))
    if b.get("local_addr"):
        doc["destination"] = _endpoint(str(b["local_addr"]))
    if b.get("user"):
        doc["user"] = {"name": b["user"]}
    if b.get("admin"):
        doc["ikeguard"]["admin"] = b["admin"]  # type: ignore[index]
    x509: dict[str, object] = {}
    if b.get("cert_subject"):
        x509["subject"] = {"distinguished_name": b["cert_subject"]}
    if b.get("cert_issuer"):
        x509["issuer"] = {"distinguished_name": b["cert_issuer"]}
    if b.get("cert_serial"):
        x509["serial_number"] = b["cert_serial"]
    if x509:
        doc["tls"] = {"client": {"x509": x509}}
    ipsec = {k: b[k] for k in _IPSEC_KEYS if k in b}
    details = b.get("details")
    if isinstance(details, Mapping) and details:
        ipsec["details"] = dict(details)
    if ipsec:
        doc["ipsec"] = ipsec
    return doc


def _endpoint(text: str) -> dict[str, object]:
    """``192.0.2.1:4500`` / ``[2001:db8::1]:500`` -> ECS ``address``/``ip``/``port`` (bare address: as is)."""
    host, sep, port = text.rpartition(":")
    ip = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    bracketed = ip != host
    try:
        valid = bool(sep) and port.isascii() and port.isdigit() and str(int(port)) == port and \
            bracketed == (":" in ip) and ipaddress.ip_address(ip) is not None
    except ValueError:
        valid = False
    return {"address": ip, "ip": ip, "port": int(port)} if valid else {"address": text}


def _endpoint_text(part: Mapping[str, object]) -> str:
    """Inverse of :func:`_endpoint` (the record body's form, so a SIEM can re-hash it)."""
    address = str(part["address"])
    if "port" not in part:
        return address
    return f"[{address}]:{part['port']}" if ":" in address else f"{address}:{part['port']}"


def encode_line(record: Record) -> bytes:
    """One JSON line (UTF-8, newline-terminated)."""
    return json.dumps(to_ecs(record), sort_keys=True, ensure_ascii=False).encode() + b"\n"


def from_ecs(doc: Mapping[str, object]) -> tuple[int, str, dict[str, object]]:
    """``(seq, time, body)`` back from an ECS document (a SIEM can re-hash it)."""
    ev = doc["event"]
    assert isinstance(ev, Mapping)
    body: dict[str, object] = {"event": ev["action"], "outcome": ev["outcome"]}
    if "reason" in ev:
        body["reason"] = ev["reason"]
    for side, key in (("source", "remote_addr"), ("destination", "local_addr")):
        part = doc.get(side)
        if isinstance(part, Mapping) and "address" in part:
            body[key] = _endpoint_text(part)
    for path, key in ((("user", "name"), "user"), (("ikeguard", "admin"), "admin")):
        part = doc.get(path[0])
        if isinstance(part, Mapping) and path[1] in part:
            body[key] = part[path[1]]
    tls = doc.get("tls")
    if isinstance(tls, Mapping):
        x509 = tls["client"]["x509"]
        if "subject" in x509:
            body["cert_subject"] = x509["subject"]["distinguished_name"]
        if "issuer" in x509:
            body["cert_issuer"] = x509["issuer"]["distinguished_name"]
        if "serial_number" in x509:
            body["cert_serial"] = x509["serial_number"]
    ipsec = doc.get("ipsec")
    if isinstance(ipsec, Mapping):
        body.update({k: v for k, v in ipsec.items() if k != "details"})
        if "details" in ipsec:
            body["details"] = dict(ipsec["details"])
    return int(str(ev["sequence"])), str(doc["@timestamp"]), body
