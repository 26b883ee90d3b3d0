"""``pki.expiring``: our own certificates close to their end (issue 18, short-lived certificates).

Once a minute the gateway looks at each connection's certificate (``local.certs[0]`` as loaded, so a renewed
file counts from the reload that picked it up); when less than ``min(14 days, a quarter of its lifetime)``
remains, one ``pki.expiring`` warning is recorded per certificate (connection, serial). A certificate that
``[acme]`` renews at 2/3 of its lifetime never gets there unless renewals keep failing; a hand-made one gets
its warning in time to be replaced. Peers' certificates are not judged here: their expiry caps the SA
lifetime (docs/pki.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from ikeguard.audit.events import AuditEvent, EventName, Outcome

log = logging.getLogger("ikeguard.pki")

WARN_MAX = dt.timedelta(days=14)
INTERVAL = 60.0


def expiring(plan: Any, now: dt.datetime, seen: set[tuple[str, int]]) -> Iterator[AuditEvent]:
    """The ``pki.expiring`` records due at ``now`` for ``plan``'s certificates not yet in ``seen``."""
    model = plan.config.model
    managed = {s.connection: n for n, s in (("acme", model.acme), ("scep", model.scep)) if s is not None}
    for name, conn in plan.connections.items():
        if not conn.local.certs:
            continue
        leaf = conn.local.certs[0]
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        window = min(WARN_MAX, (end - start) / 4)
        key = (name, leaf.serial_number)
        if now < end - window or key in seen:
            continue
        seen.add(key)
        left = end - now
        yield AuditEvent(
            EventName.PKI_EXPIRING, Outcome.UNKNOWN if left.total_seconds() > 0 else Outcome.FAILURE,
            connection=name, cert_subject=leaf.subject.rfc4514_string(),
            cert_serial=format(leaf.serial_number, "x"), cert_issuer=leaf.issuer.rfc4514_string(),
            reason=(f"our certificate expires in {int(left.total_seconds())} s" if left.total_seconds() > 0
                    else "our certificate has expired") + (f" ({managed[name].upper()} renewal has not "
                                                           f"replaced it)" if name in managed else ""),
            details={"not_after": end.isoformat(), "remaining": max(0, int(left.total_seconds())),
                     "renewal": managed.get(name, "manual")})


async def watch(gateway: Any, *, interval: float = INTERVAL) -> None:
    """Until cancelled: record ``pki.expiring`` for the gateway's certificates as they come due."""
    seen: set[tuple[str, int]] = set()
    while True:
        with contextlib.suppress(Exception):  # never let the watch end the gateway
            for record in expiring(gateway.plan, dt.datetime.now(dt.UTC), seen):
                gateway.record(record)
        await asyncio.sleep(interval)
