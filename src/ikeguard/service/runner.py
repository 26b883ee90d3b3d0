"""``ikeguard run``: build the plan, open the audit trail and the data plane, run the gateway until SIGTERM.

A refused configuration prints the findings (the text ``ikeguard check`` gives for them) and exits 1; an
unreadable one exits 2. The audit trail runs in its own process (``IsolatedAuditService``): a burst of audit
events then costs IKE almost nothing (an in-process writer slowed IKE setups 9-37 % during a 10k burst).
Start-up records ``config.loaded``, ``config.rejected`` per quarantined connection or peer and
``waiver.applied`` per waiver in force; rules the product does not implement yet are logged once. Readiness
and shutdown are reported to systemd (``READY=1`` / ``STOPPING=1``). SIGTERM/SIGINT stop cleanly (exit 0),
SIGHUP reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ikeguard.policy.errors import ConfigError
from ikeguard.service.addresses import AddressMonitor
from ikeguard.service.dataplane import DataPlaneUnavailable, OpenedDataPlane, open_dataplane
from ikeguard.service.gateway import Gateway
from ikeguard.service.sdnotify import notify
from ikeguard.service.startup import startup_records

log = logging.getLogger("ikeguard.service")


def configure_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr."""
    # The format names no file, line, thread or process: skip collecting them for every record (the Logging
    # HOWTO's "Optimization" switches; findCaller walked the stack for each INFO line per tunnel up).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if not any(getattr(h, "_ikeguard", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._ikeguard = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def _log_enforcement(plan: Any) -> None:
    enforcement = plan.enforcement
    for name, results in enforcement.quarantined_connections.items():
        log.warning("connection %s quarantined: %s", name, "; ".join(str(r.finding()) for r in results))
    for (name, peer), results in enforcement.quarantined_peers.items():
        rules = ", ".join(sorted({r.rule.id for r in results}))
        log.warning("peer %s of %s quarantined: %s", peer, name, rules)
    missing = sorted({r.rule.id for r in enforcement.not_implemented})
    if missing:
        log.warning("profile %s: rules not implemented yet (not enforced): %s", plan.profile.name,
                    ", ".join(missing))


def _open_audit(plan: Any, channels: int = 0) -> Any:
    """The audit process; ``channels``: one direct channel per worker process (``[gateway] workers``)."""
    from ikeguard.audit.isolated import IsolatedAuditService

    plan.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    audit = IsolatedAuditService(plan.state_dir, plan.audit_sinks, channels=channels)
    audit.start()
    return audit


