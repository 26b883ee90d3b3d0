"""Runtime rules (issue 17): revocation.runtime, audit.siem-delivery and crypto.module are never "pass" from
the configuration alone; with ``--socket`` the report asks the running gateway (an in-process gateway with its
real control server, a real rsyslog as the SIEM over mutual TLS) and judges its answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent, EventName
from ikeguard.audit.service import AuditService
from ikeguard.control.server import ControlServer
from ikeguard.service.plan import build_plan
from tests.audit.rsyslog import Pki, Rsyslog
from tests.policy.test_report_assessor import check_json, edit, pki_examples, processor
from tests.service.inprocess import free_port, running

__all__ = ["pki_examples", "processor"]


def test_runtime_rules_without_the_gateway_are_not_verified(processor: Path) -> None:
    (processor.parent / "pki/gw-siem.key").unlink()  # the SIEM client key is missing
    (processor.parent / "pki/gw-siem.pem").unlink()
    code, report = check_json(processor)
    assert code == 1  # files.present
    assert report["rules"]["audit.siem-delivery"] == "not_verified"  # was "pass"
    assert report["rules"]["revocation.runtime"] == "not_verified"  # was "pass"
    assert report["checked"]["revocation.runtime"] == "runtime" and report["checked"]["cert.key"] == "files"
    assert report["checked"]["crypto.ike.encr"] == "config"
    (finding,) = [f for f in report["findings"] if f["rule"] == "revocation.runtime"]
    assert "--socket" in finding["message"] and finding["checked"] == "runtime"


def test_fips_statement_names_the_module_and_claims_no_validation(processor: Path) -> None:
    _, report = check_json(processor, "--profile", "nist-800-77r1")
    assert report["rules"]["crypto.module"] == "not_verified"
    (finding,) = [f for f in report["findings"] if f["rule"] == "crypto.module"]
    assert re.search(r"OpenSSL \d+\.\d+", finding["value"]) and "FIPS provider" in finding["value"]
    assert "not claimed" in finding["message"]
    assert "validated" not in finding["value"]
    (fips,) = [r for r in report["requirements"] if r["document"] == "FIPS 140-3"]
    assert fips["verdict"] == "not_verified"


def _serve(processor: Path, siem: Rsyslog, tmp_path: Path) -> Path:
    edit(processor, 'listen = ["192.0.2.1"]', 'listen = ["127.0.0.1"]')
    edit(processor, 'address = "127.0.0.1:6514"', f'address = "127.0.0.1:{siem.port}"')
    edit(processor, 'state_dir = "state"', f'state_dir = "{tmp_path / "state"}"')
    return tmp_path / "control.sock"


def test_check_asks_the_running_gateway(processor: Path, tmp_path: Path) -> None:
    pki = processor.parent / "pki"
    siem = Rsyslog(
        tmp_path / "siem",
        Pki(
            pki / "siem-ca.pem", pki / "siem.pem", pki / "siem.key", pki / "gw-siem.pem", pki / "gw-siem.key"
        ),
    )
    sock = _serve(processor, siem, tmp_path)
    siem.start()
    seen: dict[str, Any] = {}

    async def ask(*more: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        args = ("--socket", str(sock), *more)
        _, report = await loop.run_in_executor(None, lambda: check_json(processor, *args))
        return report

    async def until(rule: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            report = await ask()
            if report["rules"][rule] == status or time.monotonic() > deadline:
                return report
            await asyncio.sleep(0.3)

    async def body() -> None:
        plan = build_plan(processor, now=dt.datetime.now(dt.UTC))
        plan.ike_port = free_port()
        plan.natt_port = plan.ike_port + 1
        audit = AuditService(plan.state_dir, plan.audit_sinks)
        audit.start()
        async with running(plan, audit=audit) as gw:
            server = ControlServer(gw.gateway, sock)
            await server.start()
            try:
                gw.gateway.record(AuditEvent(EventName.ADMIN_COMMAND, admin="test", details={"command": "x"}))
                seen["up"] = await until("audit.siem-delivery", "pass")
                siem.stop()
                for i in range(5):
                    gw.gateway.record(
                        AuditEvent(
                            EventName.ADMIN_COMMAND,
                            admin="test",
                            details={"command": f"while the SIEM is down {i}"},
                        )
                    )
                seen["down"] = await until("audit.siem-delivery", "fail")
            finally:
                await server.close()
        audit.close()

    try:
        asyncio.run(body())
    finally:
        siem.stop()
    up, down = seen["up"], seen["down"]
    assert up["rules"]["audit.siem-delivery"] == "pass", [f["message"] for f in up["findings"]]
    assert up["rules"]["revocation.runtime"] == "pass", up["findings"]
    assert up["runtime"]["profile"] == "pci-dss-4" and up["runtime"]["socket"] == str(sock)
    verdicts = {(r["document"], r["id"]): r["verdict"] for r in up["requirements"]}
    assert verdicts[("PCI DSS 4.0.1", "4.2.1")] == "pass" and verdicts[("PCI DSS 4.0.1", "10.7.2")] == "pass"
    assert down["rules"]["audit.siem-delivery"] == "fail"
    (finding,) = [f for f in down["findings"] if f["rule"] == "audit.siem-delivery"]
    assert "not delivered" in finding["message"]
