"""Two Gateways in one event loop on loopback (127.0.0.1 <-> 127.0.0.2, a free high port), real engine,
real audit store, the recording ``none`` data plane: fast tests of what the service does with outputs."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ikeguard.audit.events import AuditEvent
from ikeguard.audit.service import AuditService
from ikeguard.dataplane.none import NoneDataPlane
from ikeguard.service.gateway import Gateway
from ikeguard.service.plan import GatewayPlan, build_plan
from tests.service.gwconfig import GwConfig

RESPONDER_ADDR = "127.0.0.1"
INITIATOR_ADDR = "127.0.0.2"
GW_ID = "gw.inprocess.example"
CLIENT_ID = "client.inprocess.example"
PSK = "inprocess-psk-0123456789abcdef01"


def free_port() -> int:
    """A UDP port P with P and P+1 free on every loopback address the tests use (IKE, NAT-T)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind((RESPONDER_ADDR, 0))
            port = int(a.getsockname()[1])
        try:
            for address in (RESPONDER_ADDR, INITIATOR_ADDR):
                for candidate in (port, port + 1):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                        b.bind((address, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free UDP port pair on loopback")


def make_plan(directory: Path, config: GwConfig, port: int) -> GatewayPlan:
    """Write ``config`` into ``directory`` and build its plan with every port moved to ``port``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.toml").write_text(config.text())
    for name, data in config.files().items():
        path = directory / name
        path.write_text(str(data))
        path.chmod(0o600)
    plan = build_plan(directory / "gateway.toml", now=dt.datetime.now(dt.UTC))
    plan.ike_port = port
    plan.natt_port = port + 1  # no NAT on loopback: the SAs stay on the IKE port
    plan.connections = {name: replace(conn, remote_port=port) for name, conn in plan.connections.items()}
    return plan


@dataclass
class Running:
    """A started in-process gateway with its data plane and audit trail."""

    gateway: Gateway
    dataplane: Any  # NoneDataPlane unless the test chose another
    audit: Any

    def events(self) -> list[str]:
        """Audit event names seen so far (through the gateway's subscription)."""
        return [e["event"] for e in self.seen]

    seen: list[dict[str, Any]]


class RefusingAudit:
    """An audit recorder whose store is "down" (``refuse_new_sas``) until ``healthy`` is set."""

    def __init__(self) -> None:
        self.records: list[AuditEvent] = []
        self.healthy = False

    def record(self, event: AuditEvent, now: dt.datetime | None = None) -> None:
        self.records.append(event)

    @property
    def refuse_new_sas(self) -> bool:
        return not self.healthy

    def flush(self, timeout: float = 10.0) -> bool:
        return True


@asynccontextmanager
async def running(plan: GatewayPlan, audit: Any = None, dataplane: Any = None) -> AsyncIterator[Running]:
    """Start a Gateway for ``plan`` (a real AuditService in its state dir unless ``audit`` is given; the
    recording ``none`` data plane unless ``dataplane`` is given)."""
    if audit is None:
        audit = AuditService(plan.state_dir)
        audit.start()
    plane = dataplane if dataplane is not None else NoneDataPlane()
    gateway = Gateway(plan, audit=audit, dataplane=plane)
    seen: list[dict[str, Any]] = []
    gateway.subscribe(seen.append)
    await gateway.start()
    try:
        yield Running(gateway, plane, audit, seen)
    finally:
        await gateway.stop()


def pair_configs(**kwargs: Any) -> tuple[GwConfig, GwConfig]:
    """(responder, initiator) PSK configs for the loopback pair."""
    responder = GwConfig(RESPONDER_ADDR, "%any", GW_ID, CLIENT_ID, "10.1.0.0/24", "10.2.0.0/24", psk=PSK,
                         **{k: v for k, v in kwargs.items() if not k.startswith("i_")})
    init_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("i_")}
    init_kwargs.update({k[2:]: v for k, v in kwargs.items() if k.startswith("i_")})
    initiator = GwConfig(INITIATOR_ADDR, RESPONDER_ADDR, CLIENT_ID, GW_ID, "10.2.0.0/24", "10.1.0.0/24",
                         psk=PSK, **init_kwargs)
    return responder, initiator
