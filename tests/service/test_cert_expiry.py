"""``pki.expiring`` (issue 18): the gateway records it once per certificate when min(14 days, a quarter of
its lifetime) is left of one of its own certificates."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from ikeguard.audit.events import EventName, Outcome
from ikeguard.service.cert_expiry import expiring
from tests.pki.certs import issue


def test_pki_expiring_once_per_certificate_in_its_last_quarter() -> None:
    now = dt.datetime.now(dt.UTC)
    ca = issue("CN=Lab CA", ca=True, not_before=now - dt.timedelta(days=1),
               not_after=now + dt.timedelta(days=30))
    gw = issue("CN=gw.example.net", ca, not_before=now, not_after=now + dt.timedelta(hours=24))
    conn = SimpleNamespace(local=SimpleNamespace(certs=(gw.cert,)))
    plan = SimpleNamespace(connections={"lab": conn},
                           config=SimpleNamespace(model=SimpleNamespace(acme=None, scep=None)))
    seen: set[tuple[str, int]] = set()
    assert list(expiring(plan, now + dt.timedelta(hours=17), seen)) == []  # 7 h left of 24: not yet
    due = list(expiring(plan, now + dt.timedelta(hours=19), seen))  # 5 h left: in the last quarter
    assert [(e.event, e.outcome, e.connection) for e in due] == [
        (EventName.PKI_EXPIRING, Outcome.UNKNOWN, "lab")]
    assert due[0].details["renewal"] == "manual" and 0 < int(due[0].details["remaining"]) <= 5 * 3600
    assert list(expiring(plan, now + dt.timedelta(hours=20), seen)) == []  # once per certificate
