"""A gateway stand-in for the crash test: records events via AuditService, prints acknowledged seqs.

Usage: python -m tests.audit.producer STATE_DIR PORT PKI_DIR COUNT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.service import AuditService, SinkSpec
from ikeguard.audit.sinks.forwarder import ForwarderSettings
from ikeguard.audit.sinks.transport import TlsTarget


def main() -> None:
    state, port, pki, count = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    target = TlsTarget("127.0.0.1", port, pki / "ca.crt", pki / "client.crt", pki / "client.key", timeout=2.0)
    settings = ForwarderSettings(confirm_delay=0.3, backoff_min=0.05, backoff_max=0.3, idle_poll=0.05)
    service = AuditService(state, [SinkSpec("siem", "syslog-tls", target)], settings=settings)
    service.start()
    for i in range(count):
        service.record(
            AuditEvent(
                EventName.AUTH_FAILURE,
                reason=f"attempt {i}",
                remote_addr="198.51.100.9",
                details={"attempt": i},
            )
        )
        if i % 10 == 9:
            service.flush()
            print("ack", service.store.head()[0], flush=True)
            time.sleep(0.01)
    service.flush()
    print("ack", service.store.head()[0], flush=True)
    print("done", flush=True)
    while True:  # keep forwarding until killed
        time.sleep(0.1)


if __name__ == "__main__":
    main()
