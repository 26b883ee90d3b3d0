"""Prometheus metrics of the audit trail (PCI DSS 10.7.2: control failures are visible and alertable)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SPOOL_DEPTH = Gauge("ikeguard_audit_spool_depth", "Audit records not yet confirmed by the sink", ["sink"])
SINK_CONNECTED = Gauge("ikeguard_audit_sink_connected", "1 while the sink connection is up", ["sink"])
STORE_HEALTHY = Gauge(
    "ikeguard_audit_store_healthy", "1 while the audit store can write (else new SAs are refused)"
)
RECORDS = Counter("ikeguard_audit_records", "Audit records committed to the store")
