"""The HSM access log as audit records (issue 18, docs/pki.md "HSM access log"): what a token key's
``AccessLog`` noted since the last drain (``hsm.login``, ``hsm.sign`` counted per key, ``hsm.error``) turned
into ``hsm.*`` audit events. The gateway records them at start, once a minute and at stop
(service/gateway.py); ``ikeguard pki`` records them in the CA's own trail after each command that used the
CA key, so the evidence pack's HSM access log covers the CA's key as well as the gateway's."""

from __future__ import annotations

from collections.abc import Iterable

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.crypto.pkcs11_key import AccessRecord


def access_events(entries: Iterable[AccessRecord]) -> list[AuditEvent]:
    """One audit event per access-log entry: ``details.key`` the key's URI (no PIN source), ``count`` the
    signatures of an ``hsm.sign`` entry, ``error`` the PKCS#11 error name of an ``hsm.error``."""
    events = []
    for entry in entries:
        details: dict[str, str | int] = {"key": entry.key}
        if entry.event == "hsm.sign":
            details["count"] = entry.count
        if entry.detail:
            details["error"] = entry.detail
        failed = entry.event == "hsm.error"
        events.append(AuditEvent(EventName(entry.event), Outcome.FAILURE if failed else Outcome.SUCCESS,
                                 reason=f"PKCS#11 {entry.detail}" if failed else "", details=details))
    return events
