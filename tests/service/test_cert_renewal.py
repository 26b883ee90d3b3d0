"""The renewal machinery ``[acme]`` and ``[scep]`` share (``service/cert_renewal.py``), with a stand-in
enroller: when a renewal is due (``renew_at`` of the lifetime), the backoff after failures (``retry_min``
doubling up to ``retry_max``) and the ``pki.renewal_failed`` warnings naming the protocol. The protocols
themselves, against real CAs: tests/interop/test_acme_pebble.py, tests/interop/test_scep_enroll.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization

from ikeguard.audit.events import AuditEvent, EventName, Outcome
from ikeguard.service.cert_renewal import CertificateRenewer, EnrollmentFailed
from tests.pki.certs import issue


class _Failing:
    name, label = "scep", "SCEP"

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def section(self, model: Any) -> Any:
        return model.scep

    def ca(self, section: Any) -> str:
        return "http://192.0.2.10/scep"

    def identifiers(self, section: Any) -> list[str]:
        return ["gw.example.net"]

    def obtain(self, config: Any, section: Any, key: Any, current: Any) -> list[Any]:
        self.calls.append(current)
        raise EnrollmentFailed("SCEP GetCACaps to http://192.0.2.10/scep failed: unreachable")


def _gateway(tmp_path: Path, lifetime: dt.timedelta) -> tuple[Any, list[AuditEvent], Any]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = issue("CN=Lab CA", ca=True, not_before=now - dt.timedelta(days=1),
               not_after=now + dt.timedelta(days=9))
    leaf = issue("CN=gw.example.net", ca, not_before=now, not_after=now + lifetime)
    (tmp_path / "gw.pem").write_bytes(leaf.cert.public_bytes(serialization.Encoding.PEM))
    section = SimpleNamespace(connection="gw", renew_at=0.5, retry_min=2, retry_max=5)
    model = SimpleNamespace(scep=section, connections={"gw": SimpleNamespace(
        local=SimpleNamespace(certs=["gw.pem"]))})
    config = SimpleNamespace(model=model, resolve=lambda p: tmp_path / p)
    records: list[AuditEvent] = []
    gateway = SimpleNamespace(plan=SimpleNamespace(config=config, connections={"gw": SimpleNamespace(
        local=SimpleNamespace(private_key=object()))}), record=records.append)
    return gateway, records, leaf.cert


def test_renewal_is_due_at_renew_at_of_the_lifetime(tmp_path: Path) -> None:
    gateway, _, leaf = _gateway(tmp_path, dt.timedelta(hours=2))
    renewer = CertificateRenewer(gateway, tmp_path / "gw.toml", _Failing())
    assert renewer.configured()
    assert renewer.due(time.time()) == leaf.not_valid_before_utc.timestamp() + 3600
    (tmp_path / "gw.pem").unlink()
    now = time.time()
    assert renewer.due(now) == now  # no certificate to read: due at once


def test_failed_renewals_back_off_and_warn_with_the_protocol(tmp_path: Path) -> None:
    gateway, records, leaf = _gateway(tmp_path, dt.timedelta(hours=2))
    enroller = _Failing()
    renewer = CertificateRenewer(gateway, tmp_path / "gw.toml", enroller)
    retries = []
    for _ in range(3):
        before = time.time()
        assert asyncio.run(renewer.renew()) is False
        retries.append(round(renewer.state.next_attempt - before))
    assert retries == [2, 4, 5]  # retry_min doubling, capped at retry_max
    assert enroller.calls == [leaf] * 3  # renewing: the current certificate is handed over
    assert [(r.event, r.outcome) for r in records] == [(EventName.PKI_RENEWAL_FAILED, Outcome.FAILURE)] * 3
    last = records[-1]
    assert last.reason.startswith("SCEP renewal failed (3 in a row, next try in 5 s): SCEP GetCACaps")
    assert last.details["source"] == "scep" and last.details["failures"] == 3
    assert last.details["ca"] == "http://192.0.2.10/scep" and 0 < int(last.details["expires_in"]) <= 7200
    assert renewer.status()["failures"] == 3 and "GetCACaps" in renewer.status()["last_error"]
