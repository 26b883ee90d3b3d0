"""Audit trail throughput: events/s into the store (sealed, fsynced), out to a real rsyslogd over mutual TLS,
and whether a burst of 10,000 auth failures slows IKE_SA setups (engine benchmark run during the burst)."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.audit.isolated import IsolatedAuditService
from ikeguard.audit.service import AuditService, SinkSpec
from ikeguard.audit.sinks.forwarder import ForwarderSettings
from ikeguard.audit.store import AuditStore


def _auth_failure(i: int) -> AuditEvent:
    return AuditEvent(
        EventName.AUTH_FAILURE,
        Outcome.FAILURE,
        reason="AUTHENTICATION_FAILED: bad signature",
        connection="merchants",
        ike_uniqueid=i,
        local_addr="192.0.2.1",
        remote_addr="198.51.100.7",
        remote_id=f"m{i}.merchants.example",
        cert_subject=f"CN=m{i}.merchants.example",
        cert_serial=f"{i:08x}",
        cert_issuer="CN=Merchant CA",
        details={"auth_method": "ecdsa-384"},
    )


def store_rates(base: Path) -> tuple[float, float]:
    """(events/s with batches of 200, events/s with one fsync per event)."""
    now = dt.datetime.now(dt.UTC)
    store = AuditStore(base / "batched", now=now)
    n = 20_000
    started = time.perf_counter()
    for k in range(0, n, 200):
        store.append_batch([(_auth_failure(i), now) for i in range(k, k + 200)])
    batched = n / (time.perf_counter() - started)
    store.close()
    store = AuditStore(base / "single", now=now)
    m = 300
    started = time.perf_counter()
    for i in range(m):
        store.append(_auth_failure(i), now=now)
    single = m / (time.perf_counter() - started)
    store.close()
    return batched, single


def rsyslog_rate(base: Path, n: int = 10_000) -> tuple[float, float] | None:
    """(record() calls/s seen by the producer, end-to-end events/s until rsyslogd wrote the last one)."""
    try:
        from tests.audit.rsyslog import Rsyslog, make_pki
    except ImportError:
        return None
    server = Rsyslog(base / "rsyslog", make_pki(base / "pki"))
    server.start()
    try:
        settings = ForwarderSettings(confirm_delay=0.5, idle_poll=0.02)
        service = AuditService(
            base / "fwd", [SinkSpec("siem", "syslog-tls", server.target())], settings=settings
        )
        service.start()
        started = time.perf_counter()
        for i in range(n):
            service.record(_auth_failure(i))
        produced = n / (time.perf_counter() - started)
        service.flush(60)
        server.wait_for_seq(service.store.head()[0], timeout=120)
        end_to_end = n / (time.perf_counter() - started)
        service.close()
    finally:
        server.stop()
    return produced, end_to_end


def ike_during_burst(base: Path) -> tuple[float, float, float]:
    """IKE_SA setups/s (engine benchmark, PSK) alone, and while 10,000 auth failures (built beforehand) are
    being written: with the writer as a thread of the IKE process, and in its own process."""
    from bench.bench_engine import _setups

    events = [_auth_failure(i) for i in range(10_000)]
    baseline = _setups("psk", 150)
    results = []
    for service in (AuditService(base / "burst-thread"), IsolatedAuditService(base / "burst-process")):
        service.start()
        for ev in events:
            service.record(ev)
        results.append(_setups("psk", 150))
        service.flush(60)
        service.close()
    return baseline, results[0], results[1]


def main() -> None:
    """Print the figures (see docs/performance.md)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        batched, single = store_rates(base)
        print(f"audit store, sealed + fsynced, batches of 200: {batched:,.0f} events/s")
        print(f"audit store, one fsync per event: {single:,.0f} events/s")
        rates = rsyslog_rate(base)
        if rates:
            print(
                f"audit to rsyslogd (RFC 5425, mutual TLS), 10,000 events: "
                f"producer {rates[0]:,.0f} record()/s, end to end {rates[1]:,.0f} events/s"
            )
        baseline, thread, process = ike_during_burst(base)
        print(f"IKE_SA setups/s (PSK, engine) alone {baseline:,.0f}; during a 10,000 auth-failure burst: "
              f"writer thread {thread:,.0f} ({(thread / baseline - 1) * 100:+.0f}%), "
              f"writer process {process:,.0f} ({(process / baseline - 1) * 100:+.0f}%)")

if __name__ == "__main__":
    main()