def run_gateway(config_path: str | os.PathLike[str], *, profile_override: str | None = None,
                workers_main: Callable[[Any, int, Path, str | None], int] | None = None) -> int:
    """Run the gateway in the foreground; the process exit code. ``[gateway] workers`` > 1: ``workers_main``
    (``control/workers_run.py``) runs the supervisor of that many worker processes instead (issue 22)."""
    from ikeguard.service.plan import ConfigRefused, build_plan

    configure_logging()
    from ikeguard.service.acme_renewal import ACME
    from ikeguard.service.cert_renewal import EnrollmentStartError, bootstrap
    from ikeguard.service.scep_renewal import SCEP

    try:  # [acme], [scep]: the first certificate before the plan needs it (docs/pki.md)
        issued = bootstrap(Path(config_path), (ACME, SCEP), profile_override=profile_override)
    except EnrollmentStartError as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    try:
        plan = build_plan(Path(config_path), now=dt.datetime.now(dt.UTC), profile_override=profile_override)
    except ConfigRefused as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # unreadable: not TOML, missing file
        first = exc.findings[0] if exc.findings else None
        text = f"{first.location()}: {first.message}" if first is not None and first.file else str(exc)
        print(f"ikeguard run: {text}", file=sys.stderr)
        return 2
    _log_enforcement(plan)
    from ikeguard.service.workers import effective_workers, worker_count

    workers, single = effective_workers(plan)
    if single is not None:
        log.info("workers = auto: one worker process, because of %s", single)
    if workers > 1 and workers_main is not None:
        return workers_main(plan, workers, Path(config_path), profile_override)
    if plan.dataplane == "userspace" and worker_count(plan.config.model.gateway.esp_workers) > 1:
        log.warning("gateway.esp_workers applies with workers > 1 only: one process runs its own data plane")
    try:
        opened = open_dataplane(plan.dataplane, plan.listen, plan.natt_port)
    except DataPlaneUnavailable as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        return 1
    try:
        audit = _open_audit(plan)
    except Exception as exc:
        opened.close()
        print(f"ikeguard run: cannot open the audit trail in {plan.state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(plan, audit, opened, Path(config_path), profile_override, issued))
    finally:
        opened.close()
        with contextlib.suppress(Exception):
            audit.close()


async def _start_control(gateway: Gateway, plan: Any, config_path: Path, profile_override: str | None) -> Any:
    try:
        from ikeguard.control.server import ControlServer
    except ImportError as exc:  # not part of this build
        log.warning("control socket unavailable: %s", exc)
        return None
    server = ControlServer(gateway, plan.state_dir / "control.sock", config_path=config_path,
                           profile_override=profile_override)  # `ikeguard reload` keeps `run --profile`
    await server.start()
    return server


async def _start_vici(gateway: Gateway, plan: Any, config_path: Path, profile_override: str | None) -> Any:
    """``[gateway] vici = PATH``: strongSwan's control protocol on a second owner-only socket."""
    path = plan.config.model.gateway.vici
    if not path:
        return None
    from ikeguard.control.vici_server import ViciServer

    server = ViciServer(gateway, plan.config.resolve(path), config_path=config_path,
                        profile_override=profile_override)
    await server.start()
    return server


def _start_metrics(gateway: Gateway, plan: Any) -> Callable[[], None] | None:
    if plan.metrics is None:
        return None
    from ikeguard.control.metrics import start_metrics

    host, port = plan.metrics
    stop: Callable[[], None] = start_metrics(gateway, host, port)
    return stop


async def _serve(plan: Any, audit: Any, opened: OpenedDataPlane, config_path: Path,
                 profile_override: str | None, issued: Sequence[Any] = ()) -> int:
    from ikeguard.service.acme_renewal import ACME
    from ikeguard.service.cert_expiry import watch as watch_expiry
    from ikeguard.service.cert_renewal import CertificateRenewer
    from ikeguard.service.scep_renewal import SCEP

    gateway = Gateway(plan, audit=audit, dataplane=opened.plane)
    for record in [*issued, *startup_records(plan)]:
        gateway.record(record)
    try:
        await gateway.start()
    except OSError as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        await gateway.stop("start-up failed")
        return 1
    loop = asyncio.get_running_loop()
    addresses = AddressMonitor(gateway)
    addresses.start(loop)  # local address changes -> MOBIKE (RFC 4555 §3.5)
    stopping = asyncio.Event()
    reloads: set[asyncio.Task[Any]] = set()

    def reload() -> None:
        from ikeguard.service.reload import reload_gateway

        log.info("SIGHUP: reloading %s", config_path)
        task = loop.create_task(reload_gateway(gateway, config_path, admin="SIGHUP",
                                               profile_override=profile_override))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    gateway.acme = CertificateRenewer(gateway, config_path, ACME, profile_override=profile_override)
    gateway.scep = CertificateRenewer(gateway, config_path, SCEP, profile_override=profile_override)
    renewals = [loop.create_task(r.run()) for r in (gateway.acme, gateway.scep)]  # renew while we run
    expiry = loop.create_task(watch_expiry(gateway))  # pki.expiring for our certificates
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    control = vici = stop_metrics = None
    try:
        from ikeguard.service.ha.service import start_ha

        gateway.ha = start_ha(gateway, plan.config.model.ha, plan.config.resolve)  # docs/ha.md
        control = await _start_control(gateway, plan, config_path, profile_override)
        vici = await _start_vici(gateway, plan, config_path, profile_override)
        stop_metrics = _start_metrics(gateway, plan)
    except Exception as exc:
        print(f"ikeguard run: {exc}", file=sys.stderr)
        await gateway.stop("start-up failed")
        return 1
    # the start-up records (config.loaded, waivers, quarantine) are on disk before anyone is told we are up
    await asyncio.get_running_loop().run_in_executor(None, audit.flush, 5.0)
    notify("READY=1\nSTATUS=gateway running")
    log.info("ready")
    await stopping.wait()
    notify("STOPPING=1")
    log.info("stopping")
    for task in renewals:
        task.cancel()
    expiry.cancel()
    for task in reloads:
        task.cancel()
    for server in (control, vici):
        if server is not None:
            with contextlib.suppress(Exception):
                await server.close()
    if stop_metrics is not None:
        with contextlib.suppress(Exception):
            stop_metrics()
    addresses.close()
    if gateway.ha is not None:
        await gateway.ha.stop()
    await gateway.stop()
    return 0
