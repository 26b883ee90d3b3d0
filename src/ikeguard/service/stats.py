"""Gateway counters for the metrics endpoint: exchanges and failures per connection, traffic that survives
rekeys and deletes (final data-plane counters are folded in when an SA goes), datagram drops by reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ikeguard.audit.events import AuditEvent, EventName, Outcome

# audit event -> (exchange, outcome) it reports; the engine emits one record per finished exchange
_EXCHANGES: dict[EventName, tuple[str, str]] = {
    EventName.IKE_UP: ("IKE_AUTH", "success"),
    EventName.AUTH_FAILURE: ("IKE_AUTH", "failure"),
    EventName.IKE_FAILED: ("IKE_SA_INIT", "failure"),
    EventName.IKE_REKEYED: ("CREATE_CHILD_SA", "success"),
    EventName.IKE_REKEY_FAILED: ("CREATE_CHILD_SA", "failure"),
    EventName.CHILD_REKEYED: ("CREATE_CHILD_SA", "success"),
    EventName.CHILD_FAILED: ("CREATE_CHILD_SA", "failure"),
    EventName.DPD_TIMEOUT: ("INFORMATIONAL", "failure"),
}
_MAX_DROP_REASONS = 100  # distinct drop reasons counted (and logged once each)
# failure reason codes (stable label values for Prometheus)
_FAILURE_CODES: dict[EventName, str] = {
    EventName.AUTH_FAILURE: "auth_failed",
    EventName.PROPOSAL_REJECTED: "no_proposal",
    EventName.TS_REJECTED: "ts_unacceptable",
    EventName.CERT_REJECTED: "cert_rejected",
    EventName.REVOCATION_FAILED: "revocation_failed",
    EventName.DPD_TIMEOUT: "dpd_timeout",
    EventName.IKE_REKEY_FAILED: "rekey_failed",
    EventName.CHILD_FAILED: "child_failed",
}


def failure_code(event: AuditEvent) -> str | None:
    """The reason code of a failure record (None for successes)."""
    if event.outcome is not Outcome.FAILURE:
        return None
    code = _FAILURE_CODES.get(event.event)
    if code is not None:
        return code
    reason = event.reason.lower()
    if "unreachable" in reason or "retransmit" in reason:
        return "peer_unreachable"
    if "proposal" in reason:
        return "no_proposal"
    return "other"


@dataclass
class GatewayStats:
    """Counters for Prometheus (CONTRACTS §2); they survive rekeys and deletes."""

    exchanges: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    traffic: dict[str, list[int]] = field(default_factory=dict)  # conn -> [b_in, b_out, pkts_in, pkts_out]
    dropped: Counter[str] = field(default_factory=Counter)  # datagrams the engine or the service ignored
    # RFC 4806: (connection, "received" | "sent", status) of OCSP responses stapled in IKE_AUTH
    ocsp_stapled: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    datagrams_in: int = 0
    datagrams_out: int = 0
    send_errors: int = 0

    def drop(self, reason: str) -> bool:
        """Count one ignored datagram; True the first time this reason is seen (log it once)."""
        first = reason not in self.dropped and len(self.dropped) < _MAX_DROP_REASONS
        if first or reason in self.dropped:
            self.dropped[reason] += 1
        else:
            self.dropped["other"] += 1
        return first

    def count_audit(self, event: AuditEvent) -> None:
        """Fold one audit record into the exchange and failure counters."""
        conn = event.connection or "(none)"
        exchange = _EXCHANGES.get(event.event)
        if exchange is not None:
            self.exchanges[(conn, *exchange)] += 1
        code = failure_code(event)
        if code is not None:
            self.failures[(conn, code)] += 1
        if event.event in (EventName.AUTH_SUCCESS, EventName.AUTH_FAILURE):
            for key, direction in (("ocsp_received", "received"), ("ocsp_sent", "sent")):
                value = event.details.get(key)
                if isinstance(value, str) and value:
                    self.ocsp_stapled[(conn, direction, value.split(":", 1)[0])] += 1

    def add_traffic(self, connection: str, *, inbound: bool, octets: int, packets: int) -> None:
        """Add the final counters of a deleted SA direction."""
        row = self.traffic.setdefault(connection, [0, 0, 0, 0])
        row[0 if inbound else 1] += octets
        row[2 if inbound else 3] += packets

    def traffic_totals(self, live: dict[str, list[int]]) -> dict[str, tuple[int, int, int, int]]:
        """Per connection: finished SAs plus ``live``, the counters of the installed ones
        (``SaCensus.traffic``, service/queries.py)."""
        totals = {name: list(row) for name, row in self.traffic.items()}
        for name, counts in live.items():
            row = totals.setdefault(name, [0, 0, 0, 0])
            for index, value in enumerate(counts):
                row[index] += value
        return {name: (r[0], r[1], r[2], r[3]) for name, r in totals.items()}
